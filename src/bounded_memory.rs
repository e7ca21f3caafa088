//! A bounded first-in-first-out memory: a map that forgets its oldest entries.
//!
//! The processor remembers two things past a span's end: what became of recently ended
//! spans (so that a child starting or ending late can be recognised as such, and so that
//! the real end of a span the audit already closed is not exported twice), and which
//! invocation each recent generation's response id belongs to (for `foreign_response`).
//! Both must stay bounded whatever the traffic, so each is a map with a fixed capacity
//! that drops its oldest key when a new one arrives. Access is a short critical section
//! under one mutex; nothing else is done while it is held.
//!
//! Most lookups are misses (the parent of an ordinary HTTP span was never tracked), and
//! they must not take the lock: a direct-mapped table of the keys inserted last answers
//! them with one atomic load. A key whose slot a later key took is treated as forgotten,
//! so the memory is approximate at the edges, never wrong about what it returns.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::hashing::BuildIdHasher;

/// A map of at most `capacity` keys; inserting past that forgets the oldest key.
#[derive(Debug)]
pub(crate) struct BoundedMemory<V> {
    inner: Mutex<Fifo<V>>,
    capacity: usize,
    /// The last key inserted in each slot (0: none); keys are never 0.
    seen: Box<[AtomicU64]>,
    /// `64 - log2(seen.len())`.
    shift: u32,
}

#[derive(Debug)]
struct Fifo<V> {
    /// Each value with the tick of its insertion.
    map: HashMap<u64, (V, u64), BuildIdHasher>,
    /// Keys in insertion order, with their ticks; a key re-inserted appears twice, and
    /// its older copy is skipped when it reaches the front.
    order: VecDeque<(u64, u64)>,
    /// Insertion counter: tells an old copy of a key in `order` from the live one.
    tick: u64,
}

impl<V: Copy> BoundedMemory<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        BoundedMemory {
            inner: Mutex::new(Fifo {
                map: HashMap::default(),
                order: VecDeque::new(),
                tick: 0,
            }),
            capacity: capacity.max(1),
            seen: (0..slots(capacity)).map(|_| AtomicU64::new(0)).collect(),
            shift: 64 - slots(capacity).trailing_zeros(),
        }
    }

    fn slot(&self, key: u64) -> &AtomicU64 {
        let index = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift;
        // `index < seen.len()` by construction of `shift`.
        &self.seen[usize::try_from(index).unwrap_or(0) % self.seen.len()]
    }

    /// Remembers `value` under `key`, replacing what was there, and forgets the oldest
    /// keys beyond the capacity.
    pub(crate) fn insert(&self, key: u64, value: V) {
        self.slot(key).store(key, Ordering::Relaxed);
        let mut guard = self.inner.lock();
        let Fifo { map, order, tick } = &mut *guard;
        *tick = tick.wrapping_add(1);
        map.insert(key, (value, *tick));
        order.push_back((key, *tick));
        while map.len() > self.capacity {
            let Some((old, old_tick)) = order.pop_front() else {
                break;
            };
            if map.get(&old).map(|(_, t)| *t) == Some(old_tick) {
                map.remove(&old);
            }
        }
        // Re-inserted keys leave stale copies behind; drop them once they pile up
        // (amortised O(1): at most once per `capacity` insertions).
        if order.len() > 2 * self.capacity {
            order.retain(|(k, t)| map.get(k).map(|(_, live)| *live) == Some(*t));
        }
    }

    /// The value remembered under `key`, if it has not been forgotten.
    pub(crate) fn get(&self, key: u64) -> Option<V> {
        if key == 0 || self.slot(key).load(Ordering::Relaxed) != key {
            return None;
        }
        self.inner.lock().map.get(&key).map(|(v, _)| *v)
    }

    /// The number of keys remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map.len()
    }
}

/// Slots of the lookup table: twice the capacity, a power of two, at most 2^20.
fn slots(capacity: usize) -> usize {
    capacity
        .max(1)
        .saturating_mul(2)
        .min(1 << 20)
        .next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let m = BoundedMemory::new(3);
        for k in 1..=5u64 {
            m.insert(k, k * 10);
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(1), None);
        assert_eq!(m.get(2), None);
        assert_eq!(m.get(3), Some(30));
        assert_eq!(m.get(5), Some(50));
    }

    #[test]
    fn reinserting_refreshes_a_key() {
        let m = BoundedMemory::new(2);
        m.insert(1, 'a');
        m.insert(2, 'b');
        m.insert(1, 'c'); // 1 is now the newest
        m.insert(3, 'd'); // forgets 2, not 1
        assert_eq!(m.get(1), Some('c'));
        assert_eq!(m.get(2), None);
        assert_eq!(m.get(3), Some('d'));
        // Many re-insertions of one key keep the order queue bounded.
        for _ in 0..100 {
            m.insert(1, 'e');
        }
        assert!(m.inner.lock().order.len() <= 4);
        assert_eq!(m.get(3), Some('d'));
    }
}
