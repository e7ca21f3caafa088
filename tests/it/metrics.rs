//! The `genai_audit.findings` counter (the design contract (DESIGN.md) §7): every finding code is counted with
//! its role and repair flag, with exact counts, each driven by a small trace script;
//! and what the spans say in `genai_audit.findings` agrees with the metric.

use crate::common;

use std::collections::BTreeMap;

use common::{expect_counts, findings_of, value, FindingCount, Metrics, Recorder};
use genai_audit::script::TraceScript;
use genai_audit::{ContaminationPolicy, FindingCode, GenAiAuditProcessorBuilder, LeakPolicy};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Value;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};

type Builder = GenAiAuditProcessorBuilder<Recorder>;

/// What a replayed script produced.
struct Run {
    /// Exported spans by script label, in export order.
    spans: Vec<(String, SpanData)>,
    counts: Vec<FindingCount>,
}

impl Run {
    fn span(&self, label: &str) -> &SpanData {
        let found: Vec<&SpanData> = self
            .spans
            .iter()
            .filter(|(l, _)| l == label)
            .map(|(_, s)| s)
            .collect();
        assert_eq!(found.len(), 1, "{label} exported {} times", found.len());
        found[0]
    }

    fn findings(&self, label: &str) -> Vec<String> {
        findings_of(self.span(label))
    }

    fn attr(&self, label: &str, key: &str) -> Option<Value> {
        value(self.span(label), key)
    }

    fn labels(&self) -> Vec<&str> {
        self.spans.iter().map(|(l, _)| l.as_str()).collect()
    }

    /// The finding counts, and the findings of the spans listed (exactly, in order).
    fn assert_findings(&self, counts: &[(&str, &str, bool, u64)], spans: &[(&str, &[&str])]) {
        assert_eq!(self.counts, expect_counts(counts), "finding counts");
        for (label, findings) in spans {
            assert_eq!(self.findings(label), *findings, "findings of {label}");
        }
    }

    /// Attribute values (`None`: absent), each by (label, key).
    fn assert_attrs(&self, expected: &[(&str, &str, Option<Value>)]) {
        for (label, key, want) in expected {
            assert_eq!(self.attr(label, key), *want, "{label}: {key}");
        }
    }
}

/// Replays `script` through a provider whose only processor is the audit processor
/// (configured by `configure`, metrics on) wrapping a [`Recorder`] (which keeps its
/// spans after shutdown); with `shutdown`, the
/// provider is shut down while the script's open spans are still held.
fn run(script: &str, configure: impl FnOnce(Builder) -> Builder, shutdown: bool) -> Run {
    let metrics = Metrics::new();
    let recorder = Recorder::default();
    let builder = metrics.audit(recorder.clone());
    let provider = SdkTracerProvider::builder()
        .with_span_processor(configure(builder).build())
        .build();
    let script = TraceScript::parse(script).unwrap_or_else(|e| panic!("bad script: {e}"));
    let replay = script.replay(&provider.tracer("test"));
    if shutdown {
        provider.shutdown().unwrap();
    }
    let counts = metrics.finding_counts();
    let spans = recorder
        .ended()
        .into_iter()
        .map(|s| {
            let label = replay
                .label_of(s.span_context.span_id())
                .expect("every exported span comes from the script");
            (label.to_owned(), s)
        })
        .collect();
    if shutdown {
        drop(replay);
    } else {
        // Dropping the replay ends the spans it left open: keep them open.
        std::mem::forget(replay);
    }
    Run { spans, counts }
}

fn flag(b: Builder) -> Builder {
    b.leak_policy(LeakPolicy::Flag)
        .contamination_policy(ContaminationPolicy::Flag)
}

fn close(b: Builder) -> Builder {
    b.leak_policy(LeakPolicy::Close)
        .contamination_policy(ContaminationPolicy::Flag)
}

fn repair(b: Builder) -> Builder {
    b.leak_policy(LeakPolicy::Flag)
        .contamination_policy(ContaminationPolicy::Repair)
}

fn budget(b: Builder) -> Builder {
    flag(b).with_budget(genai_audit::Budget::tokens(150))
}

/// Two generations of 110 tokens each under one invocation: the second passes a
/// budget of 150 tokens.
const OVER_BUDGET: &str = r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"g1","parent":"inv","name":"chat m","time_ns":2000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":100,"gen_ai.usage.output_tokens":10}}
{"op":"end","span":"g1","time_ns":3000}
{"op":"start","span":"g2","parent":"inv","name":"chat m","time_ns":4000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":100,"gen_ai.usage.output_tokens":10}}
{"op":"end","span":"g2","time_ns":5000}
{"op":"end","span":"inv","time_ns":6000}
"#;

// ---------------------------------------------------------------------------------
// The scripts.

/// An invocation ends while its step is open.
const OPEN_STEP: &str = r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"step","parent":"inv","name":"react step","time_ns":2000,"attributes":{"gen_ai.operation.name":"react"}}
{"op":"end","span":"inv","time_ns":3000}
"#;

/// The same, and the step ends after its invocation.
const LATE_STEP: &str = r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"step","parent":"inv","name":"react step","time_ns":2000,"attributes":{"gen_ai.operation.name":"react"}}
{"op":"end","span":"inv","time_ns":3000}
{"op":"end","span":"step","time_ns":4000}
"#;

/// A step starts under an invocation that has already ended.
const LATE_START: &str = r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"end","span":"inv","time_ns":2000}
{"op":"start","span":"step","parent":"inv","name":"react step","time_ns":3000,"attributes":{"gen_ai.operation.name":"react"}}
{"op":"end","span":"step","time_ns":4000}
"#;

/// A tool call that never ends (stale at shutdown).
const NEVER_ENDS: &str = r#"
{"op":"start","span":"tool","parent":null,"name":"execute_tool search","time_ns":1000,"attributes":{"gen_ai.operation.name":"execute_tool"}}
"#;

/// The step reports 999 input tokens and the invocation 77 output tokens; their one
/// generation had 100 in, 10 out.
const USAGE: &str = r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"step","parent":"inv","name":"react step","time_ns":2000,"attributes":{"gen_ai.operation.name":"react"}}
{"op":"start","span":"g1","parent":"step","name":"chat m","time_ns":3000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":100,"gen_ai.usage.output_tokens":10}}
{"op":"end","span":"g1","time_ns":4000}
{"op":"set","span":"step","attributes":{"gen_ai.usage.input_tokens":999,"gen_ai.usage.output_tokens":10}}
{"op":"end","span":"step","time_ns":5000}
{"op":"set","span":"inv","attributes":{"gen_ai.usage.input_tokens":100,"gen_ai.usage.output_tokens":77}}
{"op":"end","span":"inv","time_ns":6000}
"#;

/// Two concurrent invocations in two traces; b reports a's response id.
const FOREIGN: &str = r#"
{"op":"start","span":"a","parent":null,"name":"invoke_agent shared","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"b","parent":null,"name":"invoke_agent shared","time_ns":1100,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"ga","parent":"a","name":"chat gpt-4o","time_ns":2000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.request.model":"gpt-4o"}}
{"op":"start","span":"gb","parent":"b","name":"chat gpt-4o-mini","time_ns":2100,"attributes":{"gen_ai.operation.name":"chat","gen_ai.request.model":"gpt-4o-mini"}}
{"op":"set","span":"ga","attributes":{"gen_ai.response.id":"resp-a","gen_ai.response.model":"gpt-4o-2024-08-06"}}
{"op":"end","span":"ga","time_ns":3000}
{"op":"set","span":"gb","attributes":{"gen_ai.response.id":"resp-b","gen_ai.response.model":"gpt-4o-mini-2024-07-18"}}
{"op":"end","span":"gb","time_ns":3100}
{"op":"set","span":"b","attributes":{"gen_ai.response.id":"resp-a","gen_ai.response.model":"gpt-4o-2024-08-06"}}
{"op":"end","span":"b","time_ns":4000}
{"op":"set","span":"a","attributes":{"gen_ai.response.id":"resp-a","gen_ai.response.model":"gpt-4o-2024-08-06"}}
{"op":"end","span":"a","time_ns":4100}
"#;

/// b reports a's response id but has no generation of its own.
const FOREIGN_NO_OWN: &str = r#"
{"op":"start","span":"a","parent":null,"name":"invoke_agent shared","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"ga","parent":"a","name":"chat gpt-4o","time_ns":2000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.response.id":"resp-a"}}
{"op":"end","span":"ga","time_ns":3000}
{"op":"start","span":"b","parent":null,"name":"invoke_agent shared","time_ns":3500,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"set","span":"b","attributes":{"gen_ai.response.id":"resp-a"}}
{"op":"end","span":"b","time_ns":4000}
{"op":"end","span":"a","time_ns":4100}
"#;

/// The first step says it is round 2; the second says "2" and is.
const ROUNDS: &str = r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"s1","parent":"inv","name":"react step","time_ns":2000,"attributes":{"gen_ai.operation.name":"react","gen_ai.react.round":2}}
{"op":"end","span":"s1","time_ns":3000}
{"op":"start","span":"s2","parent":"inv","name":"react step","time_ns":4000,"attributes":{"gen_ai.operation.name":"react","gen_ai.react.round":"2"}}
{"op":"end","span":"s2","time_ns":5000}
{"op":"end","span":"inv","time_ns":6000}
"#;

/// s2 starts while s1 is open.
const OVERLAP: &str = r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"s1","parent":"inv","name":"react step","time_ns":2000,"attributes":{"gen_ai.operation.name":"react"}}
{"op":"start","span":"s2","parent":"inv","name":"react step","time_ns":3000,"attributes":{"gen_ai.operation.name":"react"}}
{"op":"end","span":"s2","time_ns":4000}
{"op":"end","span":"s1","time_ns":5000}
{"op":"end","span":"inv","time_ns":6000}
"#;

/// A generation of another conversation and a tool of another agent.
const IDENTITY: &str = r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent coder","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent","gen_ai.conversation.id":"c1","gen_ai.agent.name":"coder"}}
{"op":"start","span":"g1","parent":"inv","name":"chat m","time_ns":2000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.conversation.id":"c2"}}
{"op":"end","span":"g1","time_ns":3000}
{"op":"start","span":"g2","parent":"inv","name":"chat m","time_ns":4000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.conversation.id":"c1","gen_ai.agent.name":"coder"}}
{"op":"end","span":"g2","time_ns":5000}
{"op":"start","span":"tool","parent":"inv","name":"execute_tool x","time_ns":6000,"attributes":{"gen_ai.operation.name":"execute_tool"}}
{"op":"set","span":"tool","attributes":{"gen_ai.agent.name":"reviewer"}}
{"op":"end","span":"tool","time_ns":7000}
{"op":"end","span":"inv","time_ns":8000}
"#;

/// A negative and a non-numeric token count.
const INVALID: &str = r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"g1","parent":"inv","name":"chat m","time_ns":2000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":-5,"gen_ai.usage.output_tokens":10}}
{"op":"end","span":"g1","time_ns":3000}
{"op":"start","span":"g2","parent":"inv","name":"chat m","time_ns":4000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":7,"gen_ai.usage.output_tokens":"abc"}}
{"op":"end","span":"g2","time_ns":5000}
{"op":"end","span":"inv","time_ns":6000}
"#;

/// Several findings on one step: it overlaps s1, says round 5 at position 2, reports 99
/// input tokens for its generation's 10, and ends after its invocation.
const MANY: &str = r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"s1","parent":"inv","name":"react step","time_ns":2000,"attributes":{"gen_ai.operation.name":"react"}}
{"op":"start","span":"s2","parent":"inv","name":"react step","time_ns":3000,"attributes":{"gen_ai.operation.name":"react","gen_ai.react.round":5}}
{"op":"start","span":"g","parent":"s2","name":"chat m","time_ns":4000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":10,"gen_ai.usage.output_tokens":1}}
{"op":"end","span":"g","time_ns":5000}
{"op":"end","span":"inv","time_ns":6000}
{"op":"set","span":"s2","attributes":{"gen_ai.usage.input_tokens":99}}
{"op":"end","span":"s2","time_ns":7000}
{"op":"end","span":"s1","time_ns":8000}
"#;

// ---------------------------------------------------------------------------------
// One finding code at a time.

#[test]
fn unclosed_child() {
    let r = run(OPEN_STEP, flag, false);
    r.assert_findings(
        &[("unclosed_child", "invocation", false, 1)],
        &[("inv", &["unclosed_child"])],
    );
    assert_eq!(r.labels(), ["inv"]);
}

#[test]
fn closed_by_audit() {
    let r = run(OPEN_STEP, close, false);
    r.assert_findings(
        &[
            ("unclosed_child", "invocation", false, 1),
            ("closed_by_audit", "step", false, 1),
        ],
        &[("step", &["closed_by_audit"]), ("inv", &["unclosed_child"])],
    );
    assert_eq!(r.labels(), ["step", "inv"]);
}

#[test]
fn late_end() {
    let r = run(LATE_STEP, flag, false);
    r.assert_findings(
        &[
            ("unclosed_child", "invocation", false, 1),
            ("late_end", "step", false, 1),
        ],
        &[("inv", &["unclosed_child"]), ("step", &["late_end"])],
    );
}

#[test]
fn late_end_of_a_span_the_audit_closed_is_counted_only() {
    let r = run(LATE_STEP, close, false);
    r.assert_findings(
        &[
            ("unclosed_child", "invocation", false, 1),
            ("closed_by_audit", "step", false, 1),
            ("late_end", "step", false, 1),
        ],
        &[("step", &["closed_by_audit"])],
    );
    assert_eq!(r.labels(), ["step", "inv"]);
}

#[test]
fn late_start() {
    let r = run(LATE_START, flag, false);
    r.assert_findings(
        &[("late_start", "step", false, 1)],
        &[("inv", &[]), ("step", &["late_start"])],
    );
}

#[test]
fn stale() {
    let r = run(NEVER_ENDS, flag, true);
    r.assert_findings(&[("stale", "tool", false, 1)], &[]);
    assert!(r.spans.is_empty());
}

#[test]
fn stale_under_close() {
    let r = run(NEVER_ENDS, close, true);
    r.assert_findings(
        &[
            ("stale", "tool", false, 1),
            ("closed_by_audit", "tool", false, 1),
        ],
        &[("tool", &["stale", "closed_by_audit"])],
    );
}

#[test]
fn usage_mismatch() {
    let r = run(USAGE, flag, false);
    r.assert_findings(
        &[
            ("usage_mismatch", "invocation", false, 1),
            ("usage_mismatch", "step", false, 1),
        ],
        &[
            ("inv", &["usage_mismatch"]),
            ("step", &["usage_mismatch"]),
            ("g1", &[]),
        ],
    );
    // Flag changes nothing.
    r.assert_attrs(&[
        ("step", "gen_ai.usage.input_tokens", Some(Value::I64(999))),
        (
            "step",
            "genai_audit.reported.gen_ai.usage.input_tokens",
            None,
        ),
    ]);
}

#[test]
fn usage_mismatch_repaired() {
    let r = run(USAGE, repair, false);
    r.assert_findings(
        &[
            ("usage_mismatch", "invocation", true, 1),
            ("usage_mismatch", "step", true, 1),
        ],
        &[("inv", &["usage_mismatch"]), ("step", &["usage_mismatch"])],
    );
    // Each mismatching key becomes the own sum; the original is kept.
    r.assert_attrs(&[
        ("step", "gen_ai.usage.input_tokens", Some(Value::I64(100))),
        (
            "step",
            "genai_audit.reported.gen_ai.usage.input_tokens",
            Some(Value::I64(999)),
        ),
        ("step", "gen_ai.usage.output_tokens", Some(Value::I64(10))),
        (
            "step",
            "genai_audit.reported.gen_ai.usage.output_tokens",
            None,
        ),
        ("inv", "gen_ai.usage.output_tokens", Some(Value::I64(10))),
        (
            "inv",
            "genai_audit.reported.gen_ai.usage.output_tokens",
            Some(Value::I64(77)),
        ),
        ("inv", "gen_ai.usage.input_tokens", Some(Value::I64(100))),
        (
            "inv",
            "genai_audit.reported.gen_ai.usage.input_tokens",
            None,
        ),
    ]);
}

#[test]
fn foreign_response() {
    let r = run(FOREIGN, flag, false);
    r.assert_findings(
        &[("foreign_response", "invocation", false, 1)],
        &[("b", &["foreign_response"]), ("a", &[])],
    );
    r.assert_attrs(&[("b", "gen_ai.response.id", Some("resp-a".into()))]);
}

#[test]
fn foreign_response_repaired() {
    let r = run(FOREIGN, repair, false);
    r.assert_findings(
        &[("foreign_response", "invocation", true, 1)],
        &[("b", &["foreign_response"]), ("a", &[])],
    );
    r.assert_attrs(&[
        ("b", "gen_ai.response.id", Some("resp-b".into())),
        (
            "b",
            "gen_ai.response.model",
            Some("gpt-4o-mini-2024-07-18".into()),
        ),
        (
            "b",
            "genai_audit.reported.gen_ai.response.id",
            Some("resp-a".into()),
        ),
        (
            "b",
            "genai_audit.reported.gen_ai.response.model",
            Some("gpt-4o-2024-08-06".into()),
        ),
        ("a", "gen_ai.response.id", Some("resp-a".into())),
    ]);
}

#[test]
fn foreign_response_without_an_own_response_is_not_repaired() {
    let r = run(FOREIGN_NO_OWN, repair, false);
    r.assert_findings(
        &[("foreign_response", "invocation", false, 1)],
        &[("b", &["foreign_response"])],
    );
    r.assert_attrs(&[
        ("b", "gen_ai.response.id", Some("resp-a".into())),
        ("b", "genai_audit.reported.gen_ai.response.id", None),
    ]);
}

#[test]
fn round_mismatch() {
    let r = run(ROUNDS, flag, false);
    r.assert_findings(
        &[("round_mismatch", "step", false, 1)],
        &[("s1", &["round_mismatch"]), ("s2", &[])],
    );
    r.assert_attrs(&[("s1", "gen_ai.react.round", Some(Value::I64(2)))]);
}

#[test]
fn round_mismatch_repaired() {
    let r = run(ROUNDS, repair, false);
    r.assert_findings(
        &[("round_mismatch", "step", true, 1)],
        &[("s1", &["round_mismatch"])],
    );
    r.assert_attrs(&[
        ("s1", "gen_ai.react.round", Some(Value::I64(1))),
        (
            "s1",
            "genai_audit.reported.gen_ai.react.round",
            Some(Value::I64(2)),
        ),
        ("s2", "gen_ai.react.round", Some("2".into())),
        ("s2", "genai_audit.reported.gen_ai.react.round", None),
    ]);
}

/// A configuration of the processor.
type Configure = fn(Builder) -> Builder;

/// Both contamination policies: neither repairs these codes.
const FLAG_AND_REPAIR: [(Configure, &str); 2] = [(flag, "flag"), (repair, "repair")];

#[test]
fn overlapping_step() {
    for (policy, name) in FLAG_AND_REPAIR {
        let r = run(OVERLAP, policy, false);
        assert_eq!(
            r.counts,
            expect_counts(&[("overlapping_step", "step", false, 1)]),
            "{name}"
        );
        assert_eq!(r.findings("s2"), ["overlapping_step"]);
        assert!(r.findings("s1").is_empty());
    }
}

#[test]
fn identity_mismatch() {
    for (policy, name) in FLAG_AND_REPAIR {
        let r = run(IDENTITY, policy, false);
        // Never repaired.
        assert_eq!(
            r.counts,
            expect_counts(&[
                ("identity_mismatch", "generation", false, 1),
                ("identity_mismatch", "tool", false, 1),
            ]),
            "{name}"
        );
        assert_eq!(r.findings("g1"), ["identity_mismatch"]);
        assert!(r.findings("g2").is_empty());
        assert_eq!(r.findings("tool"), ["identity_mismatch"]);
        assert!(r.findings("inv").is_empty());
        assert_eq!(r.attr("g1", "gen_ai.conversation.id"), Some("c2".into()));
    }
}

#[test]
fn invalid_usage() {
    let r = run(INVALID, flag, false);
    r.assert_findings(
        &[("invalid_usage", "generation", false, 2)],
        &[
            ("g1", &["invalid_usage"]),
            ("g2", &["invalid_usage"]),
            ("inv", &[]),
        ],
    );
}

#[test]
fn several_findings_on_one_span() {
    let r = run(MANY, flag, false);
    r.assert_findings(
        &[
            ("unclosed_child", "invocation", false, 1),
            ("overlapping_step", "step", false, 1),
            ("late_end", "step", false, 2),
            ("usage_mismatch", "step", false, 1),
            ("round_mismatch", "step", false, 1),
        ],
        &[("s1", &["late_end"]), ("inv", &["unclosed_child"])],
    );
    let mut s2 = r.findings("s2");
    s2.sort();
    assert_eq!(
        s2,
        [
            "late_end",
            "overlapping_step",
            "round_mismatch",
            "usage_mismatch"
        ]
    );
    r.assert_attrs(&[(
        "inv",
        "genai_audit.leak.unclosed_children",
        Some(Value::I64(2)),
    )]);
}

// ---------------------------------------------------------------------------------
// Coverage and agreement.

/// Every scenario above: (name, configuration, script, shutdown, every finding is on
/// an exported span).
type Scenario = (&'static str, Configure, &'static str, bool, bool);

fn scenarios() -> Vec<Scenario> {
    vec![
        ("unclosed_child", flag, OPEN_STEP, false, true),
        ("closed_by_audit", close, OPEN_STEP, false, true),
        ("late_end", flag, LATE_STEP, false, true),
        ("late_end (closed)", close, LATE_STEP, false, false),
        ("late_start", flag, LATE_START, false, true),
        ("stale", flag, NEVER_ENDS, true, false),
        ("stale (closed)", close, NEVER_ENDS, true, true),
        ("usage_mismatch", flag, USAGE, false, true),
        ("usage_mismatch (repair)", repair, USAGE, false, true),
        ("foreign_response", flag, FOREIGN, false, true),
        ("foreign_response (repair)", repair, FOREIGN, false, true),
        (
            "foreign_response (no own)",
            repair,
            FOREIGN_NO_OWN,
            false,
            true,
        ),
        ("round_mismatch", flag, ROUNDS, false, true),
        ("round_mismatch (repair)", repair, ROUNDS, false, true),
        ("overlapping_step", flag, OVERLAP, false, true),
        ("identity_mismatch", flag, IDENTITY, false, true),
        ("invalid_usage", flag, INVALID, false, true),
        ("many", flag, MANY, false, true),
        ("budget_exceeded", budget, OVER_BUDGET, false, true),
    ]
}

#[test]
fn every_finding_code_is_counted_with_its_role_and_repair_flag() {
    let mut seen: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for (_, configure, script, shutdown, _) in scenarios() {
        for (code, role, repaired, _) in run(script, configure, shutdown).counts {
            seen.entry(code).or_default().push((role, repaired));
        }
    }
    // `missing_parent` and `invalid_time` are only reported by the `genai-audit`
    // command on exported traces: the processor never counts them.
    let all: Vec<String> = FindingCode::ALL
        .iter()
        .filter(|c| !matches!(c, FindingCode::MissingParent | FindingCode::InvalidTime))
        .map(|c| c.as_str().to_owned())
        .collect();
    assert_eq!(all.len(), 12);
    let mut codes: Vec<String> = seen.keys().cloned().collect();
    codes.sort();
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(codes, expected);
    // The three repairable codes are counted repaired under `repair`.
    for code in ["usage_mismatch", "foreign_response", "round_mismatch"] {
        assert!(seen[code].iter().any(|(_, r)| *r), "{code} repaired");
        assert!(seen[code].iter().any(|(_, r)| !*r), "{code} flagged");
    }
    for code in all.iter().filter(|c| {
        !matches!(
            c.as_str(),
            "usage_mismatch" | "foreign_response" | "round_mismatch"
        )
    }) {
        assert!(seen[code].iter().all(|(_, r)| !*r), "{code} never repaired");
    }
}

#[test]
fn span_findings_and_the_metric_agree() {
    for (name, configure, script, shutdown, all_exported) in scenarios() {
        let r = run(script, configure, shutdown);
        let mut from_spans: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (label, span) in &r.spans {
            let findings = findings_of(span);
            if findings.is_empty() {
                continue;
            }
            let role = match value(span, "genai_audit.role") {
                Some(Value::String(s)) => s.to_string(),
                other => panic!("{name}: {label} has findings but role {other:?}"),
            };
            for code in findings {
                *from_spans.entry((code, role.clone())).or_default() += 1;
            }
        }
        let mut from_metric: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (code, role, _, n) in &r.counts {
            *from_metric.entry((code.clone(), role.clone())).or_default() += n;
        }
        if all_exported {
            assert_eq!(from_spans, from_metric, "{name}");
        } else {
            // Counted only (stale under flag, a closed span's real end): every finding
            // on a span is counted, and more.
            for (key, n) in &from_spans {
                assert_eq!(from_metric.get(key), Some(n), "{name}: {key:?}");
            }
            assert!(from_metric.values().sum::<u64>() > from_spans.values().sum::<u64>());
        }
    }
}
