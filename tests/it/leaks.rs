//! Leaks through the plain OpenTelemetry API: steps left open when their invocation
//! ends (leak policies `flag` and `close`), spans forgotten or held forever (stale at
//! shutdown), spans ended twice, unknown parents, late starts, and eviction by age with
//! a controllable clock. Expected values follow the design contract
//! (DESIGN.md) §6.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{
    assert_closed_with_open_child, audit_keys, bool_of, direct_price, expect_counts, f64_of,
    findings_of, i64_of, skewed_clock, skewed_harness, str_of, string_array, value, FindingCount,
    Harness, Metrics, Recorder, CLOSED_WITH_OPEN_STEP, LATE_ENDS_OF_INVOCATION_AND_STEP,
    STALE_INVOCATION_AND_STEP,
};
use genai_audit::keys::{STALE_STATUS, UNCLOSED_STATUS};
use genai_audit::{GenAiAuditProcessor, LeakPolicy};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span, SpanData, SpanProcessor};

const T0: u64 = 1_700_000_000_000_000_000;

fn at(ns_after_t0: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(T0 + ns_after_t0)
}

fn ms(n: u64) -> u64 {
    n * 1_000_000
}

// ---------------------------------------------------------------------------------
// A pipeline built by hand: the audit processor wraps a recording inner processor,
// and is itself registered through a thin wrapper that keeps the raw spans it is given
// and lets the test call the audit processor directly.

/// Registers a shared audit processor, keeping a copy of each raw span it ends.
#[derive(Debug)]
struct Shared {
    audit: Arc<GenAiAuditProcessor<Recorder>>,
    raw: Arc<Mutex<Vec<SpanData>>>,
}

impl SpanProcessor for Shared {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.audit.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.raw.lock().unwrap().push(span.clone());
        self.audit.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.audit.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.audit.shutdown_with_timeout(timeout)
    }
}

struct Rig {
    provider: SdkTracerProvider,
    audit: Arc<GenAiAuditProcessor<Recorder>>,
    recorder: Recorder,
    raw: Arc<Mutex<Vec<SpanData>>>,
    metrics: Metrics,
}

impl Rig {
    fn new(policy: LeakPolicy) -> Rig {
        let metrics = Metrics::new();
        let recorder = Recorder::default();
        let audit = Arc::new(metrics.audit(recorder.clone()).leak_policy(policy).build());
        let raw = Arc::new(Mutex::new(Vec::new()));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Shared {
                audit: audit.clone(),
                raw: raw.clone(),
            })
            .build();
        Rig {
            provider,
            audit,
            recorder,
            raw,
            metrics,
        }
    }

    fn tracer(&self) -> SdkTracer {
        self.provider.tracer("test")
    }

    /// The spans the inner processor received, in order.
    fn ended(&self) -> Vec<SpanData> {
        self.recorder.ended()
    }

    /// The inner processor's log as short strings: `end:<name>` and `shutdown`.
    fn sequence(&self) -> Vec<String> {
        self.recorder.sequence()
    }

    fn finding_counts(&self) -> Vec<FindingCount> {
        self.metrics.finding_counts()
    }

    fn tracked_spans(&self) -> i64 {
        self.metrics.tracked_spans()
    }

    fn assert_counts(&self, counts: &[(&str, &str, bool, u64)], tracked: i64) {
        self.metrics.assert_counts(counts, tracked)
    }
}

fn id_of(cx: &Context) -> SpanId {
    cx.span().span_context().span_id()
}

fn only(spans: &[SpanData], id: SpanId) -> &SpanData {
    let matching: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.span_id() == id)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "span {id} exported {} times",
        matching.len()
    );
    matching[0]
}

fn total_keys(span: &SpanData) -> Vec<String> {
    audit_keys(span)
        .into_iter()
        .filter(|k| k.starts_with("genai_audit.total."))
        .collect()
}

/// An invocation (started at T0), a step under it (T0 + 1 ms) and an ended generation
/// under the step (1000 in, 100 out). Returns the contexts of the invocation and step.
fn invocation_with_open_step(tracer: &SdkTracer) -> (Context, Context) {
    let inv = tracer
        .span_builder("invoke_agent coder")
        .with_start_time(at(0))
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "coder"),
        ])
        .start(tracer);
    let inv_cx = Context::current_with_span(inv);
    let step = tracer
        .span_builder("react step")
        .with_start_time(at(ms(1)))
        .with_attributes(vec![KeyValue::new("gen_ai.operation.name", "react")])
        .start_with_context(tracer, &inv_cx);
    let step_cx = inv_cx.with_span(step);
    let mut chat = tracer
        .span_builder("chat gpt-4o")
        .with_kind(SpanKind::Client)
        .with_start_time(at(ms(2)))
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
        ])
        .start_with_context(tracer, &step_cx);
    chat.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 1000));
    chat.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", 100));
    chat.end_with_timestamp(at(ms(500)));
    (inv_cx, step_cx)
}

fn assert_invocation_reports_open_step(inv: &SpanData) {
    assert_eq!(findings_of(inv), ["unclosed_child"]);
    assert_eq!(i64_of(inv, "genai_audit.leak.unclosed_children"), 1);
    assert_eq!(
        string_array(inv, "genai_audit.leak.unclosed_names"),
        ["react step"]
    );
    assert!(bool_of(inv, "genai_audit.total.partial"));
    assert_eq!(i64_of(inv, "genai_audit.total.generations"), 1);
    assert_eq!(i64_of(inv, "genai_audit.total.input_tokens"), 1000);
    assert_eq!(i64_of(inv, "genai_audit.total.output_tokens"), 100);
    assert_eq!(i64_of(inv, "genai_audit.steps"), 1);
}

// ---------------------------------------------------------------------------------
// A step still open when its invocation ends.

#[test]
fn flag_reports_the_open_step_and_its_late_end() {
    let h = Harness::with(|b| b.leak_policy(LeakPolicy::Flag));
    let tracer = h.tracer();
    let (inv_cx, step_cx) = invocation_with_open_step(&tracer);
    let inv_end = at(ms(900));
    inv_cx.span().end_with_timestamp(inv_end);

    let spans = h.exporter.get_finished_spans().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names, ["chat gpt-4o", "invoke_agent coder"]);
    let inv = only(&spans, id_of(&inv_cx));
    assert_invocation_reports_open_step(inv);
    assert_eq!(inv.end_time, inv_end);
    assert_eq!(
        h.finding_counts(),
        expect_counts(&[("unclosed_child", "invocation", false, 1)])
    );
    // The invocation stays as a tombstone while its step is open.
    assert_eq!(h.tracked_spans(), 2);

    step_cx.span().end_with_timestamp(at(ms(950)));
    let step = h.exported_with_id(id_of(&step_cx));
    assert_eq!(step.len(), 1);
    let step = &step[0];
    assert_eq!(findings_of(step), ["late_end"]);
    assert_eq!(str_of(step, "genai_audit.role"), "step");
    assert_eq!(i64_of(step, "genai_audit.step.index"), 1);
    assert_eq!(i64_of(step, "genai_audit.total.generations"), 1);
    assert_eq!(step.end_time, at(ms(950)));
    assert_eq!(step.status, Status::Unset);
    h.assert_counts(
        &[
            ("unclosed_child", "invocation", false, 1),
            ("late_end", "step", false, 1),
        ],
        0,
    );
    assert_eq!(h.exporter.get_finished_spans().unwrap().len(), 3);
}

#[test]
fn close_exports_the_open_step_once_closed_at_the_invocation_end() {
    let h = Harness::with(|b| b.leak_policy(LeakPolicy::Close));
    let tracer = h.tracer();
    let (inv_cx, step_cx) = invocation_with_open_step(&tracer);
    // Set after the start: not part of the span the audit closes.
    step_cx
        .span()
        .set_attribute(KeyValue::new("app.after_start", "x"));
    let inv_end = at(ms(900));
    inv_cx.span().end_with_timestamp(inv_end);

    let spans = h.exporter.get_finished_spans().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    // The closed step is exported before its invocation.
    assert_eq!(names, ["chat gpt-4o", "react step", "invoke_agent coder"]);
    let inv = only(&spans, id_of(&inv_cx));
    assert_invocation_reports_open_step(inv);
    assert_eq!(inv.status, Status::Unset);

    let step = only(&spans, id_of(&step_cx));
    assert_eq!(step.name, "react step");
    assert_eq!(step.span_context, *step_cx.span().span_context());
    assert_eq!(step.parent_span_id, id_of(&inv_cx));
    assert_eq!(step.span_kind, SpanKind::Internal);
    assert_eq!(step.start_time, at(ms(1)));
    assert_eq!(step.end_time, inv.end_time);
    assert_eq!(step.end_time, inv_end);
    assert_eq!(step.status, Status::error(UNCLOSED_STATUS));
    assert_eq!(UNCLOSED_STATUS, "unclosed when parent ended");
    assert_eq!(findings_of(step), ["closed_by_audit"]);
    assert_eq!(str_of(step, "genai_audit.role"), "step");
    assert_eq!(str_of(step, "gen_ai.operation.name"), "react");
    assert_eq!(value(step, "app.after_start"), None);
    assert_eq!(i64_of(step, "genai_audit.step.index"), 1);
    assert_eq!(i64_of(step, "genai_audit.total.generations"), 1);
    assert_eq!(i64_of(step, "genai_audit.total.input_tokens"), 1000);
    assert_eq!(
        h.finding_counts(),
        expect_counts(&[
            ("unclosed_child", "invocation", false, 1),
            ("closed_by_audit", "step", false, 1),
        ])
    );
    // The closed step stays tracked until its real end (README: "spans closed by the
    // audit awaiting their real end" count among the tracked spans).
    assert_eq!(h.tracked_spans(), 1);

    // The real end comes later: not exported again, only counted.
    step_cx.span().end_with_timestamp(at(ms(950)));
    assert_eq!(h.exported_with_id(id_of(&step_cx)).len(), 1);
    assert_eq!(h.exporter.get_finished_spans().unwrap().len(), 3);
    h.assert_counts(
        &[
            ("unclosed_child", "invocation", false, 1),
            ("closed_by_audit", "step", false, 1),
            ("late_end", "step", false, 1),
        ],
        0,
    );
}

// ---------------------------------------------------------------------------------
// Spans that never end: forgotten, or held in a Context that outlives shutdown.

#[test]
fn forgotten_and_held_spans_are_stale_at_shutdown_under_flag() {
    let rig = Rig::new(LeakPolicy::Flag);
    let tracer = rig.tracer();
    let forgotten = tracer.start("invoke_agent forgotten");
    std::mem::forget(forgotten);
    let held = Context::current_with_span(tracer.start("execute_tool held"));
    assert_eq!(rig.tracked_spans(), 2);
    assert!(rig.finding_counts().is_empty());

    rig.provider.shutdown().unwrap();
    assert_eq!(rig.sequence(), ["shutdown"]);
    rig.assert_counts(
        &[
            ("stale", "invocation", false, 1),
            ("stale", "tool", false, 1),
        ],
        0,
    );

    // The held span is dropped after shutdown: the SDK does not end it any more.
    drop(held);
    assert_eq!(rig.sequence(), ["shutdown"]);
    assert_eq!(
        rig.finding_counts(),
        expect_counts(&[
            ("stale", "invocation", false, 1),
            ("stale", "tool", false, 1),
        ])
    );
}

#[test]
fn forgotten_and_held_spans_are_closed_before_the_inner_shutdown_under_close() {
    let rig = Rig::new(LeakPolicy::Close);
    let tracer = rig.tracer();
    let forgotten = tracer
        .span_builder("invoke_agent forgotten")
        .with_start_time(at(0))
        .with_attributes(vec![KeyValue::new("app.k", "v")])
        .start(&tracer);
    let forgotten_id = forgotten.span_context().span_id();
    std::mem::forget(forgotten);
    let held = Context::current_with_span(
        tracer
            .span_builder("execute_tool held")
            .with_start_time(at(ms(1)))
            .start(&tracer),
    );
    assert_eq!(rig.tracked_spans(), 2);

    let before = SystemTime::now();
    rig.provider.shutdown().unwrap();
    let after = SystemTime::now();
    // Both closed spans reach the inner processor before its shutdown, oldest first.
    assert_eq!(
        rig.sequence(),
        [
            "end:invoke_agent forgotten",
            "end:execute_tool held",
            "shutdown"
        ]
    );
    let ended = rig.ended();
    let forgotten = only(&ended, forgotten_id);
    let held_span = only(&ended, id_of(&held));
    for (span, role) in [(forgotten, "invocation"), (held_span, "tool")] {
        assert_eq!(span.status, Status::error(STALE_STATUS), "{}", span.name);
        assert_eq!(
            findings_of(span),
            ["stale", "closed_by_audit"],
            "{}",
            span.name
        );
        assert_eq!(str_of(span, "genai_audit.role"), role);
        assert!(
            span.end_time >= before && span.end_time <= after,
            "{}: closed at the eviction time",
            span.name
        );
        assert_eq!(span.parent_span_id, SpanId::INVALID);
    }
    assert_eq!(STALE_STATUS, "evicted while open (stale)");
    assert_eq!(forgotten.start_time, at(0));
    assert_eq!(str_of(forgotten, "app.k"), "v");
    assert_eq!(held_span.start_time, at(ms(1)));
    rig.assert_counts(
        &[
            ("stale", "invocation", false, 1),
            ("closed_by_audit", "invocation", false, 1),
            ("stale", "tool", false, 1),
            ("closed_by_audit", "tool", false, 1),
        ],
        0,
    );

    drop(held);
    assert_eq!(rig.recorder.calls().len(), 3);
}

/// A forgotten invocation with an open generation under it.
fn forget_invocation_with_open_chat(tracer: &SdkTracer) -> (SpanId, SpanId) {
    let inv_cx = Context::current_with_span(tracer.start("invoke_agent forgotten"));
    let chat = tracer.start_with_context("chat gpt-4o", &inv_cx);
    let ids = (id_of(&inv_cx), chat.span_context().span_id());
    std::mem::forget(chat);
    std::mem::forget(inv_cx);
    ids
}

#[test]
fn forgotten_invocation_and_child_at_shutdown_under_close() {
    let rig = Rig::new(LeakPolicy::Close);
    let (inv_id, chat_id) = forget_invocation_with_open_chat(&rig.tracer());
    rig.provider.shutdown().unwrap();
    // The child first, then its parent, then the inner shutdown.
    assert_eq!(
        rig.sequence(),
        ["end:chat gpt-4o", "end:invoke_agent forgotten", "shutdown"]
    );
    let ended = rig.ended();
    let inv = only(&ended, inv_id);
    let chat = only(&ended, chat_id);
    assert_closed_with_open_child(inv, chat, "chat gpt-4o");
    assert_eq!(i64_of(inv, "genai_audit.leak.unclosed_children"), 1);
    assert_eq!(str_of(chat, "genai_audit.role"), "generation");
    assert_eq!(chat.end_time, inv.end_time);
    assert_eq!(chat.parent_span_id, inv_id);
    rig.assert_counts(
        &[
            ("stale", "invocation", false, 1),
            ("closed_by_audit", "invocation", false, 1),
            ("unclosed_child", "invocation", false, 1),
            ("closed_by_audit", "generation", false, 1),
        ],
        0,
    );
}

#[test]
fn forgotten_invocation_and_child_at_shutdown_under_flag() {
    let rig = Rig::new(LeakPolicy::Flag);
    forget_invocation_with_open_chat(&rig.tracer());
    assert_eq!(rig.tracked_spans(), 2);
    rig.provider.shutdown().unwrap();
    assert_eq!(rig.sequence(), ["shutdown"]);
    rig.assert_counts(
        &[
            ("stale", "invocation", false, 1),
            ("stale", "generation", false, 1),
        ],
        0,
    );
}

// ---------------------------------------------------------------------------------
// Spans ended twice.

#[test]
fn spans_ended_twice_are_enriched_once_and_counted_once() {
    let rig = Rig::new(LeakPolicy::Flag);
    let tracer = rig.tracer();
    let inv_cx = Context::current_with_span(
        tracer
            .span_builder("invoke_agent coder")
            .with_start_time(at(0))
            .start(&tracer),
    );
    let mut chat = tracer
        .span_builder("chat gpt-4o")
        .with_start_time(at(ms(1)))
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", 1000),
            KeyValue::new("gen_ai.usage.output_tokens", 100),
        ])
        .start_with_context(&tracer, &inv_cx);
    let chat_id = chat.span_context().span_id();
    chat.end_with_timestamp(at(ms(2)));
    // The SDK ignores a second end.
    chat.end_with_timestamp(at(ms(3)));
    assert_eq!(rig.ended().len(), 1);

    // A second on_end reaching the processor anyway (another SDK, a buggy wrapper):
    // the span is no longer tracked, so it gets its role, usage and cost only.
    let raw_chat = rig.raw.lock().unwrap()[0].clone();
    assert_eq!(raw_chat.span_context.span_id(), chat_id);
    rig.audit.on_end(raw_chat);
    let price = direct_price(Some("openai"), "gpt-4o", 1000, 100, T0 + ms(1));
    let ended = rig.ended();
    assert_eq!(ended.len(), 2);
    let (first, second) = (&ended[0], &ended[1]);
    for span in [first, second] {
        assert_eq!(span.span_context.span_id(), chat_id);
        assert_eq!(str_of(span, "genai_audit.role"), "generation");
        assert!((f64_of(span, "genai_audit.cost_usd") - price).abs() < 1e-12);
        assert_eq!(str_of(span, "genai_audit.cost.source"), "computed");
        assert!(findings_of(span).is_empty());
    }
    assert_eq!(i64_of(first, "genai_audit.cumulative.input_tokens"), 1000);
    assert_eq!(i64_of(first, "genai_audit.cumulative.generations"), 1);
    assert!(
        audit_keys(second)
            .iter()
            .all(|k| !k.starts_with("genai_audit.cumulative.")),
        "{:?}",
        audit_keys(second)
    );

    inv_cx.span().end_with_timestamp(at(ms(10)));
    inv_cx.span().end_with_timestamp(at(ms(11)));
    let ended = rig.ended();
    assert_eq!(ended.len(), 3);
    let inv = &ended[2];
    // Counted once in the rollup.
    assert_eq!(i64_of(inv, "genai_audit.total.generations"), 1);
    assert_eq!(i64_of(inv, "genai_audit.total.input_tokens"), 1000);
    assert_eq!(i64_of(inv, "genai_audit.total.output_tokens"), 100);
    assert!((f64_of(inv, "genai_audit.total.cost_usd") - price).abs() < 1e-12);
    assert!(findings_of(inv).is_empty());

    // The invocation's second end: role only.
    let raw_inv = rig.raw.lock().unwrap()[1].clone();
    assert_eq!(raw_inv.span_context.span_id(), id_of(&inv_cx));
    rig.audit.on_end(raw_inv);
    let ended = rig.ended();
    assert_eq!(ended.len(), 4);
    assert_eq!(audit_keys(&ended[3]), ["genai_audit.role"]);
    assert_eq!(str_of(&ended[3], "genai_audit.role"), "invocation");

    assert!(rig.finding_counts().is_empty());
    assert_eq!(rig.tracked_spans(), 0);
}

// ---------------------------------------------------------------------------------
// Parents the processor never saw.

#[test]
fn children_of_unknown_parents_are_tracked_as_roots() {
    let h = Harness::new();
    let tracer = h.tracer();
    let remote_parent = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let local_unknown_parent = SpanContext::new(
        TraceId::from_hex("5bf92f3577b34da6a3ce929d0e0e4737").unwrap(),
        SpanId::from_hex("10f067aa0ba902b8").unwrap(),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    for parent in [remote_parent, local_unknown_parent] {
        let cx = Context::new().with_remote_span_context(parent.clone());
        // An invocation with a step and a generation, under the unknown parent.
        let inv_cx = cx.with_span(tracer.start_with_context("invoke_agent coder", &cx));
        let step_cx = inv_cx.with_span(tracer.start_with_context("react step", &inv_cx));
        let mut chat = tracer
            .span_builder("chat gpt-4o")
            .with_attributes(vec![
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.request.model", "gpt-4o"),
                KeyValue::new("gen_ai.usage.input_tokens", 40),
                KeyValue::new("gen_ai.usage.output_tokens", 4),
            ])
            .start_with_context(&tracer, &step_cx);
        chat.end();
        step_cx.span().end();
        inv_cx.span().end();
        // A step, a generation and a plain span directly under the unknown parent.
        tracer.start_with_context("react step", &cx).end();
        let mut lone = tracer
            .span_builder("chat gpt-4o")
            .with_attributes(vec![
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.request.model", "gpt-4o"),
                KeyValue::new("gen_ai.usage.input_tokens", 7),
            ])
            .start_with_context(&tracer, &cx);
        lone.end();
        tracer.start_with_context("GET /health", &cx).end();
    }

    let spans = h.exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 12);
    for trace in spans.chunks(6) {
        let [chat, step, inv, lone_step, lone_chat, plain] = trace else {
            unreachable!()
        };
        for span in trace {
            assert!(findings_of(span).is_empty(), "{}", span.name);
        }
        assert_eq!(inv.parent_span_id, lone_step.parent_span_id);
        assert_eq!(i64_of(inv, "genai_audit.total.input_tokens"), 40);
        assert_eq!(i64_of(inv, "genai_audit.total.generations"), 1);
        assert_eq!(i64_of(inv, "genai_audit.steps"), 1);
        assert_eq!(i64_of(step, "genai_audit.step.index"), 1);
        assert_eq!(i64_of(chat, "genai_audit.cumulative.input_tokens"), 40);
        // Without an invocation: a role, no position, no cumulative totals.
        assert_eq!(str_of(lone_step, "genai_audit.role"), "step");
        assert_eq!(value(lone_step, "genai_audit.step.index"), None);
        assert_eq!(str_of(lone_chat, "genai_audit.role"), "generation");
        assert!(value(lone_chat, "genai_audit.cost_usd").is_some());
        assert_eq!(
            value(lone_chat, "genai_audit.cumulative.input_tokens"),
            None
        );
        assert!(audit_keys(plain).is_empty());
    }
    for (span, parent) in [
        (&spans[2], "00f067aa0ba902b7"),
        (&spans[5], "00f067aa0ba902b7"),
        (&spans[8], "10f067aa0ba902b8"),
        (&spans[11], "10f067aa0ba902b8"),
    ] {
        assert_eq!(span.parent_span_id, SpanId::from_hex(parent).unwrap());
    }
    assert_eq!(
        spans[2].span_context.trace_id(),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
    );
    assert!(h.finding_counts().is_empty());
    // The local parent never seen starting may still end (and be recognised then): it
    // holds its children's totals until it ends or is evicted. A remote parent ends in
    // another process: nothing is kept for it.
    assert_eq!(h.tracked_spans(), 1);
}

// ---------------------------------------------------------------------------------
// Parents that end before their children start.

#[test]
fn recognised_child_of_an_ended_invocation_is_a_late_start() {
    let h = Harness::new();
    let tracer = h.tracer();
    let inv_cx = Context::current_with_span(tracer.start("invoke_agent coder"));
    inv_cx.span().end();
    let inv = h.exported_with_id(id_of(&inv_cx));
    assert_eq!(inv.len(), 1);
    assert!(findings_of(&inv[0]).is_empty());
    assert_eq!(i64_of(&inv[0], "genai_audit.steps"), 0);
    assert!(total_keys(&inv[0]).is_empty());

    let step_cx = inv_cx.with_span(tracer.start_with_context("react step", &inv_cx));
    let mut chat = tracer
        .span_builder("chat gpt-4o")
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", 10),
        ])
        .start_with_context(&tracer, &step_cx);
    chat.end();
    step_cx.span().end();

    let step = h.exported_with_id(id_of(&step_cx));
    assert_eq!(step.len(), 1);
    let step = &step[0];
    assert_eq!(findings_of(step), ["late_start"]);
    assert_eq!(str_of(step, "genai_audit.role"), "step");
    // Its invocation has ended: no position, but its own subtree rolls up.
    assert_eq!(value(step, "genai_audit.step.index"), None);
    assert_eq!(i64_of(step, "genai_audit.total.generations"), 1);
    assert_eq!(i64_of(step, "genai_audit.total.input_tokens"), 10);
    let spans = h.exporter.get_finished_spans().unwrap();
    let chat = spans.iter().find(|s| s.name == "chat gpt-4o").unwrap();
    assert!(findings_of(chat).is_empty());
    assert_eq!(value(chat, "genai_audit.cumulative.input_tokens"), None);
    assert_eq!(spans.len(), 3);
    h.assert_counts(&[("late_start", "step", false, 1)], 0);
}

#[test]
fn late_children_are_no_finding_unless_both_are_recognised() {
    let h = Harness::new();
    let tracer = h.tracer();
    // A recognised parent ended, a plain child starts after.
    let inv_cx = Context::current_with_span(tracer.start("invoke_agent coder"));
    inv_cx.span().end();
    tracer.start_with_context("POST /v1/chat", &inv_cx).end();
    // A plain parent ended, a recognised child starts after.
    let plain_cx = Context::current_with_span(tracer.start("handle request"));
    plain_cx.span().end();
    tracer.start_with_context("react step", &plain_cx).end();

    let spans = h.exporter.get_finished_spans().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "invoke_agent coder",
            "POST /v1/chat",
            "handle request",
            "react step"
        ]
    );
    for span in &spans {
        assert!(findings_of(span).is_empty(), "{}", span.name);
    }
    assert!(audit_keys(&spans[1]).is_empty());
    assert!(audit_keys(&spans[2]).is_empty());
    assert_eq!(str_of(&spans[3], "genai_audit.role"), "step");
    assert_eq!(spans[3].parent_span_id, id_of(&plain_cx));
    assert!(h.finding_counts().is_empty());
    assert_eq!(h.tracked_spans(), 0);
}

#[test]
fn late_start_under_an_invocation_kept_as_a_tombstone() {
    let h = Harness::new();
    let tracer = h.tracer();
    let (inv_cx, step_cx) = invocation_with_open_step(&tracer);
    inv_cx.span().end_with_timestamp(at(ms(900)));
    // A generation starts under the invocation after it ended (its step is open).
    let mut late = tracer
        .span_builder("chat gpt-4o")
        .with_start_time(at(ms(910)))
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", 5),
            KeyValue::new("gen_ai.usage.output_tokens", 1),
        ])
        .start_with_context(&tracer, &inv_cx);
    let late_id = late.span_context().span_id();
    late.end_with_timestamp(at(ms(920)));
    step_cx.span().end_with_timestamp(at(ms(930)));

    let late = h.exported_with_id(late_id);
    assert_eq!(late.len(), 1);
    assert_eq!(findings_of(&late[0]), ["late_start"]);
    // It still joins its invocation's running totals.
    assert_eq!(
        i64_of(&late[0], "genai_audit.cumulative.input_tokens"),
        1005
    );
    assert_eq!(i64_of(&late[0], "genai_audit.cumulative.generations"), 2);
    let step = h.exported_with_id(id_of(&step_cx));
    assert_eq!(findings_of(&step[0]), ["late_end"]);
    h.assert_counts(
        &[
            ("unclosed_child", "invocation", false, 1),
            ("late_start", "generation", false, 1),
            ("late_end", "step", false, 1),
        ],
        0,
    );
}

#[test]
fn late_start_under_an_ended_step_rolls_up_to_the_open_invocation() {
    let h = Harness::new();
    let tracer = h.tracer();
    let inv_cx = Context::current_with_span(tracer.start("invoke_agent coder"));
    let step_cx = inv_cx.with_span(tracer.start_with_context("react step", &inv_cx));
    step_cx.span().end();
    let mut late = tracer
        .span_builder("chat gpt-4o")
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", 500),
            KeyValue::new("gen_ai.usage.output_tokens", 50),
        ])
        .start_with_context(&tracer, &step_cx);
    let late_id = late.span_context().span_id();
    late.end();
    inv_cx.span().end();

    let late = &h.exported_with_id(late_id)[0];
    assert_eq!(findings_of(late), ["late_start"]);
    assert_eq!(late.parent_span_id, id_of(&step_cx));
    assert_eq!(i64_of(late, "genai_audit.cumulative.input_tokens"), 500);
    assert_eq!(i64_of(late, "genai_audit.cumulative.generations"), 1);
    let inv = &h.exported_with_id(id_of(&inv_cx))[0];
    assert!(findings_of(inv).is_empty());
    assert_eq!(i64_of(inv, "genai_audit.total.input_tokens"), 500);
    assert_eq!(i64_of(inv, "genai_audit.total.output_tokens"), 50);
    assert_eq!(i64_of(inv, "genai_audit.total.generations"), 1);
    assert_eq!(i64_of(inv, "genai_audit.steps"), 1);
    let step = &h.exported_with_id(id_of(&step_cx))[0];
    assert!(findings_of(step).is_empty());
    assert!(total_keys(step).is_empty());
    h.assert_counts(&[("late_start", "generation", false, 1)], 0);
}

// ---------------------------------------------------------------------------------
// Eviction by age, with a clock the test moves.

/// An old invocation (with an ended generation, so it has totals) and a younger one,
/// then the clock is 61 s on and a third invocation starts. Returns the contexts.
fn age_out(
    tracer: &SdkTracer,
    offset: &AtomicU64,
    tracked_before: impl Fn() -> i64,
) -> (Context, Context, Context) {
    let old_cx = Context::current_with_span(tracer.start("invoke_agent old"));
    let mut chat = tracer
        .span_builder("chat gpt-4o")
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", 1000),
            KeyValue::new("gen_ai.usage.output_tokens", 100),
        ])
        .start_with_context(tracer, &old_cx);
    chat.end();
    offset.store(30, Ordering::SeqCst);
    let young_cx = Context::current_with_span(tracer.start("invoke_agent young"));
    assert_eq!(tracked_before(), 2, "nothing is 60 s old yet");
    offset.store(61, Ordering::SeqCst);
    let trigger_cx = Context::current_with_span(tracer.start("invoke_agent trigger"));
    (old_cx, young_cx, trigger_cx)
}

#[test]
fn age_eviction_counts_the_old_span_stale_under_flag() {
    let (h, offset) = skewed_harness(LeakPolicy::Flag);
    let tracer = h.tracer();
    let (old_cx, young_cx, trigger_cx) = age_out(&tracer, &offset, || h.tracked_spans());
    h.assert_counts(&[("stale", "invocation", false, 1)], 2);
    // Nothing exported for it yet (only the generation).
    assert_eq!(h.exporter.get_finished_spans().unwrap().len(), 1);

    // Its real end: exported with `stale`, its role, no totals; not counted again.
    old_cx.span().end();
    let old = h.exported_with_id(id_of(&old_cx));
    assert_eq!(old.len(), 1);
    assert_eq!(findings_of(&old[0]), ["stale"]);
    assert_eq!(str_of(&old[0], "genai_audit.role"), "invocation");
    assert!(total_keys(&old[0]).is_empty(), "{:?}", audit_keys(&old[0]));
    assert_eq!(old[0].status, Status::Unset);
    young_cx.span().end();
    trigger_cx.span().end();
    for cx in [&young_cx, &trigger_cx] {
        let span = h.exported_with_id(id_of(cx));
        assert!(findings_of(&span[0]).is_empty());
    }
    h.assert_counts(&[("stale", "invocation", false, 1)], 0);
}

#[test]
fn age_eviction_exports_the_old_span_closed_under_close() {
    let (h, offset) = skewed_harness(LeakPolicy::Close);
    let tracer = h.tracer();
    let before = SystemTime::now();
    let (old_cx, young_cx, trigger_cx) = age_out(&tracer, &offset, || h.tracked_spans());
    let after = SystemTime::now();
    let old = h.exported_with_id(id_of(&old_cx));
    assert_eq!(old.len(), 1, "exported closed at the eviction");
    let old = &old[0];
    assert_eq!(findings_of(old), ["stale", "closed_by_audit"]);
    assert_eq!(old.status, Status::error(STALE_STATUS));
    assert_eq!(str_of(old, "genai_audit.role"), "invocation");
    // Closed at the processor's clock's "now".
    assert!(old.end_time >= before + Duration::from_secs(61));
    assert!(old.end_time <= after + Duration::from_secs(61));
    assert_eq!(i64_of(old, "genai_audit.total.generations"), 1);
    assert_eq!(i64_of(old, "genai_audit.total.input_tokens"), 1000);
    h.assert_counts(
        &[
            ("stale", "invocation", false, 1),
            ("closed_by_audit", "invocation", false, 1),
        ],
        2,
    );

    // Its real end: dropped, counted as late_end.
    old_cx.span().end();
    assert_eq!(h.exported_with_id(id_of(&old_cx)).len(), 1);
    young_cx.span().end();
    trigger_cx.span().end();
    assert_eq!(h.exporter.get_finished_spans().unwrap().len(), 4);
    h.assert_counts(
        &[
            ("stale", "invocation", false, 1),
            ("closed_by_audit", "invocation", false, 1),
            ("late_end", "invocation", false, 1),
        ],
        0,
    );
}

#[test]
fn age_eviction_is_amortised_at_most_eight_per_start() {
    let (offset, clock) = skewed_clock();
    let h = Harness::with(|b| {
        b.with_max_span_age(Duration::from_secs(60))
            .with_clock(clock)
    });
    let tracer = h.tracer();
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(Context::current_with_span(tracer.start("invoke_agent old")));
    }
    assert_eq!(h.tracked_spans(), 20);
    offset.store(61, Ordering::SeqCst);
    let mut progress = Vec::new();
    for _ in 0..3 {
        held.push(Context::current_with_span(
            tracer.start("invoke_agent trigger"),
        ));
        progress.push((h.finding_counts()[0].3, h.tracked_spans()));
    }
    // (stale so far, tracked): 8 evicted per start, the new span tracked.
    assert_eq!(progress, [(8, 13), (16, 6), (20, 3)]);
    assert_eq!(h.tracked_spans(), 3);
    assert_eq!(
        h.finding_counts(),
        expect_counts(&[("stale", "invocation", false, 20)])
    );
}

/// An old invocation with an open step; the clock moves 61 s on and another
/// invocation starts.
fn age_out_with_open_step(tracer: &SdkTracer, offset: &AtomicU64) -> (Context, Context) {
    let inv_cx = Context::current_with_span(tracer.start("invoke_agent old"));
    let step_cx = inv_cx.with_span(tracer.start_with_context("react step", &inv_cx));
    offset.store(61, Ordering::SeqCst);
    tracer.start("invoke_agent trigger").end();
    (inv_cx, step_cx)
}

#[test]
fn age_eviction_of_a_parent_with_an_open_step_under_flag() {
    let (h, offset) = skewed_harness(LeakPolicy::Flag);
    let (inv_cx, step_cx) = age_out_with_open_step(&h.tracer(), &offset);
    assert_eq!(h.finding_counts(), expect_counts(STALE_INVOCATION_AND_STEP));
    assert_eq!(h.exporter.get_finished_spans().unwrap().len(), 1);
    step_cx.span().end();
    inv_cx.span().end();
    for cx in [&step_cx, &inv_cx] {
        let span = h.exported_with_id(id_of(cx));
        assert_eq!(span.len(), 1);
        assert_eq!(findings_of(&span[0]), ["stale"], "{}", span[0].name);
    }
    h.assert_counts(STALE_INVOCATION_AND_STEP, 0);
}

#[test]
fn age_eviction_closes_the_open_step_with_its_parent_under_close() {
    let (h, offset) = skewed_harness(LeakPolicy::Close);
    let (inv_cx, step_cx) = age_out_with_open_step(&h.tracer(), &offset);
    let spans = h.exporter.get_finished_spans().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    // Children first, then the evicted parent, then the span that triggered it all.
    assert_eq!(
        names,
        ["react step", "invoke_agent old", "invoke_agent trigger"]
    );
    let inv = only(&spans, id_of(&inv_cx));
    let step = only(&spans, id_of(&step_cx));
    assert_closed_with_open_child(inv, step, "react step");
    assert_eq!(i64_of(inv, "genai_audit.leak.unclosed_children"), 1);
    assert_eq!(step.end_time, inv.end_time);
    assert_eq!(h.finding_counts(), expect_counts(CLOSED_WITH_OPEN_STEP));
    // Their real ends: not exported again, counted as late_end.
    step_cx.span().end();
    inv_cx.span().end();
    assert_eq!(h.exporter.get_finished_spans().unwrap().len(), 3);
    h.assert_counts(
        &[CLOSED_WITH_OPEN_STEP, LATE_ENDS_OF_INVOCATION_AND_STEP].concat(),
        0,
    );
}

/// A harness whose clock, once armed, starts and ends a tool call under the current
/// context the next time it is read (re-entering the processor), then disarms.
fn reentering_clock() -> (Harness, Arc<std::sync::atomic::AtomicBool>) {
    let tracer_slot: Arc<Mutex<Option<SdkTracer>>> = Arc::default();
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (slot, fire) = (tracer_slot.clone(), armed.clone());
    let h = Harness::with(|b| {
        b.with_clock(move || {
            if fire.swap(false, Ordering::SeqCst) {
                let tracer = slot.lock().expect("lock").clone();
                if let Some(tracer) = tracer {
                    tracer.start("execute_tool from the clock").end();
                }
            }
            SystemTime::now()
        })
    });
    *tracer_slot.lock().expect("lock") = Some(h.tracer());
    (h, armed)
}

/// The names of the exported spans, sorted, all of trace `trace`.
fn exported_names_in(h: &Harness, trace: opentelemetry::trace::TraceId) -> Vec<String> {
    let spans = h.exporter.get_finished_spans().unwrap();
    assert!(spans.iter().all(|s| s.span_context.trace_id() == trace));
    let mut names: Vec<String> = spans.iter().map(|s| s.name.to_string()).collect();
    names.sort_unstable();
    names
}

/// A clock from the builder runs outside the processor's locks: one that starts a span
/// of the same trace while a step starts (re-entering the processor for the trace whose
/// step it is timing) neither hangs nor loses a span.
#[test]
fn a_clock_that_starts_a_span_runs_outside_the_locks() {
    let (h, armed) = reentering_clock();
    let tracer = h.tracer();
    let invocation = Context::current_with_span(tracer.start("invoke_agent coder"));
    {
        let _current = invocation.clone().attach();
        armed.store(true, Ordering::SeqCst);
        tracer.start("react step").end();
    }
    assert!(
        !armed.load(Ordering::SeqCst),
        "the clock ran at the step's start"
    );
    invocation.span().end();
    let trace = invocation.span().span_context().trace_id();
    assert_eq!(
        exported_names_in(&h, trace),
        [
            "execute_tool from the clock",
            "invoke_agent coder",
            "react step"
        ]
    );
    h.assert_counts(&[], 0);
}

/// The same when the clock is read to start a pending entry: a generation recognised
/// only at its end hands its totals to a parent the processor never saw start.
#[test]
fn a_clock_read_for_a_pending_entry_runs_outside_the_locks() {
    let (h, armed) = reentering_clock();
    let tracer = h.tracer();
    // Nothing is tracked yet: the root and the call start untracked.
    let root = Context::current_with_span(tracer.start("GET /chat"));
    {
        let _current = root.clone().attach();
        let mut call = tracer.start("model call");
        call.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
        call.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 5));
        armed.store(true, Ordering::SeqCst);
        call.end();
    }
    assert!(
        !armed.load(Ordering::SeqCst),
        "the clock ran for the pending entry"
    );
    root.span().end();
    let trace = root.span().span_context().trace_id();
    assert_eq!(
        exported_names_in(&h, trace),
        ["GET /chat", "execute_tool from the clock", "model call"]
    );
    h.assert_counts(&[], 0);
}
