//! The live-span ledger: what the processor remembers about spans that have started
//! and not yet ended, and, in bounded memory, about spans that ended recently.
//!
//! A span is tracked from `on_start` when it is recognised there (by its name or start
//! attributes) or when its parent is tracked; everything else takes the fast path and
//! leaves no state. Each entry knows its tracked parent and its invocation (the nearest
//! ancestor that was an invocation at its start), so rollups and invocation lookup see
//! through non-recognised spans in between.
//!
//! Spans not tracked from their start hand their totals up one hop as they end: what
//! they and their descendants contribute (generations, tool calls, `partial`, own
//! usage, steps counted at end) goes to their parent, keyed by the parent's span id,
//! which the SDK gives every ended span. A tracked parent takes it like a tracked
//! child's contribution; a parent never seen before gets a *pending* entry that holds it
//! until the parent ends, so a span recognised only at its end (or never) still passes
//! its descendants' totals up. Totals are therefore ready when a span ends, whatever
//! was known at its start. A
//! generation's usage counts as *own* usage of the spans up to and including its
//! invocation (an invocation hands no own usage up). A span that ends while tracked
//! children are still open stays as a tombstone until they end, so that a late child's
//! contribution still reaches the ancestors above it, and its children learn that their
//! parent has ended (for `late_end`); ended spans that matter are also remembered in
//! bounded memory, for children that were not tracked.
//!
//! Within spans tracked since their start, a generation's or tool call's contribution
//! is added to every tracked ancestor as it ends, nearest first; the running total of
//! its invocation after that addition is the generation's cumulative total (which
//! therefore needs the invocation tracked when the generation ends). Pending entries
//! and tracked roots hand their sums across to the parent their end names.
//!
//! Memory is bounded: at most `capacity` entries. Spans are queued in start order; at
//! each tracked start the oldest are evicted when the ledger is full or when they are
//! older than the maximum age, a bounded number per call, so eviction needs no thread of
//! its own and no call does more than a fixed amount of it.
//!
//! The spans of one trace are kept behind one lock (the span map is split into
//! 64 parts by trace id, each with its spans' start order), so that a ledger
//! call of a span event takes one lock, whatever it reads and writes of the span, its
//! ancestors and its invocation; events of other traces rarely share it. Eviction
//! finds the oldest span across the parts from the start each part publishes, without
//! their locks. Every map is keyed by the span id with a cheap hasher
//! ([`crate::hashing`]).
//!
//! The parts, dependencies pointing one way (`entry` and `memory` are leaves):
//!
//! - `entry`: a span's entry and what it gathered from below; what a call hands up;
//!   what an ended span leaves; the trace key that picks a shard;
//! - `memory`: the bounded memory of recently ended spans, and the exact set of spans the
//!   audit closed that await their real end (no span is exported twice);
//! - `shards`: the ledger, its span map split by trace behind one lock each, with the
//!   start-order queue of each shard, and the bound on walks up the ancestors (exact at
//!   any depth, finite on a parent cycle);
//! - `eviction`: the oldest open spans by capacity and age, a bounded number per call,
//!   and every open span at shutdown;
//! - `start`: a span's start, its place under its nearest tracked ancestor, steps;
//! - `end`: a span's end and what it hands to every tracked ancestor, pending entries,
//!   tombstones, and the spans the audit closes.

mod end;
mod entry;
mod eviction;
mod memory;
mod shards;
mod start;
#[cfg(test)]
mod tests;

pub(crate) use entry::{
    Call, Contribution, Ended, Ending, Forward, Identity, Kept, LastResponse, NewSpan, OwnUsage,
    Start, StartCopy, TraceKey, Wrapped,
};
pub(crate) use shards::Ledger;
