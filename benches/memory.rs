//! Memory of `GenAiAuditProcessor`: bytes per tracked open span, measured with a
//! counting global allocator, as the difference against the bare pipeline running the
//! identical workload in the same process.
//!
//! Reproduce with `cargo bench --bench memory` (about a minute; it needs ~2 GB of RAM
//! for the 1 000 000-span cases). No criterion: it prints a table.
//!
//! # Method
//!
//! The bench binary's `#[global_allocator]` wraps `System` and counts, with atomics, the
//! bytes requested (`Layout::size`) and blocks live, and the peak of live bytes. Each
//! case runs twice, on a provider whose only processor is a no-op `SpanProcessor`
//! (`bare`), and on one whose only processor is `GenAiAuditProcessor` wrapping that
//! no-op processor with `.with_max_tracked_spans(capacity)` (`audit`); default policies
//! (leak policy `flag`), no meter provider. For each run:
//!
//! 1. the provider and tracer are built ("fixed": live bytes after minus before);
//! 2. the `Vec` that keeps the spans is allocated and, for the `children` shapes, the
//!    open root `invoke_agent x` is started;
//! 3. `n` spans are started and kept open ("spans": live bytes after minus before,
//!    and the peak during this step minus the live bytes before it).
//!
//! The processor's bytes per tracked span are `(audit spans - bare spans) / n`; what
//! the bare pipeline's own open spans cost (the SDK `Span` values in the `Vec`, and
//! whatever the SDK allocates per span) cancels out. Shapes:
//!
//! - `children`: `n` children `chat gpt-4o` (generations, recognised by the name; a
//!   `&'static str` name) under one open root `invoke_agent x`; capacity `n + 1`.
//! - `children-owned`: the same with `String` names (the processor keeps the name of a
//!   recognised child, for `genai_audit.leak.unclosed_names`; an owned name costs its
//!   length on top).
//! - `roots`: `n` root spans `invoke_agent i` (invocations, each its own trace);
//!   capacity `n`.
//! - `... cap 10000`: 1 000 000 spans started with capacity 10 000. The spans are
//!   `std::mem::forget`-ed right after their start (never ended: the SDK's drop would end
//!   them), in both variants. The processor must stay at the memory of ~10 000 tracked
//!   spans: its total ("fixed + spans") is compared to the same shape's 10 000-span case.
//!
//! A sanity check, outside the measurement, runs each shape with a meter provider and
//! reads `genai_audit.spans.tracked`: every span started is tracked (`n + 1` and `n`),
//! and with capacity 10 000 the count stays at most 10 000.
//!
//! The figures are requested bytes: the allocator's own per-block overhead (8-16 bytes
//! a block with glibc malloc, plus rounding) comes on top, which is why live blocks are
//! reported too.
//!
//! # Results
//!
//! RESULTS

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use genai_audit::GenAiAuditProcessor;
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span, SpanData, SpanProcessor};

// ---------------------------------------------------------------------------------------
// The counting allocator.
// ---------------------------------------------------------------------------------------

/// `System`, counting live bytes and blocks and the peak of live bytes.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);
static PEAK_BYTES: AtomicIsize = AtomicIsize::new(0);

fn grew(bytes: usize) {
    let bytes = bytes as isize;
    let live = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE_BYTES.fetch_sub(bytes as isize, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` with the same arguments; the counters
// have no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Counted as growing first: a moving realloc holds both blocks for a moment.
            grew(new_size);
            shrank(layout.size());
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live bytes and blocks now.
#[derive(Debug, Clone, Copy)]
struct Live {
    bytes: isize,
    blocks: isize,
}

fn live() -> Live {
    Live {
        bytes: LIVE_BYTES.load(Ordering::Relaxed),
        blocks: LIVE_BLOCKS.load(Ordering::Relaxed),
    }
}

/// Starts measuring a peak from the live bytes now.
fn reset_peak() {
    PEAK_BYTES.store(LIVE_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
}

fn peak() -> isize {
    PEAK_BYTES.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// The pipelines and the workloads.
// ---------------------------------------------------------------------------------------

/// An inner processor that does nothing.
#[derive(Debug)]
struct NoopProcessor;

impl SpanProcessor for NoopProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        black_box(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `n` children `chat gpt-4o` under one open root `invoke_agent x`.
    Children,
    /// The same with `String` names.
    ChildrenOwned,
    /// `n` roots `invoke_agent i`.
    Roots,
}

impl Shape {
    fn label(self) -> &'static str {
        match self {
            Shape::Children => "children",
            Shape::ChildrenOwned => "children-owned",
            Shape::Roots => "roots",
        }
    }

    /// Tracked spans besides the `n` started: the open root of the children shapes.
    fn extra(self) -> usize {
        match self {
            Shape::Children | Shape::ChildrenOwned => 1,
            Shape::Roots => 0,
        }
    }
}

/// One case of the table.
#[derive(Debug, Clone, Copy)]
struct Case {
    shape: Shape,
    /// Spans started.
    n: usize,
    /// `with_max_tracked_spans`.
    capacity: usize,
    /// Keep the spans in a `Vec` (else forget them).
    keep: bool,
}

/// `None`: the bare pipeline.
fn build(capacity: Option<usize>, meter: Option<&SdkMeterProvider>) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder();
    match capacity {
        None => builder.with_span_processor(NoopProcessor),
        Some(capacity) => {
            let mut audit = GenAiAuditProcessor::builder(NoopProcessor)
                .with_disabled(false)
                .with_max_tracked_spans(capacity);
            if let Some(meter) = meter {
                audit = audit.with_meter_provider(meter.clone());
            }
            let audit = audit.build();
            assert!(audit.is_enabled());
            assert_eq!(audit.max_tracked_spans(), Some(capacity));
            builder.with_span_processor(audit)
        }
    }
    .build()
}

/// The open root of the children shapes (`None` for `roots`).
fn start_root(shape: Shape, tracer: &SdkTracer) -> Option<Context> {
    (shape != Shape::Roots).then(|| {
        let root = tracer
            .span_builder("invoke_agent x")
            .start_with_context(tracer, &Context::new());
        Context::new().with_span(root)
    })
}

/// Starts the `i`th span of the workload.
fn start_span(shape: Shape, tracer: &SdkTracer, root: Option<&Context>) -> Span {
    match (shape, root) {
        (Shape::Children, Some(cx)) => tracer
            .span_builder("chat gpt-4o")
            .start_with_context(tracer, cx),
        (Shape::ChildrenOwned, Some(cx)) => tracer
            .span_builder(String::from("chat gpt-4o"))
            .start_with_context(tracer, cx),
        _ => tracer
            .span_builder("invoke_agent i")
            .start_with_context(tracer, &Context::new()),
    }
}

/// What one run measured, in bytes (and blocks).
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Provider and tracer.
    fixed: isize,
    /// The `n` spans started, after them.
    spans: isize,
    spans_blocks: isize,
    /// The highest live bytes while starting them, above the live bytes before.
    spans_peak: isize,
    /// Seconds to start the `n` spans (information only).
    seconds: f64,
}

fn run(case: Case, audit: bool) -> Run {
    let before = live();
    let provider = build(audit.then_some(case.capacity), None);
    let tracer = provider.tracer("memory");
    let built = live();

    let mut kept: Vec<Span> = Vec::with_capacity(if case.keep { case.n } else { 0 });
    let root = start_root(case.shape, &tracer);
    let ready = live();
    reset_peak();
    let start = Instant::now();
    for _ in 0..case.n {
        let span = start_span(case.shape, &tracer, root.as_ref());
        if case.keep {
            kept.push(span);
        } else {
            std::mem::forget(span);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let after = live();
    let spans_peak = peak() - ready.bytes;

    // Ending the kept spans (1 000 000 of them) costs time, not memory: forget them
    // (they are leaked, in both variants alike), and the root and provider with them.
    std::mem::forget(kept);
    std::mem::forget(root);
    std::mem::forget(tracer);
    std::mem::forget(provider);
    Run {
        fixed: built.bytes - before.bytes,
        spans: after.bytes - ready.bytes,
        spans_blocks: after.blocks - ready.blocks,
        spans_peak,
        seconds,
    }
}

// ---------------------------------------------------------------------------------------
// Sanity check: the spans are tracked (or bounded) as the table assumes.
// ---------------------------------------------------------------------------------------

fn tracked_spans(meter: &SdkMeterProvider, exporter: &InMemoryMetricExporter) -> i64 {
    meter.force_flush().expect("flush metrics");
    let all = exporter.get_finished_metrics().expect("metrics");
    let last = all.last().expect("a collection");
    for scope in last.scope_metrics() {
        for metric in scope
            .metrics()
            .filter(|m| m.name() == genai_audit::metrics::SPANS_TRACKED)
        {
            if let AggregatedMetrics::I64(MetricData::Sum(sum)) = metric.data() {
                if let Some(point) = sum.data_points().next() {
                    return point.value();
                }
            }
        }
    }
    panic!("no {}", genai_audit::metrics::SPANS_TRACKED);
}

fn check_tracked(shape: Shape, n: usize, capacity: usize) {
    let exporter = InMemoryMetricExporter::default();
    let meter = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let provider = build(Some(capacity), Some(&meter));
    let tracer = provider.tracer("sanity");
    let root = start_root(shape, &tracer);
    let mut kept = Vec::with_capacity(n);
    for _ in 0..n {
        kept.push(start_span(shape, &tracer, root.as_ref()));
    }
    let tracked = tracked_spans(&meter, &exporter);
    let expected = (n + shape.extra()).min(capacity) as i64;
    assert_eq!(
        tracked,
        expected,
        "{} n={n} capacity={capacity}",
        shape.label()
    );
    drop(kept);
    drop(root);
    provider.shutdown().expect("shutdown");
    meter.shutdown().expect("shutdown metrics");
}

// ---------------------------------------------------------------------------------------
// The table.
// ---------------------------------------------------------------------------------------

const BOUND: usize = 10_000;
const MANY: usize = 1_000_000;

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for shape in [Shape::Children, Shape::ChildrenOwned, Shape::Roots] {
        for n in [10_000, 100_000, MANY] {
            cases.push(Case {
                shape,
                n,
                capacity: n + shape.extra(),
                keep: true,
            });
        }
        cases.push(Case {
            shape,
            n: MANY,
            capacity: BOUND,
            keep: false,
        });
    }
    cases
}

fn main() {
    for shape in [Shape::Children, Shape::ChildrenOwned, Shape::Roots] {
        check_tracked(shape, 1_000, 1_000 + shape.extra());
        check_tracked(shape, 3_000, 1_000);
    }

    // Whatever a first build initialises once per process (the bundled price data, the
    // SDK's statics) is not a cost of the runs below.
    drop(build(Some(1), None));
    drop(build(None, None));

    // The fixed cost of the processor that grows with the capacity (the direct-mapped
    // lookup tables of the two bounded memories are sized by it at build).
    let fixed_1 = run(
        Case {
            shape: Shape::Roots,
            n: 0,
            capacity: 1,
            keep: true,
        },
        true,
    )
    .fixed;

    println!(
        "| case | n | capacity | bare spans B/span | audit spans B/span | \
         **audit - bare, B/span** | blocks/span (a-b) | peak (a-b) B/span | \
         audit fixed | start s (bare / audit) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut totals = Vec::new();
    for case in cases() {
        let bare = run(case, false);
        let audit = run(case, true);
        let n = case.n as f64;
        let per = |bytes: isize| bytes as f64 / n;
        println!(
            "| {}{} | {} | {} | {:.1} | {:.1} | **{:.1}** | {:.2} | {:.1} | {:.2} MB ({:+.2} MB over capacity 1) | {:.2} / {:.2} |",
            case.shape.label(),
            if case.keep { "" } else { ", forgotten" },
            case.n,
            case.capacity,
            per(bare.spans),
            per(audit.spans),
            per(audit.spans - bare.spans),
            per(audit.spans_blocks - bare.spans_blocks),
            per(audit.spans_peak - bare.spans_peak),
            (audit.fixed - bare.fixed) as f64 / 1e6,
            (audit.fixed - fixed_1) as f64 / 1e6,
            bare.seconds,
            audit.seconds,
        );
        totals.push((case, audit.fixed + audit.spans - bare.fixed - bare.spans));
    }

    // The bounded cases against the 10 000-span case of the same shape.
    println!();
    println!("| shape | processor total, 10 000 tracked | processor total, 1 000 000 started, capacity 10 000 | ratio |");
    println!("|---|---|---|---|");
    for shape in [Shape::Children, Shape::ChildrenOwned, Shape::Roots] {
        let of = |keep: bool, n: usize| {
            totals
                .iter()
                .find(|(c, _)| c.shape == shape && c.keep == keep && c.n == n)
                .map(|(_, bytes)| *bytes)
                .expect("case")
        };
        let tracked = of(true, BOUND);
        let bounded = of(false, MANY);
        println!(
            "| {} | {:.2} MB | {:.2} MB | {:.2}x |",
            shape.label(),
            tracked as f64 / 1e6,
            bounded as f64 / 1e6,
            bounded as f64 / tracked as f64,
        );
    }
}
