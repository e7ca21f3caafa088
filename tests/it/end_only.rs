//! Roles known only at end count fully: totals on every recognised ancestor, step
//! positions, `partial`, `late_end` and the contamination checks, whether a role was
//! known at a span's start or only at its end, through non-recognised spans. The six
//! recordings in `tests/recordings/traces/` under both leak and both contamination policies
//! (the totals of their README, no finding), and trace scripts of our own.

use crate::common;

use common::lines::{self, end};
use common::{Harness, Replayed};
use genai_audit::{ContaminationPolicy, LeakPolicy};

fn policies() -> Vec<(LeakPolicy, ContaminationPolicy)> {
    let mut all = Vec::new();
    for leak in [LeakPolicy::Flag, LeakPolicy::Close] {
        for contamination in [ContaminationPolicy::Flag, ContaminationPolicy::Repair] {
            all.push((leak, contamination));
        }
    }
    all
}

fn harness(leak: LeakPolicy, contamination: ContaminationPolicy) -> Harness {
    Harness::with(|b| b.leak_policy(leak).contamination_policy(contamination))
}

fn recording(file: &str) -> String {
    let path = format!(
        "{}/tests/recordings/traces/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One invocation's expected totals: label, input, output, generations, tool calls,
/// and its steps with their positions (`None`: the recording has no steps to check).
struct Expected {
    invocation: &'static str,
    input: i64,
    output: i64,
    generations: i64,
    tool_calls: i64,
    steps: Option<&'static [(&'static str, i64)]>,
}

const fn inv(
    invocation: &'static str,
    (input, output): (i64, i64),
    generations: i64,
    tool_calls: i64,
    steps: Option<&'static [(&'static str, i64)]>,
) -> Expected {
    Expected {
        invocation,
        input,
        output,
        generations,
        tool_calls,
        steps,
    }
}

fn check_totals(r: &Replayed, e: &Expected, context: &str) {
    let label = e.invocation;
    assert_eq!(
        r.string(label, "genai_audit.role"),
        "invocation",
        "{context} {label}"
    );
    let got = (
        r.i64(label, "genai_audit.total.input_tokens"),
        r.i64(label, "genai_audit.total.output_tokens"),
        r.i64(label, "genai_audit.total.generations"),
        r.i64(label, "genai_audit.total.tool_calls"),
    );
    assert_eq!(
        got,
        (e.input, e.output, e.generations, e.tool_calls),
        "{context} {label}"
    );
    if let Some(steps) = e.steps {
        assert_eq!(
            r.i64(label, "genai_audit.steps"),
            steps.len() as i64,
            "{context} {label}"
        );
        for (step, index) in steps {
            assert_eq!(
                r.string(step, "genai_audit.role"),
                "step",
                "{context} {step}"
            );
            assert_eq!(
                r.i64(step, "genai_audit.step.index"),
                *index,
                "{context} {step}"
            );
        }
    }
}

fn check_recording(file: &str, expected: &[Expected]) {
    let text = recording(file);
    for (leak, contamination) in policies() {
        let h = harness(leak, contamination);
        let r = h.replay(&text);
        let context = format!("{file} {leak:?} {contamination:?}");
        r.assert_no_findings();
        r.assert_no_duplicate_keys();
        assert!(
            h.metric("genai_audit.findings").is_empty(),
            "{context}: {:?}",
            h.metric("genai_audit.findings")
        );
        for e in expected {
            check_totals(&r, e, &context);
        }
    }
}

#[test]
fn mastra_every_span_starts_empty() {
    check_recording(
        "mastra-generate-concurrent.jsonl",
        &[
            inv(
                "cb964256c960cb59",
                (252, 34),
                1,
                1,
                Some(&[("688885916c86ca61", 1), ("00be72512a99d929", 2)]),
            ),
            inv("989c2642fa90e744", (324, 42), 1, 1, None),
            inv("779eef4aa9c477a1", (420, 50), 1, 1, None),
        ],
    );
    // Two steps each, and the generation's cumulative totals (its invocation is known
    // at start by Mastra's names).
    let r = Harness::new().replay(&recording("mastra-generate-concurrent.jsonl"));
    for (invocation, generation, input) in [
        ("cb964256c960cb59", "9487cd2b34a072e8", 252),
        ("989c2642fa90e744", "c0836a2be443bd24", 324),
        ("779eef4aa9c477a1", "855808fc4d4b2b08", 420),
    ] {
        assert_eq!(r.i64(invocation, "genai_audit.steps"), 2, "{invocation}");
        assert_eq!(r.string(generation, "genai_audit.role"), "generation");
        assert_eq!(
            r.i64(generation, "genai_audit.cumulative.input_tokens"),
            input
        );
        assert_eq!(r.i64(generation, "genai_audit.cumulative.generations"), 1);
        // gpt-4o-mini is priced; the cost reaches the invocation.
        let cost = r.f64(generation, "genai_audit.cost_usd");
        assert!(cost > 0.0);
        assert!((r.f64(invocation, "genai_audit.total.cost_usd") - cost).abs() < 1e-15);
    }
}

#[test]
fn langchain_langgraph_everything_at_end() {
    check_recording(
        "langchain-invoke-concurrent.jsonl",
        &[
            inv("a0f3b482d15be709", (1098, 74), 2, 1, None),
            inv("2287bbed58291245", (1274, 84), 2, 1, None),
            inv("236a53e0e3240c3b", (1466, 94), 2, 1, None),
        ],
    );
    let r = Harness::new().replay(&recording("langchain-invoke-concurrent.jsonl"));
    // Run A: `model_request` twice (steps 1 and 2), `RunnableLambda` inside each is a
    // workflow, `tools` a workflow with the tool call.
    assert_eq!(r.i64("a0f3b482d15be709", "genai_audit.steps"), 2);
    assert_eq!(r.string("db5f8605b062060b", "genai_audit.role"), "step");
    assert_eq!(r.i64("db5f8605b062060b", "genai_audit.step.index"), 1);
    assert_eq!(
        r.i64("db5f8605b062060b", "genai_audit.total.input_tokens"),
        521
    );
    assert_eq!(r.string("0a188790012f3c3d", "genai_audit.role"), "step");
    assert_eq!(r.i64("0a188790012f3c3d", "genai_audit.step.index"), 2);
    assert_eq!(r.string("0d2286da14330b6d", "genai_audit.role"), "workflow");
    assert_eq!(r.string("39e4ca41b3a2b93c", "genai_audit.role"), "workflow");
    assert_eq!(r.i64("39e4ca41b3a2b93c", "genai_audit.total.tool_calls"), 1);
    assert_eq!(
        r.string("8c65abce5808f0c8", "genai_audit.role"),
        "generation"
    );
}

#[test]
fn vercel_ai7_generate() {
    check_recording(
        "vercel-ai7-generate-concurrent.jsonl",
        &[
            inv("5ce02c3f4b8b1b73", (474, 46), 2, 1, None),
            inv("aa66decdd3311f36", (666, 56), 2, 1, None),
            inv("28291e9383c0aab7", (858, 64), 2, 1, None),
        ],
    );
    let r = Harness::new().replay(&recording("vercel-ai7-generate-concurrent.jsonl"));
    for invocation in ["5ce02c3f4b8b1b73", "aa66decdd3311f36", "28291e9383c0aab7"] {
        assert_eq!(r.i64(invocation, "genai_audit.steps"), 2, "{invocation}");
    }
}

#[test]
fn hermes_pydantic_vercel_under_every_policy() {
    check_recording(
        "hermes-concurrent-fixed.jsonl",
        &[
            inv("f83a2880dd7e8c62", (24, 8), 2, 1, None),
            inv("511b231a9d284735", (36, 9), 2, 1, None),
        ],
    );
    check_recording(
        "pydantic-ai-concurrent.jsonl",
        &[
            inv("cd90c90ca8a6f251", (204, 24), 2, 1, None),
            inv("be714a6930675d4c", (216, 36), 2, 1, None),
            inv("71273bb60e5e0cad", (240, 52), 2, 1, None),
        ],
    );
    check_recording(
        "vercel-ai-concurrent.jsonl",
        &[
            inv("36d91603f1e85e65", (84, 16), 2, 1, None),
            inv("4aae904fe1668ae4", (100, 24), 2, 1, None),
        ],
    );
}

// ---------------------------------------------------------------------------------
// Trace scripts of our own.

/// A script line: `start` with no attributes (everything arrives at end).
fn start(span: &str, parent: Option<&str>, name: &str, ms: u64) -> String {
    lines::start(span, parent, name, "", ms)
}

fn script(lines: &[String]) -> String {
    lines.join("\n")
}

/// A gpt-4o call's attributes.
fn chat(input: u64, output: u64) -> String {
    lines::chat("gpt-4o", input, output)
}

#[test]
fn every_span_recognised_only_at_end_three_levels_deep() {
    // agent → flow (workflow) → GET /x (never recognised) → round (step) → 2 calls and
    // a tool; flow → GET /x → a third call directly.
    let text = script(&[
        start("agent", None, "agent", 0),
        start("flow", Some("agent"), "flow", 1),
        start("http", Some("flow"), "GET /x", 2),
        start("round", Some("http"), "round", 3),
        start("c1", Some("round"), "model call", 4),
        end("c1", &chat(100, 10), 5),
        start("tool", Some("round"), "lookup", 6),
        end("tool", r#""gen_ai.operation.name":"execute_tool""#, 7),
        start("c2", Some("round"), "model call", 8),
        end("c2", &chat(200, 20), 9),
        end("round", r#""gen_ai.operation.name":"react""#, 10),
        start("c3", Some("http"), "model call", 11),
        end("c3", &chat(50, 5), 12),
        end("http", r#""http.request.method":"GET""#, 13),
        end("flow", r#""traceloop.span.kind":"workflow""#, 14),
        end("agent", r#""gen_ai.operation.name":"invoke_agent""#, 15),
    ]);
    for (leak, contamination) in policies() {
        let h = harness(leak, contamination);
        let r = h.replay(&text);
        r.assert_no_findings();
        let cost = |label: &str| r.f64(label, "genai_audit.cost_usd");
        let (c1, c2, c3) = (cost("c1"), cost("c2"), cost("c3"));
        for (label, input, output, generations, tools, cost) in [
            ("round", 300, 30, 2, 1, c1 + c2),
            ("flow", 350, 35, 3, 1, c1 + c2 + c3),
            ("agent", 350, 35, 3, 1, c1 + c2 + c3),
        ] {
            assert_eq!(
                r.i64(label, "genai_audit.total.input_tokens"),
                input,
                "{label}"
            );
            assert_eq!(
                r.i64(label, "genai_audit.total.output_tokens"),
                output,
                "{label}"
            );
            assert_eq!(r.i64(label, "genai_audit.total.generations"), generations);
            assert_eq!(
                r.i64(label, "genai_audit.total.tool_calls"),
                tools,
                "{label}"
            );
            assert!((r.f64(label, "genai_audit.total.cost_usd") - cost).abs() < 1e-15);
            assert_eq!(r.attr(label, "genai_audit.total.partial"), None, "{label}");
        }
        // The non-recognised span passes through untouched.
        assert!(common::audit_keys(r.span("http")).is_empty());
        // The step's position and the invocation's step count, counted at end.
        assert_eq!(r.i64("round", "genai_audit.step.index"), 1);
        assert_eq!(r.i64("agent", "genai_audit.steps"), 1);
        // No cumulative totals: the invocation was not known when the calls ended.
        assert_eq!(r.attr("c1", "genai_audit.cumulative.input_tokens"), None);
        assert_eq!(h.tracked_spans(), 0);
    }
}

#[test]
fn late_end_when_parent_and_child_are_recognised_only_at_end() {
    let text = script(&[
        start("agent", None, "agent", 0),
        start("round", Some("agent"), "round", 1),
        start("c1", Some("round"), "model call", 2),
        end("round", r#""gen_ai.operation.name":"react""#, 3),
        end("c1", &chat(100, 10), 4),
        end("agent", r#""gen_ai.operation.name":"invoke_agent""#, 5),
    ]);
    for (leak, contamination) in policies() {
        let h = harness(leak, contamination);
        let r = h.replay(&text);
        assert_eq!(r.findings("c1"), ["late_end"]);
        assert!(r.findings("round").is_empty());
        assert!(r.findings("agent").is_empty());
        // The late call still counts above its ended parent.
        assert_eq!(r.i64("agent", "genai_audit.total.input_tokens"), 100);
        assert_eq!(r.attr("round", "genai_audit.total.generations"), None);
        assert_eq!(
            h.finding_counts(),
            common::expect_counts(&[("late_end", "generation", false, 1)])
        );
    }
}

#[test]
fn mastra_run_aborted_mid_stream() {
    let text = script(&[
        start("run", None, "agent run: 'weather-agent'", 0),
        start("llm", Some("run"), "llm: 'gpt-4o-mini'", 1),
        start("s0", Some("llm"), "step: 0", 2),
        start("i0", Some("s0"), "inference: 0", 3),
        end("i0", r#""mastra.span.type":"model_inference""#, 4),
        start("tool", Some("s0"), "tool: 'weather'", 5),
        end(
            "tool",
            r#""mastra.span.type":"tool_call","gen_ai.operation.name":"execute_tool""#,
            6,
        ),
        end("s0", r#""mastra.span.type":"model_step""#, 7),
        start("s1", Some("llm"), "step: 1", 8),
        start("i1", Some("s1"), "inference: 1", 9),
        start("chunk", Some("i1"), "chunk: 'text'", 10),
        // Aborted while streaming: step 1, its inference and its chunk never end.
        end(
            "llm",
            r#""mastra.span.type":"model_generation","gen_ai.operation.name":"chat","gen_ai.request.model":"gpt-4o-mini","gen_ai.usage.input_tokens":120,"gen_ai.usage.output_tokens":7"#,
            11,
        ),
        end(
            "run",
            r#""mastra.span.type":"agent_run","gen_ai.operation.name":"invoke_agent""#,
            12,
        ),
    ]);
    let h = harness(LeakPolicy::Flag, ContaminationPolicy::Flag);
    let r = h.replay(&text);
    assert_eq!(r.findings("llm"), ["unclosed_child"]);
    assert_eq!(r.i64("llm", "genai_audit.leak.unclosed_children"), 1);
    assert_eq!(
        common::string_array(r.span("llm"), "genai_audit.leak.unclosed_names"),
        ["step: 1"]
    );
    assert_eq!(r.i64("s0", "genai_audit.step.index"), 1);
    assert_eq!(r.i64("run", "genai_audit.steps"), 2);
    assert_eq!(r.i64("run", "genai_audit.total.input_tokens"), 120);
    assert_eq!(r.i64("run", "genai_audit.total.tool_calls"), 1);
    assert!(r.bool("run", "genai_audit.total.partial"));
    assert!(r.findings("run").is_empty());
    // At shutdown the step still open is evicted: `stale`, counted (its inference and
    // chunk are not gen-ai: counted with the role `other`).
    h.provider.shutdown().unwrap();
    assert_eq!(
        h.finding_counts(),
        common::expect_counts(&[
            ("stale", "other", false, 2),
            ("stale", "step", false, 1),
            ("unclosed_child", "generation", false, 1),
        ])
    );
    assert_eq!(h.tracked_spans(), 0);
}

const AGENT_META: &str =
    r#""openinference.span.kind":"CHAIN","metadata":"{\"lc_agent_name\":\"weather_agent\"}""#;
const STEP_META: &str = r#""openinference.span.kind":"CHAIN","metadata":"{\"lc_agent_name\":\"weather_agent\",\"langgraph_step\":1,\"langgraph_node\":\"model_request\"}""#;

fn llm(input: u64, output: u64) -> String {
    format!(
        r#""openinference.span.kind":"LLM","llm.model_name":"gpt-4o-mini","llm.token_count.prompt":{input},"llm.token_count.completion":{output}"#
    )
}

#[test]
fn langgraph_run_cancelled_while_its_model_call_goes_on() {
    let text = script(&[
        start("agent", None, "weather_agent", 0),
        start("m1", Some("agent"), "model_request", 1),
        start("l1", Some("m1"), "ChatOpenAI", 2),
        end("l1", &llm(100, 10), 3),
        end("m1", STEP_META, 4),
        start("m2", Some("agent"), "model_request", 5),
        start("l2", Some("m2"), "ChatOpenAI", 6),
        // Cancelled: the step and the agent end; the model call goes on 50 ms.
        end("m2", STEP_META, 7),
        end("agent", AGENT_META, 8),
        end("l2", &llm(200, 20), 58),
    ]);
    for (leak, contamination) in policies() {
        let h = harness(leak, contamination);
        let r = h.replay(&text);
        assert_eq!(r.string("agent", "genai_audit.role"), "invocation");
        assert_eq!(r.string("m2", "genai_audit.role"), "step");
        assert_eq!(r.i64("m2", "genai_audit.step.index"), 2);
        assert_eq!(r.findings("l2"), ["late_end"]);
        assert!(r.findings("agent").is_empty());
        // The invocation's total is without the late call (it ended before).
        assert_eq!(r.i64("agent", "genai_audit.total.input_tokens"), 100);
        assert_eq!(r.i64("agent", "genai_audit.total.generations"), 1);
        assert_eq!(r.i64("agent", "genai_audit.steps"), 2);
        assert!(r.f64("l2", "genai_audit.cost_usd") > 0.0);
    }
}

#[test]
fn partial_travels_two_levels_up() {
    // Known at start: a step with a tool call left open, under a workflow, under an
    // invocation.
    let text = script(&[
        start("inv", None, "invoke_agent coder", 0),
        start("wf", Some("inv"), "execute_tool plan", 1),
        start("step", Some("wf"), "react step", 2),
        start("c1", Some("step"), "chat gpt-4o", 3),
        end("c1", &chat(10, 1), 4),
        start("tool", Some("step"), "execute_tool grep", 5),
        end("step", "", 6),
        end("wf", "", 7),
        end("inv", "", 8),
    ]);
    let r = Harness::new().replay(&text);
    assert_eq!(r.findings("step"), ["unclosed_child"]);
    for label in ["step", "wf", "inv"] {
        assert!(r.bool(label, "genai_audit.total.partial"), "{label}");
        assert_eq!(
            r.i64(label, "genai_audit.total.input_tokens"),
            10,
            "{label}"
        );
    }

    // Known only at end: an unpriced call two levels below the invocation, through a
    // span that is not gen-ai.
    let text = script(&[
        start("agent", None, "agent", 0),
        start("http", Some("agent"), "POST /v1", 1),
        start("round", Some("http"), "round", 2),
        start("c1", Some("round"), "model call", 3),
        end(
            "c1",
            r#""gen_ai.operation.name":"chat","gen_ai.request.model":"in-house-1","gen_ai.usage.input_tokens":5"#,
            4,
        ),
        end("round", r#""gen_ai.operation.name":"react""#, 5),
        end("http", "", 6),
        end("agent", r#""gen_ai.operation.name":"invoke_agent""#, 7),
    ]);
    let r = Harness::new().replay(&text);
    assert!(r.bool("c1", "genai_audit.cost.unpriced"));
    for label in ["round", "agent"] {
        assert!(r.bool(label, "genai_audit.total.partial"), "{label}");
        assert_eq!(r.i64(label, "genai_audit.total.input_tokens"), 5, "{label}");
        assert_eq!(r.attr(label, "genai_audit.total.cost_usd"), None, "{label}");
    }
    assert!(common::audit_keys(r.span("http")).is_empty());
    r.assert_no_findings();
}

#[test]
fn tracing_fields_declared_empty_and_recorded_before_close() {
    use tracing::field::Empty;
    use tracing_subscriber::layer::SubscriberExt;

    let h = Harness::new();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(h.tracer()));
    let mut costs = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        let agent = tracing::info_span!(
            "agent",
            "gen_ai.operation.name" = Empty,
            "gen_ai.agent.name" = Empty
        );
        agent.in_scope(|| {
            for (input, output) in [(1200_i64, 80_i64), (1500, 40)] {
                let round = tracing::info_span!("round", "gen_ai.operation.name" = Empty);
                round.in_scope(|| {
                    let call = tracing::info_span!(
                        "model call",
                        "gen_ai.operation.name" = Empty,
                        "gen_ai.provider.name" = Empty,
                        "gen_ai.request.model" = Empty,
                        "gen_ai.usage.input_tokens" = Empty,
                        "gen_ai.usage.output_tokens" = Empty
                    );
                    // What the model answered, recorded just before the span closes.
                    call.record("gen_ai.operation.name", "chat");
                    call.record("gen_ai.provider.name", "anthropic");
                    call.record("gen_ai.request.model", "claude-sonnet-4-5");
                    call.record("gen_ai.usage.input_tokens", input);
                    call.record("gen_ai.usage.output_tokens", output);
                });
                round.record("gen_ai.operation.name", "react");
            }
        });
        agent.record("gen_ai.operation.name", "invoke_agent");
        agent.record("gen_ai.agent.name", "coder");
    });
    let spans = h.exporter.get_finished_spans().unwrap();
    for span in spans.iter().filter(|s| s.name == "model call") {
        assert_eq!(common::str_of(span, "genai_audit.role"), "generation");
        costs.push(common::f64_of(span, "genai_audit.cost_usd"));
    }
    assert_eq!(costs.len(), 2);
    let agent = spans.iter().find(|s| s.name == "agent").expect("agent");
    assert_eq!(common::str_of(agent, "genai_audit.role"), "invocation");
    assert_eq!(
        common::i64_of(agent, "genai_audit.total.input_tokens"),
        2700
    );
    assert_eq!(
        common::i64_of(agent, "genai_audit.total.output_tokens"),
        120
    );
    assert_eq!(common::i64_of(agent, "genai_audit.total.generations"), 2);
    assert_eq!(common::i64_of(agent, "genai_audit.steps"), 2);
    let total = common::f64_of(agent, "genai_audit.total.cost_usd");
    assert!((total - costs.iter().sum::<f64>()).abs() < 1e-15);
    for span in &spans {
        assert!(common::findings_of(span).is_empty(), "{}", span.name);
    }
    let rounds: Vec<i64> = spans
        .iter()
        .filter(|s| s.name == "round")
        .map(|s| common::i64_of(s, "genai_audit.step.index"))
        .collect();
    assert_eq!(rounds, [1, 2]);
}

#[test]
fn contamination_checks_on_invocations_known_only_at_end() {
    // Two concurrent runs of one agent, every role known only at end; run B's agent
    // span got run A's response id and run A's token count (state overwritten).
    let gen = |id: &str, input: u64| {
        format!(
            r#"{},"gen_ai.response.id":"{id}","gen_ai.response.model":"gpt-4o""#,
            chat(input, 5)
        )
    };
    let agent = |id: &str, input: u64| {
        format!(
            r#""gen_ai.operation.name":"invoke_agent","gen_ai.response.id":"{id}","gen_ai.usage.input_tokens":{input},"gen_ai.usage.output_tokens":5"#
        )
    };
    let text = script(&[
        start("a", None, "agent", 0),
        start("b", None, "agent", 1),
        start("ca", Some("a"), "model call", 2),
        start("cb", Some("b"), "model call", 3),
        end("ca", &gen("resp-A", 100), 4),
        end("cb", &gen("resp-B", 200), 5),
        end("a", &agent("resp-A", 100), 6),
        end("b", &agent("resp-A", 100), 7),
    ]);
    let h = harness(LeakPolicy::Flag, ContaminationPolicy::Flag);
    let r = h.replay(&text);
    assert!(r.findings("a").is_empty());
    assert_eq!(r.findings("b"), ["usage_mismatch", "foreign_response"]);

    let h = harness(LeakPolicy::Flag, ContaminationPolicy::Repair);
    let r = h.replay(&text);
    assert_eq!(r.string("b", "gen_ai.response.id"), "resp-B");
    assert_eq!(r.i64("b", "gen_ai.usage.input_tokens"), 200);
    assert_eq!(
        r.string("b", "genai_audit.reported.gen_ai.response.id"),
        "resp-A"
    );
}

#[test]
fn pending_entries_are_bounded_and_evicted_silently() {
    use opentelemetry::trace::{
        Span as _, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
    };
    use opentelemetry::{Context, KeyValue};

    // 100 calls, each under a local parent the processor never sees start (and that
    // never ends): each would keep a pending entry; the capacity of 4 bounds them, and
    // their eviction is no finding.
    let h = Harness::with(|b| b.with_max_tracked_spans(4));
    let tracer = h.tracer();
    for i in 1..=100u64 {
        let parent = SpanContext::new(
            TraceId::from(u128::from(i)),
            SpanId::from(i),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(parent);
        let mut call = tracer.start_with_context("model call", &cx);
        call.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
        call.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 10));
        call.end();
        if i <= 4 {
            // The parent's pending entry holds the call's totals.
            assert_eq!(h.tracked_spans(), i as i64);
        }
        assert!(h.tracked_spans() <= 4, "call {i}: {}", h.tracked_spans());
    }
    assert!(h.finding_counts().is_empty(), "{:?}", h.finding_counts());
    assert_eq!(h.exporter.get_finished_spans().expect("spans").len(), 100);
    h.provider.shutdown().expect("shutdown");
    assert_eq!(h.tracked_spans(), 0);
    assert!(h.finding_counts().is_empty());
}
