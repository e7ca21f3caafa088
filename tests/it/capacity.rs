//! Bounded memory (the design contract (`../shared/DESIGN.md`) §9): one million recognised spans started and never ended,
//! with at most 10 000 tracked. The tracked count never exceeds the bound, and every
//! span pushed out by it is counted `stale`, the rest at shutdown.

use crate::common;

use std::time::Instant;

use common::{expect_counts, Harness};
use genai_audit::LeakPolicy;
use opentelemetry::trace::Tracer;

const SPANS: u64 = 1_000_000;
const CAPACITY: u64 = 10_000;

#[test]
fn a_million_leaked_spans_never_track_more_than_the_capacity() {
    let h = Harness::with(|b| {
        b.leak_policy(LeakPolicy::Flag)
            .with_max_tracked_spans(CAPACITY as usize)
    });
    let tracer = h.tracer();
    let began = Instant::now();
    let mut checkpoints = Vec::new();
    for n in 1..=SPANS {
        // A recognised root that never ends. Forgetting it costs no memory of its own
        // (a static name, no attributes), so a million of them fit in a test.
        std::mem::forget(tracer.start("invoke_agent leaked"));
        if n == 1 || n == CAPACITY - 1 || n == CAPACITY || n == CAPACITY + 1 || n % 100_000 == 0 {
            let tracked = h.tracked_spans();
            let stale: u64 = h.finding_counts().iter().map(|c| c.3).sum();
            assert!(
                tracked <= CAPACITY as i64,
                "{tracked} tracked after {n} spans"
            );
            checkpoints.push((n, tracked, stale));
        }
    }
    let expected: Vec<(u64, i64, u64)> = [1, CAPACITY - 1, CAPACITY, CAPACITY + 1]
        .into_iter()
        .chain((1..=10).map(|k| k * 100_000))
        .map(|n| (n, n.min(CAPACITY) as i64, n.saturating_sub(CAPACITY)))
        .collect();
    assert_eq!(checkpoints, expected);
    assert_eq!(
        h.finding_counts(),
        expect_counts(&[("stale", "invocation", false, SPANS - CAPACITY)])
    );
    assert!(h.exporter.get_finished_spans().unwrap().is_empty());

    h.provider.shutdown().unwrap();
    h.assert_counts(&[("stale", "invocation", false, SPANS)], 0);
    eprintln!(
        "{SPANS} leaked spans with {CAPACITY} tracked at most: {:.1?}",
        began.elapsed()
    );
}

/// With the default clock, a span's age is how long the processor has tracked it: a
/// span whose own start time is hours in the past (replayed, back-dated) or ahead (a
/// skewed clock elsewhere) is not stale when the next tracked span starts, and every
/// span started with its default start time is tracked.
#[test]
fn start_times_far_from_now_do_not_age_spans_with_the_default_clock() {
    use std::time::{Duration, SystemTime};
    let h = Harness::with(|b| b.with_max_span_age(Duration::from_secs(3600)));
    let tracer = h.tracer();
    let hours = Duration::from_secs(5 * 3600);
    let past = tracer
        .span_builder("invoke_agent replayed")
        .with_start_time(SystemTime::now() - hours)
        .start(&tracer);
    let ahead = tracer
        .span_builder("invoke_agent skewed")
        .with_start_time(SystemTime::now() + hours)
        .start(&tracer);
    let live = tracer.start("invoke_agent live");
    // Each start above checked for spans due for eviction: none is.
    h.assert_counts(&[], 3);
    drop((past, ahead, live));
    h.assert_counts(&[], 0);
}
