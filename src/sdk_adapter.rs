//! The seam with `opentelemetry_sdk`: the [`SpanProcessor`] implementation.
//!
//! Everything that touches the SDK's span types lives here; the engine
//! ([`crate::audit`]) sees only its own views. In SDK 0.33 a live span's name and start
//! attributes can only be read in `on_start` through [`Span::exported_data`], which
//! clones the span; it is called at most once per span, and not at all when the
//! processor is disabled.

use std::time::Duration;

use opentelemetry::trace::SpanId;
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::audit::{EndedSpan, StartedSpan};
use crate::processor::GenAiAuditProcessor;

fn id(span_id: SpanId) -> u64 {
    u64::from_be_bytes(span_id.to_bytes())
}

fn parent(span_id: SpanId) -> Option<u64> {
    (span_id != SpanId::INVALID).then(|| id(span_id))
}

impl<P: SpanProcessor> SpanProcessor for GenAiAuditProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some(audit) = &self.audit {
            if let Some(data) = span.exported_data() {
                audit.on_start(StartedSpan {
                    id: id(data.span_context.span_id()),
                    parent: parent(data.parent_span_id),
                    name: &data.name,
                    attributes: &data.attributes,
                });
            }
        }
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        if let Some(audit) = &self.audit {
            audit.on_end(EndedSpan {
                id: id(span.span_context.span_id()),
                name: &span.name,
                start_time: span.start_time,
                attributes: &mut span.attributes,
            });
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
