//! The seam with `opentelemetry_sdk`: the [`SpanProcessor`] implementation, and the
//! only place that knows the SDK's span types.
//!
//! The engine ([`crate::audit`]) sees its own views of a span. In SDK 0.33 a live span's
//! name and start attributes can only be read in `on_start` through
//! [`Span::exported_data`], which clones the span; it is called at most once per span,
//! and not at all when the processor is disabled. That clone is also what the leak
//! policy `close` keeps (as a [`Snapshot`]) to export a span the audit closes.

use std::time::Duration;

use opentelemetry::trace::{SpanId, Status};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::audit::{EndedSpan, StartedSpan, Synthetic};
use crate::ledger::Kept;
use crate::processor::GenAiAuditProcessor;

/// A span as it was at its start, kept to export it if the audit closes it.
pub(crate) type Snapshot = SpanData;

/// The name of a kept span.
pub(crate) fn snapshot_name(snapshot: &Snapshot) -> &str {
    &snapshot.name
}

fn id(span_id: SpanId) -> u64 {
    u64::from_be_bytes(span_id.to_bytes())
}

fn parent(span_id: SpanId) -> Option<u64> {
    (span_id != SpanId::INVALID).then(|| id(span_id))
}

impl<P: SpanProcessor> GenAiAuditProcessor<P> {
    /// Exports spans the audit closed: the span as it started, ended at the given time
    /// with status error and the audit's attributes.
    fn export(&self, synthetic: Vec<Synthetic>) {
        for s in synthetic {
            let mut data = *s.snapshot;
            data.end_time = s.end_time;
            data.status = Status::error(s.status);
            s.writes.apply(&mut data.attributes);
            self.inner.on_end(data);
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for GenAiAuditProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some(audit) = &self.audit {
            if let Some(data) = span.exported_data() {
                let view = StartedSpan {
                    id: id(data.span_context.span_id()),
                    parent: parent(data.parent_span_id),
                    name: &data.name,
                    attributes: &data.attributes,
                };
                let plan = audit.plan_start(&view);
                let (keep_snapshot, keep_name) = (plan.keep_snapshot(), plan.keep_name());
                let synthetic = audit.start(plan, move || {
                    if keep_snapshot {
                        Kept::Snapshot(Box::new(data))
                    } else if keep_name {
                        Kept::Name(data.name)
                    } else {
                        Kept::Nothing
                    }
                });
                self.export(synthetic);
            }
        }
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        if let Some(audit) = &self.audit {
            let outcome = audit.on_end(EndedSpan {
                id: id(span.span_context.span_id()),
                name: &span.name,
                start_time: span.start_time,
                end_time: span.end_time,
                attributes: &mut span.attributes,
            });
            self.export(outcome.synthetic);
            if !outcome.forward {
                return;
            }
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if let Some(audit) = &self.audit {
            // Spans still open are evicted (`stale`); under `close` they are exported
            // before the inner processor shuts down.
            self.export(audit.shutdown());
        }
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
