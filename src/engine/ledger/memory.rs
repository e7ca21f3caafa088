//! What the ledger remembers of spans that ended, in bounded memory: each recent
//! span's fate, role and parent (so that a child starting or ending late finds them),
//! and the exact set of spans the audit closed that still await their real end (so that
//! no span is exported twice).

use crate::engine::bounded_memory::Record;
use crate::hashing::BuildIdHasher;
use crate::recognition::Role;
use dashmap::DashMap;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::entry::*;

/// What the ledger remembers of a span after its end.
#[derive(Debug, Clone, Copy)]
pub(super) struct Recent {
    pub(super) parent: Option<u64>,
    pub(super) invocation: Option<u64>,
    pub(super) role: Role,
    pub(super) fate: Fate,
}

pub(super) const FATES: [Fate; 5] = [
    Fate::Open,
    Fate::Ended,
    Fate::Closed,
    Fate::Evicted,
    Fate::Pending,
];

impl Record for Recent {
    #[inline]
    fn to_words(self) -> [u64; 3] {
        // A role's and a fate's discriminants are their places in `Role::ALL` and
        // `FATES` (a unit test checks it).
        let (role, fate) = (self.role as u64, self.fate as u64);
        [pack(self.parent), pack(self.invocation), role | fate << 8]
    }

    #[inline]
    fn from_words([parent, invocation, meta]: [u64; 3]) -> Self {
        let index = |bits: u64| usize::try_from(bits & 0xff).unwrap_or(usize::MAX);
        Recent {
            parent: unpack(parent),
            invocation: unpack(invocation),
            role: Role::ALL.get(index(meta)).copied().unwrap_or(Role::Other),
            fate: FATES.get(index(meta >> 8)).copied().unwrap_or(Fate::Ended),
        }
    }
}

/// The spans the audit exported closed whose real end has not come yet, remembered
/// exactly (not in the lossy memory of recently ended spans), so that a real end is
/// never exported a second time. Bounded on its own, independently of a small
/// `max_tracked_spans`: at most [`closed_capacity`] ids, the oldest forgotten first.
#[derive(Debug)]
pub(super) struct ClosedIds {
    /// Each id's role and parent (0: none).
    pub(super) ids: DashMap<u64, (Role, u64), BuildIdHasher>,
    /// How many ids are held: a span end looks into the set only when some are (most
    /// processes never close a span), and the bound is kept without counting shards.
    pub(super) held: AtomicUsize,
    pub(super) order: Mutex<VecDeque<u64>>,
    pub(super) capacity: usize,
}

/// How many spans closed by the audit can await their real end: the ledger's capacity,
/// and at least 65 536.
pub(super) fn closed_capacity(max_tracked_spans: usize) -> usize {
    max_tracked_spans.max(1 << 16)
}

impl ClosedIds {
    pub(super) fn new(capacity: usize) -> Self {
        ClosedIds {
            ids: DashMap::with_hasher(BuildIdHasher::default()),
            held: AtomicUsize::new(0),
            order: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    #[inline]
    pub(super) fn insert(&self, id: u64, role: Role, parent: Option<u64>) {
        if self.ids.insert(id, (role, pack(parent))).is_some() {
            return;
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        let mut order = self.order.lock();
        order.push_back(id);
        while self.held.load(Ordering::Relaxed) > self.capacity {
            let Some(oldest) = order.pop_front() else {
                break;
            };
            if self.ids.remove(&oldest).is_some() {
                self.held.fetch_sub(1, Ordering::Relaxed);
            }
        }
        // Ids whose real end came stay in the queue until they reach its front; drop
        // them once the queue is twice the bound (amortised O(1) per insert).
        if order.len() > 2 * self.capacity {
            order.retain(|id| self.ids.contains_key(id));
        }
    }

    /// The role of a span the audit closed, once: its real end has come.
    #[inline]
    pub(super) fn take(&self, id: u64) -> Option<Role> {
        if self.held.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let (_, (role, _)) = self.ids.remove(&id)?;
        self.held.fetch_sub(1, Ordering::Relaxed);
        Some(role)
    }

    /// Whether `id` was closed by the audit and has not really ended; its parent.
    #[inline]
    pub(super) fn parent_of(&self, id: u64) -> Option<Option<u64>> {
        if self.held.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.ids.get(&id).map(|e| unpack(e.1))
    }
}
