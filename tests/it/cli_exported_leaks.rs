//! What only an export shows: a leaked parent (`missing_parent` on its children), and
//! JavaScript's clock skew (a child ending a little after its parent by the
//! timestamps is not a late end).

use crate::cli_support::{self as cli, attr, export_script, json_lines, requests};

#[test]
fn a_root_that_never_ended_gives_missing_parent_on_its_children() {
    let script = r#"{"op":"start","span":"inv","parent":null,"name":"invoke_agent coder","time_ns":1700000000000000000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"step","parent":"inv","name":"react step","time_ns":1700000000001000000,"attributes":{"gen_ai.operation.name":"react"}}
{"op":"start","span":"llm","parent":"step","name":"chat gpt-4o","kind":"client","time_ns":1700000000002000000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.request.model":"gpt-4o","gen_ai.usage.input_tokens":100,"gen_ai.usage.output_tokens":10}}
{"op":"end","span":"llm","time_ns":1700000000900000000}
{"op":"end","span":"step","time_ns":1700000000950000000}
{"op":"start","span":"http","parent":"inv","name":"GET /health","time_ns":1700000000960000000}
{"op":"end","span":"http","time_ns":1700000000970000000}
"#;
    let exported = export_script(script);
    assert_eq!(
        exported.spans.len(),
        3,
        "the root never ended: never exported"
    );
    let file = cli::temp_file(
        "leaked.json",
        &json_lines(&requests(&exported.spans, 10, "app")),
    );
    let spans = cli::spans_of(&cli::enrich(&[&file], &[]));
    assert_eq!(
        cli::findings(cli::named(&spans, "react step")),
        ["missing_parent"]
    );
    // Its parent is there: no finding; the HTTP span is not gen-ai: never written.
    assert!(cli::findings(cli::named(&spans, "chat gpt-4o")).is_empty());
    assert!(cli::named(&spans, "GET /health")
        .attributes
        .iter()
        .all(|kv| !kv.key.starts_with("genai_audit.")));
    assert_eq!(
        attr(
            cli::named(&spans, "react step"),
            "genai_audit.total.input_tokens"
        )
        .as_deref(),
        Some("100")
    );

    let (code, summary) = cli::check_json(&[&file], &[]);
    assert_eq!(code, 1);
    assert_eq!(summary["findings"]["missing_parent"], 1);
    assert_eq!(summary["findings_total"], 1);
    let output = cli::run(&["check", &file]);
    assert!(cli::stdout(&output).contains("missing_parent"));
}

/// An invocation (`parent`) and its step (`child`) ending `after_ns` after it; with
/// `split`, each in a resource of its own (the parent's listed first), else both in
/// one resource, the child first (the order a JavaScript batch exporter writes).
fn skew_file(after_ns: u64, split: bool) -> String {
    let span = |id: &str, parent: &str, name: &str, op: &str, start: u64, end: u64| {
        format!(
            r#"{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"{id}"{parent},"name":"{name}","kind":1,"startTimeUnixNano":"{start}","endTimeUnixNano":"{end}","attributes":[{{"key":"gen_ai.operation.name","value":{{"stringValue":"{op}"}}}}],"status":{{"code":0}},"flags":257}}"#,
            parent = if parent.is_empty() {
                String::new()
            } else {
                format!(r#","parentSpanId":"{parent}""#)
            },
        )
    };
    let base = 1_700_000_000_000_000_000u64;
    let parent_end = base + 100_000_000;
    let parent = span(
        "00000000000000a1",
        "",
        "invoke_agent a",
        "invoke_agent",
        base,
        parent_end,
    );
    let child = span(
        "00000000000000b2",
        "00000000000000a1",
        "react step",
        "react",
        base + 1_000_000,
        parent_end + after_ns,
    );
    let resource = |name: &str, spans: &str| {
        format!(
            r#"{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{name}"}}}}]}},"scopeSpans":[{{"scope":{{"name":"s"}},"spans":[{spans}]}}]}}"#
        )
    };
    if split {
        format!(
            "{{\"resourceSpans\":[{}]}}\n{{\"resourceSpans\":[{}]}}\n",
            resource("a", &parent),
            resource("b", &child)
        )
    } else {
        format!(
            "{{\"resourceSpans\":[{}]}}\n",
            resource("a", &format!("{child},{parent}"))
        )
    }
}

fn step_findings(text: &str, extra: &[&str]) -> Vec<String> {
    let file = cli::temp_file("skew.json", text);
    let spans = cli::spans_of(&cli::enrich(&[&file], extra));
    cli::findings(cli::named(&spans, "react step"))
}

#[test]
fn javascript_clock_skew_is_not_a_late_end() {
    // Same resource: the order of appearance says the child ended first.
    assert!(step_findings(&skew_file(700_000, false), &[]).is_empty());
    // Across resources, by time: 0.7 ms after is within the default 2 ms skew...
    assert!(step_findings(&skew_file(700_000, true), &[]).is_empty());
    // ... 50 ms after is a late end.
    assert_eq!(
        step_findings(&skew_file(50_000_000, true), &[]),
        ["late_end"]
    );
    // `--skew` sets the window.
    assert_eq!(
        step_findings(&skew_file(700_000, true), &["--skew", "0"]),
        ["late_end"]
    );
    assert!(step_findings(&skew_file(50_000_000, true), &["--skew", "60ms"]).is_empty());
}
