//! Findings as the engine makes them: one typed event per finding, which feeds the
//! span's `genai_audit.findings` attribute and the `genai_audit.findings` metric in one
//! place, so that the two cannot disagree.

use opentelemetry::{StringValue, Value};

use super::events::Sink;
use crate::attributes::AttributeWrites;
use crate::findings::FindingCode;
use crate::keys;
use crate::recognition::Role;

/// One finding about one span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Finding {
    code: FindingCode,
    role: Role,
    repaired: bool,
    /// Already counted on the metric when it was made (a `stale` eviction whose span
    /// ends later).
    counted: bool,
}

impl Finding {
    /// A finding about a span of this role, not repaired, not yet counted.
    pub(crate) fn new(code: FindingCode, role: Role) -> Self {
        Finding {
            code,
            role,
            repaired: false,
            counted: false,
        }
    }

    /// Whether the `repair` policy corrected the span.
    pub(crate) fn repaired(mut self, repaired: bool) -> Self {
        self.repaired = repaired;
        self
    }

    /// The finding was counted on the metric when it was made.
    pub(crate) fn counted_before(mut self) -> Self {
        self.counted = true;
        self
    }

    fn count(&self, sink: Option<&dyn Sink>) {
        if let (false, Some(sink)) = (self.counted, sink) {
            sink.finding(self.code, self.role, self.repaired);
        }
    }

    /// Counts a finding about a span that is exported without it, or not at all (a span
    /// evicted under `flag`; the real end of a span the audit already exported).
    pub(crate) fn count_only(self, sink: Option<&dyn Sink>) {
        self.count(sink);
    }
}

/// A set of finding codes made before the span they are about is exported (at its
/// start, say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FindingSet(u16);

impl FindingSet {
    const fn bit(code: FindingCode) -> u16 {
        1 << (code as u16)
    }

    pub(crate) fn insert(&mut self, code: FindingCode) {
        self.0 |= Self::bit(code);
    }

    #[cfg(test)]
    pub(crate) fn contains(self, code: FindingCode) -> bool {
        self.0 & Self::bit(code) != 0
    }

    #[cfg(test)]
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The codes in the set, in the order of [`FindingCode::ALL`] (a code's bit is its
    /// place there): one step per code in the set, none for an empty set.
    pub(crate) fn iter(self) -> impl Iterator<Item = FindingCode> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let place = bits.trailing_zeros();
            bits &= bits.wrapping_sub(1);
            FindingCode::ALL.get(usize::try_from(place).ok()?).copied()
        })
    }
}

/// The findings about one span, written and counted together when it is exported.
#[derive(Debug, Default)]
pub(crate) struct SpanFindings {
    findings: Vec<Finding>,
}

impl SpanFindings {
    pub(crate) fn add(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Counts each finding not counted yet, and writes nothing (the span they are about
    /// is not gen-ai: it passes through untouched).
    pub(crate) fn count_only(self, sink: Option<&dyn Sink>) {
        for finding in &self.findings {
            finding.count(sink);
        }
    }

    /// Counts each finding not counted yet, and writes the codes to
    /// `genai_audit.findings`.
    pub(crate) fn emit(self, writes: &mut AttributeWrites, sink: Option<&dyn Sink>) {
        if self.findings.is_empty() {
            return;
        }
        for finding in &self.findings {
            finding.count(sink);
        }
        let codes: Vec<StringValue> = self
            .findings
            .iter()
            .map(|f| StringValue::from(f.code.as_str()))
            .collect();
        writes.set(keys::FINDINGS, Value::Array(codes.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_lists_its_codes_in_the_order_of_all() {
        // A code's bit is its place in `ALL`.
        for (place, code) in FindingCode::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(code as u16), place, "{code:?}");
        }
        assert_eq!(FindingSet::default().iter().count(), 0);
        let mut set = FindingSet::default();
        for code in [
            FindingCode::MissingParent,
            FindingCode::UnclosedChild,
            FindingCode::OverlappingStep,
        ] {
            set.insert(code);
        }
        let listed: Vec<FindingCode> = set.iter().collect();
        assert_eq!(
            listed,
            [
                FindingCode::UnclosedChild,
                FindingCode::OverlappingStep,
                FindingCode::MissingParent
            ]
        );
        let all = FindingCode::ALL
            .into_iter()
            .fold(FindingSet::default(), |mut set, code| {
                set.insert(code);
                set
            });
        assert!(all.iter().eq(FindingCode::ALL));
    }
}
