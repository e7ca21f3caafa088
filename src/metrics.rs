//! The processor's metrics, created only when a meter provider is given.
//!
//! | instrument | kind, unit | attributes |
//! | --- | --- | --- |
//! | `genai_audit.findings` | `Counter<u64>`, `{finding}` | `genai_audit.finding`, `genai_audit.role`, `genai_audit.repaired` |
//! | `genai_audit.spans.tracked` | observable `UpDownCounter<i64>`, `{span}` | none |
//!
//! Both live in the instrumentation scope `genai-audit` with the crate's version. The
//! tracked-span count is read from an atomic the live-span ledger keeps anyway, so it
//! costs nothing per span.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use opentelemetry::metrics::{Counter, MeterProvider, ObservableUpDownCounter};
use opentelemetry::{InstrumentationScope, KeyValue};

use crate::keys::metric;

/// The instruments, created on the meter provider given to the builder.
#[derive(Debug)]
pub(crate) struct AuditMetrics {
    findings: Counter<u64>,
    _tracked: ObservableUpDownCounter<i64>,
}

impl AuditMetrics {
    pub(crate) fn new(provider: &dyn MeterProvider, tracked: Arc<AtomicUsize>) -> Self {
        let scope = InstrumentationScope::builder("genai-audit")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let meter = provider.meter_with_scope(scope);
        let findings = meter
            .u64_counter(metric::FINDINGS)
            .with_unit("{finding}")
            .with_description("Findings about gen-ai spans, by code, role and repair.")
            .build();
        let tracked = meter
            .i64_observable_up_down_counter(metric::SPANS_TRACKED)
            .with_unit("{span}")
            .with_description("Spans the audit processor currently keeps state for.")
            .with_callback(move |observer| {
                let n = tracked.load(Ordering::Relaxed);
                observer.observe(i64::try_from(n).unwrap_or(i64::MAX), &[]);
            })
            .build();
        AuditMetrics {
            findings,
            _tracked: tracked,
        }
    }

    /// Counts one finding: its code, the role of the span it is about, and whether it
    /// was repaired.
    pub(crate) fn count_finding(&self, code: &'static str, role: &'static str, repaired: bool) {
        self.findings.add(
            1,
            &[
                KeyValue::new(metric::FINDING, code),
                KeyValue::new(metric::ROLE, role),
                KeyValue::new(metric::REPAIRED, repaired),
            ],
        );
    }
}
