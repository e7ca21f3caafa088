//! Eviction: the oldest open spans, across shards, by capacity and by age, a bounded
//! number per call (no thread of its own), and every open span at shutdown. The
//! evicting thread holds no lock while it reports, and no thread waits for it.

use crate::config::LeakPolicy;
use std::sync::atomic::Ordering;

use super::entry::*;
use super::shards::*;

/// Most open spans evicted by one call; the rest wait for the next calls.
pub(super) const EVICTIONS_PER_CALL: usize = 8;
/// Most queue items of already-ended spans discarded by one call.
pub(super) const DISCARDS_PER_CALL: usize = 64;
impl<S: StartCopy> Ledger<S> {
    /// Evicts, oldest first, open spans older than the maximum age at `now_nanos` and,
    /// when `make_room` (the ledger must take one more) or the ledger holds more than
    /// its capacity, the oldest open spans; at most a fixed number per call. Each
    /// evicted span is handed to `on_evict` before the next is evicted (and with no
    /// lock held), so that a parent's report still finds its open children. Never
    /// waits: when another thread is evicting, it does nothing. `now_nanos` is called
    /// at most once, and only when a span's age matters.
    pub(crate) fn evict_due(
        &self,
        now_nanos: impl FnOnce() -> u64,
        make_room: bool,
        mut on_evict: impl FnMut(Ended<S>),
    ) {
        let Some(_evicting) = self.evicting.try_lock() else {
            return;
        };
        let mut limit = None;
        let mut now_nanos = Some(now_nanos);
        let (mut evictions, mut discards) = (0, 0);
        while evictions < EVICTIONS_PER_CALL && discards < DISCARDS_PER_CALL {
            let Some((index, start)) = self.oldest_front() else {
                self.oldest.store(u64::MAX, Ordering::Relaxed);
                break;
            };
            let full = self.len() > self.capacity || (make_room && self.len() >= self.capacity);
            if !full {
                let limit = *limit.get_or_insert_with(|| {
                    now_nanos
                        .take()
                        .map_or(0, |f| f().saturating_sub(self.max_age_nanos))
                });
                if start >= limit {
                    // Nothing is due by age: the oldest start, for the next starts.
                    self.oldest.store(start, Ordering::Relaxed);
                    break;
                }
            }
            let trace = TraceKey(index);
            let slot = self.slot(trace);
            let mut guard = slot.shard.lock();
            let shard = &mut *guard;
            // Taken only if it is still the item that was found first.
            let Some(&(id, first)) = shard.order.front().filter(|&&(_, s)| s == start) else {
                discards += 1;
                continue;
            };
            shard.order.pop_front();
            Self::publish_front(slot, shard);
            match self.evict(trace, &mut shard.spans, id, first, full) {
                Some(ended) => {
                    drop(guard);
                    evictions += 1;
                    on_evict(ended);
                }
                None => discards += 1,
            }
        }
    }

    /// Evicts every open span (at shutdown), oldest first, each handed to `on_evict`
    /// before the next is evicted.
    pub(crate) fn evict_all(&self, mut on_evict: impl FnMut(Ended<S>)) {
        let mut queued = Vec::new();
        for (index, slot) in self.shards.iter().enumerate() {
            let mut shard = slot.shard.lock();
            let order = std::mem::take(&mut shard.order);
            Self::publish_front(slot, &shard);
            queued.extend(order.into_iter().map(|(id, start)| (start, index, id)));
        }
        // Stable: items of one start keep their order.
        queued.sort_by_key(|&(start, _, _)| start);
        for (start, index, id) in queued {
            let trace = TraceKey(index);
            let ended = self.evict(trace, &mut self.spans(trace), id, start, false);
            if let Some(ended) = ended {
                on_evict(ended);
            }
        }
    }

    /// Evicts `id` if it is open and still the span that started at `start`. An entry
    /// the audit closed, whose real end never came, goes without a finding; so does a
    /// tombstone at the front of a full ledger (it has ended; its open children are the
    /// ones that will be reported).
    pub(super) fn evict(
        &self,
        trace: TraceKey,
        spans: &mut Spans<S>,
        id: u64,
        start: u64,
        full: bool,
    ) -> Option<Ended<S>> {
        let evictable = spans
            .get(&id)
            .is_some_and(|e| e.evictable_from(start) || (full && e.start_nanos == start));
        if !evictable {
            return None;
        }
        let mut entry = spans.remove(&id)?;
        self.removed();
        if entry.fate != Fate::Open {
            return None;
        }
        let ended = take_ended(&mut entry, trace, false);
        self.detach(spans, id, ended.parent);
        // Under `close` the audit exports a recognised span closed: its real end must not
        // be exported. A span that is not gen-ai is never closed: its real end, if it
        // comes, passes through untouched.
        let fate = if self.leak_policy == LeakPolicy::Close && ended.role.is_recognised() {
            Fate::Closed
        } else {
            Fate::Evicted
        };
        self.leave(spans, id, &ended, fate);
        Some(ended)
    }
}
