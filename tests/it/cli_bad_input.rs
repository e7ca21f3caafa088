//! `genai-audit` on unreadable input: no panic, `FILE:LINE: reason` on stderr, exit
//! status 2, and nothing written.

use crate::cli_support::{self as cli};

const GOOD: &str = r#"{"resourceSpans":[{"resource":{},"scopeSpans":[{"scope":{},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"chat gpt-4o","kind":3,"startTimeUnixNano":"1700000001000000000","endTimeUnixNano":"1700000002000000000","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}}]}]}]}]}"#;

/// Runs `check` and `enrich` on `text` (as file `name`), expecting the error on `line`
/// with `reason` in its message.
fn assert_rejected(name: &str, text: &str, line: usize, reason: &str, extra: &[&str]) {
    let file = cli::temp_file(name, text);
    let mut args = vec!["check", &file];
    args.extend_from_slice(extra);
    let output = cli::run(&args);
    let stderr = cli::stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
    assert!(cli::stdout(&output).is_empty(), "{name}: nothing on stdout");
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    assert!(
        stderr.contains(&format!("{file}:{line}: ")),
        "{name}: expected {file}:{line}: in {stderr}"
    );
    assert!(
        stderr.contains(reason),
        "{name}: expected {reason:?} in {stderr}"
    );

    let out = cli::temp_path("out.json");
    let out_text = out.to_string_lossy().into_owned();
    let mut args = vec!["enrich", &file, "-o", &out_text];
    args.extend_from_slice(extra);
    let output = cli::run(&args);
    assert_eq!(output.status.code(), Some(2), "{name}");
    assert!(!out.exists(), "{name}: nothing written");
}

#[test]
fn truncated_json() {
    let text = format!("{GOOD}\n{}\n", &GOOD[..GOOD.len() - 20]);
    assert_rejected("truncated.json", &text, 2, "EOF", &[]);
}

#[test]
fn wrong_types() {
    let text = format!(
        "{GOOD}\n\n{}\n",
        GOOD.replace(r#""name":"chat gpt-4o""#, r#""name":5"#)
    );
    assert_rejected("types.json", &text, 3, "invalid type", &[]);
    let text = GOOD.replace(r#""spans":["#, r#""spans":"x","other":["#);
    assert_rejected("types2.json", &text, 1, "invalid type", &[]);
}

#[test]
fn bad_hex_ids() {
    let text = GOOD.replace("eee19b7ec3c1b174", "eee19b7ec3c1b17z");
    assert_rejected("hex.json", &text, 1, "", &[]);
    let text = GOOD.replace("eee19b7ec3c1b174", "eee19b");
    assert_rejected("short.json", &text, 1, "spanId must be 16 hex digits", &[]);
}

#[test]
fn a_span_without_trace_id() {
    let text = format!(
        "{GOOD}\n{}",
        GOOD.replace(r#""traceId":"5b8efff798038103d269b633813fc60c","#, "")
    );
    assert_rejected(
        "no-trace.json",
        &text,
        2,
        "traceId must be 32 hex digits",
        &[],
    );
}

#[test]
fn an_empty_file() {
    assert_rejected("empty.json", "", 1, "empty", &[]);
    assert_rejected("blank.json", "\n  \n", 1, "empty", &[]);
}

#[test]
fn a_line_longer_than_the_limit() {
    let text = format!("{GOOD}\n{GOOD}\n");
    assert_rejected(
        "long.json",
        &text,
        1,
        "longer than the limit of 100",
        &["--max-line-bytes", "100"],
    );
    // The same file is fine with the default limit.
    let file = cli::temp_file("long-ok.json", &text);
    assert_eq!(cli::run(&["check", &file]).status.code(), Some(0));
}

#[test]
fn a_bad_trace_script() {
    let text = "{\"op\":\"start\",\"span\":\"a\",\"parent\":null,\"name\":\"x\",\"time_ns\":1}\n{\"op\":\"end\",\"span\":\"b\"}\n";
    assert_rejected("bad.jsonl", text, 2, "", &[]);
}

#[test]
fn a_missing_file() {
    let output = cli::run(&["check", "/nonexistent/genai-audit.json"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(cli::stderr(&output).contains("/nonexistent/genai-audit.json"));
}
