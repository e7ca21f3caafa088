//! Roles known only at end count fully: totals on every recognised ancestor, step
//! positions, `partial`, `late_end` and the contamination checks, whether a role was
//! known at a span's start or only at its end, through non-recognised spans. The six
//! recordings in `../shared/traces/` under both leak and both contamination policies
//! (the totals of their README, no finding), and trace scripts of our own.

use crate::common;

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
    let path = format!("{}/../shared/traces/{file}", env!("CARGO_MANIFEST_DIR"));
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
    assert_eq!(r.string(label, "genai_audit.role"), "invocation", "{context} {label}");
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
            assert_eq!(r.string(step, "genai_audit.role"), "step", "{context} {step}");
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
    assert_eq!(r.i64("db5f8605b062060b", "genai_audit.total.input_tokens"), 521);
    assert_eq!(r.string("0a188790012f3c3d", "genai_audit.role"), "step");
    assert_eq!(r.i64("0a188790012f3c3d", "genai_audit.step.index"), 2);
    assert_eq!(r.string("0d2286da14330b6d", "genai_audit.role"), "workflow");
    assert_eq!(r.string("39e4ca41b3a2b93c", "genai_audit.role"), "workflow");
    assert_eq!(r.i64("39e4ca41b3a2b93c", "genai_audit.total.tool_calls"), 1);
    assert_eq!(r.string("8c65abce5808f0c8", "genai_audit.role"), "generation");
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

