//! The engine: start and end orchestration ([`audit`]), the live-span ledger
//! ([`ledger`]), leaks ([`leaks`]), contamination ([`contamination`]) and the findings
//! they make ([`findings`]). It knows no SDK type: the processor hands it views of
//! each span, and gets back what to write and what to export.

mod audit;
mod bounded_memory;
mod contamination;
mod findings;
mod leaks;
mod ledger;

pub(crate) use audit::{Audit, Clock, EndedSpan, Parts, StartPlan, StartedSpan, Synthetic};
pub(crate) use ledger::{Kept, StartCopy};
