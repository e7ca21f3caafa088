//! The live-span ledger: what the processor remembers about spans that have started
//! and not yet ended.
//!
//! A span is tracked from `on_start` when it is recognised there (by its name or start
//! attributes) or when its parent is tracked; everything else takes the fast path and
//! leaves no state. Each entry knows its tracked parent and its invocation (the nearest
//! ancestor that was an invocation at its start), so rollups and invocation lookup see
//! through non-recognised spans in between.
//!
//! When a generation or tool call ends, its contribution is added to every tracked
//! ancestor, nearest first; the running total of its invocation after that addition is
//! the generation's cumulative total. A span that ends while tracked children are still
//! open stays as a tombstone until they end, so that their contributions still reach
//! the ancestors above it. Every map is keyed by the span id with a cheap hasher
//! ([`crate::hashing`]), and no lock is held while another is taken.
//!
//! Memory is bounded: at most `capacity` entries; spans that would exceed it are not
//! tracked (they and their descendants pass through, un-enriched).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::hashing::BuildIdHasher;
use crate::recognition::Role;
use crate::usage::Totals;

/// Longest ancestor chain a contribution walks up (a guard; real traces are shallow).
const MAX_DEPTH: usize = 256;

/// What the ledger keeps for one tracked span.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The tracked parent, if the parent was tracked when this span started.
    pub(crate) parent: Option<u64>,
    /// The nearest ancestor that was an invocation at this span's start.
    pub(crate) invocation: Option<u64>,
    /// The role at start.
    pub(crate) role: Role,
    /// Set when the span has ended but tracked children are still open.
    pub(crate) ended: bool,
    /// Tracked children still open.
    pub(crate) open_children: Vec<u64>,
    /// Contributions of ended descendant generations and tool calls.
    pub(crate) totals: Totals,
    /// Steps started under this invocation.
    pub(crate) steps: u32,
    /// This step's 1-based position among its invocation's steps (0: none).
    pub(crate) step_index: u32,
}

/// What [`Ledger::start`] needs to know about a new span.
#[derive(Debug)]
pub(crate) struct NewSpan {
    pub(crate) id: u64,
    pub(crate) parent: Option<u64>,
    pub(crate) role: Role,
}

/// What an ended span's entry held.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) parent: Option<u64>,
    pub(crate) invocation: Option<u64>,
    pub(crate) totals: Totals,
    pub(crate) steps: u32,
    pub(crate) step_index: u32,
    /// Tracked children still open at the end.
    pub(crate) open_children: usize,
}

/// The live spans, bounded by `capacity`.
#[derive(Debug)]
pub(crate) struct Ledger {
    spans: DashMap<u64, Entry, BuildIdHasher>,
    len: Arc<AtomicUsize>,
    capacity: usize,
}

impl Ledger {
    pub(crate) fn new(capacity: usize) -> Self {
        Ledger {
            spans: DashMap::with_hasher(BuildIdHasher::default()),
            len: Arc::new(AtomicUsize::new(0)),
            capacity,
        }
    }

    /// The number of tracked spans, shared with the metrics callback.
    pub(crate) fn len_handle(&self) -> Arc<AtomicUsize> {
        self.len.clone()
    }

    /// Whether `id` is tracked (open, or ended with open children).
    #[cfg(test)]
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.spans.contains_key(&id)
    }

    /// Starts tracking a span if it was `recognised` at start or its parent is tracked.
    /// Returns whether it is tracked: false for the fast path, and when the ledger is
    /// full.
    pub(crate) fn start(&self, span: NewSpan, recognised: bool) -> bool {
        if self.len.load(Ordering::Relaxed) >= self.capacity {
            return false;
        }
        // Register with the parent, and learn the invocation from it.
        let mut invocation = None;
        let mut parent = None;
        if let Some(parent_id) = span.parent {
            if let Some(mut p) = self.spans.get_mut(&parent_id) {
                p.open_children.push(span.id);
                invocation = if p.role == Role::Invocation {
                    Some(parent_id)
                } else {
                    p.invocation
                };
                parent = Some(parent_id);
            }
        }
        if parent.is_none() && !recognised {
            return false;
        }
        let step_index = if span.role == Role::Step {
            invocation.map_or(0, |inv| self.next_step(inv))
        } else {
            0
        };
        let entry = Entry {
            parent,
            invocation,
            role: span.role,
            ended: false,
            open_children: Vec::new(),
            totals: Totals::default(),
            steps: 0,
            step_index,
        };
        if self.spans.insert(span.id, entry).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Counts one more step under `invocation` and returns its 1-based index
    /// (0 when the invocation is no longer tracked).
    pub(crate) fn next_step(&self, invocation: u64) -> u32 {
        match self.spans.get_mut(&invocation) {
            Some(mut inv) => {
                inv.steps = inv.steps.saturating_add(1);
                inv.steps
            }
            None => 0,
        }
    }

    /// Adds a contribution to every tracked ancestor, starting at `parent` (which also
    /// stops counting `child` as open). Returns the totals of `invocation` after the
    /// addition, if the walk reached it.
    pub(crate) fn contribute(
        &self,
        child: u64,
        parent: Option<u64>,
        invocation: Option<u64>,
        contribution: &Totals,
    ) -> Option<Totals> {
        let mut cumulative = None;
        let mut next = parent;
        let mut first = true;
        for _ in 0..MAX_DEPTH {
            let Some(id) = next else { break };
            let Some(mut entry) = self.spans.get_mut(&id) else {
                break;
            };
            entry.totals.add(contribution);
            if invocation == Some(id) {
                cumulative = Some(entry.totals);
            }
            next = entry.parent;
            if first {
                first = false;
                let drop_tombstone = remove_child(&mut entry, child);
                drop(entry);
                if drop_tombstone {
                    self.remove_tombstone(id);
                }
            }
        }
        cumulative
    }

    /// Stops counting `child` as an open child of `parent`.
    pub(crate) fn detach(&self, child: u64, parent: Option<u64>) {
        let Some(parent) = parent else { return };
        let drop_tombstone = match self.spans.get_mut(&parent) {
            Some(mut entry) => remove_child(&mut entry, child),
            None => false,
        };
        if drop_tombstone {
            self.remove_tombstone(parent);
        }
    }

    /// Ends a tracked span: returns what its entry held, and removes the entry unless
    /// tracked children are still open (then it stays as a tombstone).
    pub(crate) fn end(&self, id: u64) -> Option<Ended> {
        let ended = {
            let mut entry = self.spans.get_mut(&id)?;
            if entry.ended {
                return None;
            }
            entry.ended = true;
            Ended {
                parent: entry.parent,
                invocation: entry.invocation,
                totals: entry.totals,
                steps: entry.steps,
                step_index: entry.step_index,
                open_children: entry.open_children.len(),
            }
        };
        if ended.open_children == 0 {
            self.remove_tombstone(id);
        }
        Some(ended)
    }

    fn remove_tombstone(&self, id: u64) {
        if self
            .spans
            .remove_if(&id, |_, e| e.ended && e.open_children.is_empty())
            .is_some()
        {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Removes `child` from `entry`'s open children; true when `entry` is a tombstone that
/// has no open children left.
fn remove_child(entry: &mut Entry, child: u64) -> bool {
    if let Some(pos) = entry.open_children.iter().position(|c| *c == child) {
        entry.open_children.swap_remove(pos);
    }
    entry.ended && entry.open_children.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: u64, parent: Option<u64>, role: Role) -> NewSpan {
        NewSpan { id, parent, role }
    }

    #[test]
    fn contributions_reach_every_ancestor_and_tombstones_go() {
        let l = Ledger::new(100);
        assert!(l.start(new(1, None, Role::Invocation), true));
        assert!(l.start(new(2, Some(1), Role::Step), true));
        assert!(l.start(new(3, Some(2), Role::Other), true));
        assert!(l.start(new(4, Some(3), Role::Generation), true));
        let g = l.end(4).unwrap();
        assert_eq!(g.invocation, Some(1));
        let t = Totals {
            input: 5,
            generations: 1,
            ..Totals::default()
        };
        let cumulative = l.contribute(4, g.parent, g.invocation, &t).unwrap();
        assert_eq!(cumulative.input, 5);
        // The intermediate ends before the step: no open children left.
        let mid = l.end(3).unwrap();
        assert_eq!(mid.totals.input, 5);
        l.detach(3, mid.parent);
        // The step ends after its invocation: the invocation is a tombstone meanwhile.
        let inv = l.end(1).unwrap();
        assert_eq!(inv.open_children, 1);
        assert_eq!(inv.steps, 1);
        assert!(l.contains(1));
        let step = l.end(2).unwrap();
        assert_eq!(step.step_index, 1);
        l.detach(2, step.parent);
        assert!(!l.contains(1));
        assert_eq!(l.len.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn capacity_is_a_hard_bound() {
        let l = Ledger::new(2);
        assert!(l.start(new(1, None, Role::Invocation), true));
        assert!(l.start(new(2, Some(1), Role::Step), true));
        assert!(!l.start(new(3, Some(2), Role::Generation), true));
        assert_eq!(l.len.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn ending_twice_is_a_no_op() {
        let l = Ledger::new(10);
        l.start(new(1, None, Role::Invocation), true);
        l.start(new(2, Some(1), Role::Step), true);
        assert!(l.end(1).is_some());
        assert!(l.end(1).is_none());
    }
}
