//! Runs the `replay` example binary on recorded and malformed trace scripts.

use crate::common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::run_example;
use genai_audit::script::{Event, TraceScript};
use serde_json::Value;

/// Keys of a span line, in the order the example prints them.
const SPAN_KEYS: [&str; 9] = [
    "span",
    "name",
    "parent",
    "kind",
    "start_ns",
    "end_ns",
    "status",
    "status_message",
    "attributes",
];

const TRACE_FILES: [&str; 3] = [
    "hermes-concurrent-fixed.jsonl",
    "pydantic-ai-concurrent.jsonl",
    "vercel-ai-concurrent.jsonl",
];

fn trace_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/recordings/traces")
        .join(file)
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    run_example("replay", args, &[], stdin)
}

/// What the script says about one span.
struct Expected {
    parent: Option<String>,
    name: String,
    start_ns: u64,
    end_ns: Option<u64>,
}

fn expected_spans(script: &TraceScript) -> HashMap<String, Expected> {
    let mut spans = HashMap::new();
    for event in script.events() {
        match event {
            Event::Start(start) => {
                spans.insert(
                    start.span.clone(),
                    Expected {
                        parent: start.parent.clone(),
                        name: start.name.clone(),
                        start_ns: start.time_ns,
                        end_ns: None,
                    },
                );
            }
            Event::End(end) => {
                if let Some(span) = spans.get_mut(&end.span) {
                    span.end_ns = Some(end.time_ns);
                }
            }
            _ => {}
        }
    }
    spans
}

/// Checks that the top-level keys of `line` come in `SPAN_KEYS` order.
fn assert_key_order(line: &str) {
    let mut from = 0;
    for key in SPAN_KEYS {
        let needle = format!("\"{key}\":");
        let at = line[from..]
            .find(&needle)
            .unwrap_or_else(|| panic!("key {key:?} missing or out of order in {line}"));
        from += at + needle.len();
    }
    assert!(line.starts_with("{\"span\":"), "{line}");
}

/// Replays a recorded trace and checks every span line against the script.
fn check_recorded_trace(file: &str) {
    let path = trace_path(file);
    let text = std::fs::read_to_string(&path).expect("read trace script");
    let script = TraceScript::parse(&text).expect("recorded trace parses");
    let expected = expected_spans(&script);

    let output = run(&[path.to_str().expect("utf-8 path")], None);
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{file}: stderr: {stderr}");

    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected.len() + 1, "{file}: {stdout}");
    let (metrics, span_lines) = lines.split_last().expect("at least the metrics line");

    let metrics: Value = serde_json::from_str(metrics).expect("metrics line is JSON");
    let metrics_object = metrics.as_object().expect("metrics line is an object");
    assert_eq!(metrics_object.len(), 1, "{metrics}");
    assert!(metrics["metrics"].is_object(), "{metrics}");

    let mut seen = HashMap::new();
    for line in span_lines {
        assert_key_order(line);
        let span: Value = serde_json::from_str(line).expect("span line is JSON");
        let object = span.as_object().expect("span line is an object");
        assert_eq!(object.len(), SPAN_KEYS.len(), "{line}");
        let label = span["span"].as_str().expect("span label").to_string();
        let want = expected
            .get(&label)
            .unwrap_or_else(|| panic!("{file}: unknown span {label}"));
        assert_eq!(span["name"], want.name.as_str(), "{file}: {label}");
        match &want.parent {
            None => assert!(span["parent"].is_null(), "{file}: {label}"),
            Some(parent) => assert_eq!(span["parent"], parent.as_str(), "{file}: {label}"),
        }
        assert_eq!(
            span["start_ns"].as_u64(),
            Some(want.start_ns),
            "{file}: {label}"
        );
        assert_eq!(span["end_ns"].as_u64(), want.end_ns, "{file}: {label}");
        assert!(span["kind"].is_string(), "{line}");
        assert!(
            ["unset", "ok", "error"].contains(&span["status"].as_str().unwrap_or("")),
            "{line}"
        );
        assert!(span["status_message"].is_string(), "{line}");
        assert!(span["attributes"].is_object(), "{line}");
        *seen.entry(label).or_insert(0) += 1;
    }
    for label in expected.keys() {
        assert_eq!(
            seen.get(label),
            Some(&1),
            "{file}: span {label} printed once"
        );
    }
}

#[test]
fn replays_vercel_ai_trace() {
    check_recorded_trace("vercel-ai-concurrent.jsonl");
}

#[test]
fn replays_every_recorded_trace() {
    for file in TRACE_FILES {
        check_recorded_trace(file);
    }
}

const MALFORMED: &str = concat!(
    r#"{"op":"start","span":"a","parent":null,"name":"root","time_ns":1}"#,
    "\n# a comment\n",
    r#"{"op":"end","span":"nope","time_ns":1}"#,
    "\n",
    r#"{"op":"end","span":"a","time_ns":2}"#,
    "\n",
);

fn assert_rejected(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("error: line 3"), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "stdout must be empty");
}

#[test]
fn rejects_malformed_script_file() {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!(
        "genai-audit-malformed-{}-{nanos}-{}.jsonl",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, MALFORMED).expect("write temp script");
    let output = run(&[path.to_str().expect("utf-8 temp path")], None);
    let _ = std::fs::remove_file(&path);
    assert_rejected(&output);
}

#[test]
fn rejects_malformed_script_on_stdin() {
    assert_rejected(&run(&["-"], Some(MALFORMED)));
    assert_rejected(&run(&[], Some(MALFORMED)));
}

/// The replay output as (span lines by label, metrics object).
fn replay_output(args: &[&str], stdin: Option<&str>) -> (HashMap<String, Value>, Value) {
    let output = run(args, stdin);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    let mut lines: Vec<&str> = stdout.lines().collect();
    let metrics: Value = serde_json::from_str(lines.pop().expect("metrics line")).expect("json");
    let spans = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            (v["span"].as_str().expect("label").to_string(), v)
        })
        .collect();
    (spans, metrics["metrics"].clone())
}

#[test]
fn replay_prints_the_enriched_attributes_and_the_metrics() {
    let path = trace_path("hermes-concurrent-fixed.jsonl");
    let (spans, metrics) = replay_output(&[path.to_str().expect("utf-8 path")], None);
    let inv = &spans["f83a2880dd7e8c62"]["attributes"];
    assert_eq!(inv["genai_audit.role"], "invocation");
    assert_eq!(inv["genai_audit.total.input_tokens"], 24);
    assert_eq!(inv["genai_audit.total.output_tokens"], 8);
    assert_eq!(inv["genai_audit.total.generations"], 2);
    assert_eq!(inv["genai_audit.total.tool_calls"], 1);
    assert_eq!(inv["genai_audit.total.partial"], true);
    assert_eq!(inv["genai_audit.steps"], 2);
    let chat = &spans["4a06a51c012a3a0a"]["attributes"];
    assert_eq!(chat["genai_audit.cumulative.input_tokens"], 24);
    assert_eq!(chat["genai_audit.cost.unpriced"], true);
    // Nothing left tracked after shutdown, no finding counted.
    assert_eq!(
        metrics["genai_audit.spans.tracked"],
        serde_json::json!([{"attributes":{},"value":0}])
    );
    assert!(metrics.get("genai_audit.findings").is_none(), "{metrics}");
}

#[test]
fn replay_counts_findings_in_the_metrics_line() {
    let script = r#"{"op":"start","span":"g","parent":null,"name":"chat m","time_ns":1,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":-1}}
{"op":"end","span":"g","time_ns":2}
"#;
    let (spans, metrics) = replay_output(&["-"], Some(script));
    assert_eq!(
        spans["g"]["attributes"]["genai_audit.findings"],
        serde_json::json!(["invalid_usage"])
    );
    assert_eq!(
        metrics["genai_audit.findings"],
        serde_json::json!([{"attributes":{
            "genai_audit.finding":"invalid_usage",
            "genai_audit.repaired":false,
            "genai_audit.role":"generation"},"value":1}])
    );
}
