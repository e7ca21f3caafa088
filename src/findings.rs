//! The codes of the findings the processor reports: what it found wrong with a span.
//!
//! Each code is written to the span's `genai_audit.findings` attribute (a string
//! array) and counted on the `genai_audit.findings` metric with the same code, the
//! role of the span and whether the `repair` policy corrected it.

use std::fmt;

use std::str::FromStr;

/// What the processor found wrong with a span.
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
    /// The invocation's cumulative cost or tokens passed its budget (on the generation
    /// that passed it, and on the invocation).
    BudgetExceeded,
    /// This span's parent (same trace, not remote) never appears in the exported
    /// traces that were audited: the parent leaked (never ended) or was lost. Only the
    /// `genai-audit` command reports it; the processor never sees an export.
    MissingParent,
    /// This span ends before it starts (the clocks that stamped it moved); it was
    /// audited as ending at its start. Only the `genai-audit` command reports it: an
    /// SDK span in process cannot end before it starts.
    InvalidTime,
}

impl FindingCode {
    /// Every code.
    pub const ALL: [FindingCode; 14] = [
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
        FindingCode::BudgetExceeded,
        FindingCode::MissingParent,
        FindingCode::InvalidTime,
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
            FindingCode::BudgetExceeded => "budget_exceeded",
            FindingCode::MissingParent => "missing_parent",
            FindingCode::InvalidTime => "invalid_time",
        }
    }

    /// What the finding means, in one line (for reports: the terminal, the HTML page).
    ///
    /// ```
    /// use genai_audit::FindingCode;
    /// assert_eq!(FindingCode::LateEnd.meaning(), "ended after its parent had ended");
    /// assert!(FindingCode::ALL.iter().all(|c| !c.meaning().is_empty()));
    /// ```
    pub const fn meaning(self) -> &'static str {
        match self {
            FindingCode::UnclosedChild => "a recognised child was still open when this span ended",
            FindingCode::ClosedByAudit => "still open when its parent ended; the audit closed it",
            FindingCode::LateEnd => "ended after its parent had ended",
            FindingCode::LateStart => "started under a parent that had already ended",
            FindingCode::Stale => {
                "evicted while open (too old, over capacity, or open at shutdown)"
            }
            FindingCode::UsageMismatch => "reported usage matches no sum of its generations",
            FindingCode::ForeignResponse => {
                "reports the response id of another invocation's generation"
            }
            FindingCode::RoundMismatch => {
                "its react round differs from its position among the steps"
            }
            FindingCode::OverlappingStep => "started while another step of its invocation was open",
            FindingCode::IdentityMismatch => {
                "its conversation id or agent name differs from its invocation's"
            }
            FindingCode::InvalidUsage => "a token count or reported cost on it is unusable",
            FindingCode::BudgetExceeded => "its invocation's cost or tokens passed the budget",
            FindingCode::MissingParent => "its parent never appears in the input (leaked or lost)",
            FindingCode::InvalidTime => "ends before it starts; audited as ending at its start",
        }
    }

    /// The meaning of a code as written to spans ([`meaning`](Self::meaning)), or
    /// `None` for a code this version does not know.
    pub fn meaning_of(code: &str) -> Option<&'static str> {
        code.parse::<FindingCode>().ok().map(FindingCode::meaning)
    }
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a finding code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFindingCodeError(String);

impl fmt::Display for ParseFindingCodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown finding code {:?}", self.0)
    }
}

impl std::error::Error for ParseFindingCodeError {}

impl FromStr for FindingCode {
    type Err = ParseFindingCodeError;

    /// The code as written to spans, e.g. `usage_mismatch`.
    ///
    /// ```
    /// use genai_audit::FindingCode;
    /// assert_eq!("late_end".parse::<FindingCode>(), Ok(FindingCode::LateEnd));
    /// assert!("late".parse::<FindingCode>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, ParseFindingCodeError> {
        FindingCode::ALL
            .into_iter()
            .find(|code| code.as_str() == s.trim())
            .ok_or_else(|| ParseFindingCodeError(s.to_owned()))
    }
}
