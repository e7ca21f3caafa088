//! A span's end and what it hands up: a call's usage and cost to every tracked
//! ancestor (exact at any depth), totals of spans known only at their end through
//! pending entries, tombstones for spans that end with children open, and the spans
//! the audit closes.

use crate::engine::span_findings::FindingSet;
use crate::recognition::Role;
use crate::usage::Totals;
use std::collections::hash_map;
use std::sync::atomic::Ordering;

use super::entry::*;
use super::memory::*;
use super::shards::*;

impl<S: StartCopy> Ledger<S> {
    /// Hands what a span not tracked from its start (or a tracked root) gathered to the
    /// parent its end names. A tracked parent takes it as a tracked child's
    /// contribution (on to every tracked ancestor); a pending parent keeps it; a parent
    /// that has ended passes it on to its own parent (a late child still counts above
    /// it); a parent never seen gets a pending entry, tracked from `now`, that holds it
    /// until the parent ends.
    pub(crate) fn forward(
        &self,
        trace: TraceKey,
        child: u64,
        parent: Option<u64>,
        mut contribution: Contribution,
        now: impl FnOnce() -> u64,
    ) -> Forward {
        let slot = self.slot(trace);
        let mut guard = slot.shard.lock();
        let shard = &mut *guard;
        let spans = &mut shard.spans;
        let mut next = parent;
        for _ in 0..walk_bound(spans.len(), self.remembered()) {
            let Some(id) = next else {
                return Forward::Done;
            };
            if let Some(entry) = spans.get_mut(&id) {
                if entry.fate == Fate::Pending {
                    entry.below().absorb(&mut contribution);
                    return Forward::Done;
                }
                let invocation = if entry.role == Role::Invocation {
                    Some(id)
                } else {
                    entry.invocation()
                };
                if contribution.steps > 0 {
                    if let Some(inv) = invocation.and_then(|inv| spans.get_mut(&inv)) {
                        let inv = inv.below();
                        inv.steps = inv.steps.saturating_add(contribution.steps);
                    }
                }
                self.contribute_in(spans, child, Some(id), invocation, contribution);
                return Forward::Done;
            }
            if let Some(parent) = self.closed.parent_of(id) {
                next = parent;
                continue;
            }
            match self.recent.get(id) {
                Some(r) if matches!(r.fate, Fate::Ended | Fate::Closed | Fate::Evicted) => {
                    next = r.parent;
                    continue;
                }
                _ => {}
            }
            if self.len() >= self.capacity {
                return Forward::Full(id, contribution);
            }
            drop(guard);
            self.pending(trace, id, contribution, now);
            return Forward::Done;
        }
        Forward::Done
    }

    /// A pending entry for `id`, holding `contribution` (added to the entry another
    /// thread may have made meanwhile: the caller found none, then let go of the lock so
    /// that the clock, which may be the builder's, is read outside it). Returns the
    /// entry's step count after.
    pub(super) fn pending(
        &self,
        trace: TraceKey,
        id: u64,
        mut contribution: Contribution,
        now: impl FnOnce() -> u64,
    ) -> u32 {
        let start_nanos = now();
        let slot = self.slot(trace);
        let mut guard = slot.shard.lock();
        let shard = &mut *guard;
        let mut created = false;
        let below = shard
            .spans
            .entry(id)
            .or_insert_with(|| {
                created = true;
                Entry {
                    parent: 0,
                    invocation: 0,
                    start_nanos,
                    kept: Kept::Nothing,
                    below: None,
                    step_index: 0,
                    pending: FindingSet::default(),
                    role: Role::Other,
                    fate: Fate::Pending,
                    parent_ended: false,
                }
            })
            .below();
        below.absorb(&mut contribution);
        let steps = below.steps;
        if created {
            self.added();
            self.enqueue(slot, shard, id, start_nanos);
        }
        steps
    }

    /// Whether `id` is known to have ended (or to have been closed by the audit).
    pub(crate) fn has_ended(&self, trace: TraceKey, id: u64) -> bool {
        if self.closed.parent_of(id).is_some() {
            return true;
        }
        if let Some(entry) = self.spans(trace).get(&id) {
            return matches!(entry.fate, Fate::Ended | Fate::Closed);
        }
        self.recent
            .get(id)
            .is_some_and(|r| matches!(r.fate, Fate::Ended | Fate::Closed))
    }

    /// Remembers the end of a recognised span that was not tracked, so that a child
    /// ending after it is known to end late, and hands what it gets on to `parent`.
    pub(crate) fn remember_end(&self, id: u64, parent: Option<u64>, role: Role) {
        self.recent.insert(
            id,
            Recent {
                parent,
                invocation: None,
                role,
                fate: Fate::Ended,
            },
        );
    }

    /// Adds a contribution to every tracked ancestor, starting at `parent` (which also
    /// stops counting `child` as open); own usage stops at `invocation`. Returns the
    /// totals of `invocation` after the addition, if the walk reached it.
    pub(crate) fn contribute(
        &self,
        trace: TraceKey,
        child: u64,
        parent: Option<u64>,
        invocation: Option<u64>,
        contribution: Contribution,
    ) -> Option<Totals> {
        let mut spans = self.spans(trace);
        self.contribute_in(&mut spans, child, parent, invocation, contribution)
    }

    pub(super) fn contribute_in(
        &self,
        spans: &mut Spans<S>,
        child: u64,
        parent: Option<u64>,
        invocation: Option<u64>,
        mut contribution: Contribution,
    ) -> Option<Totals> {
        let mut cumulative = None;
        let mut next = parent;
        let mut own = true;
        let mut tombstone = None;
        for depth in 0..walk_bound(spans.len(), 0) {
            let Some(id) = next else { break };
            let Some(entry) = spans.get_mut(&id) else {
                break;
            };
            next = entry.parent();
            if depth == 0 && remove_child(entry, child) {
                tombstone = Some(id);
            }
            let recognised = entry.role.is_recognised();
            let below = entry.below();
            if contribution.wrapped.generations > 0 {
                // Up to the nearest span recognised at its start (those below it may
                // be recognised at their end).
                below.wrapped.add(contribution.wrapped);
                if recognised {
                    contribution.wrapped = Wrapped::default();
                }
            }
            below.totals.add(&contribution.totals);
            if own {
                below.own.add(&contribution.own);
            }
            if invocation == Some(id) {
                cumulative = Some(below.totals);
                own = false;
                if let Some(response) = contribution.response.take() {
                    below.last_response = Some(response);
                }
            }
        }
        if let Some(id) = tombstone {
            self.remove_tombstone(spans, id);
        }
        cumulative
    }

    /// Stops counting `child` as an open child of `parent`.
    pub(super) fn detach(&self, spans: &mut Spans<S>, child: u64, parent: Option<u64>) {
        let Some(parent) = parent else { return };
        if spans
            .get_mut(&parent)
            .is_some_and(|entry| remove_child(entry, child))
        {
            self.remove_tombstone(spans, parent);
        }
    }

    /// Ends a span: what the ledger knows of it. A tracked entry is removed unless
    /// tracked children are still open (then it stays as a tombstone). `parent` is the
    /// parent the span names (for an entry that was not tracked at its start, whose
    /// parent the ledger did not know).
    ///
    /// A span tracked since its start stops being an open child of its tracked parent,
    /// and takes a pending `call` (what a generation or tool call contributes) to every
    /// tracked ancestor, in the same step (the call is then [`Call::Taken`]); the call
    /// is left to the caller otherwise (to hand up).
    pub(crate) fn end(
        &self,
        trace: TraceKey,
        id: u64,
        parent: Option<u64>,
        call: &mut Call,
    ) -> Ending<S> {
        if self.is_quiet() {
            return Ending::Untracked;
        }
        if self.any_gone.load(Ordering::Relaxed) {
            // The real end of a span the audit exported closed: whatever entry it still
            // has (closed, or pending because a late child handed something up) goes.
            if let Some(role) = self.closed.take(id) {
                self.settle_closed(trace, id);
                return Ending::Closed(role);
            }
        }
        let slot = self.slot(trace);
        let mut guard = slot.shard.lock();
        let shard = &mut *guard;
        let spans = &mut shard.spans;
        // One lookup: the entry is removed through it, unless it stays.
        let mut occupied = match spans.entry(id) {
            hash_map::Entry::Occupied(occupied) => occupied,
            hash_map::Entry::Vacant(_) => {
                drop(guard);
                return self.end_untracked(id);
            }
        };
        let entry = occupied.get_mut();
        match entry.fate {
            Fate::Open => {}
            Fate::Closed => {
                // The real end of a span the audit closed: from now on the entry is an
                // ordinary tombstone, gone with its last open child.
                let role = entry.role;
                if entry.has_open_children() {
                    entry.fate = Fate::Ended;
                } else {
                    occupied.remove();
                    self.removed();
                }
                drop(guard);
                self.closed.take(id);
                return Ending::Closed(role);
            }
            Fate::Ended | Fate::Evicted => return Ending::Untracked,
            Fate::Pending => entry.parent = pack(parent),
        }
        let start_nanos = entry.start_nanos;
        let stays = entry.has_open_children();
        let ended = take_ended(entry, trace, stays);
        self.remember(id, &ended, Fate::Ended);
        if stays {
            entry.fate = Fate::Ended;
        } else {
            occupied.remove();
            self.removed();
        }
        Self::close_step(spans, &ended);
        if ended.tracked_at_start && ended.parent.is_some() {
            match std::mem::take(call) {
                Call::Pending(c) => {
                    let cumulative =
                        self.contribute_in(spans, id, ended.parent, ended.invocation, c);
                    *call = Call::Taken(cumulative);
                }
                other => {
                    *call = other;
                    self.detach(spans, id, ended.parent);
                }
            }
        }
        Self::unqueue(slot, shard, id, start_nanos);
        Ending::Tracked(ended)
    }

    /// The end of a span without an entry: only a span closed or evicted by the audit
    /// matters.
    pub(super) fn end_untracked(&self, id: u64) -> Ending<S> {
        // Until the first such span, untracked ends skip the lookups.
        if !self.any_gone.load(Ordering::Relaxed) {
            return Ending::Untracked;
        }
        if let Some(role) = self.closed.take(id) {
            return Ending::Closed(role);
        }
        match self.recent.get(id) {
            Some(r) if r.fate == Fate::Closed => Ending::Closed(r.role),
            Some(r) if r.fate == Fate::Evicted => Ending::Evicted(r.role),
            _ => Ending::Untracked,
        }
    }

    /// The entry of a span the audit closed, at its real end: a closed entry becomes an
    /// ordinary tombstone (gone with its last open child), a pending one is dropped.
    pub(super) fn settle_closed(&self, trace: TraceKey, id: u64) {
        let mut spans = self.spans(trace);
        let Some(entry) = spans.get_mut(&id) else {
            return;
        };
        match entry.fate {
            Fate::Closed => {
                entry.fate = Fate::Ended;
                if !entry.has_open_children() {
                    self.remove_tombstone(&mut spans, id);
                }
            }
            Fate::Pending => {
                spans.remove(&id);
                self.removed();
            }
            _ => {}
        }
    }

    /// Tells an open child that its parent has ended; returns its role and name.
    pub(crate) fn orphan(&self, trace: TraceKey, child: u64) -> Option<OpenChild> {
        let mut spans = self.spans(trace);
        let entry = spans.get_mut(&child)?;
        if entry.fate != Fate::Open {
            return None;
        }
        entry.parent_ended = true;
        Some(OpenChild {
            id: child,
            role: entry.role,
            name: entry.kept.name().map(str::to_owned),
        })
    }

    /// Closes an open span for the audit (leak policy `close`): it counts as ended, its
    /// real end will not be exported. Returns what its entry held. The entry stays until
    /// the real end comes (or it is evicted by age or capacity), so that the real end is
    /// recognised whatever the bounded memory of ended spans has forgotten.
    pub(crate) fn close(&self, trace: TraceKey, id: u64) -> Option<Ended<S>> {
        let mut spans = self.spans(trace);
        let entry = spans.get_mut(&id)?;
        if entry.fate != Fate::Open {
            return None;
        }
        entry.fate = Fate::Closed;
        let ended = take_ended(entry, trace, true);
        self.leave(&mut spans, id, &ended, Fate::Closed);
        self.detach(&mut spans, id, ended.parent);
        Some(ended)
    }

    /// A span is no longer open: remember its fate, and stop counting it as an open
    /// step of its invocation.
    pub(super) fn leave(&self, spans: &mut Spans<S>, id: u64, ended: &Ended<S>, fate: Fate) {
        self.remember(id, ended, fate);
        Self::close_step(spans, ended);
    }

    /// Remembers what became of a span that is no longer open.
    pub(super) fn remember(&self, id: u64, ended: &Ended<S>, fate: Fate) {
        if matches!(fate, Fate::Closed | Fate::Evicted) {
            self.any_gone.store(true, Ordering::Relaxed);
        }
        if fate == Fate::Closed {
            self.closed.insert(id, ended.role, ended.parent);
        }
        self.recent.insert(
            id,
            Recent {
                parent: ended.parent,
                invocation: ended.invocation,
                role: ended.role,
                fate,
            },
        );
    }

    /// A step is no longer open: its invocation stops counting it.
    pub(super) fn close_step(spans: &mut Spans<S>, ended: &Ended<S>) {
        if ended.role != Role::Step || ended.step_index == 0 {
            return;
        }
        let Some(inv) = ended.invocation.and_then(|inv| spans.get_mut(&inv)) else {
            return;
        };
        let below = inv.below();
        below.open_steps = below.open_steps.saturating_sub(1);
    }

    /// Removes an ended span's entry once no tracked child is open (a span the audit
    /// closed stays until its real end, see [`Ledger::close`]).
    pub(super) fn remove_tombstone(&self, spans: &mut Spans<S>, id: u64) {
        let gone = spans
            .get(&id)
            .is_some_and(|e| e.fate == Fate::Ended && !e.has_open_children());
        if gone {
            spans.remove(&id);
            self.removed();
        }
    }
}
