//! Bounded memory (the design contract (DESIGN.md) §9): one million recognised spans started and never ended,
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

/// Threads leaking one step per invocation, each invocation its own trace (so the
/// traces land in every part of the ledger): `THREADS` x `PER_THREAD` spans.
fn leak_steps_on_threads(h: &Harness, checkpoint: impl Fn() + Sync) {
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry::Context;
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let tracer = h.tracer();
            let checkpoint = &checkpoint;
            scope.spawn(move || {
                for n in 0..PER_THREAD {
                    let cx = Context::current_with_span(tracer.start("invoke_agent leaky"));
                    std::mem::forget(tracer.start_with_context("react step", &cx));
                    cx.span().end();
                    if n % 50 == 0 {
                        checkpoint();
                    }
                }
            });
        }
    });
}

/// Exactly `n` spans were exported, each once.
fn assert_exported_once(h: &Harness, n: u64) {
    let spans = h.exporter.get_finished_spans().unwrap();
    let ids: std::collections::HashSet<_> =
        spans.iter().map(|s| s.span_context.span_id()).collect();
    assert_eq!((spans.len(), ids.len()), (n as usize, n as usize));
}

const THREADS: u64 = 4;
const PER_THREAD: u64 = 300;

/// With room for all of them, the spans that threads leak into every part of the
/// ledger are all counted: tracked until shutdown, then each `stale` once, and each
/// invocation reports its step as an unclosed child.
#[test]
fn leaks_from_several_threads_are_each_counted_once() {
    let h = Harness::with(|b| b.leak_policy(LeakPolicy::Flag));
    leak_steps_on_threads(&h, || {});
    let leaked = THREADS * PER_THREAD;
    // Each invocation ended with its step open: a tombstone for it and the open step.
    assert_eq!(h.tracked_spans(), 2 * leaked as i64);
    assert_exported_once(&h, leaked);
    h.provider.shutdown().unwrap();
    h.assert_counts(
        &[
            ("stale", "step", false, leaked),
            ("unclosed_child", "invocation", false, leaked),
        ],
        0,
    );
}

/// Under a small capacity, threads leaking at once are held to it: eviction takes the
/// oldest across the ledger's parts, and a start that races another past the bound
/// overshoots it by at most one span a thread until the next start evicts. Every ended
/// span is exported once, and nothing is tracked after shutdown.
#[test]
fn leaks_from_several_threads_stay_within_the_capacity() {
    const SMALL: u64 = 64;
    let h = Harness::with(|b| {
        b.leak_policy(LeakPolicy::Flag)
            .with_max_tracked_spans(SMALL as usize)
    });
    let most = std::sync::atomic::AtomicI64::new(0);
    leak_steps_on_threads(&h, || {
        most.fetch_max(h.tracked_spans(), std::sync::atomic::Ordering::Relaxed);
    });
    let most = most.into_inner();
    assert!(
        most <= (SMALL + THREADS) as i64,
        "{most} tracked, capacity {SMALL}"
    );
    assert!(h.tracked_spans() <= (SMALL + THREADS) as i64);
    let leaked = THREADS * PER_THREAD;
    assert_exported_once(&h, leaked);
    h.provider.shutdown().unwrap();
    assert_eq!(h.tracked_spans(), 0);
    let stale = |role: &str| -> u64 {
        h.finding_counts()
            .iter()
            .filter(|c| c.0 == "stale" && c.1 == role)
            .map(|c| c.3)
            .sum()
    };
    let steps = stale("step");
    assert!(
        (1..=leaked).contains(&steps),
        "{steps} stale of {leaked} leaked steps"
    );
    // An invocation is evicted too (and counted stale) when its thread is held up
    // between its start and its end long enough for the others to fill the capacity:
    // the oldest span goes first, open or not. Nothing else is ever stale.
    let invocations = stale("invocation");
    assert!(invocations <= THREADS * PER_THREAD);
    let all: u64 = h
        .finding_counts()
        .iter()
        .filter(|c| c.0 == "stale")
        .map(|c| c.3)
        .sum();
    assert_eq!(all, steps + invocations, "{:?}", h.finding_counts());
}
