//! One engine, every edge (`DESIGN.md` §13): every recording in the repository (the
//! JavaScript and Python agents' trace scripts and OTLP exports, and the scripts of
//! the tests) goes through the SDK processor (a real `SdkTracerProvider`) and through
//! the event API ([`Engine`]) with the same events at the same times, under all four
//! policy pairs; the exported spans (every attribute, the status of closed spans) and
//! the metric events (findings by code, role and repair; priced calls; invocations)
//! must be identical.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use genai_audit::engine::{AuditEvent, ClosedSpan, Engine, Parent, SpanEnd, SpanStart, Verdict};
use genai_audit::script::{Event, TraceScript};
use genai_audit::{ContaminationPolicy, GenAiAuditProcessor, LeakPolicy};
use opentelemetry::trace::{
    SpanId, SpanKind, Status, TraceContextExt, TraceId, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::cli_support::parse_lines;
use crate::common::{all_finding_counts, Metrics, Recorder};

/// One event of a recording, in the order both edges see it.
#[derive(Debug, Clone)]
enum Step {
    Start {
        label: String,
        parent: Option<String>,
        name: String,
        kind: SpanKind,
        time: u64,
        attributes: Vec<KeyValue>,
    },
    Set {
        label: String,
        attributes: Vec<KeyValue>,
    },
    End {
        label: String,
        time: u64,
        status: Status,
    },
}

/// A span as exported: every attribute (sorted, as text) and its status.
type Exported = BTreeMap<String, (Vec<(String, String)>, String)>;

/// What an edge gave: the spans it exported by label, and its metric events summed
/// (findings by code, role and repair; calls; cost; invocations).
#[derive(Debug, PartialEq)]
struct Outcome {
    spans: Exported,
    findings: Vec<(String, String, bool, u64)>,
    cost_micro_usd: i64,
    invocations: u64,
}

const POLICIES: [(LeakPolicy, ContaminationPolicy); 4] = [
    (LeakPolicy::Flag, ContaminationPolicy::Flag),
    (LeakPolicy::Flag, ContaminationPolicy::Repair),
    (LeakPolicy::Close, ContaminationPolicy::Flag),
    (LeakPolicy::Close, ContaminationPolicy::Repair),
];

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// A value as text, with its type (so that `"1"` and `1` differ).
fn text(value: &Value) -> String {
    use opentelemetry::Array;
    match value {
        Value::Bool(b) => format!("bool {b}"),
        Value::I64(i) => format!("int {i}"),
        Value::F64(f) => format!("double {f:?}"),
        Value::String(s) => format!("string {s}"),
        Value::Array(Array::String(items)) => {
            let items: Vec<&str> = items.iter().map(|s| s.as_str()).collect();
            format!("strings {items:?}")
        }
        Value::Array(Array::I64(items)) => format!("ints {items:?}"),
        Value::Array(Array::F64(items)) => format!("doubles {items:?}"),
        Value::Array(Array::Bool(items)) => format!("bools {items:?}"),
        other => format!("other {other}"),
    }
}

fn sorted(attributes: &[KeyValue]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = attributes
        .iter()
        .map(|kv| (kv.key.to_string(), text(&kv.value)))
        .collect();
    out.sort();
    out
}

/// The steps through the SDK processor: a real provider, the processor's clock at the
/// time of each step, the provider shut down after the last one.
fn through_sdk(steps: &[Step], leak: LeakPolicy, contamination: ContaminationPolicy) -> Outcome {
    let now = Arc::new(AtomicU64::new(0));
    let clock = Arc::clone(&now);
    let recorder = Recorder::default();
    let metrics = Metrics::new();
    let audit = GenAiAuditProcessor::builder(recorder.clone())
        .with_meter_provider(metrics.provider.clone())
        .with_disabled(false)
        .leak_policy(leak)
        .contamination_policy(contamination)
        .with_clock(move || time(clock.load(Ordering::SeqCst)))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(audit)
        .build();
    let tracer = provider.tracer("equivalence");
    let mut live: HashMap<String, Context> = HashMap::new();
    let mut last = 0;
    for step in steps {
        match step {
            Step::Start {
                label,
                parent,
                name,
                kind,
                time: t,
                attributes,
            } => {
                now.store(*t, Ordering::SeqCst);
                last = last.max(*t);
                let builder = tracer
                    .span_builder(name.clone())
                    .with_kind(kind.clone())
                    .with_start_time(time(*t))
                    .with_attributes(attributes.clone());
                let parent_cx = parent
                    .as_ref()
                    .and_then(|p| live.get(p))
                    .cloned()
                    .unwrap_or_default();
                let span = tracer.build_with_context(builder, &parent_cx);
                live.insert(label.clone(), Context::new().with_span(span));
            }
            Step::Set { label, attributes } => {
                if let Some(cx) = live.get(label) {
                    cx.span().set_attributes(attributes.clone());
                }
            }
            Step::End {
                label,
                time: t,
                status,
            } => {
                now.store(*t, Ordering::SeqCst);
                last = last.max(*t);
                if let Some(cx) = live.get(label) {
                    let span = cx.span();
                    if *status != Status::Unset {
                        span.set_status(status.clone());
                    }
                    span.end_with_timestamp(time(*t));
                }
            }
        }
    }
    now.store(last, Ordering::SeqCst);
    provider.shutdown().expect("shutdown");
    let mut labels: HashMap<SpanId, String> = HashMap::new();
    for (label, cx) in &live {
        labels.insert(cx.span().span_context().span_id(), label.clone());
    }
    let mut spans = Exported::new();
    for span in recorder.ended() {
        let label = labels[&span.span_context.span_id()].clone();
        spans
            .entry(label)
            .or_insert((sorted(&span.attributes), format!("{:?}", span.status)));
    }
    drop(live);
    metrics.provider.force_flush().expect("metrics");
    let findings = all_finding_counts(&metrics.points("genai_audit.findings"))
        .into_iter()
        .filter(|f| f.3 > 0)
        .collect();
    let cost: f64 = metrics
        .points("genai_audit.cost")
        .iter()
        .map(|(_, v)| *v)
        .sum();
    let invocations = metrics
        .histogram("genai_audit.invocation.tokens")
        .iter()
        .map(|p| p.count)
        .sum::<u64>()
        / 2;
    Outcome {
        spans,
        findings,
        cost_micro_usd: (cost * 1e6).round() as i64,
        invocations,
    }
}

/// What an edge hands the engine of a span's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hand {
    /// Every attribute.
    All,
    /// Only those the engine reads ([`Engine::reads`]).
    Read,
}

/// The steps through the event API, with ids of its own.
fn through_engine(
    steps: &[Step],
    (leak, contamination): (LeakPolicy, ContaminationPolicy),
    hand: Hand,
) -> Outcome {
    let engine = Engine::builder()
        .with_disabled(false)
        .leak_policy(leak)
        .contamination_policy(contamination)
        .build();
    let handed = |attributes: &[KeyValue]| -> Vec<KeyValue> {
        match hand {
            Hand::All => attributes.to_vec(),
            Hand::Read => attributes
                .iter()
                .filter(|kv| engine.reads(kv.key.as_str()))
                .cloned()
                .collect(),
        }
    };
    struct Open {
        trace_id: TraceId,
        span_id: SpanId,
        parent: Parent,
        name: String,
        kind: SpanKind,
        start: u64,
        attributes: Vec<KeyValue>,
    }
    let mut live: HashMap<String, Open> = HashMap::new();
    let mut by_id: HashMap<SpanId, String> = HashMap::new();
    let mut spans = Exported::new();
    let mut events: Vec<AuditEvent> = Vec::new();
    let (mut next_span, mut next_trace, mut last) = (0u64, 0u128, 0u64);
    let closed = |shut: Vec<ClosedSpan>,
                  told: Vec<AuditEvent>,
                  live: &HashMap<String, Open>,
                  by_id: &HashMap<SpanId, String>,
                  spans: &mut Exported,
                  events: &mut Vec<AuditEvent>| {
        for c in shut {
            let label = &by_id[&c.span_id];
            let mut attributes = live[label].attributes.clone();
            c.writes.apply(&mut attributes);
            spans
                .entry(label.clone())
                .or_insert((sorted(&attributes), format!("{:?}", c.status)));
        }
        events.extend(told);
    };
    for step in steps {
        match step {
            Step::Start {
                label,
                parent,
                name,
                kind,
                time: t,
                attributes,
            } => {
                last = last.max(*t);
                next_span += 1;
                let span_id = SpanId::from(next_span);
                let (trace_id, parent) = match parent.as_ref().and_then(|p| live.get(p)) {
                    Some(p) => (p.trace_id, Parent::Local(p.span_id)),
                    None => {
                        next_trace += 1;
                        (TraceId::from(next_trace), Parent::Root)
                    }
                };
                let verdict = engine.start(&SpanStart {
                    trace_id,
                    span_id,
                    parent,
                    name,
                    kind: kind.clone(),
                    start_time: time(*t),
                    attributes: &handed(attributes),
                    now: time(*t),
                });
                by_id.insert(span_id, label.clone());
                live.insert(
                    label.clone(),
                    Open {
                        trace_id,
                        span_id,
                        parent,
                        name: name.clone(),
                        kind: kind.clone(),
                        start: *t,
                        attributes: attributes.clone(),
                    },
                );
                closed(
                    verdict.closed,
                    verdict.events,
                    &live,
                    &by_id,
                    &mut spans,
                    &mut events,
                );
            }
            Step::Set { label, attributes } => {
                if let Some(open) = live.get_mut(label) {
                    open.attributes.extend(attributes.iter().cloned());
                }
            }
            Step::End {
                label,
                time: t,
                status,
            } => {
                last = last.max(*t);
                let Some(open) = live.get(label) else {
                    continue;
                };
                let verdict = engine.end(&SpanEnd {
                    trace_id: open.trace_id,
                    span_id: open.span_id,
                    parent: open.parent,
                    name: &open.name,
                    kind: open.kind.clone(),
                    start_time: time(open.start),
                    end_time: time(*t),
                    status,
                    attributes: &handed(&open.attributes),
                    now: time(*t),
                });
                let mut attributes = open.attributes.clone();
                let Verdict {
                    writes,
                    forward,
                    closed: shut,
                    events: told,
                } = verdict;
                closed(shut, told, &live, &by_id, &mut spans, &mut events);
                if forward {
                    writes.apply(&mut attributes);
                    spans
                        .entry(label.clone())
                        .or_insert((sorted(&attributes), format!("{status:?}")));
                }
            }
        }
    }
    let verdict = engine.shutdown(time(last));
    closed(
        verdict.closed,
        verdict.events,
        &live,
        &by_id,
        &mut spans,
        &mut events,
    );
    summarise(spans, &events)
}

/// The metric events summed as the SDK's instruments sum them.
fn summarise(spans: Exported, events: &[AuditEvent]) -> Outcome {
    let mut findings: BTreeMap<(String, String, bool), u64> = BTreeMap::new();
    let (mut cost, mut invocations) = (0.0, 0);
    for event in events {
        match event {
            AuditEvent::Finding {
                code,
                role,
                repaired,
            } => {
                *findings
                    .entry((
                        code.as_str().to_owned(),
                        role.as_str().to_owned(),
                        *repaired,
                    ))
                    .or_default() += 1;
            }
            AuditEvent::Call(call) => cost += call.cost_usd.unwrap_or(0.0),
            AuditEvent::Invocation(_) => invocations += 1,
            _ => {}
        }
    }
    Outcome {
        spans,
        findings: findings
            .into_iter()
            .map(|((code, role, repaired), n)| (code, role, repaired, n))
            .collect(),
        cost_micro_usd: (cost * 1e6).round() as i64,
        invocations,
    }
}

/// A trace script's events as steps.
fn script_steps(text: &str) -> Vec<Step> {
    let script = TraceScript::parse(text).unwrap_or_else(|e| panic!("bad script: {e}"));
    script
        .events()
        .iter()
        .map(|event| match event {
            Event::Start(s) => Step::Start {
                label: s.span.clone(),
                parent: s.parent.clone(),
                name: s.name.clone(),
                kind: s.kind.clone(),
                time: s.time_ns,
                attributes: s.attributes.clone(),
            },
            Event::Set(s) => Step::Set {
                label: s.span.clone(),
                attributes: s.attributes.clone(),
            },
            Event::End(e) => Step::End {
                label: e.span.clone(),
                time: e.time_ns,
                status: e.status.clone(),
            },
        })
        .collect()
}

fn api_value(value: Option<&Any>) -> Value {
    use opentelemetry::{Array, StringValue};
    match value {
        Some(Any::ArrayValue(array)) => {
            let items: Vec<Option<&Any>> = array.values.iter().map(|v| v.value.as_ref()).collect();
            if items.iter().all(|v| matches!(v, Some(Any::StringValue(_)))) {
                let strings: Vec<StringValue> = items
                    .iter()
                    .filter_map(|v| match v {
                        Some(Any::StringValue(s)) => Some(StringValue::from(s.clone())),
                        _ => None,
                    })
                    .collect();
                Value::Array(Array::String(strings))
            } else {
                Value::from(format!("{items:?}"))
            }
        }
        Some(Any::StringValue(s)) => Value::from(s.clone()),
        Some(Any::BoolValue(b)) => Value::from(*b),
        Some(Any::IntValue(i)) => Value::from(*i),
        Some(Any::DoubleValue(d)) => Value::from(*d),
        Some(other) => Value::from(format!("{other:?}")),
        None => Value::from(""),
    }
}

/// An OTLP export's spans as steps: each span starts (with all its attributes, as the
/// command reads an export) at its start and ends at its end; at one instant, ends go
/// first, deepest first, then starts, shallowest first. A parent the export lacks
/// makes a root.
fn otlp_steps(text: &str) -> Vec<Step> {
    let requests = parse_lines(text);
    let spans: Vec<_> = crate::cli_support::spans_of(&requests);
    let label = |id: &[u8]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let present: HashMap<String, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (label(&s.span_id), i))
        .collect();
    let parent_of = |i: usize| {
        let p = label(&spans[i].parent_span_id);
        present.get(&p).map(|_| p)
    };
    let depth = |mut i: usize| {
        let mut d = 0i64;
        while let Some(p) = parent_of(i) {
            i = present[&p];
            d += 1;
            if d > 64 {
                break;
            }
        }
        d
    };
    let mut keyed: Vec<((u64, u8, i64, usize), Step)> = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        let attributes: Vec<KeyValue> = s
            .attributes
            .iter()
            .map(|kv| {
                KeyValue::new(
                    kv.key.clone(),
                    api_value(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                )
            })
            .collect();
        let kind = match s.kind {
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Internal,
        };
        let status = match s.status.as_ref().map(|st| st.code) {
            Some(2) => Status::error(
                s.status
                    .as_ref()
                    .map_or(String::new(), |st| st.message.clone()),
            ),
            Some(1) => Status::Ok,
            _ => Status::Unset,
        };
        let d = depth(i);
        let end = s.end_time_unix_nano.max(s.start_time_unix_nano);
        keyed.push((
            (s.start_time_unix_nano, 1, d, i),
            Step::Start {
                label: label(&s.span_id),
                parent: parent_of(i),
                name: s.name.clone(),
                kind,
                time: s.start_time_unix_nano,
                attributes,
            },
        ));
        keyed.push((
            (end, 0, -d, i),
            Step::End {
                label: label(&s.span_id),
                time: end,
                status,
            },
        ));
    }
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, step)| step).collect()
}

/// Every recording file under `dir` (recursively) whose name ends with `suffix`.
fn files(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, suffix, out);
        } else if path.to_string_lossy().ends_with(suffix)
            && !path.to_string_lossy().ends_with("harness-log.jsonl")
        {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the recordings exercised, summed over them: findings, priced micro-dollars,
/// spans the audit closed.
#[derive(Debug, Default)]
struct Exercised {
    findings: u64,
    cost_micro_usd: i64,
    closed: usize,
}

fn assert_equivalent(name: &str, steps: &[Step], seen: &mut Exercised) {
    for (leak, contamination) in POLICIES {
        let sdk = through_sdk(steps, leak, contamination);
        let engine = through_engine(steps, (leak, contamination), Hand::All);
        // Only the attributes the engine reads, handed over: the same verdicts.
        let read = through_engine(steps, (leak, contamination), Hand::Read);
        assert_eq!(
            read, engine,
            "{name} ({leak:?}, {contamination:?}): only the keys the engine reads"
        );
        assert!(!sdk.spans.is_empty(), "{name}: nothing exported");
        for (label, span) in &sdk.spans {
            assert_eq!(
                engine.spans.get(label),
                Some(span),
                "{name} ({leak:?}, {contamination:?}): span {label}"
            );
        }
        assert_eq!(engine, sdk, "{name} ({leak:?}, {contamination:?}): outcome");
        seen.findings += sdk.findings.iter().map(|f| f.3).sum::<u64>();
        seen.cost_micro_usd += sdk.cost_micro_usd;
        seen.closed += sdk
            .spans
            .values()
            .filter(|(_, status)| status.contains("Error"))
            .count();
    }
}

#[test]
fn every_trace_script_gives_the_same_writes_and_events_through_the_sdk_and_the_event_api() {
    let mut scripts = Vec::new();
    files(&root().join("tests/recordings"), ".jsonl", &mut scripts);
    files(&root().join("tests/it/scripts"), ".jsonl", &mut scripts);
    assert!(scripts.len() >= 30, "only {} scripts found", scripts.len());
    let mut seen = Exercised::default();
    for path in scripts {
        let text = std::fs::read_to_string(&path).expect("readable");
        assert_equivalent(&path.display().to_string(), &script_steps(&text), &mut seen);
    }
    // Not vacuous: findings made, calls priced, spans closed by the audit.
    assert!(
        seen.findings > 100 && seen.cost_micro_usd > 0 && seen.closed > 0,
        "{seen:?}"
    );
}

#[test]
fn every_otlp_recording_gives_the_same_writes_and_events_through_the_sdk_and_the_event_api() {
    let mut exports = Vec::new();
    files(&root().join("tests/recordings"), ".otlp.json", &mut exports);
    assert!(exports.len() >= 10, "only {} exports found", exports.len());
    let mut seen = Exercised::default();
    for path in exports {
        let text = std::fs::read_to_string(&path).expect("readable");
        assert_equivalent(&path.display().to_string(), &otlp_steps(&text), &mut seen);
    }
    assert!(seen.findings > 0 && seen.cost_micro_usd > 0, "{seen:?}");
}
