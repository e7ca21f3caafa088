//! Seeded property tests of the audit processor, through its public API only, and
//! focused regression tests for three bugs they found (a span exported twice under leak
//! policy `close`, infinite sums from huge reported costs, findings written on spans
//! that are not gen-ai).
//!
//! Every case is a random forest of spans (depth up to 5, any fan-out) whose names and
//! attributes come from every convention the processor reads (the design contract, DESIGN.md §2), with usage
//! and reported costs full of junk (§3, §4), attributes set at start or only at end,
//! parents ending before children, spans ended twice, dropped without `end()` or never
//! ended; a random leak and contamination policy, capacity (1..=65536, biased small),
//! maximum age (1 s .. 1 h) and a clock (`with_clock`) that jumps forwards and
//! backwards. The case is driven straight through the tracer API of a real
//! `SdkTracerProvider` whose only processor is the audit processor wrapping a
//! recording processor, and once more through a bare provider (same ids, same times)
//! for comparison. Each `prop_*` test checks one invariant over the same seeded cases,
//! so a failure names the invariant and shrinks to a minimal case for it.
//!
//! Run: `cargo test --test it properties` (a bounded number of cases, seconds in debug).
//! Longer: `GENAI_AUDIT_PROPTEST_CASES=5000 cargo test --release --test it properties`;
//! `GENAI_AUDIT_PROPTEST_SEED=<u64>` varies the fixed seed. The figures (cases, spans,
//! attribute values, exports, findings) are printed on stderr (`-- --nocapture`).
//!
//! The helpers are deliberately local to this file (not `common`), so that the
//! suite depends on nothing but the crate's public API and the SDK.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{Recorder, SequentialIds};
use genai_audit::{ContaminationPolicy, GenAiAuditProcessor, LeakPolicy};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Array, Context, KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

// ---------------------------------------------------------------------------------
// Small harness: a metrics reader (sequential ids and the recording inner processor
// come from `common`).
// ---------------------------------------------------------------------------------

/// A meter provider whose metrics can be read after a flush.
struct Meters {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

/// One data point: sorted (key, value) attributes, and the value.
type Point = (Vec<(String, String)>, f64);

impl Meters {
    fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        Meters { provider, exporter }
    }

    fn points(&self, name: &str) -> Vec<Point> {
        let _ = self.provider.force_flush();
        let all = self.exporter.get_finished_metrics().unwrap_or_default();
        let mut out = Vec::new();
        if let Some(last) = all.last() {
            for scope in last.scope_metrics() {
                for metric in scope.metrics().filter(|m| m.name() == name) {
                    let attrs = |it: &mut dyn Iterator<Item = &KeyValue>| {
                        let mut v: Vec<(String, String)> = it
                            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                            .collect();
                        v.sort();
                        v
                    };
                    match metric.data() {
                        AggregatedMetrics::U64(MetricData::Sum(s)) => {
                            for p in s.data_points() {
                                out.push((attrs(&mut p.attributes()), p.value() as f64));
                            }
                        }
                        AggregatedMetrics::I64(MetricData::Sum(s)) => {
                            for p in s.data_points() {
                                out.push((attrs(&mut p.attributes()), p.value() as f64));
                            }
                        }
                        AggregatedMetrics::I64(MetricData::Gauge(g)) => {
                            for p in g.data_points() {
                                out.push((attrs(&mut p.attributes()), p.value() as f64));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        out
    }

    /// `genai_audit.findings` as (code, role) → count.
    fn findings(&self) -> BTreeMap<(String, String), u64> {
        let mut out = BTreeMap::new();
        for (attrs, v) in self.points("genai_audit.findings") {
            let get = |k: &str| crate::common::point_attr(&attrs, k);
            *out.entry((get("genai_audit.finding"), get("genai_audit.role")))
                .or_insert(0) += v as u64;
        }
        out.retain(|_, n| *n > 0);
        out
    }

    fn tracked(&self) -> Option<i64> {
        let points = self.points("genai_audit.spans.tracked");
        if points.is_empty() {
            None
        } else {
            Some(points.iter().map(|p| p.1 as i64).sum())
        }
    }
}

fn value<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    genai_audit::last_value(&span.attributes, key)
}

fn findings_of(span: &SpanData) -> Vec<String> {
    match value(span, "genai_audit.findings") {
        Some(Value::Array(Array::String(v))) => v.iter().map(|s| s.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn audit_keys(span: &SpanData) -> Vec<String> {
    span.attributes
        .iter()
        .filter(|kv| kv.key.as_str().starts_with("genai_audit."))
        .map(|kv| kv.key.to_string())
        .collect()
}

fn dump(span: &SpanData) -> String {
    let mut out = format!(
        "{:?} {} (parent {}) status {:?}\n",
        span.name,
        span.span_context.span_id(),
        span.parent_span_id,
        span.status
    );
    for kv in &span.attributes {
        let _ = writeln!(out, "    {} = {:?}", kv.key, kv.value);
    }
    out
}

/// A fixed base time, so prices and ages are reproducible.
fn base() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn at_ms(ms: u64) -> SystemTime {
    base() + Duration::from_millis(ms)
}

// ---------------------------------------------------------------------------------
// The generated cases.
// ---------------------------------------------------------------------------------

/// How a span's life ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// `end_with_timestamp`.
    End,
    /// `end_with_timestamp`, then again (the SDK ignores the second: `end` takes the
    /// span's data, so a second `end`/`end_with_timestamp` is a no-op).
    EndTwice,
    /// The last handle is dropped without `end()`: the SDK ends it on drop, at the real
    /// current time.
    Drop,
    /// Never ended: its handle is held until after the provider's shutdown, when
    /// dropping it no longer reaches any processor.
    Never,
}

#[derive(Debug, Clone)]
struct Node {
    /// Raw parent choice; resolved by [`Case::parent`].
    parent: Option<prop::sample::Index>,
    name: String,
    kind: u8,
    /// (attribute, set at start).
    attrs: Vec<(KeyValue, bool)>,
    status: u8,
    events: u8,
    start_gap_ms: u64,
    duration_ms: u64,
    /// End after all its children (ordinary nesting) rather than at its own time.
    nested: bool,
    fate: Fate,
}

#[derive(Debug, Clone)]
struct Case {
    leak: LeakPolicy,
    contamination: ContaminationPolicy,
    capacity: usize,
    max_age_s: u64,
    nodes: Vec<Node>,
    /// (sim time in ms, clock offset in seconds from then on).
    jumps: Vec<(u64, i64)>,
    /// (sim time in ms, n): n unrelated invocations, each with one generation, started
    /// and ended then (pressure on a small capacity and on what the audit remembers).
    churn: Vec<(u64, u16)>,
}

const MAX_DEPTH: usize = 5;

impl Case {
    /// Parents resolved to earlier nodes, depth at most [`MAX_DEPTH`].
    fn parents(&self) -> Vec<Option<usize>> {
        let mut parents: Vec<Option<usize>> = Vec::with_capacity(self.nodes.len());
        let mut depth: Vec<usize> = Vec::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            let mut p = match (&n.parent, i) {
                (Some(ix), i) if i > 0 => Some(ix.index(i)),
                _ => None,
            };
            while let Some(q) = p {
                if depth[q] + 1 < MAX_DEPTH {
                    break;
                }
                p = parents[q];
            }
            depth.push(p.map_or(0, |q| depth[q] + 1));
            parents.push(p);
        }
        parents
    }

    /// (start, end) in sim ms per node; children always start at or after their
    /// parent's start.
    fn times(&self, parents: &[Option<usize>]) -> Vec<(u64, u64)> {
        let mut t: Vec<(u64, u64)> = Vec::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            let start = parents[i].map_or(0, |p| t[p].0) + n.start_gap_ms;
            t.push((start, start + n.duration_ms));
        }
        for i in (0..self.nodes.len()).rev() {
            if self.nodes[i].nested {
                let last_child = (i + 1..self.nodes.len())
                    .filter(|&c| parents[c] == Some(i))
                    .map(|c| t[c].1 + 1)
                    .max()
                    .unwrap_or(0);
                t[i].1 = t[i].1.max(last_child);
            }
        }
        t
    }

    /// Whether a node looks gen-ai at all (name or any attribute key not from the
    /// plain lists): conservative, for the pass-through property.
    fn genai(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        !PLAIN_NAMES.contains(&n.name.as_str())
            || n.attrs
                .iter()
                .any(|(kv, _)| !PLAIN_KEYS.contains(&kv.key.as_str()))
    }

    fn describe(&self) -> String {
        let parents = self.parents();
        let times = self.times(&parents);
        let mut out = format!(
            "leak {:?}, contamination {:?}, capacity {}, max age {} s, clock jumps {:?}, churn {:?}\n",
            self.leak, self.contamination, self.capacity, self.max_age_s, self.jumps, self.churn
        );
        for (i, n) in self.nodes.iter().enumerate() {
            let _ = writeln!(
                out,
                "  #{i} {:?} parent {:?} start {} ms end {} ms {:?} status {} events {}",
                n.name, parents[i], times[i].0, times[i].1, n.fate, n.status, n.events
            );
            for (kv, at_start) in &n.attrs {
                let _ = writeln!(
                    out,
                    "      {} {} = {:?}",
                    if *at_start { "start" } else { "end  " },
                    kv.key,
                    kv.value
                );
            }
        }
        out
    }
}

const PLAIN_NAMES: &[&str] = &[
    "HTTP GET",
    "GET /orders",
    "POST /billing",
    "SELECT orders",
    "retry",
    "cache get",
    "process batch",
];

const PLAIN_KEYS: &[&str] = &[
    "http.request.method",
    "http.response.status_code",
    "url.path",
    "db.system.name",
    "db.query.text",
    "retry.count",
    "ratio",
    "flags",
];

const GENAI_NAMES: &[&str] = &[
    "invoke_agent coder",
    "invoke_agent",
    "react step",
    "chat gpt-4o",
    "chat claude-sonnet-4-5",
    "text_completion davinci",
    "generate_content gemini-2.5-pro",
    "execute_tool search",
    "embeddings text-embedding-3-small",
    "agent run: 'coder'",
    "llm: 'gpt-4o'",
    "step: 1",
    "step: 2",
    "tool: 'search'",
    "workflow run: 'w'",
    "ai.generateText",
    "ai.generateText.doGenerate",
    "LangGraph",
    "model_request",
    "chat",
    "invoke_agentx",
];

const USAGE_KEYS: &[&str] = &[
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "ai.usage.inputTokens",
    "ai.usage.promptTokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "ai.usage.outputTokens",
    "ai.usage.completionTokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "ai.usage.inputTokenDetails.cacheReadTokens",
    "ai.usage.cachedInputTokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "ai.usage.inputTokenDetails.cacheWriteTokens",
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
    "ai.usage.outputTokenDetails.reasoningTokens",
    "ai.usage.reasoningTokens",
];

const COST_KEYS: &[&str] = &[
    "gen_ai.usage.cost",
    "llm.cost.total",
    "gen_ai.usage.cost.amount",
    "operation.cost",
];

fn s(v: &'static str) -> Value {
    Value::from(v)
}

/// A role-bearing attribute from one of the conventions.
fn role_attr() -> impl Strategy<Value = KeyValue> {
    let pick = |key: &'static str, values: &'static [&'static str]| {
        prop::sample::select(values).prop_map(move |v| KeyValue::new(key, v))
    };
    prop_oneof![
        pick(
            "gen_ai.operation.name",
            &[
                "invoke_agent",
                "react",
                "plan",
                "agent_step",
                "chat",
                "text_completion",
                "generate_content",
                "generate_live_content",
                "completion",
                "embeddings",
                "execute_tool",
                "invoke_workflow",
                "retrieval",
                "something_else",
            ]
        ),
        pick(
            "gen_ai.span.kind",
            &[
                "AGENT",
                "STEP",
                "LLM",
                "EMBEDDING",
                "TOOL",
                "RETRIEVER",
                "X"
            ]
        ),
        pick(
            "openinference.span.kind",
            &[
                "AGENT",
                "LLM",
                "TOOL",
                "CHAIN",
                "EMBEDDING",
                "RETRIEVER",
                "RERANKER"
            ]
        ),
        pick(
            "traceloop.span.kind",
            &["agent", "workflow", "tool", "task"]
        ),
        pick(
            "langfuse.observation.type",
            &[
                "agent",
                "generation",
                "tool",
                "span",
                "embedding",
                "retriever",
                "chain"
            ]
        ),
        pick(
            "ai.operationId",
            &[
                "ai.generateText",
                "ai.streamText",
                "ai.generateObject",
                "ai.streamObject",
                "ai.generateText.doGenerate",
                "ai.streamText.doStream",
                "ai.embed.doEmbed",
                "ai.embedMany.doEmbed",
                "ai.toolCall",
            ]
        ),
        pick(
            "mastra.span.type",
            &[
                "agent_run",
                "model_generation",
                "model_step",
                "model_inference",
                "model_chunk",
                "tool_call",
                "mcp_tool_call",
                "workflow_run",
            ]
        ),
        pick(
            "metadata",
            &[
                r#"{"lc_agent_name":"coder"}"#,
                r#"{"langgraph_node":"model_request"}"#,
                r#"{"langgraph_node":"agent","lc_agent_name":"coder"}"#,
                r#"{"langgraph_node":"tools"}"#,
                "not json {",
            ]
        ),
    ]
}

/// A usage or cost value, junk included.
fn junk_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0i64..5000).prop_map(Value::I64),
        1 => prop::sample::select(&[-1i64, -5000, 1 << 53, (1 << 53) + 1, 1 << 60, i64::MAX, i64::MIN][..])
            .prop_map(Value::I64),
        1 => (0u32..5000).prop_map(|n| Value::F64(f64::from(n))),
        2 => prop::sample::select(
            &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e308, -3.0, 2.5, -0.0, 1_152_921_504_606_846_976.0, 5e-324][..]
        )
        .prop_map(Value::F64),
        1 => prop::sample::select(&["123", "abc", "-5", "1e3", " 42 ", "", "9007199254740993", "NaN"][..])
            .prop_map(s),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Array(Array::I64(vec![1, 2]))),
    ]
}

fn cost_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (0u32..1000).prop_map(|n| Value::F64(f64::from(n) / 1000.0)),
        3 => prop::sample::select(
            &[1e308, -1.0, f64::NAN, f64::INFINITY, 1_000_000.0, 1_000_000.5, 5e-324, 0.0][..]
        )
        .prop_map(Value::F64),
        1 => prop_oneof![Just(Value::I64(3)), Just(Value::I64(-1)), Just(s("0.5")), Just(s("1e308"))],
    ]
}

fn other_attr() -> impl Strategy<Value = KeyValue> {
    prop_oneof![
        3 => (prop::sample::select(USAGE_KEYS), junk_value()).prop_map(|(k, v)| KeyValue::new(k, v)),
        2 => (prop::sample::select(COST_KEYS), cost_value()).prop_map(|(k, v)| KeyValue::new(k, v)),
        1 => prop::sample::select(&["USD", "EUR"][..]).prop_map(|c| KeyValue::new("gen_ai.usage.cost.currency", c)),
        2 => (
            prop::sample::select(&[
                "gen_ai.request.model",
                "gen_ai.response.model",
                "llm.model_name",
                "ai.model.id",
            ][..]),
            prop::sample::select(&["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-pro", "no-such-model-x", ""][..]),
        )
            .prop_map(|(k, v)| KeyValue::new(k, v)),
        1 => (
            prop::sample::select(&["gen_ai.provider.name", "gen_ai.system", "llm.provider", "ai.model.provider"][..]),
            prop::sample::select(&["openai", "anthropic", "aws.bedrock", "gcp.vertex_ai", "x_ai", "nope"][..]),
        )
            .prop_map(|(k, v)| KeyValue::new(k, v)),
        2 => (
            prop::sample::select(&["gen_ai.response.id", "gen_ai.conversation.id", "gen_ai.agent.name"][..]),
            prop::sample::select(&["a", "b", "resp-1", "resp-2"][..]),
        )
            .prop_map(|(k, v)| KeyValue::new(k, v)),
        1 => junk_value().prop_map(|v| KeyValue::new("gen_ai.react.round", v)),
    ]
}

fn plain_attr() -> impl Strategy<Value = KeyValue> {
    (prop::sample::select(PLAIN_KEYS), 0u8..4).prop_map(|(k, n)| match n {
        0 => KeyValue::new(k, "GET"),
        1 => KeyValue::new(k, 200i64),
        2 => KeyValue::new(k, 0.5),
        _ => KeyValue::new(k, true),
    })
}

fn node() -> impl Strategy<Value = Node> {
    let plain = (
        prop::sample::select(PLAIN_NAMES),
        prop::collection::vec((plain_attr(), any::<bool>()), 0..4),
    )
        .prop_map(|(name, attrs)| (name.to_string(), attrs));
    let genai = (
        prop::sample::select(
            GENAI_NAMES
                .iter()
                .chain(PLAIN_NAMES)
                .copied()
                .collect::<Vec<_>>(),
        ),
        prop::collection::vec((role_attr(), any::<bool>()), 0..3),
        prop::bool::weighted(0.6),
        prop::collection::vec((other_attr(), any::<bool>()), 0..6),
        prop::collection::vec((plain_attr(), any::<bool>()), 0..2),
    )
        .prop_map(|(name, mut roles, generation, others, plain)| {
            if generation {
                // Most gen-ai spans should be recognised: bias towards generations.
                roles.push((KeyValue::new("gen_ai.operation.name", "chat"), true));
                roles.rotate_right(1);
            }
            roles.extend(others);
            roles.extend(plain);
            (name.to_string(), roles)
        });
    let fate = prop_oneof![
        12 => Just(Fate::End),
        2 => Just(Fate::EndTwice),
        1 => Just(Fate::Drop),
        2 => Just(Fate::Never),
    ];
    (
        prop::option::weighted(0.8, any::<prop::sample::Index>()),
        prop_oneof![2 => plain, 3 => genai],
        0u8..5,
        0u8..3,
        0u8..3,
        0u64..50,
        0u64..200,
        prop::bool::weighted(0.7),
        fate,
    )
        .prop_map(
            |(parent, (name, attrs), kind, status, events, gap, dur, nested, fate)| Node {
                parent,
                name,
                kind,
                attrs,
                status,
                events,
                start_gap_ms: gap,
                duration_ms: dur,
                nested,
                fate,
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(LeakPolicy::Flag), Just(LeakPolicy::Close)],
        prop_oneof![
            Just(ContaminationPolicy::Flag),
            Just(ContaminationPolicy::Repair)
        ],
        prop_oneof![2 => 1usize..=4, 3 => 1usize..=64, 3 => 1usize..=65536],
        prop_oneof![1u64..=5, 1u64..=3600],
        prop::collection::vec(node(), 1..40),
        prop::collection::vec((0u64..1500, -7200i64..7200), 0..3),
        prop::collection::vec((0u64..1500, 1u16..300), 0..2),
    )
        .prop_map(
            |(leak, contamination, capacity, max_age_s, nodes, jumps, churn)| Case {
                leak,
                contamination,
                capacity,
                max_age_s,
                nodes,
                jumps,
                churn,
            },
        )
}

// ---------------------------------------------------------------------------------
// Running a case.
// ---------------------------------------------------------------------------------

struct Outcome {
    /// Every `on_end` the inner processor saw, in order.
    exported: Vec<SpanData>,
    /// Span id of each node.
    ids: Vec<SpanId>,
    /// Whether the SDK ended each node (end, end twice, or drop).
    ended: Vec<bool>,
    /// The churn spans (all started and ended).
    churn_ids: Vec<SpanId>,
    /// `genai_audit.findings` metric: (code, role) → count (audited runs only).
    findings_metric: BTreeMap<(String, String), u64>,
    /// `genai_audit.spans.tracked` after shutdown (audited runs only).
    tracked_after_shutdown: Option<i64>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Start,
    Clock,
    Churn,
    End,
}

fn run(case: &Case, audited: bool) -> Outcome {
    let recorder = Recorder::default();
    let meters = Meters::new();
    let now_ms = Arc::new(AtomicI64::new(0));
    let offset_s = Arc::new(AtomicI64::new(0));
    let builder = SdkTracerProvider::builder().with_id_generator(SequentialIds::default());
    let provider = if audited {
        let (now, offset) = (now_ms.clone(), offset_s.clone());
        let clock = move || {
            let ms = now.load(Ordering::SeqCst) + offset.load(Ordering::SeqCst) * 1000;
            if ms >= 0 {
                base() + Duration::from_millis(ms as u64)
            } else {
                base() - Duration::from_millis(ms.unsigned_abs())
            }
        };
        let audit = GenAiAuditProcessor::builder(recorder.clone())
            .with_disabled(false)
            .leak_policy(case.leak)
            .contamination_policy(case.contamination)
            .with_max_tracked_spans(case.capacity)
            .with_max_span_age(Duration::from_secs(case.max_age_s))
            .with_clock(clock)
            .with_meter_provider(meters.provider.clone())
            .build();
        builder.with_span_processor(audit).build()
    } else {
        builder.with_span_processor(recorder.clone()).build()
    };
    let tracer = provider.tracer("properties");

    let parents = case.parents();
    let times = case.times(&parents);
    let mut schedule: Vec<(u64, Action, usize)> = Vec::new();
    for (i, (start, end)) in times.iter().enumerate() {
        schedule.push((*start, Action::Start, i));
        schedule.push((*end, Action::End, i));
    }
    for (j, (t, _)) in case.jumps.iter().enumerate() {
        schedule.push((*t, Action::Clock, j));
    }
    for (j, (t, _)) in case.churn.iter().enumerate() {
        schedule.push((*t, Action::Churn, j));
    }
    let mut churn_ids = Vec::new();
    schedule.sort();

    let n = case.nodes.len();
    let mut cxs: Vec<Option<Context>> = vec![None; n];
    let mut scs: Vec<Option<SpanContext>> = vec![None; n];
    let mut ended = vec![false; n];
    for (t, action, i) in schedule {
        now_ms.store(t as i64, Ordering::SeqCst);
        match action {
            Action::Clock => offset_s.store(case.jumps[i].1, Ordering::SeqCst),
            Action::Churn => {
                for k in 0..case.churn[i].1 {
                    let inv = tracer
                        .span_builder(format!("invoke_agent churn{k}"))
                        .with_start_time(at_ms(t))
                        .start(&tracer);
                    churn_ids.push(inv.span_context().span_id());
                    let cx = Context::new().with_span(inv);
                    let mut generation = tracer
                        .span_builder("chat gpt-4o")
                        .with_start_time(at_ms(t))
                        .with_attributes([
                            KeyValue::new("gen_ai.request.model", "gpt-4o"),
                            KeyValue::new("gen_ai.usage.input_tokens", 10),
                        ])
                        .start_with_context(&tracer, &cx);
                    churn_ids.push(generation.span_context().span_id());
                    generation.end_with_timestamp(at_ms(t));
                    cx.span().end_with_timestamp(at_ms(t));
                }
            }
            Action::Start => {
                let node = &case.nodes[i];
                let parent_cx = match parents[i] {
                    None => Context::new(),
                    Some(p) => match &cxs[p] {
                        Some(cx) => cx.clone(),
                        None => Context::new()
                            .with_remote_span_context(scs[p].clone().expect("parent started")),
                    },
                };
                let kind = match node.kind {
                    0 => SpanKind::Internal,
                    1 => SpanKind::Client,
                    2 => SpanKind::Server,
                    3 => SpanKind::Producer,
                    _ => SpanKind::Consumer,
                };
                let mut span = tracer
                    .span_builder(node.name.clone())
                    .with_kind(kind)
                    .with_start_time(at_ms(t))
                    .with_attributes(
                        node.attrs
                            .iter()
                            .filter(|(_, at_start)| *at_start)
                            .map(|(kv, _)| kv.clone())
                            .collect::<Vec<_>>(),
                    )
                    .start_with_context(&tracer, &parent_cx);
                for e in 0..node.events {
                    span.add_event_with_timestamp(
                        format!("event {e}"),
                        at_ms(t),
                        vec![KeyValue::new("n", i64::from(e))],
                    );
                }
                scs[i] = Some(span.span_context().clone());
                cxs[i] = Some(Context::new().with_span(span));
            }
            Action::End => {
                let node = &case.nodes[i];
                if node.fate == Fate::Never {
                    continue;
                }
                let Some(cx) = cxs[i].take() else { continue };
                let span = cx.span();
                for (kv, _) in node.attrs.iter().filter(|(_, at_start)| !*at_start) {
                    span.set_attribute(kv.clone());
                }
                match node.status {
                    1 => span.set_status(Status::Ok),
                    2 => span.set_status(Status::error("boom")),
                    _ => {}
                }
                match node.fate {
                    Fate::End => span.end_with_timestamp(at_ms(t)),
                    Fate::EndTwice => {
                        span.end_with_timestamp(at_ms(t));
                        span.end_with_timestamp(at_ms(t + 1));
                        span.end();
                    }
                    Fate::Drop | Fate::Never => {}
                }
                let _ = span;
                drop(cx); // the last handle: a `Drop` span ends here
                ended[i] = true;
            }
        }
    }
    let _ = provider.force_flush();
    let _ = provider.shutdown();
    // Spans never ended: dropped only now, when the SDK no longer exports them.
    drop(cxs);
    let exported = recorder.ended();
    let (findings_metric, tracked_after_shutdown) = if audited {
        (meters.findings(), meters.tracked())
    } else {
        (BTreeMap::new(), None)
    };
    let _ = meters.provider.shutdown();
    Outcome {
        exported,
        ids: scs
            .into_iter()
            .map(|sc| sc.expect("every node starts").span_id())
            .collect(),
        ended,
        churn_ids,
        findings_metric,
        tracked_after_shutdown,
    }
}

// ---------------------------------------------------------------------------------
// The invariants.
// ---------------------------------------------------------------------------------

const NO_PANIC: &str = "no_panic";
const EXPORT_ONCE: &str = "export_once";
const PASSTHROUGH: &str = "passthrough_identical";
const TYPED_KEYS: &str = "audit_keys_typed";
const FINDINGS_ON_RECOGNISED: &str = "findings_only_on_recognised";
const OTHER_UNTOUCHED: &str = "other_untouched";
const METRIC_MATCHES: &str = "findings_metric_matches";
const TRACKED_ZERO: &str = "tracked_zero_after_shutdown";

const ROLES: &[&str] = &[
    "invocation",
    "step",
    "generation",
    "embedding",
    "tool",
    "workflow",
    "retrieval",
];

const CODES: &[&str] = &[
    "unclosed_child",
    "closed_by_audit",
    "late_end",
    "late_start",
    "stale",
    "usage_mismatch",
    "foreign_response",
    "round_mismatch",
    "overlapping_step",
    "identity_mismatch",
    "invalid_usage",
    "budget_exceeded",
    "missing_parent",
];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Ty {
    Str,
    F64,
    I64,
    Bool,
    StrArray,
}

/// The type DESIGN §5 gives each key the processor owns (`genai_audit.reported.*`
/// excepted: those keep the original's type).
fn expected_type(key: &str) -> Option<Ty> {
    Some(match key {
        "genai_audit.role" | "genai_audit.cost.source" | "genai_audit.cost.model" => Ty::Str,
        "genai_audit.cost_usd"
        | "genai_audit.cumulative.cost_usd"
        | "genai_audit.total.cost_usd" => Ty::F64,
        "genai_audit.cost.unpriced"
        | "genai_audit.wrapper"
        | "genai_audit.total.partial"
        | "genai_audit.usage.cache_exclusive"
        | "genai_audit.usage.reasoning_exclusive" => Ty::Bool,
        "genai_audit.findings" | "genai_audit.leak.unclosed_names" => Ty::StrArray,
        "genai_audit.steps" | "genai_audit.step.index" | "genai_audit.leak.unclosed_children" => {
            Ty::I64
        }
        k if k.starts_with("genai_audit.cumulative.") || k.starts_with("genai_audit.total.") => {
            match k.rsplit('.').next() {
                Some(
                    "input_tokens" | "output_tokens" | "cache_read_tokens" | "cache_write_tokens"
                    | "reasoning_tokens" | "generations" | "tool_calls",
                ) if !(k.starts_with("genai_audit.cumulative.") && k.ends_with("tool_calls")) => {
                    Ty::I64
                }
                _ => return None,
            }
        }
        _ => return None,
    })
}

fn type_of(v: &Value) -> Ty {
    match v {
        Value::Bool(_) => Ty::Bool,
        Value::I64(_) => Ty::I64,
        Value::F64(_) => Ty::F64,
        Value::String(_) => Ty::Str,
        Value::Array(Array::String(_)) => Ty::StrArray,
        _ => Ty::Bool, // any other array: never expected, reported as a mismatch below
    }
}

fn finite_non_negative(v: &Value) -> bool {
    match v {
        Value::I64(n) => *n >= 0,
        Value::F64(x) => x.is_finite() && *x >= 0.0,
        Value::Array(Array::I64(a)) => a.iter().all(|n| *n >= 0),
        Value::Array(Array::F64(a)) => a.iter().all(|x| x.is_finite() && *x >= 0.0),
        _ => true,
    }
}

/// Figures over all the cases run, for the report of a long run.
#[derive(Default)]
struct Figures {
    cases: AtomicU64,
    spans: AtomicU64,
    attribute_values: AtomicU64,
    exported: AtomicU64,
    findings: Mutex<BTreeMap<String, u64>>,
}

fn check(case: &Case, figures: &Figures) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = Vec::new();
    let (audited, bare) =
        match catch_unwind(AssertUnwindSafe(|| (run(case, true), run(case, false)))) {
            Ok(r) => r,
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                v.push((NO_PANIC, format!("panicked: {msg}")));
                return v;
            }
        };
    figures.cases.fetch_add(1, Ordering::Relaxed);
    figures
        .spans
        .fetch_add(case.nodes.len() as u64, Ordering::Relaxed);
    figures.attribute_values.fetch_add(
        case.nodes.iter().map(|n| n.attrs.len() as u64).sum(),
        Ordering::Relaxed,
    );
    figures
        .exported
        .fetch_add(audited.exported.len() as u64, Ordering::Relaxed);

    let parents = case.parents();
    let node_of: HashMap<SpanId, usize> = audited
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i))
        .collect();

    // --- export_once -----------------------------------------------------------
    let mut times_exported: HashMap<SpanId, usize> = HashMap::new();
    for span in &audited.exported {
        *times_exported
            .entry(span.span_context.span_id())
            .or_insert(0) += 1;
    }
    let churn: HashSet<SpanId> = audited.churn_ids.iter().copied().collect();
    for id in &churn {
        match times_exported.get(id) {
            Some(1) => {}
            n => v.push((EXPORT_ONCE, format!("churn span {id} exported {n:?} times"))),
        }
    }
    for (id, count) in &times_exported {
        match node_of.get(id) {
            None if churn.contains(id) => {}
            None => v.push((EXPORT_ONCE, format!("span {id} exported but never started"))),
            Some(&i) if *count > 1 => v.push((
                EXPORT_ONCE,
                format!("#{i} {:?} exported {count} times", case.nodes[i].name),
            )),
            Some(&i) if case.leak == LeakPolicy::Flag && !audited.ended[i] => v.push((
                EXPORT_ONCE,
                format!(
                    "#{i} {:?} exported under flag although never ended",
                    case.nodes[i].name
                ),
            )),
            _ => {}
        }
    }
    for (i, id) in audited.ids.iter().enumerate() {
        if audited.ended[i] && !times_exported.contains_key(id) {
            v.push((
                EXPORT_ONCE,
                format!("#{i} {:?} ended but not exported", case.nodes[i].name),
            ));
        }
    }

    // --- passthrough_identical -------------------------------------------------
    let genai_lineage: Vec<bool> = {
        let mut g = vec![false; case.nodes.len()];
        for i in 0..case.nodes.len() {
            g[i] = case.genai(i) || parents[i].is_some_and(|p| g[p]);
        }
        g
    };
    let audited_by_id: HashMap<SpanId, &SpanData> = audited
        .exported
        .iter()
        .map(|s| (s.span_context.span_id(), s))
        .collect();
    for bare_span in &bare.exported {
        let Some(&i) = node_of.get(&bare_span.span_context.span_id()) else {
            continue;
        };
        if genai_lineage[i] {
            continue;
        }
        match audited_by_id.get(&bare_span.span_context.span_id()) {
            None => v.push((PASSTHROUGH, format!("#{i} {:?} missing", bare_span.name))),
            Some(a) => {
                let mut a = (*a).clone();
                if case.nodes[i].fate == Fate::Drop {
                    a.end_time = bare_span.end_time; // ended by drop, at the real time
                }
                if &a != bare_span {
                    v.push((
                        PASSTHROUGH,
                        format!(
                            "#{i} differs from the bare pipeline:\n  bare:    {}  audited: {}",
                            dump(bare_span),
                            dump(&a)
                        ),
                    ));
                }
            }
        }
    }

    // --- typed keys, findings only on recognised spans, other spans untouched --
    // Findings written on exported spans: on spans with a role, and on all spans.
    let mut attr_findings: BTreeMap<String, u64> = BTreeMap::new();
    let mut attr_findings_all: BTreeMap<String, u64> = BTreeMap::new();
    // Findings written on exported spans, by (code, the span's role).
    let mut written_by_role: BTreeMap<(String, String), u64> = BTreeMap::new();
    for span in &audited.exported {
        let who = || {
            let i = node_of.get(&span.span_context.span_id()).copied();
            format!("#{i:?}: {}", dump(span))
        };
        let mut seen = HashSet::new();
        for kv in &span.attributes {
            let key = kv.key.as_str();
            if !key.starts_with("genai_audit.") {
                continue;
            }
            if !seen.insert(key) {
                v.push((TYPED_KEYS, format!("{key} twice on {}", who())));
            }
            if key.starts_with("genai_audit.reported.") {
                continue;
            }
            match expected_type(key) {
                None => v.push((TYPED_KEYS, format!("unknown key {key} on {}", who()))),
                Some(ty) if ty != type_of(&kv.value) => v.push((
                    TYPED_KEYS,
                    format!("{key} is {:?}, not {ty:?}, on {}", kv.value, who()),
                )),
                _ => {}
            }
            if !finite_non_negative(&kv.value) {
                v.push((TYPED_KEYS, format!("{key} = {:?} on {}", kv.value, who())));
            }
            if key == "genai_audit.role" && !ROLES.contains(&kv.value.as_str().as_ref()) {
                v.push((TYPED_KEYS, format!("role {:?} on {}", kv.value, who())));
            }
        }
        let recognised = value(span, "genai_audit.role").is_some();
        for f in findings_of(span) {
            if !CODES.contains(&f.as_str()) {
                v.push((TYPED_KEYS, format!("unknown finding {f} on {}", who())));
            }
            if recognised {
                *attr_findings.entry(f.clone()).or_insert(0) += 1;
                let role = value(span, "genai_audit.role").map_or(String::new(), |r| r.to_string());
                *written_by_role.entry((f.clone(), role)).or_insert(0) += 1;
            }
            *attr_findings_all.entry(f).or_insert(0) += 1;
        }
        // A cost key the span did not carry, written by the processor.
        if let Some(&i) = node_of.get(&span.span_context.span_id()) {
            for key in ["gen_ai.usage.cost", "llm.cost.total", "operation.cost"] {
                let original = case.nodes[i]
                    .attrs
                    .iter()
                    .any(|(kv, _)| kv.key.as_str() == key);
                if let (false, Some(val)) = (original, value(span, key)) {
                    if !finite_non_negative(val) || type_of(val) != Ty::F64 {
                        v.push((TYPED_KEYS, format!("written {key} = {val:?} on {}", who())));
                    }
                }
            }
        }
        if value(span, "genai_audit.role").is_none() {
            if value(span, "genai_audit.findings").is_some() {
                v.push((
                    FINDINGS_ON_RECOGNISED,
                    format!("findings without a role on {}", who()),
                ));
            }
            let keys = audit_keys(span);
            if !keys.is_empty() {
                v.push((
                    OTHER_UNTOUCHED,
                    format!("role-less span carries {keys:?}: {}", who()),
                ));
            }
        }
    }

    // --- findings metric ---------------------------------------------------------
    // Always: the metric counts every finding written on an exported span (whatever
    // the span's role), so for each code: metric over all roles >= findings written.
    // Some findings are only counted, never written: those about `other` spans, `stale`
    // of a span evicted under `flag` that never ends, `late_end` of a span the audit
    // closed under `close` (its real end is not exported again), findings on spans
    // open at shutdown.
    // Exactly: under `flag`, when every span ended and nothing was evicted (no `stale`
    // counted), nothing is counted-only except findings about `other` spans, so for
    // each code the metric over recognised roles equals the findings written on spans
    // with a `genai_audit.role`. (`stale` is excluded because it is counted at
    // eviction with the role known then, which may differ from the final role when a
    // role is decided again at end.)
    let mut metric_all: BTreeMap<String, u64> = BTreeMap::new();
    let mut metric_recognised: BTreeMap<String, u64> = BTreeMap::new();
    for ((code, role), n) in &audited.findings_metric {
        *metric_all.entry(code.clone()).or_insert(0) += n;
        if role != "other" {
            *metric_recognised.entry(code.clone()).or_insert(0) += n;
        }
    }
    {
        let mut f = figures.findings.lock().unwrap();
        for (code, n) in &metric_all {
            *f.entry(code.clone()).or_insert(0) += n;
        }
    }
    let all_ended = audited.ended.iter().all(|e| *e);
    let evicted = metric_all.contains_key("stale");
    let codes: HashSet<&String> = metric_all.keys().chain(attr_findings.keys()).collect();
    for code in codes {
        let attr = attr_findings.get(code).copied().unwrap_or(0);
        let attr_all = attr_findings_all.get(code).copied().unwrap_or(0);
        let all = metric_all.get(code).copied().unwrap_or(0);
        let recognised = metric_recognised.get(code).copied().unwrap_or(0);
        if all < attr_all {
            v.push((
                METRIC_MATCHES,
                format!(
                    "{code}: metric {all} < {attr_all} written on exported spans; metric {:?}; exported:\n{}",
                    audited.findings_metric,
                    audited.exported.iter().map(dump).collect::<String>()
                ),
            ));
        } else if case.leak == LeakPolicy::Flag && all_ended && !evicted && recognised != attr {
            v.push((
                METRIC_MATCHES,
                format!(
                    "{code}: metric for recognised roles {recognised} != {attr} on exported spans (flag, every span ended); metric {:?}; exported:\n{}",
                    audited.findings_metric,
                    audited.exported.iter().map(dump).collect::<String>()
                ),
            ));
        }
    }

    // Per code and role: every finding written on a span of role R was counted under
    // R (a finding is written and counted once, under one role), so for every (code,
    // R) the metric holds at least what is written; and for the codes that are never
    // counted without being written on a recognised span (all but `stale` and
    // `late_end`, whose counted-only cases are spans that never end or were closed by
    // the audit), exactly what is written, whatever the policy, the clock or the
    // evictions. Findings about `other` spans are counted under `other` and written
    // nowhere.
    let mut metric_by_role: BTreeMap<(String, String), u64> = BTreeMap::new();
    for ((code, role), n) in &audited.findings_metric {
        if role != "other" {
            *metric_by_role
                .entry((code.clone(), role.clone()))
                .or_insert(0) += n;
        }
    }
    let pairs: BTreeSet<&(String, String)> = metric_by_role
        .keys()
        .chain(written_by_role.keys())
        .collect();
    // Under `close`, every span evicted or closed by the audit is exported at once with
    // `stale` or `closed_by_audit`, under the role it was counted under; its real end,
    // when it comes, is only counted: a `late_end` under that role. So under `close`
    // the counted-only findings are known from the export, and the metric is exact
    // for every code.
    let mut counted_only: BTreeMap<(String, String), u64> = BTreeMap::new();
    if case.leak == LeakPolicy::Close {
        for span in &audited.exported {
            let findings = findings_of(span);
            let closed = findings
                .iter()
                .any(|f| f == "stale" || f == "closed_by_audit");
            // Churn spans all end; a node ends as its case says.
            let id = span.span_context.span_id();
            let ended = match node_of.get(&id) {
                Some(&i) => audited.ended.get(i).copied().unwrap_or(false),
                None => audited.churn_ids.contains(&id),
            };
            if let (true, true, Some(role)) = (closed, ended, value(span, "genai_audit.role")) {
                *counted_only
                    .entry(("late_end".to_owned(), role.to_string()))
                    .or_insert(0) += 1;
            }
        }
    }
    let pairs: BTreeSet<&(String, String)> = pairs.into_iter().chain(counted_only.keys()).collect();
    for pair in pairs {
        let metric = metric_by_role.get(pair).copied().unwrap_or(0);
        let written = written_by_role.get(pair).copied().unwrap_or(0)
            + counted_only.get(pair).copied().unwrap_or(0);
        // Under `flag`, only a `stale` can be counted and never written: of a span that
        // never ends (it is not exported), or that ends with another role than the one
        // it was evicted under.
        let exact = pair.0 != "stale" || case.leak == LeakPolicy::Close || (all_ended && !evicted);
        if metric < written || (exact && metric != written) {
            v.push((
                METRIC_MATCHES,
                format!(
                    "{pair:?}: metric {metric}, written {written}; metric {:?}; exported:\n{}",
                    audited.findings_metric,
                    audited.exported.iter().map(dump).collect::<String>()
                ),
            ));
        }
    }

    // --- tracked spans -----------------------------------------------------------
    if audited.tracked_after_shutdown != Some(0) {
        v.push((
            TRACKED_ZERO,
            format!(
                "genai_audit.spans.tracked after shutdown: {:?}",
                audited.tracked_after_shutdown
            ),
        ));
    }
    v
}

// ---------------------------------------------------------------------------------
// The runner: seeded, shrinking, bounded.
// ---------------------------------------------------------------------------------

const SEED: [u8; 32] = *b"genai-audit/properties seed 0001";
const DEFAULT_CASES: u32 = 256;

fn cases() -> u32 {
    std::env::var("GENAI_AUDIT_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn seed() -> [u8; 32] {
    let mut seed = SEED;
    if let Some(n) = std::env::var("GENAI_AUDIT_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        seed[24..].copy_from_slice(&n.to_le_bytes());
    }
    seed
}

/// Runs the seeded cases and fails with the minimal case breaking `property`.
fn property(property: &'static str) {
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed()));
    let figures = Figures::default();
    let result = runner.run(&case(), |case| {
        let violations: Vec<String> = check(&case, &figures)
            .into_iter()
            .filter(|(p, _)| *p == property || *p == NO_PANIC)
            .map(|(p, m)| format!("[{p}] {m}"))
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(TestCaseError::fail(violations.join("\n")))
        }
    });
    let found: Vec<String> = figures
        .findings
        .lock()
        .unwrap()
        .iter()
        .map(|(c, n)| format!("{c}={n}"))
        .collect();
    eprintln!(
        "{property}: {} case runs (shrinking included), {} spans, {} attribute values, {} exports, findings counted {}",
        figures.cases.load(Ordering::Relaxed),
        figures.spans.load(Ordering::Relaxed),
        figures.attribute_values.load(Ordering::Relaxed),
        figures.exported.load(Ordering::Relaxed),
        found.join(" "),
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => panic!(
            "property {property} fails; minimal case:\n{}\n{reason}",
            case.describe()
        ),
        Err(TestError::Abort(reason)) => panic!("property {property} aborted: {reason}"),
    }
}

#[test]
fn prop_no_panic() {
    property(NO_PANIC);
}

#[test]
fn prop_every_ended_span_exported_once() {
    property(EXPORT_ONCE);
}

#[test]
fn prop_non_genai_spans_pass_through_identical() {
    property(PASSTHROUGH);
}

#[test]
fn prop_audit_keys_unique_typed_finite() {
    property(TYPED_KEYS);
}

#[test]
fn prop_findings_only_on_recognised_spans() {
    property(FINDINGS_ON_RECOGNISED);
}

#[test]
fn prop_role_less_spans_carry_no_audit_key() {
    property(OTHER_UNTOUCHED);
}

#[test]
fn prop_findings_metric_matches_attributes() {
    property(METRIC_MATCHES);
}

#[test]
fn prop_no_span_tracked_after_shutdown() {
    property(TRACKED_ZERO);
}

// ---------------------------------------------------------------------------------
// Regression tests for the three known bugs (issue 13): small and deterministic.
// ---------------------------------------------------------------------------------

/// The audit processor over a recorder, with metrics and a clock skewed by `offset`
/// seconds from the real time.
struct Pipeline {
    provider: SdkTracerProvider,
    recorder: Recorder,
    meters: Meters,
    offset: Arc<AtomicI64>,
}

impl Pipeline {
    fn new(leak: LeakPolicy, capacity: Option<usize>, max_age: Option<Duration>) -> Self {
        let recorder = Recorder::default();
        let meters = Meters::new();
        let offset = Arc::new(AtomicI64::new(0));
        let skew = offset.clone();
        let mut builder = GenAiAuditProcessor::builder(recorder.clone())
            .with_disabled(false)
            .leak_policy(leak)
            .contamination_policy(ContaminationPolicy::Flag)
            .with_meter_provider(meters.provider.clone())
            .with_clock(move || {
                let s = skew.load(Ordering::SeqCst);
                if s >= 0 {
                    SystemTime::now() + Duration::from_secs(s as u64)
                } else {
                    SystemTime::now() - Duration::from_secs(s.unsigned_abs())
                }
            });
        if let Some(n) = capacity {
            builder = builder.with_max_tracked_spans(n);
        }
        if let Some(age) = max_age {
            builder = builder.with_max_span_age(age);
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(builder.build())
            .build();
        Pipeline {
            provider,
            recorder,
            meters,
            offset,
        }
    }

    fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        self.provider.tracer("regression")
    }

    /// Shuts the provider down and returns every `on_end` the inner processor saw.
    fn finish(&self) -> Vec<SpanData> {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
        self.recorder.ended()
    }
}

fn started(tracer: &opentelemetry_sdk::trace::SdkTracer, name: &str, parent: &Context) -> Context {
    Context::new().with_span(tracer.start_with_context(name.to_string(), parent))
}

fn id(cx: &Context) -> SpanId {
    cx.span().span_context().span_id()
}

/// No span id exported twice; each of `ended` exported exactly once.
fn assert_exported_once(spans: &[SpanData], ended: &[SpanId]) {
    let mut count: HashMap<SpanId, usize> = HashMap::new();
    for s in spans {
        *count.entry(s.span_context.span_id()).or_insert(0) += 1;
    }
    let twice: Vec<String> = spans
        .iter()
        .filter(|s| count[&s.span_context.span_id()] > 1)
        .map(dump)
        .collect();
    assert!(
        twice.is_empty(),
        "spans exported more than once:\n{}",
        twice.join("")
    );
    for id in ended {
        assert_eq!(
            count.get(id),
            Some(&1),
            "span {id} ended but not exported once"
        );
    }
}

#[test]
fn regression_close_unclosed_child_later_ended_is_exported_once() {
    let p = Pipeline::new(LeakPolicy::Close, None, None);
    let tracer = p.tracer();
    let inv = started(&tracer, "invoke_agent coder", &Context::new());
    let step = started(&tracer, "react step", &inv);
    inv.span().end();
    step.span().end(); // the real end, after the audit closed it
    let spans = p.finish();
    assert_exported_once(&spans, &[id(&inv), id(&step)]);
    let step_span = spans
        .iter()
        .find(|s| s.span_context.span_id() == id(&step))
        .unwrap();
    assert!(findings_of(step_span).contains(&"closed_by_audit".to_string()));
}

#[test]
fn regression_close_evicted_over_capacity_later_ended_is_exported_once() {
    for capacity in [1, 2] {
        let p = Pipeline::new(LeakPolicy::Close, Some(capacity), None);
        let tracer = p.tracer();
        let held: Vec<Context> = (0..capacity + 2)
            .map(|i| started(&tracer, &format!("invoke_agent a{i}"), &Context::new()))
            .collect();
        for cx in &held {
            cx.span().end();
        }
        let ids: Vec<SpanId> = held.iter().map(id).collect();
        let spans = p.finish();
        assert_exported_once(&spans, &ids);
    }
}

#[test]
fn regression_close_aged_out_by_clock_jump_later_ended_is_exported_once() {
    let p = Pipeline::new(LeakPolicy::Close, None, Some(Duration::from_secs(60)));
    let tracer = p.tracer();
    let old = started(&tracer, "invoke_agent old", &Context::new());
    let old_step = started(&tracer, "react step", &old);
    p.offset.store(120, Ordering::SeqCst); // two minutes later: both are stale
    let fresh: Vec<Context> = (0..4)
        .map(|i| started(&tracer, &format!("invoke_agent new{i}"), &Context::new()))
        .collect();
    p.offset.store(-120, Ordering::SeqCst); // and the clock jumps back
    old_step.span().end();
    old.span().end();
    for cx in &fresh {
        cx.span().end();
    }
    let mut ids = vec![id(&old), id(&old_step)];
    ids.extend(fresh.iter().map(id));
    let spans = p.finish();
    assert_exported_once(&spans, &ids);
}

#[test]
fn regression_close_capacity_one_many_spans_each_exported_once() {
    let p = Pipeline::new(LeakPolicy::Close, Some(1), None);
    let tracer = p.tracer();
    let mut ids = Vec::new();
    let mut all = Vec::new();
    for round in 0..10 {
        let inv = started(&tracer, &format!("invoke_agent r{round}"), &Context::new());
        let step = started(&tracer, "react step", &inv);
        let chat = started(&tracer, "chat gpt-4o", &step);
        let tool = started(&tracer, "execute_tool search", &step);
        let http = started(&tracer, "HTTP GET", &chat);
        // Half the rounds end parents first, half children first.
        let order = if round % 2 == 0 {
            vec![inv, step, chat, tool, http]
        } else {
            vec![http, tool, chat, step, inv]
        };
        for cx in &order {
            ids.push(id(cx));
            cx.span().end();
        }
        all.extend(order);
    }
    let spans = p.finish();
    assert_exported_once(&spans, &ids);
}

/// Every `genai_audit.*` number finite and non-negative.
fn assert_audit_numbers_finite(spans: &[SpanData]) {
    for span in spans {
        for kv in &span.attributes {
            if kv.key.as_str().starts_with("genai_audit.")
                && !kv.key.as_str().starts_with("genai_audit.reported.")
            {
                assert!(
                    finite_non_negative(&kv.value),
                    "{} = {:?} on {}",
                    kv.key,
                    kv.value,
                    dump(span)
                );
            }
        }
    }
}

fn huge_cost_trace(key: &str, cost: Value) -> (Vec<SpanData>, SpanId, Vec<SpanId>) {
    let p = Pipeline::new(LeakPolicy::Flag, None, None);
    let tracer = p.tracer();
    let inv = started(&tracer, "invoke_agent coder", &Context::new());
    let mut gens = Vec::new();
    for _ in 0..2 {
        let mut g = tracer.start_with_context("chat gpt-4o", &inv);
        g.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
        g.set_attribute(KeyValue::new("gen_ai.provider.name", "openai"));
        g.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o"));
        g.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 1000));
        g.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", 100));
        g.set_attribute(KeyValue::new(key.to_string(), cost.clone()));
        gens.push(g.span_context().span_id());
        g.end();
    }
    inv.span().end();
    let spans = p.finish();
    (spans, id(&inv), gens)
}

fn assert_reported_cost_rejected(key: &str, cost: Value) {
    let (spans, inv, gens) = huge_cost_trace(key, cost.clone());
    let ctx = format!("{key} = {cost:?}");
    assert_audit_numbers_finite(&spans);
    let by_id = |id: SpanId| {
        spans
            .iter()
            .find(|s| s.span_context.span_id() == id)
            .unwrap_or_else(|| panic!("{ctx}: span {id} not exported"))
    };
    let mut sum = 0.0;
    for g in gens {
        let g = by_id(g);
        assert!(
            findings_of(g).contains(&"invalid_usage".to_string()),
            "{ctx}: no invalid_usage on {}",
            dump(g)
        );
        assert_eq!(
            value(g, "genai_audit.cost.source").map(|v| v.as_str().to_string()),
            Some("computed".to_string()),
            "{ctx}: {}",
            dump(g)
        );
        match value(g, "genai_audit.cost_usd") {
            Some(Value::F64(c)) if c.is_finite() && *c > 0.0 && *c < 1.0 => sum += c,
            other => panic!("{ctx}: cost_usd {other:?} on {}", dump(g)),
        }
    }
    let inv = by_id(inv);
    match value(inv, "genai_audit.total.cost_usd") {
        Some(Value::F64(c)) => assert!(
            (c - sum).abs() < 1e-9,
            "{ctx}: total {c} != sum of generations {sum}"
        ),
        other => panic!("{ctx}: total.cost_usd {other:?} on {}", dump(inv)),
    }
}

#[test]
fn regression_huge_reported_cost_is_not_used() {
    assert_reported_cost_rejected("gen_ai.usage.cost", Value::F64(1e308));
}

#[test]
fn regression_unusable_reported_costs_are_not_used() {
    let mut failed = Vec::new();
    for key in [
        ("gen_ai.usage.cost", Value::F64(-1.0)),
        ("gen_ai.usage.cost", Value::F64(f64::NAN)),
        ("gen_ai.usage.cost", Value::F64(1_000_000.5)),
        ("llm.cost.total", Value::F64(1e308)),
        ("llm.cost.total", Value::F64(-1.0)),
        ("llm.cost.total", Value::F64(f64::INFINITY)),
    ]
    .into_iter()
    .filter_map(|(key, cost)| {
        let c = cost.clone();
        catch_unwind(move || assert_reported_cost_rejected(key, c))
            .err()
            .map(|_| format!("{key} = {cost:?}"))
    })
    .collect::<Vec<_>>()
    {
        failed.push(key);
    }
    assert!(
        failed.is_empty(),
        "reported costs used or not flagged: {failed:?}"
    );
}

fn http_get(tracer: &opentelemetry_sdk::trace::SdkTracer, parent: &Context) -> Context {
    let span = tracer
        .span_builder("HTTP GET")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.path", "/v1/things"),
        ])
        .start_with_context(tracer, parent);
    Context::new().with_span(span)
}

fn assert_untouched_http(spans: &[SpanData], http: SpanId) {
    let span = spans
        .iter()
        .find(|s| s.span_context.span_id() == http)
        .expect("HTTP GET exported");
    assert!(audit_keys(span).is_empty(), "{}", dump(span));
    assert_eq!(
        span.attributes,
        vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.path", "/v1/things"),
        ],
        "{}",
        dump(span)
    );
    assert_eq!(span.status, Status::Unset, "{}", dump(span));
}

#[test]
fn regression_http_span_ending_after_its_invocation_is_untouched() {
    let p = Pipeline::new(LeakPolicy::Flag, None, None);
    let tracer = p.tracer();
    let inv = started(&tracer, "invoke_agent coder", &Context::new());
    let http = http_get(&tracer, &inv);
    inv.span().end();
    http.span().end();
    let spans = p.finish();
    assert_untouched_http(&spans, id(&http));
    let metric = p.meters.findings();
    assert_eq!(
        metric.get(&("late_end".to_string(), "other".to_string())),
        Some(&1),
        "findings metric {metric:?}"
    );
}

#[test]
fn regression_http_span_ending_with_an_open_step_under_it_is_untouched() {
    let p = Pipeline::new(LeakPolicy::Flag, None, None);
    let tracer = p.tracer();
    let inv = started(&tracer, "invoke_agent coder", &Context::new());
    let http = http_get(&tracer, &inv);
    let step = started(&tracer, "react step", &http);
    http.span().end();
    step.span().end();
    inv.span().end();
    let spans = p.finish();
    assert_untouched_http(&spans, id(&http));
    let metric = p.meters.findings();
    assert_eq!(
        metric.get(&("unclosed_child".to_string(), "other".to_string())),
        Some(&1),
        "findings metric {metric:?}"
    );
}

/// Spans exported more than once, as "name (id) x count".
fn duplicates(spans: &[SpanData]) -> Vec<String> {
    let mut count: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in spans {
        *count
            .entry((s.name.to_string(), s.span_context.span_id().to_string()))
            .or_insert(0) += 1;
    }
    count
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((name, id), n)| format!("{name} ({id}) x{n}"))
        .collect()
}

#[test]
fn regression_close_closed_child_whose_memory_is_evicted_is_exported_once() {
    // Closed by the audit at its parent's end, then churn at a small capacity (with or
    // without a clock jump past the max age) pushes out whatever remembers it, then
    // its real end.
    let mut failed = Vec::new();
    for capacity in [1, 2, 3, 8] {
        for jump in [false, true] {
            for churn in [1, 200] {
                let p = Pipeline::new(
                    LeakPolicy::Close,
                    Some(capacity),
                    Some(Duration::from_secs(1)),
                );
                let tracer = p.tracer();
                let inv = started(&tracer, "invoke_agent coder", &Context::new());
                let step = started(&tracer, "react step", &inv);
                let chat = started(&tracer, "chat gpt-4o", &step);
                inv.span().end();
                if jump {
                    p.offset.store(10, Ordering::SeqCst);
                }
                for i in 0..churn {
                    let other =
                        started(&tracer, &format!("invoke_agent churn{i}"), &Context::new());
                    let gen = started(&tracer, "chat gpt-4o", &other);
                    gen.span().end();
                    other.span().end();
                }
                p.offset.store(0, Ordering::SeqCst);
                chat.span().end();
                step.span().end();
                let spans = p.finish();
                let dups = duplicates(&spans);
                if !dups.is_empty() {
                    failed.push(format!(
                        "capacity {capacity}, clock jump {jump}, {churn} other invocations: {dups:?}"
                    ));
                }
            }
        }
    }
    assert!(failed.is_empty(), "exported twice:\n{}", failed.join("\n"));
}

#[test]
fn regression_close_evicted_invocation_then_churn_is_exported_once() {
    // The property suite's shrunk case: capacity 1, an invocation evicted (and closed)
    // by the next start, 32 unrelated invocations with a generation each, then the
    // invocation's real end.
    let p = Pipeline::new(LeakPolicy::Close, Some(1), None);
    let tracer = p.tracer();
    let inv = started(&tracer, "invoke_agent coder", &Context::new());
    let mut ids = vec![id(&inv)];
    for k in 0..32 {
        let other = started(&tracer, &format!("invoke_agent churn{k}"), &Context::new());
        let gen = started(&tracer, "chat gpt-4o", &other);
        gen.span().end();
        other.span().end();
        ids.push(id(&other));
        ids.push(id(&gen));
    }
    inv.span().end();
    let spans = p.finish();
    assert!(
        duplicates(&spans).is_empty(),
        "exported twice: {:?}",
        duplicates(&spans)
    );
    assert_exported_once(&spans, &ids);
}

// ---------------------------------------------------------------------------------
// The trace-script reader on arbitrary input: never a panic, and every error names a
// line of the input.

/// Valid script lines to mutate.
const SCRIPT_LINES: [&str; 6] = [
    r#"{"op":"start","span":"a","parent":null,"name":"invoke_agent x","time_ns":1700000000000000000,"attributes":{"k":[1,2.5],"b":true}}"#,
    r#"{"op":"start","span":"b","parent":"a","name":"chat m","kind":"client","attributes":{"gen_ai.usage.input_tokens":5}}"#,
    r#"{"op":"set","span":"b","attributes":{"k":"v","k":"w"}}"#,
    r#"{"op":"end","span":"b","time_ns":1700000000000000001,"status":"error","status_message":"x"}"#,
    "# a comment",
    r#"{"op":"end","span":"a"}"#,
];

fn script_text() -> impl Strategy<Value = String> {
    let mutated = proptest::collection::vec(
        (0..SCRIPT_LINES.len(), 0usize..200, any::<u8>(), 0u8..4),
        0..12,
    )
    .prop_map(|lines| {
        lines
            .into_iter()
            .map(|(line, at, byte, how)| {
                let mut bytes = SCRIPT_LINES[line].as_bytes().to_vec();
                let at = at.min(bytes.len());
                match how {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    2 => bytes.truncate(at),
                    _ => {}
                }
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    prop_oneof![mutated, any::<String>(), "[ -~\n]{0,400}"]
}

#[test]
fn prop_trace_script_reader_never_panics() {
    let config = Config {
        cases: cases().saturating_mul(8),
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed()));
    let result = runner.run(&script_text(), |text| {
        let lines = text.split('\n').count();
        match catch_unwind(AssertUnwindSafe(|| {
            genai_audit::script::TraceScript::parse(&text)
        })) {
            Err(_) => Err(TestCaseError::fail("the reader panicked")),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if (1..=lines.max(1)).contains(&e.line) => Ok(()),
            Ok(Err(e)) => Err(TestCaseError::fail(format!(
                "error on line {} of {lines}: {e}",
                e.line
            ))),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A valid OTLP JSON request line, in the JavaScript SDK's shape, to mutate.
const OTLP_LINE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"agent"}}]},"scopeSpans":[{"scope":{"name":"s"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"chat gpt-4o","kind":3,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,"attributes":[{"key":"gen_ai.usage.input_tokens","value":{"intValue":"10"}},{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}}],"status":{"code":1}}]}]}]}"#;

fn otlp_text() -> impl Strategy<Value = String> {
    let mutated =
        proptest::collection::vec((0usize..600, any::<u8>(), 0u8..4), 0..6).prop_map(|edits| {
            let mut bytes = OTLP_LINE.as_bytes().to_vec();
            for (at, byte, how) in edits {
                let at = at.min(bytes.len());
                match how {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    2 => bytes.truncate(at),
                    _ => {}
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        });
    prop_oneof![
        mutated,
        any::<String>(),
        "[ -~\n]{0,400}",
        Just(format!("{OTLP_LINE}\n{OTLP_LINE}"))
    ]
}

#[test]
fn prop_otlp_reader_never_panics() {
    let config = Config {
        cases: cases().saturating_mul(8),
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed()));
    let result = runner.run(&otlp_text(), |text| {
        let lines = text.split('\n').count().max(1);
        match catch_unwind(AssertUnwindSafe(|| {
            genai_audit::otlp::Inputs::new(1 << 20).read("input.json", text.as_bytes())
        })) {
            Err(_) => Err(TestCaseError::fail("the OTLP reader panicked")),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if (1..=lines).contains(&e.line) && e.file == "input.json" => Ok(()),
            Ok(Err(e)) => Err(TestCaseError::fail(format!("{e} (of {lines} lines)"))),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
