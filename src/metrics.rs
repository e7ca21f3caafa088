//! The processor's metrics (DESIGN §7), created only when a meter provider is given.
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

use crate::findings::Finding;

/// Instrument name of the findings counter.
pub const FINDINGS_COUNTER: &str = "genai_audit.findings";
/// Instrument name of the tracked-spans count.
pub const SPANS_TRACKED: &str = "genai_audit.spans.tracked";
/// Attribute of the findings counter: the finding code.
pub const ATTR_FINDING: &str = "genai_audit.finding";
/// Attribute of the findings counter: the role of the span.
pub const ATTR_ROLE: &str = "genai_audit.role";
/// Attribute of the findings counter: whether the span was repaired.
pub const ATTR_REPAIRED: &str = "genai_audit.repaired";

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
            .u64_counter(FINDINGS_COUNTER)
            .with_unit("{finding}")
            .with_description("Findings about gen-ai spans, by code, role and repair.")
            .build();
        let tracked = meter
            .i64_observable_up_down_counter(SPANS_TRACKED)
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

    pub(crate) fn count_finding(&self, finding: &Finding) {
        self.findings.add(
            1,
            &[
                KeyValue::new(ATTR_FINDING, finding.code.as_str()),
                KeyValue::new(ATTR_ROLE, finding.role.as_str()),
                KeyValue::new(ATTR_REPAIRED, finding.repaired),
            ],
        );
    }
}
