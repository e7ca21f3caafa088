//! The ledger itself: the span map, split by trace into shards, each behind one lock
//! with its spans' start order; the count of tracked spans; and the walk bound that keeps
//! every walk up the ancestors finite while exact at any depth.
//!
//! A ledger call takes its trace's shard lock once and never holds two shards' locks.

use crate::config::LeakPolicy;
use crate::engine::bounded_memory::BoundedMemory;
use crate::hashing::BuildIdHasher;
use crossbeam_utils::CachePadded;
use parking_lot::{MappedMutexGuard, Mutex, MutexGuard};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::entry::*;
use super::memory::*;

/// How far a walk up the ancestors goes: one step per span the walk can meet (the
/// tracked ones, and the ended ones the memories still hold), so that rollups are exact
/// at any depth; only a parent cycle (corrupt ids) reaches the bound.
#[inline]
pub(super) fn walk_bound(tracked: usize, remembered: usize) -> usize {
    tracked.saturating_add(remembered).saturating_add(1)
}

/// The tracked spans of the traces that share a lock, by span id.
pub(super) type Spans<S> = HashMap<u64, Entry<S>, BuildIdHasher>;

/// Most queue items kept beyond twice a shard's spans before those of ended spans are
/// dropped (see [`Ledger::enqueue`]).
pub(super) const QUEUE_SLACK: usize = 64;

/// What one lock of the ledger guards: the spans of the traces that hash to it, and
/// their start order.
#[derive(Debug)]
pub(super) struct Shard<S> {
    pub(super) spans: Spans<S>,
    /// (span id, start) in start order, for eviction by age and capacity. Items of
    /// spans that ended are dropped at the back as they end, or later in bulk.
    pub(super) order: VecDeque<(u64, u64)>,
}

/// A shard and the start of its oldest queue item, readable without its lock.
#[derive(Debug)]
pub(super) struct Slot<S> {
    pub(super) shard: Mutex<Shard<S>>,
    /// The start of the first item of the shard's queue (`u64::MAX`: none).
    pub(super) front: AtomicU64,
}

/// The live spans, bounded by `capacity`, and the memory of recently ended ones.
///
/// Locks: a ledger call takes the lock of its trace's shard, once, and never two
/// shards' locks at a time. Eviction looks for the oldest queue item across shards
/// without their locks (each shard publishes the start of its first item), then takes
/// that shard's lock alone.
#[derive(Debug)]
pub(crate) struct Ledger<S> {
    pub(super) shards: Box<[CachePadded<Slot<S>>]>,
    /// Written at every tracked start and end: on a cache line of its own, so that
    /// threads do not contend for the lines of what is only read.
    pub(super) len: Arc<CachePadded<AtomicUsize>>,
    pub(super) capacity: usize,
    /// The maximum age of an open span, in nanoseconds.
    pub(super) max_age_nanos: u64,
    /// At most the start of the oldest queue item of any shard (`u64::MAX`: none): a
    /// start finds whether anything may be due by age from this alone. Read at every
    /// tracked start, written only when it moves back or eviction finds it stale. (A
    /// start older than every queued one, from a clock that went back, racing with
    /// eviction can leave it later than that start: its span is then evicted by the
    /// next eviction that finds it, not before.)
    pub(super) oldest: CachePadded<AtomicU64>,
    /// Held by the thread that is evicting; the others do not wait for it.
    pub(super) evicting: Mutex<()>,
    pub(super) recent: BoundedMemory<Recent>,
    pub(super) closed: ClosedIds,
    /// Under `close`, evicted spans are exported closed.
    pub(super) leak_policy: LeakPolicy,
    /// Set once a span has been closed or evicted by the audit.
    pub(super) any_gone: std::sync::atomic::AtomicBool,
}
impl<S: StartCopy> Ledger<S> {
    pub(crate) fn new(capacity: usize, max_age: Duration, leak_policy: LeakPolicy) -> Self {
        let capacity = capacity.max(1);
        Ledger {
            shards: (0..SHARDS)
                .map(|_| {
                    CachePadded::new(Slot {
                        shard: Mutex::new(Shard {
                            spans: Spans::default(),
                            order: VecDeque::new(),
                        }),
                        front: AtomicU64::new(u64::MAX),
                    })
                })
                .collect(),
            len: Arc::new(CachePadded::new(AtomicUsize::new(0))),
            capacity,
            max_age_nanos: u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX),
            oldest: CachePadded::new(AtomicU64::new(u64::MAX)),
            evicting: Mutex::new(()),
            recent: BoundedMemory::new(capacity),
            closed: ClosedIds::new(closed_capacity(capacity)),
            leak_policy,
            any_gone: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The shard of `trace`.
    pub(super) fn slot(&self, trace: TraceKey) -> &Slot<S> {
        // `TraceKey::of` makes keys below `SHARDS`.
        &self.shards[trace.0 % SHARDS]
    }

    /// The spans of `trace`'s shard, locked.
    pub(super) fn spans(&self, trace: TraceKey) -> MappedMutexGuard<'_, Spans<S>> {
        MutexGuard::map(self.slot(trace).shard.lock(), |shard| &mut shard.spans)
    }

    /// Queues a span that is now tracked, in its shard (locked). Items of spans that
    /// ended pile up behind a long-lived span: once the queue holds more than twice the
    /// shard's spans (and a slack), they are dropped (amortised O(1) per item).
    pub(super) fn enqueue(&self, slot: &Slot<S>, shard: &mut Shard<S>, id: u64, start: u64) {
        shard.order.push_back((id, start));
        if shard.order.len() > 2 * shard.spans.len() + QUEUE_SLACK {
            let spans = &shard.spans;
            shard
                .order
                .retain(|&(id, start)| spans.get(&id).is_some_and(|e| e.evictable_from(start)));
        }
        Self::publish_front(slot, shard);
        if start < self.oldest.load(Ordering::Relaxed) {
            self.oldest.store(start, Ordering::Relaxed);
        }
    }

    /// Drops an ended span's item from the back of its shard's queue (locked), where it
    /// is when spans end in the reverse order of their starts (children before parents,
    /// on one thread); other items go when they reach the front, or in bulk.
    pub(super) fn unqueue(slot: &Slot<S>, shard: &mut Shard<S>, id: u64, start: u64) {
        if shard.order.back() == Some(&(id, start)) {
            shard.order.pop_back();
            if shard.order.is_empty() {
                Self::publish_front(slot, shard);
            }
        }
    }

    /// Publishes the start of the shard's first queue item.
    pub(super) fn publish_front(slot: &Slot<S>, shard: &Shard<S>) {
        let front = shard.order.front().map_or(u64::MAX, |&(_, start)| start);
        if slot.front.load(Ordering::Relaxed) != front {
            slot.front.store(front, Ordering::Relaxed);
        }
    }

    /// The shard whose first queue item is the oldest, and that item's start.
    pub(super) fn oldest_front(&self) -> Option<(usize, u64)> {
        self.shards
            .iter()
            .enumerate()
            .map(|(index, slot)| (index, slot.front.load(Ordering::Relaxed)))
            .filter(|&(_, start)| start != u64::MAX)
            .min_by_key(|&(_, start)| start)
    }

    /// The number of tracked spans, shared with the metrics callback.
    pub(crate) fn len_handle(&self) -> Arc<CachePadded<AtomicUsize>> {
        self.len.clone()
    }

    /// The number of tracked spans.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// How many ended spans the memories can hold at the most (a walk up the ancestors
    /// may pass through each once).
    pub(super) fn remembered(&self) -> usize {
        self.recent.slots().saturating_add(self.closed.capacity)
    }

    pub(super) fn added(&self) {
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn removed(&self) {
        self.len.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether nothing is tracked and no span was ever closed or evicted by the audit:
    /// then the end of a span that is not recognised concerns nothing.
    pub(crate) fn is_quiet(&self) -> bool {
        self.len() == 0 && !self.any_gone.load(Ordering::Relaxed)
    }

    /// Whether `id` is tracked (open, or ended with open children).
    #[cfg(test)]
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.shards
            .iter()
            .any(|s| s.shard.lock().spans.contains_key(&id))
    }

    /// The number of queue items, over all shards.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.shards.iter().map(|s| s.shard.lock().order.len()).sum()
    }
}
