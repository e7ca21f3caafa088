//! Auditing a trace script as the processor audits it in-process.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;
use parking_lot::Mutex;

use super::audit::AuditOptions;
use super::read::Request;
use crate::processor::GenAiAuditProcessor;
use crate::report::ReportSpan;
use crate::script::TraceScript;

/// Keeps every span it is given, through shutdown.
#[derive(Debug, Default, Clone)]
struct Keep(Arc<Mutex<Vec<SpanData>>>);

impl SpanProcessor for Keep {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}
    fn on_end(&self, span: SpanData) {
        self.0.lock().push(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Replays a trace script through a tracer provider whose only processor is the audit
/// processor, as an application would run it (spans still open at the end are handled
/// as at shutdown), and returns a [`ReportSpan`] per exported span, in export order.
/// With [`AuditOptions::enrich`], also the exported spans as one OTLP request (ids
/// are the ones the replay gave; the resource is empty).
pub fn audit_script(
    script: &TraceScript,
    options: &AuditOptions,
) -> (Vec<ReportSpan>, Option<Request>) {
    let keep = Keep::default();
    let audit = options
        .configure(GenAiAuditProcessor::builder(keep.clone()))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(audit)
        .build();
    let replay = script.replay(&provider.tracer("genai-audit"));
    let _ = provider.shutdown();
    drop(replay);
    let spans = std::mem::take(&mut *keep.0.lock());
    let reports = spans.iter().map(ReportSpan::from).collect();
    let request = options.enrich.then(|| {
        let resource = ResourceAttributesWithSchema::from(&Resource::builder_empty().build());
        Request {
            line: 1,
            request: ExportTraceServiceRequest {
                resource_spans: group_spans_by_resource_and_scope(spans, &resource),
            },
        }
    });
    (reports, request)
}
