//! Overhead of `GenAiAuditProcessor`, as a ratio against the bare pipeline measured in
//! the same run. Absolute times depend on the machine; the ratios are what we report.
//!
//! Reproduce with `cargo bench --bench overhead` (about 40 s of measuring), then read
//! `mean.point_estimate` from `target/criterion/<group>/<bare|audit>/new/estimates.json`.
//!
//! Groups, each with a `bare` and an `audit` variant that differ only in the processor:
//!
//! - `passthrough_noop`: one trace of a server root and three database children, four
//!   http/db attributes each, nothing gen-ai (4 spans). Inner processor: a no-op
//!   `SpanProcessor`. `audit` wraps it in `GenAiAuditProcessor::builder(..)
//!   .with_disabled(false).build()`.
//! - `passthrough_batch`: the same trace into a default `BatchSpanProcessor` with a no-op
//!   exporter, timed in chunks of 256 traces with a `force_flush` between chunks outside
//!   the timing so that its queue never overflows (see [`bench_batch`]; 0 spans dropped).
//! - `agent_turn`: one `invoke_agent` invocation, three `react step` spans and in each
//!   one priced generation (`chat gpt-4o`, openai, token usage set before end) and one
//!   `execute_tool read`: 1 + 3 + 3 + 3 = **10 spans** per trace (times are per trace).
//!   No-op inner processor.
//! - `pricing_known` / `pricing_unknown`: one call priced for provider `openai`, model
//!   `gpt-4o` / `my-private-model`. Here `bare` is a direct `genai_prices::calculate`
//!   (usage map built per call) and `audit` is `GenAiPrices::bundled()` through the
//!   `Pricer` trait with a warm memo. The figure is the speed-up, direct / memoised.
//!
//! # Results
//!
//! Measured 2026-11-21 on a 2-core VM (`nproc` = 2, /proc/cpuinfo model name "AMD
//! EPYC"), opentelemetry_sdk 0.33.1, genai-prices 0.2.1, criterion 0.5.1, rustc 1.95.0,
//! sample size 30, 1 s warm-up, 2 s measurement. "This run" is the run whose estimates
//! are in `target/criterion` (means, absolute times in parentheses); "three runs" gives
//! the lowest and highest ratio over three full runs on the same machine, which is
//! shared and noisy: treat differences under ~15% as noise.
//!
//! | group               | ratio                  | this run                      | three runs  |
//! |---------------------|------------------------|-------------------------------|-------------|
//! | `passthrough_noop`  | audit / bare           | **1.69x** (1.01 → 1.70 µs)    | 1.55–1.69x  |
//! | `passthrough_batch` | audit / bare           | **1.36x** (1.48 → 2.02 µs)    | 1.32–1.50x  |
//! | `agent_turn`        | audit / bare           | **6.29x** (2.26 → 14.22 µs)   | 6.3–7.7x    |
//! | `pricing_known`     | direct / memoised      | **0.97x** (1.76 vs 1.81 µs)   | 0.88–1.05x  |
//! | `pricing_unknown`   | direct / memoised      | **17.1x** (1.80 µs vs 105 ns) | 17.1–19.2x  |
//!
//! Reading the table:
//!
//! - On spans that are not gen-ai the processor costs about +0.5–0.7 µs per 4-span trace
//!   (~0.15 µs a span). The largest part (~40% of the processor's own samples in
//!   `perf`) is `Span::exported_data` in `on_start`, which clones the whole span to read
//!   its name and attributes; then classifying each span twice (start and end).
//! - An agent turn costs 6–8x the bare SDK: +12–16 µs per 10-span trace. About half of
//!   the audit variant's time is in pricing the three generations
//!   (`GenAiPrices::price`, nearly all of it inside `genai_prices::Calculator::calculate`),
//!   the rest in classification, the ledger, usage parsing and writing the dozen
//!   or so attributes each priced generation gets (`AttributeWrites::set`/`apply`).
//! - The memo does not speed up a known model (0.88–1.05x, i.e. no gain, sometimes a
//!   small loss): a memo hit still calls `Calculator::calculate` with the resolved ids,
//!   and that call's price computation (unit registry lookups with SipHash, string
//!   compares, model matching) is the cost; the memo only skips the provider lookup and
//!   adds a hash, a read lock and the clone of the memo entry. It pays off for unknown
//!   models, where a hit skips `calculate` altogether (~17x).
//! - Without the chunked flushes, `passthrough_batch` saturates: the bench thread ends
//!   spans faster than the batch worker takes them, and in one such run the default
//!   queue dropped 30% of the bare variant's spans and 15% of the audit variant's, so
//!   the two variants were not doing the same work; hence the chunking.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use genai_audit::pricing::{GenAiPrices, PriceQuery, Pricer};
use genai_audit::usage::Usage;
use genai_audit::GenAiAuditProcessor;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, InMemorySpanExporter, SdkTracer, SdkTracerProvider, SimpleSpanProcessor,
    Span, SpanData, SpanExporter, SpanProcessor,
};

// ---------------------------------------------------------------------------------------
// The pipeline pieces the bench supplies.
// ---------------------------------------------------------------------------------------

/// An inner processor that does nothing but keep the ended span alive until the
/// optimiser cannot drop it.
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

/// An exporter that accepts every batch, counting the spans it is given (so that
/// spans the `BatchSpanProcessor` drops on a full queue can be reported).
#[derive(Debug, Clone, Default)]
struct NoopExporter {
    exported: Arc<AtomicU64>,
}

impl SpanExporter for NoopExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.exported
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        black_box(batch);
        std::future::ready(Ok(()))
    }
}

fn provider(processor: impl SpanProcessor + 'static) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build()
}

fn audited<P: SpanProcessor>(inner: P) -> GenAiAuditProcessor<P> {
    let audit = GenAiAuditProcessor::builder(inner)
        .with_disabled(false)
        .build();
    assert!(audit.is_enabled());
    audit
}

fn bench_config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

// ---------------------------------------------------------------------------------------
// The traces.
// ---------------------------------------------------------------------------------------

/// Spans in one `passthrough` trace.
const PASSTHROUGH_SPANS: u64 = 4;

/// A web request: a server root and three database calls under it, four attributes
/// each (three static values and one owned string, as instrumentations write them),
/// none of them gen-ai.
fn passthrough_trace(tracer: &SdkTracer) {
    let root = tracer
        .span_builder("GET /orders/{id}")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/orders/{id}"),
            KeyValue::new("url.path", String::from("/orders/42")),
            KeyValue::new("http.response.status_code", 200),
        ])
        .start_with_context(tracer, &Context::new());
    let cx = Context::new().with_span(root);
    for (name, table) in [
        ("SELECT orders", "orders"),
        ("SELECT order_items", "order_items"),
        ("SELECT customers", "customers"),
    ] {
        let mut child = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.operation.name", "SELECT"),
                KeyValue::new("db.collection.name", table),
                KeyValue::new(
                    "db.query.text",
                    String::from("SELECT * FROM t WHERE id = $1"),
                ),
            ])
            .start_with_context(tracer, &cx);
        child.end();
    }
    cx.span().end();
}

/// Spans in one `agent_turn` trace: 1 invocation + 3 steps + 3 generations + 3 tools.
const AGENT_TURN_SPANS: u64 = 10;

/// One agent turn: an `invoke_agent` invocation, three `react step` spans, and in each
/// one priced generation (`chat gpt-4o`, usage set before end) and one tool call.
fn agent_turn_trace(tracer: &SdkTracer) {
    let invocation = tracer
        .span_builder("invoke_agent coder")
        .with_kind(SpanKind::Internal)
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "coder"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.conversation.id", String::from("conv-1")),
        ])
        .start_with_context(tracer, &Context::new());
    let inv_cx = Context::new().with_span(invocation);
    for round in 0..3i64 {
        let step = tracer
            .span_builder("react step")
            .with_attributes([KeyValue::new("gen_ai.react.round", round + 1)])
            .start_with_context(tracer, &inv_cx);
        let step_cx = inv_cx.with_span(step);

        let mut chat = tracer
            .span_builder("chat gpt-4o")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.provider.name", "openai"),
                KeyValue::new("gen_ai.request.model", "gpt-4o"),
            ])
            .start_with_context(tracer, &step_cx);
        chat.set_attribute(KeyValue::new(
            "gen_ai.usage.input_tokens",
            1_000 + 250 * round,
        ));
        chat.set_attribute(KeyValue::new(
            "gen_ai.usage.output_tokens",
            120 + 30 * round,
        ));
        chat.end();

        let mut tool = tracer
            .span_builder("execute_tool read")
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "execute_tool"),
                KeyValue::new("gen_ai.tool.name", "read"),
            ])
            .start_with_context(tracer, &step_cx);
        tool.end();

        step_cx.span().end();
    }
    inv_cx.span().end();
}

// ---------------------------------------------------------------------------------------
// Sanity checks, outside the timing: the audit variants really do the work measured.
// ---------------------------------------------------------------------------------------

fn finished_spans(trace: fn(&SdkTracer)) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = provider(audited(SimpleSpanProcessor::new(exporter.clone())));
    trace(&provider.tracer("sanity"));
    let spans = exporter.get_finished_spans().expect("finished spans");
    provider.shutdown().expect("shutdown");
    spans
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    genai_audit::last_value(&span.attributes, key)
}

fn check_passthrough_is_untouched() {
    let spans = finished_spans(passthrough_trace);
    assert_eq!(spans.len() as u64, PASSTHROUGH_SPANS);
    for span in &spans {
        assert_eq!(span.attributes.len(), 4, "{} was edited", span.name);
    }
}

fn check_agent_turn_is_priced() {
    let spans = finished_spans(agent_turn_trace);
    assert_eq!(spans.len() as u64, AGENT_TURN_SPANS);
    for span in spans.iter().filter(|s| s.name == "chat gpt-4o") {
        assert!(
            matches!(attr(span, "genai_audit.cost_usd"), Some(Value::F64(c)) if *c > 0.0),
            "generation not priced"
        );
        assert_eq!(
            attr(span, "genai_audit.cost.model").map(|v| v.as_str()),
            Some("openai/gpt-4o".into())
        );
    }
    let invocation = spans
        .iter()
        .find(|s| s.name == "invoke_agent coder")
        .expect("invocation");
    assert_eq!(
        attr(invocation, "genai_audit.total.generations"),
        Some(&Value::I64(3))
    );
    assert_eq!(
        attr(invocation, "genai_audit.total.tool_calls"),
        Some(&Value::I64(3))
    );
    assert_eq!(attr(invocation, "genai_audit.steps"), Some(&Value::I64(3)));
}

// ---------------------------------------------------------------------------------------
// Groups 1 and 2: span pipelines.
// ---------------------------------------------------------------------------------------

fn bench_trace<M: criterion::measurement::Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    id: &str,
    provider: SdkTracerProvider,
    trace: fn(&SdkTracer),
) {
    let tracer = provider.tracer("overhead");
    group.bench_function(id, |b| b.iter(|| trace(&tracer)));
    provider.shutdown().expect("shutdown");
}

fn passthrough_noop(c: &mut Criterion) {
    check_passthrough_is_untouched();
    let mut group = c.benchmark_group("passthrough_noop");
    group.throughput(Throughput::Elements(PASSTHROUGH_SPANS));
    bench_trace(
        &mut group,
        "bare",
        provider(NoopProcessor),
        passthrough_trace,
    );
    bench_trace(
        &mut group,
        "audit",
        provider(audited(NoopProcessor)),
        passthrough_trace,
    );
    group.finish();
}

/// Traces timed between two flushes of the `BatchSpanProcessor`: 1024 spans, half its
/// default queue (2048), so that the queue never overflows.
const BATCH_CHUNK: u64 = 256;

/// Times `iters` traces through a `BatchSpanProcessor` pipeline with its default
/// configuration, in chunks of [`BATCH_CHUNK`] traces with a `force_flush` between
/// chunks, outside the timing. Without the flushes the bench thread ends spans faster
/// than the processor's worker thread takes them off the queue, the queue fills and the
/// processor drops spans; a dropped span costs its producer less than a queued one, so
/// the variant that produces faster (the bare one) would be flattered. The dropped
/// spans are counted and printed: they should be 0.
fn bench_batch<M: criterion::measurement::Measurement<Value = Duration>>(
    group: &mut BenchmarkGroup<'_, M>,
    id: &str,
    audit: bool,
) {
    let exporter = NoopExporter::default();
    let exported = exporter.exported.clone();
    let batch = BatchSpanProcessor::builder(exporter).build();
    let provider = if audit {
        provider(audited(batch))
    } else {
        provider(batch)
    };
    let tracer = provider.tracer("overhead");
    let mut traces = 0u64;
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(BATCH_CHUNK);
                let start = Instant::now();
                for _ in 0..chunk {
                    passthrough_trace(black_box(&tracer));
                }
                elapsed += start.elapsed();
                provider.force_flush().expect("flush");
                left -= chunk;
            }
            traces += iters;
            elapsed
        })
    });
    provider.force_flush().expect("flush");
    provider.shutdown().expect("shutdown");
    let ended = traces * PASSTHROUGH_SPANS;
    let exported = exported.load(Ordering::Relaxed);
    eprintln!(
        "passthrough_batch/{id}: {exported} of {ended} spans exported, {} dropped",
        ended - exported,
    );
}

fn passthrough_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("passthrough_batch");
    group.throughput(Throughput::Elements(PASSTHROUGH_SPANS));
    bench_batch(&mut group, "bare", false);
    bench_batch(&mut group, "audit", true);
    group.finish();
}

fn agent_turn(c: &mut Criterion) {
    check_agent_turn_is_priced();
    let mut group = c.benchmark_group("agent_turn");
    group.throughput(Throughput::Elements(AGENT_TURN_SPANS));
    bench_trace(
        &mut group,
        "bare",
        provider(NoopProcessor),
        agent_turn_trace,
    );
    bench_trace(
        &mut group,
        "audit",
        provider(audited(NoopProcessor)),
        agent_turn_trace,
    );
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Group 3: pricing one call, memoised (`GenAiPrices` through `Pricer`) against a direct
// `genai_prices::calculate`. Here "bare" is the direct call and "audit" the memoised one.
// ---------------------------------------------------------------------------------------

/// 2025-10-09: gpt-4o is priced then.
fn when() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_760_000_000)
}

const INPUT_TOKENS: u64 = 1_056;
const OUTPUT_TOKENS: u64 = 170;

/// The direct call, usage conversion included (the memoised path converts too).
fn direct_price(model: &str) -> genai_prices::Result<genai_prices::PriceCalculation> {
    let mut usage = genai_prices::Usage::new();
    usage.insert(genai_prices::UsageKey::INPUT_TOKENS, INPUT_TOKENS as f64);
    usage.insert(genai_prices::UsageKey::OUTPUT_TOKENS, OUTPUT_TOKENS as f64);
    let request = genai_prices::PriceRequest::new(model, &usage)
        .with_provider_id("openai")
        .with_timestamp(when());
    genai_prices::calculate(&request)
}

fn bench_pricing(c: &mut Criterion, group_name: &str, model: &'static str) {
    let prices = GenAiPrices::bundled();
    let usage = Usage {
        input: Some(INPUT_TOKENS),
        output: Some(OUTPUT_TOKENS),
        ..Usage::default()
    };
    let query = PriceQuery {
        provider: Some("openai"),
        model,
        usage: &usage,
        time: when(),
    };
    // Both paths agree (and the memo is warm before the timing starts).
    let memoised = prices.price(&query);
    match (&memoised, direct_price(model)) {
        (Some(m), Ok(d)) => assert_eq!(m.cost_usd, d.total_price, "{model}"),
        (None, Err(_)) => {}
        (m, d) => panic!("{model}: memoised {m:?} but direct {d:?}"),
    }
    assert_eq!(prices.price(&query), memoised);

    let mut group = c.benchmark_group(group_name);
    group.bench_function("bare", |b| b.iter(|| direct_price(black_box(model))));
    group.bench_function("audit", |b| b.iter(|| prices.price(black_box(&query))));
    group.finish();
}

fn pricing(c: &mut Criterion) {
    bench_pricing(c, "pricing_known", "gpt-4o");
    bench_pricing(c, "pricing_unknown", "my-private-model");
}

// ---------------------------------------------------------------------------------------
// Group 4: `agent_turn` from several threads sharing one provider.
// ---------------------------------------------------------------------------------------

/// Agent turns each thread runs per iteration of the `threads` group.
const THREAD_TRACES: u64 = 64;

/// 1 and 2 threads, then powers of two up to the cores the machine has.
fn thread_counts() -> Vec<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut counts = vec![1, 2];
    let mut threads = 4;
    while threads <= cores {
        counts.push(threads);
        threads *= 2;
    }
    counts
}

/// Runs `iters` iterations of [`THREAD_TRACES`] agent turns on each of `threads`
/// threads, all on `tracer` (so on one provider and one processor). The time runs from
/// the moment the threads are released together (they are spawned before, outside the
/// timing) until the last one has finished.
fn run_threads(tracer: &SdkTracer, threads: usize, iters: u64) -> Duration {
    let traces = iters * THREAD_TRACES;
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    for _ in 0..traces {
                        agent_turn_trace(black_box(tracer));
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for worker in workers {
            worker.join().expect("bench thread");
        }
        start.elapsed()
    })
}

/// Two threads on one audited provider: every trace is exported and priced, and the
/// traces of one thread do not leak into the other's (no findings at all).
fn check_threads_share_one_provider() {
    let exporter = InMemorySpanExporter::default();
    let provider = provider(audited(SimpleSpanProcessor::new(exporter.clone())));
    run_threads(&provider.tracer("sanity"), 2, 1);
    let spans = exporter.get_finished_spans().expect("finished spans");
    provider.shutdown().expect("shutdown");
    assert_eq!(spans.len() as u64, 2 * THREAD_TRACES * AGENT_TURN_SPANS);
    for span in &spans {
        assert_eq!(attr(span, "genai_audit.findings"), None, "{}", span.name);
    }
    let invocations: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "invoke_agent coder")
        .collect();
    assert_eq!(invocations.len() as u64, 2 * THREAD_TRACES);
    for invocation in invocations {
        assert_eq!(
            attr(invocation, "genai_audit.total.generations"),
            Some(&Value::I64(3))
        );
        assert_eq!(
            attr(invocation, "genai_audit.total.tool_calls"),
            Some(&Value::I64(3))
        );
    }
    let priced = spans
        .iter()
        .filter(|s| matches!(attr(s, "genai_audit.cost_usd"), Some(Value::F64(c)) if *c > 0.0))
        .count() as u64;
    assert_eq!(priced, 2 * THREAD_TRACES * 3);
}

/// `agent_turn` from 1, 2, ... threads sharing one provider, bare and audited. One
/// iteration is [`THREAD_TRACES`] traces on each thread; throughput is in spans, so
/// criterion's spans/s compare across thread counts directly.
fn threads(c: &mut Criterion) {
    check_threads_share_one_provider();
    let mut group = c.benchmark_group("threads");
    for threads in thread_counts() {
        group.throughput(Throughput::Elements(
            threads as u64 * THREAD_TRACES * AGENT_TURN_SPANS,
        ));
        for (id, audit) in [("bare", false), ("audit", true)] {
            let provider = if audit {
                provider(audited(NoopProcessor))
            } else {
                provider(NoopProcessor)
            };
            let tracer = provider.tracer("overhead");
            group.bench_with_input(BenchmarkId::new(id, threads), &threads, |b, &threads| {
                b.iter_custom(|iters| run_threads(&tracer, threads, iters))
            });
            provider.shutdown().expect("shutdown");
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = bench_config();
    targets = passthrough_noop, passthrough_batch, agent_turn, pricing, threads
}
criterion_main!(benches);
