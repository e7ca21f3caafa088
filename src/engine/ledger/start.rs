//! A span's start: its entry, its place under its nearest tracked ancestor (through
//! spans that ended, for a late start), step positions and overlaps; and the lookups of
//! an invocation's state.

use crate::engine::span_findings::FindingSet;
use crate::findings::FindingCode;
use crate::recognition::Role;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::entry::*;
use super::shards::*;

impl<S: StartCopy> Ledger<S> {
    /// Starts tracking a span if it was `recognised` at start or its parent is tracked.
    /// Returns whether it is tracked, or, when the ledger is full, the span back (to
    /// evict and try again). Findings made at start (`late_start`, `overlapping_step`)
    /// are kept in the entry until its end.
    ///
    /// `now` (nanoseconds since the Unix epoch, by the processor's clock) is called
    /// when the span may be tracked (it is recognised, or some span is tracked), and
    /// before its trace's lock is taken, so that a clock from the builder never runs
    /// under it: a span's age is how long the processor has been tracking it, not what
    /// its own start timestamp says (recorded traces replayed later, or skewed clocks,
    /// must not look old).
    pub(crate) fn start(
        &self,
        trace: TraceKey,
        span: NewSpan,
        recognised: bool,
        now: impl FnOnce() -> u64,
        kept: &mut Option<impl FnOnce() -> Kept<S>>,
    ) -> Start {
        if !recognised && self.len() == 0 {
            // Nothing is tracked, so no parent is: the fast path without a lookup.
            return Start::Untracked;
        }
        let start_nanos = now();
        let slot = self.slot(trace);
        let mut guard = slot.shard.lock();
        let shard = &mut *guard;
        let spans = &mut shard.spans;
        if self.len() >= self.capacity {
            let trackable = recognised || span.parent.is_some_and(|p| spans.contains_key(&p));
            return if trackable {
                Start::Full(span)
            } else {
                Start::Untracked
            };
        }
        let mut pending = FindingSet::default();
        let mut step = None;
        let (parent, invocation) = match span.parent {
            Some(parent_id) => self.attach(spans, parent_id, &span, &mut pending, &mut step),
            None => (None, None),
        };
        if parent.is_none() && !recognised {
            return Start::Untracked;
        }
        let step_index = if span.role == Role::Step {
            // Counted by `attach` when the invocation is the parent.
            let counted = step.or_else(|| {
                invocation.map(|inv| match spans.get_mut(&inv) {
                    Some(inv) => count_step(inv.below()),
                    None => (0, false),
                })
            });
            counted.map_or(0, |(index, overlapping)| {
                if overlapping {
                    pending.insert(FindingCode::OverlappingStep);
                }
                index
            })
        } else {
            0
        };
        let below =
            (span.identity != Identity::default() || span.agent_name.is_some()).then(|| {
                Box::new(Below {
                    identity: span.identity,
                    agent_name: span.agent_name,
                    ..Below::default()
                })
            });
        let entry = Entry {
            parent: pack(parent),
            invocation: pack(invocation),
            start_nanos,
            kept: kept.take().map_or(Kept::Nothing, |keep| keep()),
            below,
            step_index,
            pending,
            role: span.role,
            fate: Fate::Open,
            parent_ended: false,
        };
        if spans.insert(span.id, entry).is_none() {
            self.added();
        }
        self.enqueue(slot, shard, span.id, start_nanos);
        drop(guard);
        let due = self.len() > self.capacity
            || self.oldest.load(Ordering::Relaxed) < start_nanos.saturating_sub(self.max_age_nanos);
        Start::Tracked { due }
    }

    /// Registers a new span with its parent (or, when the parent has ended, with the
    /// nearest ancestor still tracked). Returns its tracked parent and invocation. A
    /// step whose parent is its invocation is counted there too (`step`: its index, and
    /// whether another step was open).
    pub(super) fn attach(
        &self,
        spans: &mut Spans<S>,
        parent_id: u64,
        span: &NewSpan,
        pending: &mut FindingSet,
        step: &mut Option<(u32, bool)>,
    ) -> (Option<u64>, Option<u64>) {
        let (child, role) = (span.id, span.role);
        if let Some(p) = spans.get_mut(&parent_id) {
            if p.fate == Fate::Pending {
                // A parent never seen starting: its children hand their totals up as
                // they end, tracked or not.
                return (None, None);
            }
            if p.fate != Fate::Open && p.role.is_recognised() && role.is_recognised() {
                pending.insert(FindingCode::LateStart);
            }
            p.below().open_children.push(child);
            let invocation = if p.role == Role::Invocation {
                if role == Role::Step {
                    *step = Some(count_step(p.below()));
                }
                Some(parent_id)
            } else {
                p.invocation()
            };
            return (Some(parent_id), invocation);
        }
        // The parent is gone: if it ended recently, this is a late start, and the span
        // joins the nearest ancestor still tracked. Only a recognised span can start
        // late; the others (an HTTP span under an HTTP span) skip the lookup.
        if !role.is_recognised() {
            return (None, None);
        }
        let Some(recent) = self.recent.get(parent_id) else {
            return (None, None);
        };
        if recent.fate != Fate::Evicted && recent.role.is_recognised() && role.is_recognised() {
            pending.insert(FindingCode::LateStart);
        }
        let invocation = if recent.role == Role::Invocation {
            None
        } else {
            recent.invocation
        };
        let mut next = recent.parent;
        for _ in 0..walk_bound(spans.len(), self.remembered()) {
            let Some(id) = next else { break };
            if let Some(ancestor) = spans.get_mut(&id) {
                ancestor.below().open_children.push(child);
                return (Some(id), invocation);
            }
            next = self.recent.get(id).and_then(|r| r.parent);
        }
        (None, None)
    }

    /// Gives a step recognised only at its end its position (0 when the invocation is no
    /// longer tracked).
    pub(crate) fn next_step(&self, trace: TraceKey, invocation: u64) -> u32 {
        match self.spans(trace).get_mut(&invocation) {
            Some(inv) => {
                let inv = inv.below();
                inv.steps = inv.steps.saturating_add(1);
                inv.steps
            }
            None => 0,
        }
    }

    /// An invocation's agent name at its start, when kept.
    pub(crate) fn agent_name(&self, trace: TraceKey, invocation: u64) -> Option<Arc<str>> {
        self.spans(trace)
            .get(&invocation)
            .and_then(|e| e.below.as_ref().and_then(|b| b.agent_name.clone()))
    }

    /// Marks an invocation as over its budget; true the first time.
    pub(crate) fn mark_budget_exceeded(&self, trace: TraceKey, invocation: u64) -> bool {
        match self.spans(trace).get_mut(&invocation) {
            Some(entry) => !std::mem::replace(&mut entry.below().budget_exceeded, true),
            None => false,
        }
    }

    /// The identity an invocation had at its start.
    pub(crate) fn identity(&self, trace: TraceKey, invocation: u64) -> Option<Identity> {
        self.spans(trace).get(&invocation).map(|e| {
            e.below
                .as_ref()
                .map_or_else(Identity::default, |b| b.identity)
        })
    }

    /// The role a tracked span had at its start.
    pub(crate) fn role_of(&self, trace: TraceKey, id: u64) -> Option<Role> {
        self.spans(trace)
            .get(&id)
            .filter(|e| e.fate != Fate::Pending)
            .map(|e| e.role)
    }

    /// The role at its start of the nearest recognised span at or above `from`, and
    /// whether it is still open, walking up tracked spans (open, or ended with children
    /// open) through those that are not recognised; `None` when the walk leaves the
    /// tracked spans first (a span seen only through what its children handed up ends
    /// it).
    pub(crate) fn nearest_recognised(
        &self,
        trace: TraceKey,
        from: Option<u64>,
    ) -> Option<(Role, bool)> {
        let spans = self.spans(trace);
        let mut next = from;
        for _ in 0..walk_bound(spans.len(), 0) {
            let entry = spans.get(&next?)?;
            if entry.fate == Fate::Pending {
                return None;
            }
            if entry.role.is_recognised() {
                return Some((entry.role, entry.fate == Fate::Open));
            }
            next = entry.parent();
        }
        None
    }

    /// The generations counted so far below a tracked span with no recognised span in
    /// between (those it wraps, if it is a generation).
    pub(crate) fn wrapped(&self, trace: TraceKey, id: u64) -> Wrapped {
        self.spans(trace)
            .get(&id)
            .and_then(|e| e.below.as_ref())
            .map_or_else(Wrapped::default, |b| b.wrapped)
    }

    /// Counts a step recognised only at its end, and not tracked, under its parent:
    /// returns its 1-based position among the steps counted there (0 when the parent
    /// has ended). The count travels up with the parent's contribution to the nearest
    /// invocation.
    pub(crate) fn count_step_under(
        &self,
        trace: TraceKey,
        parent: u64,
        now: impl FnOnce() -> u64,
    ) -> u32 {
        let slot = self.slot(trace);
        let mut guard = slot.shard.lock();
        let shard = &mut *guard;
        if let Some(entry) = shard.spans.get_mut(&parent) {
            if !matches!(entry.fate, Fate::Open | Fate::Pending) {
                return 0;
            }
            let below = entry.below();
            below.steps = below.steps.saturating_add(1);
            return below.steps;
        }
        if self.recent.get(parent).is_some()
            || self.closed.parent_of(parent).is_some()
            || self.len() >= self.capacity
        {
            return 0;
        }
        drop(guard);
        let one = Contribution {
            steps: 1,
            ..Contribution::default()
        };
        self.pending(trace, parent, one, now)
    }
}
