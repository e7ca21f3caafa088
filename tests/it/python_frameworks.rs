//! Python agent frameworks whose steps need a rule of their own (the shared recordings
//! and their ground truth):
//! - Strands Agents (1.62, native tracing): each cycle of the agent loop,
//!   `execute_event_loop_cycle` (the Rust SDK's `execute_agent_loop_cycle`), is a step;
//! - the OpenAI Agents SDK (0.24) through OpenInference: each loop turn, a `CHAIN`
//!   named `turn` under the agent's `AGENT`, is a step; the root `Agent workflow`
//!   `AGENT` is a workflow.
//!
//! Each recording gives its ground truth exactly, in process (every policy) and through
//! the command; a cycle left open and two cycles overlapping are found.

use genai_audit::{ContaminationPolicy, LeakPolicy};

use crate::cli_support as cli;
use crate::common::Harness;

/// A step: (span id, index, input, output).
type Step = (&'static str, i64, i64, i64);

/// (invocation, input, output, its steps) from the README.
type Truth = [(&'static str, i64, i64, [Step; 2]); 2];

const STRANDS: &str = "strands-concurrent-2agents";
const STRANDS_TRUTH: Truth = [
    (
        "38b3cc07fe1d88d1",
        234,
        28,
        [
            ("cc474fb66273a9f7", 1, 101, 11),
            ("cfe2e704d74d1362", 2, 133, 17),
        ],
    ),
    (
        "808f17077f947a52",
        338,
        42,
        [
            ("819716d885f16bdc", 1, 157, 19),
            ("6b4980e29e8196d2", 2, 181, 23),
        ],
    ),
];

const OPENAI_AGENTS: &str = "openai-agents-concurrent";
const OPENAI_AGENTS_TRUTH: Truth = [
    (
        "25a6bb906e2ef427",
        234,
        28,
        [
            ("672d455b6e5c38ad", 1, 101, 11),
            ("387cf0ee71ae4df4", 2, 133, 17),
        ],
    ),
    (
        "edcff5356b8b68bc",
        338,
        42,
        [
            ("bd97bc5b55cdce99", 1, 157, 19),
            ("c2aab1a0514cd583", 2, 181, 23),
        ],
    ),
];

fn script(recording: &str) -> String {
    cli::read(&cli::recording(&format!("traces/{recording}.jsonl")))
}

#[test]
fn strands_gives_its_ground_truth_in_process_under_every_policy() {
    in_process(STRANDS, &STRANDS_TRUTH);
}

#[test]
fn openai_agents_gives_its_ground_truth_in_process_under_every_policy() {
    let r = in_process(OPENAI_AGENTS, &OPENAI_AGENTS_TRUTH);
    for root in ["a24e1c8c9f4c960f", "bc92df8ce8bdbdcb"] {
        assert_eq!(r.string(root, "genai_audit.role"), "workflow", "{root}");
    }
}

#[test]
fn strands_gives_its_ground_truth_through_the_command() {
    through_the_command(STRANDS, &STRANDS_TRUTH);
}

#[test]
fn openai_agents_gives_its_ground_truth_through_the_command() {
    let summaries = through_the_command(OPENAI_AGENTS, &OPENAI_AGENTS_TRUTH);
    for summary in summaries {
        assert_eq!(summary["invocations"], 2);
    }
}

/// Replays `recording` under every policy and checks `truth`; returns the last replay.
fn in_process(recording: &str, truth: &Truth) -> crate::common::Replayed {
    let mut last = None;
    for leak in [LeakPolicy::Flag, LeakPolicy::Close] {
        for contamination in [ContaminationPolicy::Flag, ContaminationPolicy::Repair] {
            let h = Harness::with(|b| b.leak_policy(leak).contamination_policy(contamination));
            let r = h.replay(&script(recording));
            for &(inv, input, output, steps) in truth {
                assert_eq!(r.string(inv, "genai_audit.role"), "invocation");
                assert_eq!(r.i64(inv, "genai_audit.total.input_tokens"), input);
                assert_eq!(r.i64(inv, "genai_audit.total.output_tokens"), output);
                assert_eq!(r.i64(inv, "genai_audit.total.generations"), 2);
                assert_eq!(r.i64(inv, "genai_audit.total.tool_calls"), 1);
                assert_eq!(r.i64(inv, "genai_audit.steps"), 2);
                for (step, index, input, output) in steps {
                    assert_eq!(r.string(step, "genai_audit.role"), "step");
                    assert_eq!(r.i64(step, "genai_audit.step.index"), index);
                    assert_eq!(r.i64(step, "genai_audit.total.input_tokens"), input);
                    assert_eq!(r.i64(step, "genai_audit.total.output_tokens"), output);
                    assert_eq!(r.i64(step, "genai_audit.total.generations"), 1);
                }
            }
            r.assert_no_findings();
            last = Some(r);
        }
    }
    last.expect("replayed")
}

/// Checks `truth` through the command, on the trace script, the OTLP JSON and the
/// protobuf body of `recording`; returns the `check --json` summaries.
fn through_the_command(recording: &str, truth: &Truth) -> Vec<serde_json::Value> {
    let mut summaries = Vec::new();
    for file in [
        format!("traces/{recording}.jsonl"),
        format!("otlp/{recording}.otlp.json"),
        format!("otlp/{recording}.otlp.pb"),
    ] {
        let path = cli::recording(&file);
        let (code, summary) = cli::check_json(&[&path], &[]);
        assert_eq!(
            (code, summary["findings_total"].as_u64()),
            (0, Some(0)),
            "{file}"
        );
        summaries.push(summary);
        let spans = cli::spans_of(&cli::enrich(&[&path], &[]));
        for &(inv, input, output, steps) in truth {
            let span = spans
                .iter()
                .find(|s| format!("{:?}", cli::span_id_of(s)).contains(inv))
                .unwrap_or_else(|| panic!("{file}: {inv}"));
            assert_eq!(
                cli::attr(span, "genai_audit.total.input_tokens"),
                Some(input.to_string()),
                "{file}"
            );
            assert_eq!(
                cli::attr(span, "genai_audit.total.output_tokens"),
                Some(output.to_string()),
                "{file}"
            );
            assert_eq!(
                cli::attr(span, "genai_audit.steps"),
                Some("2".to_owned()),
                "{file}"
            );
            for (step, index, input, _) in steps {
                let span = spans
                    .iter()
                    .find(|s| format!("{:?}", cli::span_id_of(s)).contains(step))
                    .unwrap_or_else(|| panic!("{file}: {step}"));
                assert_eq!(
                    cli::attr(span, "genai_audit.step.index"),
                    Some(index.to_string()),
                    "{file}"
                );
                assert_eq!(
                    cli::attr(span, "genai_audit.total.input_tokens"),
                    Some(input.to_string()),
                    "{file}"
                );
            }
        }
    }
    summaries
}

const OPEN_CYCLE: &str = r#"{"op":"start","span":"agent","parent":null,"name":"invoke_agent weather_agent","time_ns":1000}
{"op":"start","span":"cycle","parent":"agent","name":"execute_event_loop_cycle","time_ns":1100}
{"op":"start","span":"chat","parent":"cycle","name":"chat","time_ns":1200}
{"op":"set","span":"chat","attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":10,"gen_ai.usage.output_tokens":2}}
{"op":"end","span":"chat","time_ns":1300}
{"op":"set","span":"agent","attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"end","span":"agent","time_ns":1400}
"#;

const OVERLAPPING_CYCLES: &str = r#"{"op":"start","span":"agent","parent":null,"name":"invoke_agent weather_agent","time_ns":1000}
{"op":"start","span":"c1","parent":"agent","name":"execute_event_loop_cycle","time_ns":1100}
{"op":"start","span":"c2","parent":"agent","name":"execute_agent_loop_cycle","time_ns":1200}
{"op":"set","span":"c2","attributes":{"gen_ai.operation.name":"execute_agent_loop_cycle"}}
{"op":"end","span":"c2","time_ns":1250}
{"op":"set","span":"c1","attributes":{"gen_ai.operation.name":"execute_event_loop_cycle"}}
{"op":"end","span":"c1","time_ns":1300}
{"op":"set","span":"agent","attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"end","span":"agent","time_ns":1400}
"#;

#[test]
fn a_cycle_left_open_when_its_agent_ends_is_an_unclosed_child() {
    let r = Harness::new().replay(OPEN_CYCLE);
    assert_eq!(r.findings("agent"), vec!["unclosed_child"]);
    assert_eq!(
        crate::common::value(r.span("agent"), "genai_audit.leak.unclosed_names")
            .map(|v| v.to_string()),
        Some("[\"execute_event_loop_cycle\"]".to_owned())
    );
}

#[test]
fn two_cycles_overlapping_is_an_overlapping_step() {
    let r = Harness::new().replay(OVERLAPPING_CYCLES);
    assert_eq!(r.findings("c2"), vec!["overlapping_step"]);
    assert_eq!(r.i64("c2", "genai_audit.step.index"), 2);
    assert_eq!(r.i64("agent", "genai_audit.steps"), 2);
}
