//! A bounded, lock-free memory of recent records, keyed by a non-zero `u64`.
//!
//! The processor remembers two things past a span's end: what became of recently ended
//! spans (so that a child starting late can be recognised as such, and the real end of
//! a span the audit already closed is not exported twice), and which invocation each
//! recent generation's response id belongs to (for `foreign_response`). Both must stay
//! bounded whatever the traffic, and neither may cost a lock on the hot path.
//!
//! So each is a set-associative table: a key hashes to a bucket of four slots, and a
//! new key takes the bucket's oldest slot (first in, first out within the bucket). A
//! key is forgotten once four later keys of its bucket have come, which at the sizes
//! used (up to 16 384 slots) takes thousands of insertions, not tens. A slot is a small
//! seqlock: a writer that finds it being written by another thread skips its write (the
//! memory is allowed to forget), a reader that sees a write in progress or a torn read
//! reports a miss. Lookups never wait and never return a record of another key, or a
//! mixed one.

use std::marker::PhantomData;
use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Slots in a bucket.
const WAYS: usize = 4;
/// Most buckets of a table: 4096 buckets of four slots (16 384 records, 768 KiB).
const MAX_BUCKETS: usize = 1 << 12;

/// A record that fits in three words.
pub(crate) trait Record: Copy {
    fn to_words(self) -> [u64; 3];
    fn from_words(words: [u64; 3]) -> Self;
}

impl Record for u64 {
    fn to_words(self) -> [u64; 3] {
        [self, 0, 0]
    }

    fn from_words(words: [u64; 3]) -> Self {
        words[0]
    }
}

/// One slot: an even `version` means stable, odd means being written.
#[derive(Debug, Default)]
struct Slot {
    version: AtomicU64,
    key: AtomicU64,
    words: [AtomicU64; 3],
}

/// Four slots, and which of them the next new key takes.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Bucket {
    next: AtomicU64,
    slots: [Slot; WAYS],
}

/// A set-associative table of `WAYS` × `buckets` records.
#[derive(Debug)]
pub(crate) struct BoundedMemory<V> {
    buckets: Box<[Bucket]>,
    /// `64 - log2(buckets.len())`.
    shift: u32,
    _records: PhantomData<V>,
}

impl<V: Record> BoundedMemory<V> {
    /// A memory of about `capacity` records (at least 64, at most 16 384).
    pub(crate) fn new(capacity: usize) -> Self {
        let n = (capacity / WAYS).clamp(16, MAX_BUCKETS).next_power_of_two();
        BoundedMemory {
            buckets: (0..n).map(|_| Bucket::default()).collect(),
            shift: 64 - n.trailing_zeros(),
            _records: PhantomData,
        }
    }

    /// How many records it holds at the most.
    pub(crate) fn slots(&self) -> usize {
        self.buckets.len() * WAYS
    }

    fn bucket(&self, key: u64) -> &Bucket {
        let index = key
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .checked_shr(self.shift)
            .unwrap_or(0);
        // `index < buckets.len()` by construction of `shift`.
        &self.buckets[usize::try_from(index).unwrap_or(0) % self.buckets.len()]
    }

    /// Remembers `value` under `key` (not 0): in the slot that holds `key`, else in the
    /// bucket's oldest. Skipped when another thread is writing that slot at this instant.
    pub(crate) fn insert(&self, key: u64, value: V) {
        if key == 0 {
            return;
        }
        let bucket = self.bucket(key);
        let slot = match bucket
            .slots
            .iter()
            .find(|s| s.key.load(Ordering::Relaxed) == key)
        {
            Some(slot) => slot,
            None => {
                // Not a read-modify-write: two writers that race here may pick the same
                // slot, and the one that loses the slot's version below skips its write
                // (the memory may forget).
                let next = bucket.next.load(Ordering::Relaxed);
                bucket.next.store(next.wrapping_add(1), Ordering::Relaxed);
                &bucket.slots[usize::try_from(next % WAYS as u64).unwrap_or(0)]
            }
        };
        let version = slot.version.load(Ordering::Relaxed);
        if version % 2 == 1
            || slot
                .version
                .compare_exchange(version, version + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        fence(Ordering::Release);
        slot.key.store(key, Ordering::Relaxed);
        for (word, value) in slot.words.iter().zip(value.to_words()) {
            word.store(value, Ordering::Relaxed);
        }
        slot.version.store(version + 2, Ordering::Release);
    }

    /// The value remembered under `key`, if its bucket still holds it.
    pub(crate) fn get(&self, key: u64) -> Option<V> {
        if key == 0 {
            return None;
        }
        self.bucket(key)
            .slots
            .iter()
            .find_map(|slot| Self::read(slot, key))
    }

    fn read(slot: &Slot, key: u64) -> Option<V> {
        let before = slot.version.load(Ordering::Acquire);
        if before % 2 == 1 || slot.key.load(Ordering::Relaxed) != key {
            return None;
        }
        let words = [
            slot.words[0].load(Ordering::Relaxed),
            slot.words[1].load(Ordering::Relaxed),
            slot.words[2].load(Ordering::Relaxed),
        ];
        fence(Ordering::Acquire);
        (slot.version.load(Ordering::Relaxed) == before).then(|| V::from_words(words))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_a_key_takes_the_slot() {
        let m = BoundedMemory::<u64>::new(8);
        for k in 1..=5u64 {
            m.insert(k, k * 10);
        }
        // Every key still in its slot answers with its own value, never another's.
        let mut remembered = 0;
        for k in 1..=5u64 {
            if let Some(v) = m.get(k) {
                assert_eq!(v, k * 10);
                remembered += 1;
            }
        }
        assert_eq!(remembered, 5, "64 slots hold five keys");
        assert_eq!(m.get(5), Some(50));
        assert_eq!(m.get(0), None);
        assert_eq!(m.get(99), None);
    }

    #[test]
    fn a_bucket_forgets_its_oldest_key_first() {
        let m = BoundedMemory::<u64>::new(1);
        // Find WAYS + 1 keys of one bucket.
        let first = m.bucket(1) as *const Bucket;
        let keys: Vec<u64> = (1..10_000u64)
            .filter(|k| std::ptr::eq(m.bucket(*k), first))
            .take(WAYS + 1)
            .collect();
        for k in &keys {
            m.insert(*k, *k);
        }
        assert_eq!(m.get(keys[0]), None, "the oldest went");
        for k in &keys[1..] {
            assert_eq!(m.get(*k), Some(*k));
        }
    }

    #[test]
    fn a_new_value_replaces_the_old() {
        let m = BoundedMemory::<u64>::new(4);
        m.insert(7, 1);
        m.insert(7, 2);
        assert_eq!(m.get(7), Some(2));
    }

    #[test]
    fn concurrent_writers_never_tear_a_record() {
        #[derive(Clone, Copy, Debug, PartialEq)]
        struct Three(u64);
        impl Record for Three {
            fn to_words(self) -> [u64; 3] {
                [self.0, self.0, self.0]
            }
            fn from_words(w: [u64; 3]) -> Self {
                assert!(w[0] == w[1] && w[1] == w[2], "torn record {w:?}");
                Three(w[0])
            }
        }
        let m = BoundedMemory::<Three>::new(2);
        // Keys 1..=3 all fit in the 64 slots: each is found, whole.
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let m = &m;
                s.spawn(move || {
                    for i in 1..20_000u64 {
                        let key = i % 3 + 1;
                        m.insert(key, Three(key * 1000 + t));
                        if let Some(Three(v)) = m.get(key) {
                            assert_eq!(v / 1000, key);
                        }
                    }
                });
            }
        });
    }
}
