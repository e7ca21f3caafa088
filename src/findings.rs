//! Findings: what the processor found wrong with a span.
//!
//! Each finding is a typed value ([`Finding`]) recorded in one place, which writes its
//! code to the span's `genai_audit.findings` attribute and counts it on the
//! `genai_audit.findings` metric with the same code, role and repair flag: the span
//! attribute and the metric cannot disagree (DESIGN §6, §7).

use std::fmt;

use opentelemetry::{StringValue, Value};

use crate::keys::audit;
use crate::metrics::AuditMetrics;
use crate::recognition::Role;
use crate::span_attributes::AttributeWrites;

/// The finding codes of DESIGN §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FindingCode {
    /// A recognised child was still open when this parent ended.
    UnclosedChild,
    /// The leak policy `close` closed this child.
    ClosedByAudit,
    /// This child ended after its parent ended.
    LateEnd,
    /// This span started under a recognised parent that had already ended.
    LateStart,
    /// This span was evicted while open (too old, over capacity, or open at shutdown).
    Stale,
    /// The usage this span reports matches none of the sums of its generations.
    UsageMismatch,
    /// This invocation reports the response id of another invocation's generation.
    ForeignResponse,
    /// This step's `gen_ai.react.round` differs from its position.
    RoundMismatch,
    /// This step started while another step of its invocation was open.
    OverlappingStep,
    /// This span's conversation id or agent name differs from its invocation's.
    IdentityMismatch,
    /// A usage value on this span is unusable.
    InvalidUsage,
}

impl FindingCode {
    /// Every code, in the order of DESIGN §6.
    pub const ALL: [FindingCode; 11] = [
        FindingCode::UnclosedChild,
        FindingCode::ClosedByAudit,
        FindingCode::LateEnd,
        FindingCode::LateStart,
        FindingCode::Stale,
        FindingCode::UsageMismatch,
        FindingCode::ForeignResponse,
        FindingCode::RoundMismatch,
        FindingCode::OverlappingStep,
        FindingCode::IdentityMismatch,
        FindingCode::InvalidUsage,
    ];

    /// The code as written to spans and metrics, e.g. `invalid_usage`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FindingCode::UnclosedChild => "unclosed_child",
            FindingCode::ClosedByAudit => "closed_by_audit",
            FindingCode::LateEnd => "late_end",
            FindingCode::LateStart => "late_start",
            FindingCode::Stale => "stale",
            FindingCode::UsageMismatch => "usage_mismatch",
            FindingCode::ForeignResponse => "foreign_response",
            FindingCode::RoundMismatch => "round_mismatch",
            FindingCode::OverlappingStep => "overlapping_step",
            FindingCode::IdentityMismatch => "identity_mismatch",
            FindingCode::InvalidUsage => "invalid_usage",
        }
    }
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding about one span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// What was found.
    pub code: FindingCode,
    /// The role of the span it is about.
    pub role: Role,
    /// Whether the contamination policy `repair` corrected the span.
    pub repaired: bool,
}

impl FindingCode {
    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of finding codes, for findings made before the span they are about is
/// exported (at its start, say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FindingSet(u16);

impl FindingSet {
    pub(crate) fn insert(&mut self, code: FindingCode) {
        self.0 |= code.bit();
    }

    pub(crate) fn contains(self, code: FindingCode) -> bool {
        self.0 & code.bit() != 0
    }

    #[cfg(test)]
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The codes in the set, in the order of [`FindingCode::ALL`].
    pub(crate) fn iter(self) -> impl Iterator<Item = FindingCode> {
        FindingCode::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

/// The findings about one span, written and counted together when the span is exported.
#[derive(Debug, Default)]
pub(crate) struct SpanFindings {
    /// Each finding, and whether it still has to be counted on the metric.
    findings: Vec<(Finding, bool)>,
}

impl SpanFindings {
    /// Records a finding: written to the span and counted on the metric.
    pub(crate) fn record(&mut self, code: FindingCode, role: Role, repaired: bool) {
        self.findings.push((
            Finding {
                code,
                role,
                repaired,
            },
            true,
        ));
    }

    /// Records a finding that was already counted on the metric when it was made (a
    /// `stale` eviction whose span ends later): written to the span only.
    pub(crate) fn note(&mut self, code: FindingCode, role: Role) {
        self.findings.push((
            Finding {
                code,
                role,
                repaired: false,
            },
            false,
        ));
    }

    /// Writes `genai_audit.findings` and counts each finding on the metric.
    pub(crate) fn emit(self, writes: &mut AttributeWrites, metrics: Option<&AuditMetrics>) {
        if self.findings.is_empty() {
            return;
        }
        if let Some(metrics) = metrics {
            for (finding, count) in &self.findings {
                if *count {
                    metrics.count_finding(finding);
                }
            }
        }
        let codes: Vec<StringValue> = self
            .findings
            .iter()
            .map(|(f, _)| StringValue::from(f.code.as_str()))
            .collect();
        writes.set(audit::FINDINGS, Value::Array(codes.into()));
    }
}

/// Counts a finding about a span that is not exported (evicted under `flag`, or the
/// real end of a span the audit already closed).
pub(crate) fn count_only(metrics: Option<&AuditMetrics>, code: FindingCode, role: Role) {
    if let Some(metrics) = metrics {
        metrics.count_finding(&Finding {
            code,
            role,
            repaired: false,
        });
    }
}
