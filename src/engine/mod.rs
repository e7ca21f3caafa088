//! The engine: start and end orchestration ([`audit`]), the processor's clock
//! ([`clock`]), the live-span ledger ([`ledger`]), leaks ([`leaks`]), contamination ([`contamination`]) and the findings
//! they make ([`findings`]). It knows no SDK type: the processor hands it views of
//! each span, and gets back what to write and what to export.

mod audit;
mod bounded_memory;
mod clock;
mod contamination;
mod findings;
mod leaks;
mod ledger;

pub(crate) use audit::{
    Audit, EndedSpan, ForeignResponses, Parts, StartPlan, StartedSpan, Synthetic,
};
pub(crate) use clock::{nanos, Clock};
pub(crate) use ledger::{Kept, StartCopy};
