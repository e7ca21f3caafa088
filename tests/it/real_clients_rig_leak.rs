//! A rig run that is polled once and then `std::mem::forget`-ed leaves its
//! `invoke_agent` and `chat` spans started and never ended: they never reach
//! `on_end`. The audit processor must still report them (the design contract (DESIGN.md) §1, §6 `stale`, §9):
//! at `provider.shutdown()` every span still tracked is evicted as `stale`, and so is
//! a span older than the maximum age, checked on later span starts.
//!
//! The inner processor here records what it is given instead of exporting it, and
//! keeps it after its own shutdown (the SDK's `InMemorySpanExporter` forgets its spans
//! when shut down), so that spans closed at shutdown can be inspected.

use crate::common;
use crate::rig_support;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, SystemTime};

use common::{dump, expect_counts, findings_of, Counts, FindingCount, Harness, Metrics};
use genai_audit::LeakPolicy;
use opentelemetry::trace::{Span as _, SpanId, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData, SpanProcessor};
use rig_agent::{Agent, AgentBuilder};
use rig_support::{otel_dispatch, prompt, string, wire, Add, ByRun};

/// What the inner processor was given.
#[derive(Debug, Default)]
struct Recorded {
    /// A copy of each span as it started.
    started: Vec<SpanData>,
    ended: Vec<SpanData>,
    ended_ids: HashSet<SpanId>,
    shut_down: bool,
    ended_after_shutdown: usize,
}

/// An inner processor that records, and keeps what it recorded after shutdown.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Recorded>>);

impl SpanProcessor for Recorder {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {
        if let Some(data) = span.exported_data() {
            self.0.lock().unwrap().started.push(data);
        }
    }

    fn on_end(&self, span: SpanData) {
        let mut recorded = self.0.lock().unwrap();
        if recorded.shut_down {
            recorded.ended_after_shutdown += 1;
        }
        recorded.ended_ids.insert(span.span_context.span_id());
        recorded.ended.push(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.0.lock().unwrap().shut_down = true;
        Ok(())
    }
}

/// A clock the test moves: `base + offset`.
#[derive(Clone)]
struct TestClock {
    base: SystemTime,
    offset_secs: Arc<AtomicU64>,
}

impl TestClock {
    fn new() -> Self {
        TestClock {
            base: SystemTime::now(),
            offset_secs: Arc::new(AtomicU64::new(0)),
        }
    }

    fn now(&self) -> SystemTime {
        self.base + Duration::from_secs(self.offset_secs.load(Ordering::SeqCst))
    }

    fn set(&self, offset: Duration) {
        self.offset_secs.store(offset.as_secs(), Ordering::SeqCst);
    }
}

struct Fixture {
    /// Its `metric` reads the findings counter; its `exporter` is unused (the spans
    /// go to `recorder`).
    h: Harness,
    recorder: Recorder,
    dispatch: tracing::Dispatch,
    agent: Agent,
}

fn fixture(policy: LeakPolicy, clock: &TestClock, max_age: Duration) -> Fixture {
    let metrics = Metrics::new();
    let recorder = Recorder::default();
    let clock = clock.clone();
    let audit = metrics
        .audit(recorder.clone())
        .leak_policy(policy)
        .with_max_span_age(max_age)
        .with_clock(move || clock.now())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(audit)
        .build();
    let dispatch = otel_dispatch(&provider);
    let agent = AgentBuilder::new(rig_core::Model::new(wire(), ByRun::default()))
        .name("calculator")
        .tool(Add)
        .default_max_turns(4)
        .build();
    Fixture {
        h: Harness {
            provider,
            exporter: InMemorySpanExporter::default(),
            metrics,
        },
        recorder,
        dispatch,
        agent,
    }
}

impl Fixture {
    fn complete_a_run(&self, n: u64) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        tracing::dispatcher::with_default(&self.dispatch, || {
            runtime
                .block_on(self.agent.prompt(prompt(n)).run())
                .expect("the run succeeds")
        });
    }

    /// Polls a run once (its model reply never comes) and forgets it.
    fn forget_a_run(&self, n: u64) {
        tracing::dispatcher::with_default(&self.dispatch, || {
            let mut run = Box::pin(self.agent.prompt(format!("run {n}: forget")).run());
            let mut cx = Context::from_waker(Waker::noop());
            assert!(run.as_mut().poll(&mut cx).is_pending());
            std::mem::forget(run);
        });
    }

    /// Spans started and not (yet) ended, as they were at start.
    fn open(&self) -> Vec<SpanData> {
        let recorded = self.recorder.0.lock().unwrap();
        let ended: HashSet<SpanId> = recorded
            .ended
            .iter()
            .map(|s| s.span_context.span_id())
            .collect();
        recorded
            .started
            .iter()
            .filter(|s| !ended.contains(&s.span_context.span_id()))
            .cloned()
            .collect()
    }

    fn ended(&self) -> Vec<SpanData> {
        self.recorder.0.lock().unwrap().ended.clone()
    }

    fn has_ended(&self, id: SpanId) -> bool {
        self.recorder.0.lock().unwrap().ended_ids.contains(&id)
    }

    fn ended_after_shutdown(&self) -> usize {
        self.recorder.0.lock().unwrap().ended_after_shutdown
    }

    /// `genai_audit.findings` as (code, role, repaired, count), sorted.
    fn findings_metric(&self) -> Vec<FindingCount> {
        self.h.metrics.all_finding_counts()
    }

    /// Every ended span but the leaked ones has no finding.
    fn assert_no_findings_but_on(&self, leaked: &[SpanId]) {
        for span in self.ended() {
            if !leaked.contains(&span.span_context.span_id()) {
                assert_eq!(findings_of(&span), Vec::<String>::new(), "{}", dump(&span));
            }
        }
    }
}

/// The two spans a forgotten run leaves open, `(invoke_agent, chat)`, as they started.
fn leaked(f: &Fixture) -> (SpanData, SpanData) {
    let open = f.open();
    let names: Vec<&str> = open.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names, ["invoke_agent", "chat"]);
    let (invocation, chat) = (open[0].clone(), open[1].clone());
    assert_eq!(invocation.parent_span_id, SpanId::INVALID);
    assert_eq!(chat.parent_span_id, invocation.span_context.span_id());
    (invocation, chat)
}

/// Checks the span the processor exported for a leaked one under `Close`.
fn assert_closed_by_audit(
    f: &Fixture,
    started: &SpanData,
    role: &str,
    evicted_at: SystemTime,
    findings: &[&str],
) {
    let id = started.span_context.span_id();
    let exported: Vec<SpanData> = f
        .ended()
        .into_iter()
        .filter(|s| s.span_context.span_id() == id)
        .collect();
    assert_eq!(exported.len(), 1, "{} exported once", started.name);
    let span = &exported[0];
    assert_eq!(span.name, started.name);
    assert_eq!(
        span.span_context.trace_id(),
        started.span_context.trace_id()
    );
    assert_eq!(span.parent_span_id, started.parent_span_id);
    assert_eq!(span.start_time, started.start_time);
    assert_eq!(span.end_time, evicted_at, "{}", dump(span));
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    for KeyValue { key, value, .. } in &started.attributes {
        assert_eq!(
            genai_audit::last_value(&span.attributes, key.as_str()),
            Some(value),
            "start attribute {key} kept\n{}",
            dump(span)
        );
    }
    assert_eq!(
        genai_audit::last_value(&span.attributes, "genai_audit.role"),
        Some(&string(role))
    );
    assert_eq!(findings_of(span), findings, "{}", dump(span));
}

/// The invocation is evicted (`stale`) and closed with its open chat, which is closed
/// as its unclosed child.
fn assert_run_closed(f: &Fixture, invocation: &SpanData, chat: &SpanData, at: SystemTime) {
    assert_closed_by_audit(
        f,
        invocation,
        "invocation",
        at,
        &["stale", "closed_by_audit", "unclosed_child"],
    );
    assert_closed_by_audit(f, chat, "generation", at, &["closed_by_audit"]);
    let exported = f
        .ended()
        .into_iter()
        .find(|s| s.span_context.span_id() == invocation.span_context.span_id())
        .expect("exported");
    assert_eq!(
        genai_audit::last_value(&exported.attributes, "genai_audit.leak.unclosed_names"),
        Some(&opentelemetry::Value::Array(
            vec![opentelemetry::StringValue::from("chat")].into()
        ))
    );
}

/// A forgotten run (an invocation and its chat) counted stale under `flag`.
const STALE_RUN: Counts = &[
    ("stale", "generation", false, 1),
    ("stale", "invocation", false, 1),
];

/// A forgotten run evicted and closed under `close`.
const CLOSED_RUN: Counts = &[
    ("closed_by_audit", "generation", false, 1),
    ("closed_by_audit", "invocation", false, 1),
    ("stale", "invocation", false, 1),
    ("unclosed_child", "invocation", false, 1),
];

#[test]
fn a_forgotten_run_is_counted_stale_at_shutdown_under_flag() {
    let clock = TestClock::new();
    let f = fixture(LeakPolicy::Flag, &clock, Duration::from_secs(3600));
    f.complete_a_run(1);
    f.forget_a_run(7);
    let (invocation, chat) = leaked(&f);
    let clean: Vec<SpanId> = f.ended().iter().map(|s| s.span_context.span_id()).collect();
    assert_eq!(clean.len(), 4);

    f.h.provider.shutdown().expect("shutdown");

    // Counted, not exported: the inner processor got nothing more.
    let ended = f.ended();
    assert_eq!(
        ended
            .iter()
            .map(|s| s.span_context.span_id())
            .collect::<Vec<_>>(),
        clean
    );
    assert!(!ended.iter().any(|s| {
        let id = s.span_context.span_id();
        id == invocation.span_context.span_id() || id == chat.span_context.span_id()
    }));
    for span in &ended {
        assert_eq!(findings_of(span), Vec::<String>::new(), "{}", dump(span));
    }
    assert_eq!(f.findings_metric(), expect_counts(STALE_RUN));
}

#[test]
fn a_forgotten_run_is_closed_at_shutdown_under_close() {
    let clock = TestClock::new();
    let f = fixture(LeakPolicy::Close, &clock, Duration::from_secs(3600));
    f.complete_a_run(1);
    f.forget_a_run(7);
    let (invocation, chat) = leaked(&f);
    // Eviction happens at the clock's time.
    clock.set(Duration::from_secs(600));

    f.h.provider.shutdown().expect("shutdown");

    assert_eq!(
        f.ended_after_shutdown(),
        0,
        "exported before the inner shutdown"
    );
    assert_eq!(f.ended().len(), 6);
    assert_run_closed(&f, &invocation, &chat, clock.now());
    let leaked_ids = [
        invocation.span_context.span_id(),
        chat.span_context.span_id(),
    ];
    f.assert_no_findings_but_on(&leaked_ids);
    assert_eq!(f.findings_metric(), expect_counts(CLOSED_RUN));
}

/// Starts recognised spans (invocations, at the clock's time, ended at once) until
/// `done` holds, checked every 16 starts. The age check is amortised over span
/// starts, so it may take more than one.
fn start_spans_until(f: &Fixture, clock: &TestClock, done: impl Fn() -> bool) {
    let tracer = f.h.provider.tracer("probe");
    for started in 1..=8192 {
        let mut probe = tracer
            .span_builder("invoke_agent probe")
            .with_start_time(clock.now())
            .with_attributes([KeyValue::new("gen_ai.operation.name", "invoke_agent")])
            .start(&tracer);
        probe.end_with_timestamp(clock.now());
        if started % 16 == 0 && done() {
            return;
        }
    }
    panic!("not evicted after 8192 span starts");
}

#[test]
fn a_forgotten_run_is_evicted_by_age_under_close() {
    let clock = TestClock::new();
    let f = fixture(LeakPolicy::Close, &clock, Duration::from_secs(60));
    f.forget_a_run(7);
    let (invocation, chat) = leaked(&f);
    clock.set(Duration::from_secs(3600));

    let leaked_ids = [
        invocation.span_context.span_id(),
        chat.span_context.span_id(),
    ];
    start_spans_until(&f, &clock, || leaked_ids.iter().all(|id| f.has_ended(*id)));

    // Evicted and exported on the hot path, not at shutdown.
    assert_run_closed(&f, &invocation, &chat, clock.now());
    for span in f.ended() {
        if !leaked_ids.contains(&span.span_context.span_id()) {
            assert_eq!(span.name, "invoke_agent probe");
            assert_eq!(findings_of(&span), Vec::<String>::new(), "{}", dump(&span));
        }
    }
    assert_eq!(f.findings_metric(), expect_counts(CLOSED_RUN));

    // Nothing is left to evict at shutdown.
    let before = f.ended().len();
    f.h.provider.shutdown().expect("shutdown");
    assert_eq!(f.ended().len(), before);
}

#[test]
fn a_forgotten_run_is_counted_stale_by_age_under_flag() {
    let clock = TestClock::new();
    let f = fixture(LeakPolicy::Flag, &clock, Duration::from_secs(60));
    f.forget_a_run(7);
    let _ = leaked(&f);
    clock.set(Duration::from_secs(3600));

    start_spans_until(&f, &clock, || {
        f.findings_metric() == expect_counts(STALE_RUN)
    });
    // Counted, not exported: only the probes reached the inner processor.
    for span in f.ended() {
        assert_eq!(span.name, "invoke_agent probe");
        assert_eq!(findings_of(&span), Vec::<String>::new(), "{}", dump(&span));
    }
    // Evicted once: shutdown counts nothing more.
    f.h.provider.shutdown().expect("shutdown");
    assert_eq!(f.findings_metric(), expect_counts(STALE_RUN));
}
