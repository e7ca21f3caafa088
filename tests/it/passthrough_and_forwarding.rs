//! Non-gen-ai spans pass through byte-identical; a disabled processor is a pure
//! pass-through; every SpanProcessor method reaches the wrapped processor.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use crate::common::SequentialIds;
use genai_audit::GenAiAuditProcessor;
use opentelemetry::trace::{
    Link, Span, SpanContext, SpanKind, Status, TraceContextExt, Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor, SpanData, SpanProcessor,
};
use opentelemetry_sdk::Resource;

fn at(ns: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + ns)
}

/// An HTTP handler with a database call, a cache call and an outgoing request; then,
/// when `genai` is set, an agent invocation with a generation.
fn run(provider: &SdkTracerProvider, genai: bool) {
    let tracer = provider.tracer("svc");
    let root = tracer
        .span_builder("GET /orders")
        .with_kind(SpanKind::Server)
        .with_start_time(at(0))
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.path", "/orders"),
            KeyValue::new("http.response.status_code", 200),
            KeyValue::new("server.port", 8080),
        ])
        .start(&tracer);
    let cx = Context::new().with_span(root);
    for (i, name) in ["SELECT orders", "GET cache", "POST /billing"]
        .iter()
        .enumerate()
    {
        let mut child = tracer
            .span_builder(name.to_string())
            .with_kind(SpanKind::Client)
            .with_start_time(at(10 + i as u64))
            .with_attributes([
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.query.text", "SELECT 1"),
                KeyValue::new("retry", i as i64),
                KeyValue::new("ratio", 0.5),
            ])
            .with_links(vec![Link::with_context(SpanContext::empty_context())])
            .start_with_context(&tracer, &cx);
        child.add_event_with_timestamp("retry", at(20), vec![KeyValue::new("n", 1)]);
        child.set_status(Status::error("boom"));
        child.end_with_timestamp(at(30 + i as u64));
    }
    if genai {
        let mut llm = tracer
            .span_builder("chat gpt-4o")
            .with_start_time(at(40))
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.request.model", "gpt-4o"),
                KeyValue::new("gen_ai.usage.input_tokens", 5),
            ])
            .start_with_context(&tracer, &cx);
        llm.end_with_timestamp(at(41));
    }
    cx.span().end_with_timestamp(at(100));
}

fn exported(audit: Option<bool>, genai: bool) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let inner = SimpleSpanProcessor::new(exporter.clone());
    let builder = SdkTracerProvider::builder().with_id_generator(SequentialIds::default());
    let provider = match audit {
        None => builder.with_span_processor(inner).build(),
        Some(disabled) => builder
            .with_span_processor(
                GenAiAuditProcessor::builder(inner)
                    .with_disabled(disabled)
                    .build(),
            )
            .build(),
    };
    run(&provider, genai);
    exporter.get_finished_spans().expect("spans")
}

#[test]
fn non_genai_trace_is_exported_byte_identical() {
    let bare = exported(None, false);
    let audited = exported(Some(false), false);
    assert_eq!(bare.len(), 4);
    assert_eq!(bare, audited);
}

#[test]
fn disabled_processor_is_a_pure_pass_through() {
    let bare = exported(None, true);
    let disabled = exported(Some(true), true);
    assert_eq!(bare, disabled);
    // Enabled, the same trace differs only on the generation.
    let enabled = exported(Some(false), true);
    for (b, e) in bare.iter().zip(&enabled) {
        if b.name == "chat gpt-4o" {
            assert_ne!(b, e);
        } else {
            assert_eq!(b, e);
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl SpanProcessor for Recorder {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {
        self.0.lock().unwrap().push("on_start".into());
    }
    fn on_end(&self, span: SpanData) {
        self.0.lock().unwrap().push(format!("on_end {}", span.name));
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.lock().unwrap().push("force_flush".into());
        Ok(())
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0
            .lock()
            .unwrap()
            .push(format!("shutdown {}s", timeout.as_secs()));
        Ok(())
    }
    fn set_resource(&mut self, resource: &Resource) {
        let service = resource
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        self.0
            .lock()
            .unwrap()
            .push(format!("set_resource {service}"));
    }
}

#[test]
fn every_method_reaches_the_inner_processor() {
    let recorder = Recorder::default();
    let calls = recorder.0.clone();
    let provider = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name("shop").build())
        .with_span_processor(GenAiAuditProcessor::builder(recorder).build())
        .build();
    let tracer = provider.tracer("t");
    tracer.in_span("invoke_agent a", |_| {});
    tracer.in_span("GET /", |_| {});
    provider.force_flush().unwrap();
    provider
        .shutdown_with_timeout(Duration::from_secs(3))
        .unwrap();
    assert_eq!(
        *calls.lock().unwrap(),
        vec![
            "set_resource shop",
            "on_start",
            "on_end invoke_agent a",
            "on_start",
            "on_end GET /",
            "force_flush",
            "shutdown 3s",
        ]
    );
}
