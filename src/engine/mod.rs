//! The engine: span events in, verdicts out (`DESIGN.md` §13).
//!
//! Every edge — the Rust SDK processor, the command's replay of exported traces,
//! `serve`, the Python and Node bindings — turns its own form of a span into the events
//! of [`Engine`] and applies what it answers. Inside: start and end orchestration, the
//! live-span ledger, leaks, contamination, and the findings they make.

mod audit;
mod bounded_memory;
mod clock;
mod contamination;
mod end;
mod events;
mod leaks;
mod ledger;
mod public;
mod span_findings;

#[cfg(feature = "cli")]
pub(crate) use audit::ForeignResponses;
pub(crate) use audit::{Audit, Caller, EndedSpan, StartPlan, StartedSpan, Synthetic};
pub(crate) use clock::{nanos, Clock};
pub(crate) use events::Sink;
pub use events::{AuditEvent, CallEvent, InvocationEvent};
pub(crate) use ledger::{Kept, StartCopy};
pub(crate) use public::id_of;
pub use public::{ClosedSpan, Engine, EngineBuilder, Parent, SpanEnd, SpanStart, Verdict, Writes};
