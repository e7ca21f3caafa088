//! Unit tests of the ledger.

use super::entry::*;
use super::eviction::*;
use super::memory::*;
use super::shards::*;
use crate::config::LeakPolicy;
use crate::engine::bounded_memory::Record;
use crate::findings::FindingCode;
use crate::recognition::Role;
use crate::usage::Totals;

fn new(id: u64, parent: Option<u64>, role: Role) -> NewSpan {
    NewSpan {
        id,
        parent,
        role,
        identity: Identity::default(),
        agent_name: None,
    }
}

/// Starts a recognised span, tracked from "time" `id`.
impl StartCopy for String {
    fn name(&self) -> &str {
        self
    }
}

type Ledger = super::Ledger<String>;

/// The trace of the spans these tests start.
const T: TraceKey = TraceKey(1);

fn start(l: &Ledger, id: u64, parent: Option<u64>, role: Role) -> bool {
    let mut kept = Some(|| Kept::Nothing);
    matches!(
        l.start(T, new(id, parent, role), true, || id, &mut kept),
        Start::Tracked { .. }
    )
}

/// What the memory of ended spans keeps survives the way through its words.
#[test]
fn a_remembered_span_reads_back_whole() {
    for (place, role) in Role::ALL.into_iter().enumerate() {
        assert_eq!(role as usize, place, "{role:?}");
    }
    for (place, fate) in FATES.into_iter().enumerate() {
        assert_eq!(fate as usize, place, "{fate:?}");
    }
    for role in Role::ALL {
        for fate in FATES {
            for (parent, invocation) in [(None, None), (Some(7), Some(u64::MAX))] {
                let recent = Recent {
                    parent,
                    invocation,
                    role,
                    fate,
                };
                let back = Recent::from_words(recent.to_words());
                assert_eq!(
                    (back.parent, back.invocation, back.role, back.fate),
                    (parent, invocation, role, fate)
                );
            }
        }
    }
}

#[test]
fn open_children_in_place_then_in_a_list() {
    let sorted = |c: &OpenChildren| {
        let mut v = c.as_slice().to_vec();
        v.sort_unstable();
        v
    };
    let mut c = OpenChildren::default();
    assert!(c.is_empty());
    c.remove(7); // absent: nothing happens
    for id in 1..=3 {
        c.push(id);
    }
    assert!(matches!(c, OpenChildren::Few { len: 3, .. }));
    c.remove(1);
    assert_eq!(sorted(&c), [2, 3]);
    for id in 4..=6 {
        c.push(id);
    }
    assert!(matches!(c, OpenChildren::Many(_)));
    assert_eq!(sorted(&c), [2, 3, 4, 5, 6]);
    for id in [2, 5, 3, 6, 4] {
        c.remove(id);
    }
    assert!(c.is_empty());
}

/// Spans of two traces ending out of start order leave items behind in the
/// start-order queue (an end drops its item only when it is at the back): the
/// queue must still stay within twice the spans tracked (and a slack), with nothing
/// due by age.
#[test]
fn start_order_queue_stays_bounded_when_spans_end_out_of_order() {
    let capacity = 10;
    let l = Ledger::new(
        capacity,
        std::time::Duration::from_secs(3600),
        LeakPolicy::Flag,
    );
    let mut kept = Some(|| Kept::Nothing);
    let mut begin = |id: u64, parent: Option<u64>| {
        let role = if parent.is_some() {
            Role::Generation
        } else {
            Role::Invocation
        };
        if let Start::Tracked { due: true } =
            l.start(T, new(id, parent, role), true, || id, &mut kept)
        {
            l.evict_due(|| 0, false, |_| {});
        }
    };
    begin(1, None);
    begin(2, None);
    for round in 0..1_000u64 {
        let (a, b) = (10 + 2 * round, 11 + 2 * round);
        begin(a, Some(1));
        begin(b, Some(2));
        // `a` ends first, while `b` is at the back of the queue.
        assert!(matches!(
            l.end(T, a, Some(1), &mut Call::None),
            Ending::Tracked(_)
        ));
        assert!(matches!(
            l.end(T, b, Some(2), &mut Call::None),
            Ending::Tracked(_)
        ));
        // At most four spans are tracked at once (two roots, `a` and `b`).
        let queued = l.queued();
        assert!(
            queued <= 2 * 4 + QUEUE_SLACK,
            "round {round}: {queued} queued"
        );
    }
    assert_eq!(l.len(), 2, "the two roots are still open");
}

fn tracked(ending: Ending<String>) -> Ended<String> {
    match ending {
        Ending::Tracked(e) => e,
        other => panic!("not tracked: {other:?}"),
    }
}

#[test]
fn contributions_reach_every_ancestor_and_tombstones_go() {
    let l = Ledger::new(100, std::time::Duration::from_secs(3600), LeakPolicy::Flag);
    assert!(start(&l, 1, None, Role::Invocation));
    assert!(start(&l, 2, Some(1), Role::Step));
    assert!(start(&l, 3, Some(2), Role::Other));
    assert!(start(&l, 4, Some(3), Role::Generation));
    let mut call = Call::Pending(Contribution {
        totals: Totals {
            input: 5,
            generations: 1,
            ..Totals::default()
        },
        own: OwnUsage {
            input: 5,
            output: 0,
            reporting: 1,
        },
        ..Contribution::default()
    });
    // The generation's call reaches every ancestor as it ends.
    let g = tracked(l.end(T, 4, None, &mut call));
    assert_eq!(g.invocation, Some(1));
    let Call::Taken(Some(cumulative)) = call else {
        panic!("the ledger took the call to the invocation: {call:?}");
    };
    assert_eq!(cumulative.input, 5);
    // The intermediate ends before the step: no open children left.
    let mid = tracked(l.end(T, 3, None, &mut Call::None));
    assert_eq!(mid.totals().input, 5);
    assert_eq!(mid.own().input, 5);
    assert!(mid.open_children.is_empty());
    // The step ends after its invocation: the invocation is a tombstone meanwhile.
    let inv = tracked(l.end(T, 1, None, &mut Call::None));
    assert_eq!(inv.open_children.as_slice(), [2]);
    assert_eq!(inv.steps(), 1);
    assert_eq!(inv.own().reporting, 1);
    assert!(l.contains(1));
    let step = tracked(l.end(T, 2, None, &mut Call::None));
    assert_eq!(step.step_index, 1);
    assert!(
        !l.contains(1),
        "the tombstone goes with its last open child"
    );
    assert_eq!(l.len(), 0);
}

#[test]
fn own_usage_stops_at_the_invocation() {
    let l = Ledger::new(100, std::time::Duration::from_secs(3600), LeakPolicy::Flag);
    start(&l, 1, None, Role::Invocation);
    start(&l, 2, Some(1), Role::Tool);
    start(&l, 3, Some(2), Role::Invocation);
    start(&l, 4, Some(3), Role::Generation);
    let mut call = Call::Pending(Contribution {
        totals: Totals {
            input: 7,
            ..Totals::default()
        },
        own: OwnUsage {
            input: 7,
            output: 1,
            reporting: 1,
        },
        ..Contribution::default()
    });
    tracked(l.end(T, 4, None, &mut call));
    let child = tracked(l.end(T, 3, None, &mut Call::None));
    assert_eq!((child.totals().input, child.own().input), (7, 7));
    let tool = tracked(l.end(T, 2, None, &mut Call::None));
    assert_eq!((tool.totals().input, tool.own().input), (7, 0));
    let outer = tracked(l.end(T, 1, None, &mut Call::None));
    assert_eq!((outer.totals().input, outer.own().input), (7, 0));
}

#[test]
fn capacity_evicts_the_oldest_open_span() {
    let l = Ledger::new(2, std::time::Duration::from_secs(3600), LeakPolicy::Flag);
    assert!(start(&l, 1, None, Role::Invocation));
    assert!(start(&l, 2, Some(1), Role::Step));
    // Full: the new span is refused until room is made.
    assert!(!start(&l, 3, Some(2), Role::Generation));
    let mut evicted = Vec::new();
    l.evict_due(|| 0, true, |e| evicted.push(e));
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].role, Role::Invocation);
    assert!(start(&l, 3, Some(2), Role::Generation));
    assert_eq!(l.len(), 2);
    // The evicted span's real end is known as such.
    assert!(matches!(
        l.end(T, 1, None, &mut Call::None),
        Ending::Evicted(Role::Invocation)
    ));
}

/// Starts root `id` of trace `trace` at "time" `at`; whether it is tracked.
fn start_in(l: &Ledger, trace: usize, id: u64, at: u64) -> Start {
    let mut kept = Some(|| Kept::Nothing);
    l.start(
        TraceKey(trace),
        new(id, None, Role::Invocation),
        true,
        || at,
        &mut kept,
    )
}

/// Spans of different traces are kept under different locks; eviction still takes
/// the oldest first across all of them, by capacity and by age.
#[test]
fn eviction_takes_the_oldest_across_traces() {
    let hour = 3_600_000_000_000;
    let l = Ledger::new(3, std::time::Duration::from_nanos(hour), LeakPolicy::Flag);
    // Started out of trace order: trace 9 first, then 2, then 5.
    for (trace, id, at) in [(9, 1, 10), (2, 2, 20), (5, 3, 30)] {
        assert!(matches!(start_in(&l, trace, id, at), Start::Tracked { .. }));
    }
    // Full: a fourth span makes room by evicting the oldest, in trace 9.
    assert!(matches!(start_in(&l, 7, 4, 40), Start::Full(_)));
    let mut evicted = Vec::new();
    l.evict_due(|| 40, true, |e| evicted.push(e.trace));
    assert_eq!(evicted, [TraceKey(9)]);
    assert!(matches!(start_in(&l, 7, 4, 40), Start::Tracked { .. }));
    // By age: at 25 past the hour, only the span started at 20 is too old.
    l.evict_due(|| hour + 25, false, |e| evicted.push(e.trace));
    assert_eq!(evicted, [TraceKey(9), TraceKey(2)]);
    assert!(!l.contains(2) && l.contains(3) && l.contains(4));
}

/// A span that starts earlier than every queued one (a clock that went back) is
/// still found due by age.
#[test]
fn a_start_older_than_the_queue_is_found_due() {
    let hour = 3_600_000_000_000;
    let l = Ledger::new(100, std::time::Duration::from_nanos(hour), LeakPolicy::Flag);
    assert!(matches!(
        start_in(&l, 1, 1, 5 * hour),
        Start::Tracked { due: false }
    ));
    // Nothing is due: eviction notes the oldest start.
    l.evict_due(|| 5 * hour, false, |_| panic!("nothing is due"));
    assert!(matches!(
        start_in(&l, 2, 2, 2 * hour),
        Start::Tracked { due: false }
    ));
    // An hour and a bit after it, the back-dated span is due, not the other.
    let Start::Tracked { due: true } = start_in(&l, 3, 3, 3 * hour + 1) else {
        panic!("the back-dated span is due");
    };
    let mut evicted = Vec::new();
    l.evict_due(|| 3 * hour + 1, false, |e| evicted.push(e.trace));
    assert_eq!(evicted, [TraceKey(2)]);
    assert!(l.contains(1) && l.contains(3));
}

#[test]
fn age_evicts_spans_started_before_the_limit() {
    let l = Ledger::new(100, std::time::Duration::from_secs(3600), LeakPolicy::Flag);
    for id in 1..=20 {
        start(&l, id, None, Role::Invocation);
    }
    // Spans 1..=10 are too old; at most EVICTIONS_PER_CALL go per call.
    let evict = || {
        let mut n = 0;
        l.evict_due(|| 11 + 3_600_000_000_000, false, |_| n += 1);
        n
    };
    assert_eq!(evict(), EVICTIONS_PER_CALL);
    assert_eq!(evict(), 10 - EVICTIONS_PER_CALL);
    assert_eq!(evict(), 0);
    assert_eq!(l.len(), 10);
    let mut n = 0;
    l.evict_all(|_| n += 1);
    assert_eq!(n, 10);
    assert_eq!(l.len(), 0);
}

#[test]
fn late_starts_and_overlapping_steps_are_noted() {
    let l = Ledger::new(100, std::time::Duration::from_secs(3600), LeakPolicy::Flag);
    start(&l, 1, None, Role::Invocation);
    start(&l, 2, Some(1), Role::Step);
    start(&l, 3, Some(1), Role::Step); // overlaps step 2
    let s2 = tracked(l.end(T, 2, None, &mut Call::None));
    assert!(s2.pending.is_empty());
    // A generation starting under the ended step joins the invocation, late.
    start(&l, 4, Some(2), Role::Generation);
    let g = tracked(l.end(T, 4, None, &mut Call::None));
    assert!(g.pending.contains(FindingCode::LateStart));
    assert_eq!((g.parent, g.invocation), (Some(1), Some(1)));
    let s3 = tracked(l.end(T, 3, None, &mut Call::None));
    assert!(s3.pending.contains(FindingCode::OverlappingStep));
    assert_eq!(s3.step_index, 2);
}

#[test]
fn closing_marks_the_real_end() {
    let l = Ledger::new(10, std::time::Duration::from_secs(3600), LeakPolicy::Flag);
    start(&l, 1, None, Role::Invocation);
    start(&l, 2, Some(1), Role::Step);
    let inv = tracked(l.end(T, 1, None, &mut Call::None));
    assert_eq!(inv.open_children.as_slice(), [2]);
    assert!(l.orphan(T, 2).is_some());
    let step = l.close(T, 2).unwrap();
    assert!(step.parent_ended);
    assert!(
        !l.contains(1),
        "the tombstone goes with its last open child"
    );
    assert!(matches!(
        l.end(T, 2, None, &mut Call::None),
        Ending::Closed(Role::Step)
    ));
}

#[test]
fn ending_twice_is_untracked_the_second_time() {
    let l = Ledger::new(10, std::time::Duration::from_secs(3600), LeakPolicy::Flag);
    start(&l, 1, None, Role::Invocation);
    start(&l, 2, Some(1), Role::Step);
    assert!(matches!(
        l.end(T, 1, None, &mut Call::None),
        Ending::Tracked(_)
    ));
    assert!(matches!(
        l.end(T, 1, None, &mut Call::None),
        Ending::Untracked
    ));
}
