//! Cross-invocation contamination (the design contract, DESIGN.md §6):
//! trace scripts of each symptom of concurrent invocations of one shared agent
//! overwriting each other's telemetry state, with the exact findings under the policy
//! `flag`, and the exact repaired values and `genai_audit.reported.*` originals under
//! `repair`; and correct traces of the same shapes, which must give no finding at all
//! under either policy.
//!
//! The scripts are in `tests/scripts/contamination/`, each with a header saying what
//! the instrumentation did; they replay with `cargo run --example replay -- FILE` too.
//! Every exported span's `genai_audit.findings` is compared with the expected list
//! (spans not listed must have none), every `genai_audit.reported.*` key of every span
//! with the expected originals (no other), and the `genai_audit.findings` metric with
//! the expected counts by (code, role, repaired), all exactly.

use crate::common;

use std::collections::BTreeMap;

use common::{expect_counts, findings_of, reported_of, Harness, Replayed};
use genai_audit::ContaminationPolicy;
use opentelemetry::Value;

macro_rules! script {
    ($name:literal) => {
        include_str!(concat!("scripts/contamination/", $name, ".jsonl"))
    };
}

const FLAG: ContaminationPolicy = ContaminationPolicy::Flag;
const REPAIR: ContaminationPolicy = ContaminationPolicy::Repair;

/// Expected findings by label, shared by the `flag` and `repair` runs of a script.
type Findings = &'static [(&'static str, &'static [&'static str])];

const SHARED_COUNTERS_FINDINGS: Findings = &[
    ("inv_a", &["usage_mismatch", "foreign_response"]),
    ("inv_b", &["usage_mismatch"]),
];

const DUPLICATE_ROUNDS_FINDINGS: Findings = &[
    ("step_1b", &["overlapping_step", "round_mismatch"]),
    ("step_2a", &["round_mismatch"]),
    ("step_2b", &["overlapping_step", "round_mismatch"]),
];

/// The steps of `duplicate_rounds` and their positions.
const DUPLICATE_ROUNDS_POSITIONS: [(&str, i64); 4] = [
    ("step_1a", 1),
    ("step_1b", 2),
    ("step_2a", 3),
    ("step_2b", 4),
];

const SKIPPED_ROUNDS_FINDINGS: Findings = &[
    ("step_2", &["round_mismatch"]),
    ("step_3", &["round_mismatch"]),
];

fn run(script: &str, policy: ContaminationPolicy) -> (Harness, Replayed) {
    let h = Harness::with(|b| b.contamination_policy(policy));
    let r = h.replay(script);
    (h, r)
}

/// Every exported span's findings: those listed, exactly and in order; none elsewhere.
fn assert_findings(r: &Replayed, expected: &[(&str, &[&str])]) {
    for (label, _) in expected {
        r.span(label);
    }
    let mut labels: Vec<_> = r.spans.keys().collect();
    labels.sort();
    for label in labels {
        let want: Vec<String> = expected
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, codes)| codes.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(findings_of(r.span(label)), want, "findings of {label}");
    }
}

fn assert_metric(h: &Harness, expected: &[(&str, &str, bool, u64)]) {
    assert_eq!(
        h.metrics.all_finding_counts(),
        expect_counts(expected),
        "genai_audit.findings metric"
    );
}

/// Every `genai_audit.reported.*` attribute of every span, by (label, key).
fn reported(r: &Replayed) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (label, span) in &r.spans {
        for (key, value) in reported_of(span) {
            let previous = out.insert((label.clone(), key.clone()), value);
            assert!(previous.is_none(), "{label}: {key} twice");
        }
    }
    out
}

fn assert_reported(r: &Replayed, expected: &[(&str, &str, Value)]) {
    let want: BTreeMap<_, _> = expected
        .iter()
        .map(|(label, key, v)| {
            (
                (label.to_string(), format!("genai_audit.reported.{key}")),
                v.clone(),
            )
        })
        .collect();
    assert_eq!(reported(r), want, "genai_audit.reported.* attributes");
}

fn assert_usage(r: &Replayed, label: &str, input: i64, output: i64) {
    assert_eq!(
        (
            r.i64(label, "gen_ai.usage.input_tokens"),
            r.i64(label, "gen_ai.usage.output_tokens")
        ),
        (input, output),
        "reported usage of {label}"
    );
    assert_eq!(
        r.occurrences(label, "gen_ai.usage.input_tokens"),
        1,
        "{label}"
    );
    assert_eq!(
        r.occurrences(label, "gen_ai.usage.output_tokens"),
        1,
        "{label}"
    );
}

/// Totals: input, output, generations, tool calls.
fn assert_totals(r: &Replayed, label: &str, totals: (i64, i64, i64, i64)) {
    assert_eq!(
        (
            r.i64(label, "genai_audit.total.input_tokens"),
            r.i64(label, "genai_audit.total.output_tokens"),
            r.i64(label, "genai_audit.total.generations"),
            r.i64(label, "genai_audit.total.tool_calls"),
        ),
        totals,
        "totals of {label}"
    );
}

fn assert_response(r: &Replayed, label: &str, id: &str, model: &str) {
    assert_eq!(r.string(label, "gen_ai.response.id"), id, "{label}");
    assert_eq!(r.string(label, "gen_ai.response.model"), model, "{label}");
    assert_eq!(r.occurrences(label, "gen_ai.response.id"), 1, "{label}");
    assert_eq!(r.occurrences(label, "gen_ai.response.model"), 1, "{label}");
}

fn round(r: &Replayed, label: &str) -> Option<Value> {
    r.attr(label, "gen_ai.react.round")
}

// ---------------------------------------------------------------------------------
// usage_mismatch
// ---------------------------------------------------------------------------------

#[test]
fn usage_cleared_by_a_sibling_is_flagged() {
    let (h, r) = run(script!("usage_cleared"), FLAG);
    assert_findings(&r, &[("inv_a", &["usage_mismatch"])]);
    assert_usage(&r, "inv_a", 0, 0);
    assert_usage(&r, "inv_b", 200, 50);
    assert_totals(&r, "inv_a", (120, 30, 1, 0));
    assert_totals(&r, "inv_b", (200, 50, 1, 0));
    assert_reported(&r, &[]);
    assert_metric(&h, &[("usage_mismatch", "invocation", false, 1)]);
}

#[test]
fn usage_cleared_by_a_sibling_is_repaired_to_the_own_sum() {
    let (h, r) = run(script!("usage_cleared"), REPAIR);
    assert_findings(&r, &[("inv_a", &["usage_mismatch"])]);
    assert_usage(&r, "inv_a", 120, 30);
    assert_usage(&r, "inv_b", 200, 50);
    assert_response(&r, "inv_a", "chatcmpl-a1", "gpt-4o-2024-08-06");
    assert_reported(
        &r,
        &[
            ("inv_a", "gen_ai.usage.input_tokens", Value::I64(0)),
            ("inv_a", "gen_ai.usage.output_tokens", Value::I64(0)),
        ],
    );
    assert_metric(&h, &[("usage_mismatch", "invocation", true, 1)]);
}

#[test]
fn agents_reporting_the_sum_of_both_invocations_and_a_last_response_are_flagged() {
    let (h, r) = run(script!("shared_counters"), FLAG);
    assert_findings(&r, SHARED_COUNTERS_FINDINGS);
    // Everything was recognised although the spans started with their names only.
    for (label, role) in [
        ("inv_a", "invocation"),
        ("step_a1", "step"),
        ("chat_a1", "generation"),
        ("tool_a1", "tool"),
    ] {
        assert_eq!(r.string(label, "genai_audit.role"), role, "{label}");
    }
    // Untouched under flag.
    assert_usage(&r, "inv_a", 60, 17);
    assert_usage(&r, "inv_b", 60, 17);
    assert_response(&r, "inv_a", "resp-B-2", "qwen-turbo");
    // Rolling up the tree gives the truth.
    assert_totals(&r, "inv_a", (24, 8, 2, 1));
    assert_totals(&r, "inv_b", (36, 9, 2, 1));
    assert_eq!(r.i64("inv_a", "genai_audit.steps"), 2);
    assert_eq!(r.i64("step_a2", "genai_audit.step.index"), 2);
    assert_reported(&r, &[]);
    assert_metric(
        &h,
        &[
            ("foreign_response", "invocation", false, 1),
            ("usage_mismatch", "invocation", false, 2),
        ],
    );
}

#[test]
fn agents_reporting_the_sum_of_both_invocations_and_a_last_response_are_repaired() {
    let (h, r) = run(script!("shared_counters"), REPAIR);
    assert_findings(&r, SHARED_COUNTERS_FINDINGS);
    assert_usage(&r, "inv_a", 24, 8);
    assert_usage(&r, "inv_b", 36, 9);
    // A gets its own last response back; B's was its own all along.
    assert_response(&r, "inv_a", "resp-A-2", "qwen-turbo");
    assert_response(&r, "inv_b", "resp-B-2", "qwen-turbo");
    assert_totals(&r, "inv_a", (24, 8, 2, 1));
    assert_totals(&r, "inv_b", (36, 9, 2, 1));
    assert_reported(
        &r,
        &[
            ("inv_a", "gen_ai.usage.input_tokens", Value::I64(60)),
            ("inv_a", "gen_ai.usage.output_tokens", Value::I64(17)),
            ("inv_a", "gen_ai.response.id", "resp-B-2".into()),
            ("inv_a", "gen_ai.response.model", "qwen-turbo".into()),
            ("inv_b", "gen_ai.usage.input_tokens", Value::I64(60)),
            ("inv_b", "gen_ai.usage.output_tokens", Value::I64(17)),
        ],
    );
    assert_metric(
        &h,
        &[
            ("foreign_response", "invocation", true, 1),
            ("usage_mismatch", "invocation", true, 2),
        ],
    );
}

#[test]
fn a_step_reporting_two_invocations_usage_is_flagged() {
    let (h, r) = run(script!("usage_step"), FLAG);
    assert_findings(&r, &[("step_a1", &["usage_mismatch"])]);
    assert_eq!(r.i64("step_a1", "gen_ai.usage.prompt_tokens"), 1700);
    assert_eq!(r.i64("step_a1", "gen_ai.usage.completion_tokens"), 60);
    assert_totals(&r, "step_a1", (800, 60, 2, 0));
    assert_usage(&r, "inv_a", 800, 60);
    assert_reported(&r, &[]);
    assert_metric(&h, &[("usage_mismatch", "step", false, 1)]);
}

#[test]
fn a_step_reporting_two_invocations_usage_is_repaired_under_its_own_key() {
    let (h, r) = run(script!("usage_step"), REPAIR);
    assert_findings(&r, &[("step_a1", &["usage_mismatch"])]);
    // Only the mismatching count is repaired, under the key the step used.
    assert_eq!(r.i64("step_a1", "gen_ai.usage.prompt_tokens"), 800);
    assert_eq!(r.occurrences("step_a1", "gen_ai.usage.prompt_tokens"), 1);
    assert_eq!(r.i64("step_a1", "gen_ai.usage.completion_tokens"), 60);
    assert_eq!(r.attr("step_a1", "gen_ai.usage.input_tokens"), None);
    assert_eq!(r.i64("step_b1", "gen_ai.usage.prompt_tokens"), 900);
    assert_reported(
        &r,
        &[("step_a1", "gen_ai.usage.prompt_tokens", Value::I64(1700))],
    );
    assert_metric(&h, &[("usage_mismatch", "step", true, 1)]);
}

// ---------------------------------------------------------------------------------
// foreign_response
// ---------------------------------------------------------------------------------

#[test]
fn a_nested_childs_response_on_the_parent_is_flagged() {
    let (h, r) = run(script!("foreign_nested"), FLAG);
    assert_findings(&r, &[("planner", &["foreign_response"])]);
    assert_response(&r, "planner", "chatcmpl-r1", "gpt-4o-mini-2024-07-18");
    assert_usage(&r, "planner", 100, 10);
    assert_totals(&r, "planner", (140, 14, 2, 1));
    assert_reported(&r, &[]);
    assert_metric(&h, &[("foreign_response", "invocation", false, 1)]);
}

#[test]
fn a_nested_childs_response_on_the_parent_is_repaired_with_the_parents_last_call() {
    let (h, r) = run(script!("foreign_nested"), REPAIR);
    assert_findings(&r, &[("planner", &["foreign_response"])]);
    assert_response(&r, "planner", "chatcmpl-p1", "gpt-4o-2024-08-06");
    assert_response(&r, "researcher", "chatcmpl-r1", "gpt-4o-mini-2024-07-18");
    assert_usage(&r, "planner", 100, 10);
    assert_reported(
        &r,
        &[
            ("planner", "gen_ai.response.id", "chatcmpl-r1".into()),
            (
                "planner",
                "gen_ai.response.model",
                "gpt-4o-mini-2024-07-18".into(),
            ),
        ],
    );
    assert_metric(&h, &[("foreign_response", "invocation", true, 1)]);
}

#[test]
fn a_foreign_response_without_an_own_response_is_flagged_but_not_repaired() {
    for policy in [FLAG, REPAIR] {
        let (h, r) = run(script!("foreign_no_own"), policy);
        assert_findings(&r, &[("inv_a", &["foreign_response"])]);
        assert_response(&r, "inv_a", "chatcmpl-b1", "gpt-4o-2024-08-06");
        assert_usage(&r, "inv_a", 60, 6);
        assert_reported(&r, &[]);
        assert_metric(&h, &[("foreign_response", "invocation", false, 1)]);
    }
}

// ---------------------------------------------------------------------------------
// round_mismatch, overlapping_step
// ---------------------------------------------------------------------------------

#[test]
fn duplicate_rounds_from_double_registered_hooks_are_flagged() {
    let (h, r) = run(script!("duplicate_rounds"), FLAG);
    assert_findings(&r, DUPLICATE_ROUNDS_FINDINGS);
    for (label, index) in DUPLICATE_ROUNDS_POSITIONS {
        assert_eq!(r.i64(label, "genai_audit.step.index"), index, "{label}");
    }
    assert_eq!(r.i64("inv", "genai_audit.steps"), 4);
    assert_eq!(round(&r, "step_1b"), Some(Value::I64(1)));
    assert_eq!(round(&r, "step_2a"), Some("2".into()));
    assert_eq!(round(&r, "step_2b"), Some(Value::I64(2)));
    assert_totals(&r, "inv", (700, 70, 2, 1));
    assert_reported(&r, &[]);
    assert_metric(
        &h,
        &[
            ("overlapping_step", "step", false, 2),
            ("round_mismatch", "step", false, 3),
        ],
    );
}

#[test]
fn duplicate_rounds_are_repaired_to_the_step_positions() {
    let (h, r) = run(script!("duplicate_rounds"), REPAIR);
    assert_findings(&r, DUPLICATE_ROUNDS_FINDINGS);
    for (label, index) in DUPLICATE_ROUNDS_POSITIONS {
        assert_eq!(round(&r, label), Some(Value::I64(index)), "{label}");
        assert_eq!(r.occurrences(label, "gen_ai.react.round"), 1, "{label}");
    }
    assert_reported(
        &r,
        &[
            ("step_1b", "gen_ai.react.round", Value::I64(1)),
            ("step_2a", "gen_ai.react.round", "2".into()),
            ("step_2b", "gen_ai.react.round", Value::I64(2)),
        ],
    );
    assert_metric(
        &h,
        &[
            ("overlapping_step", "step", false, 2),
            ("round_mismatch", "step", true, 3),
        ],
    );
}

#[test]
fn skipped_rounds_are_flagged() {
    let (h, r) = run(script!("skipped_rounds"), FLAG);
    assert_findings(&r, SKIPPED_ROUNDS_FINDINGS);
    assert_eq!(round(&r, "step_2"), Some(Value::I64(3)));
    assert_eq!(round(&r, "step_3"), Some(Value::I64(5)));
    assert_reported(&r, &[]);
    assert_metric(&h, &[("round_mismatch", "step", false, 2)]);
}

#[test]
fn skipped_rounds_are_repaired() {
    let (h, r) = run(script!("skipped_rounds"), REPAIR);
    assert_findings(&r, SKIPPED_ROUNDS_FINDINGS);
    assert_eq!(round(&r, "step_1"), Some(Value::I64(1)));
    assert_eq!(round(&r, "step_2"), Some(Value::I64(2)));
    assert_eq!(round(&r, "step_3"), Some(Value::I64(3)));
    assert_reported(
        &r,
        &[
            ("step_2", "gen_ai.react.round", Value::I64(3)),
            ("step_3", "gen_ai.react.round", Value::I64(5)),
        ],
    );
    assert_metric(&h, &[("round_mismatch", "step", true, 2)]);
}

// ---------------------------------------------------------------------------------
// late_start
// ---------------------------------------------------------------------------------

#[test]
fn spans_started_under_a_step_a_sibling_closed_are_late_starts() {
    for policy in [FLAG, REPAIR] {
        let (h, r) = run(script!("early_close"), policy);
        assert_findings(
            &r,
            &[
                ("tool_a1", &["late_start"]),
                ("chat_a2", &["late_start"]),
                ("step_a2", &["late_start"]),
                ("chat_b2", &["late_start"]),
            ],
        );
        // The late spans join the invocation: its totals and own usage are whole, so
        // the usage both agents report is right, and so are the step positions.
        assert_totals(&r, "inv_a", (330, 33, 3, 1));
        assert_totals(&r, "inv_b", (410, 41, 2, 0));
        assert_eq!(r.i64("chat_a2", "genai_audit.cumulative.input_tokens"), 210);
        assert_eq!(r.i64("chat_b2", "genai_audit.cumulative.input_tokens"), 410);
        // The closed step had only its first call when it ended.
        assert_totals(&r, "step_a1", (100, 10, 1, 0));
        assert_eq!(r.i64("step_a2", "genai_audit.step.index"), 2);
        assert_eq!(r.i64("inv_a", "genai_audit.steps"), 2);
        assert_eq!(r.i64("inv_b", "genai_audit.steps"), 1);
        assert_usage(&r, "inv_a", 330, 33);
        assert_reported(&r, &[]);
        assert_metric(
            &h,
            &[
                ("late_start", "generation", false, 2),
                ("late_start", "step", false, 1),
                ("late_start", "tool", false, 1),
            ],
        );
    }
}

// ---------------------------------------------------------------------------------
// identity_mismatch
// ---------------------------------------------------------------------------------

#[test]
fn spans_carrying_another_invocations_identity_are_flagged_never_repaired() {
    for policy in [FLAG, REPAIR] {
        let (h, r) = run(script!("identity_mismatch"), policy);
        assert_findings(
            &r,
            &[
                ("chat_a2", &["identity_mismatch"]),
                ("tool_a1", &["identity_mismatch"]),
            ],
        );
        assert_eq!(r.string("chat_a2", "gen_ai.conversation.id"), "conv-b");
        assert_eq!(r.string("tool_a1", "gen_ai.agent.name"), "billing");
        assert_reported(&r, &[]);
        assert_metric(
            &h,
            &[
                ("identity_mismatch", "generation", false, 1),
                ("identity_mismatch", "tool", false, 1),
            ],
        );
    }
}

// ---------------------------------------------------------------------------------
// Correct traces: no finding under either policy, and repair changes nothing
// ---------------------------------------------------------------------------------

/// Replays a correct script under both policies: no finding, no metric point, no
/// `genai_audit.reported.*` key, and the same attributes on every span under both.
/// Returns the replay under `repair`.
fn clean(script: &str) -> Replayed {
    let (h_flag, flag) = run(script, FLAG);
    let (h_repair, repair) = run(script, REPAIR);
    for (h, r) in [(&h_flag, &flag), (&h_repair, &repair)] {
        r.assert_no_findings();
        r.assert_no_duplicate_keys();
        assert_reported(r, &[]);
        assert_metric(h, &[]);
    }
    assert_eq!(flag.spans.len(), repair.spans.len());
    for (label, span) in &flag.spans {
        assert_eq!(
            span.attributes,
            repair.span(label).attributes,
            "{label}: repair changed a correct span"
        );
    }
    repair
}

#[test]
fn concurrent_invocations_done_right_are_clean() {
    let r = clean(script!("clean_concurrent"));
    assert_totals(&r, "inv_a", (2003, 203, 2, 1));
    assert_totals(&r, "inv_b", (4003, 403, 2, 1));
    assert_usage(&r, "inv_a", 2003, 203);
    assert_response(&r, "inv_a", "chatcmpl-a2", "gpt-4o-2024-08-06");
    assert_eq!(r.i64("step_a2", "genai_audit.step.index"), 2);
    assert_eq!(round(&r, "step_a2"), Some("2".into()));
}

#[test]
fn nested_agent_whose_parent_reports_own_usage_is_clean() {
    let r = clean(script!("clean_nested_own"));
    assert_totals(&r, "planner", (400, 40, 4, 2));
    assert_totals(&r, "step_p1", (200, 20, 3, 2));
    assert_totals(&r, "researcher", (100, 10, 2, 1));
    assert_usage(&r, "planner", 300, 30);
    assert_usage(&r, "step_p1", 100, 10);
    assert_usage(&r, "researcher", 100, 10);
}

#[test]
fn nested_agent_whose_parent_reports_inclusive_usage_is_clean() {
    let r = clean(script!("clean_nested_inclusive"));
    assert_totals(&r, "planner", (400, 40, 4, 2));
    assert_totals(&r, "researcher", (100, 10, 2, 1));
    assert_usage(&r, "planner", 400, 40);
    assert_usage(&r, "step_p1", 200, 20);
}

#[test]
fn agents_nested_two_deep_are_clean_with_inclusive_totals_and_exclusive_own_usage() {
    let r = clean(script!("clean_depth2"));
    // Totals include everything below, nested invocations included.
    assert_totals(&r, "orch", (2620, 262, 6, 2));
    assert_totals(&r, "tool_code", (520, 52, 4, 1));
    assert_totals(&r, "coder", (520, 52, 4, 1));
    assert_totals(&r, "tool_test", (70, 7, 2, 0));
    assert_totals(&r, "tester", (70, 7, 2, 0));
    assert_eq!(
        r.i64("chat_o2", "genai_audit.cumulative.input_tokens"),
        2620
    );
    assert_eq!(r.i64("chat_c2", "genai_audit.cumulative.input_tokens"), 520);
    assert_eq!(r.i64("chat_t2", "genai_audit.cumulative.input_tokens"), 70);
    // The usage each agent reports is its own calls only, and stands.
    assert_usage(&r, "orch", 2100, 210);
    assert_usage(&r, "coder", 450, 45);
    assert_usage(&r, "tester", 70, 7);
    assert_eq!(r.i64("orch", "genai_audit.steps"), 2);
    assert_eq!(r.i64("coder", "genai_audit.steps"), 0);
    assert_eq!(r.i64("tester", "genai_audit.steps"), 1);
}

#[test]
fn instrumentations_reporting_inclusive_totals_on_the_agent_are_clean() {
    let r = clean(script!("clean_inclusive_totals"));
    assert_eq!(r.string("oi_agent", "genai_audit.role"), "invocation");
    assert_totals(&r, "oi_agent", (1220, 122, 3, 1));
    assert_totals(&r, "oi_sub", (120, 12, 1, 0));
    assert_eq!(r.i64("oi_agent", "llm.token_count.prompt"), 1220);
    assert_eq!(r.string("v_outer", "genai_audit.role"), "invocation");
    assert_totals(&r, "v_outer", (104, 18, 3, 1));
    assert_totals(&r, "v_inner", (20, 2, 1, 0));
    assert_eq!(r.i64("v_outer", "ai.usage.inputTokens"), 104);
}

#[test]
fn agents_reporting_no_usage_are_clean() {
    let r = clean(script!("clean_no_usage"));
    assert_totals(&r, "inv_a", (15, 5, 1, 0));
    assert_totals(&r, "inv_b", (25, 6, 1, 0));
    assert_eq!(r.attr("inv_a", "gen_ai.usage.input_tokens"), None);
}

#[test]
fn invocations_without_steps_are_clean() {
    let r = clean(script!("clean_no_steps"));
    assert_totals(&r, "inv_a", (204, 24, 2, 1));
    assert_totals(&r, "inv_b", (216, 36, 2, 1));
    assert_eq!(r.i64("inv_a", "genai_audit.steps"), 0);
    assert_usage(&r, "inv_b", 216, 36);
}

#[test]
fn an_agent_response_id_matching_no_generation_is_not_a_finding() {
    let r = clean(script!("clean_message_id"));
    assert_response(&r, "inv", "message-7f3a2c", "claude-sonnet-4-5-20250929");
    assert_usage(&r, "inv", 80, 8);
}

#[test]
fn agents_whose_calls_left_no_usage_spans_may_report_usage() {
    let r = clean(script!("clean_no_llm_spans"));
    assert_usage(&r, "inv_a", 500, 50);
    assert_usage(&r, "inv_b", 300, 30);
    assert_usage(&r, "step_b1", 300, 30);
    assert_totals(&r, "inv_a", (0, 0, 0, 1));
    assert_totals(&r, "inv_b", (0, 0, 1, 0));
}
