//! `genai-audit` on OTLP JSON made from trace scripts (the six recordings of
//! `tests/recordings/traces/` and recorded contamination): the same totals and findings as
//! the processor gives replaying the script in-process; exit codes and `--fail-on`.

use std::collections::HashMap;

use opentelemetry::trace::SpanId;
use opentelemetry_sdk::trace::SpanData;

use crate::cli_support::{self as cli, export_script, json_lines, requests, temp_file};
use crate::common::Harness;

const RECORDINGS: [&str; 6] = [
    "hermes-concurrent-fixed.jsonl",
    "pydantic-ai-concurrent.jsonl",
    "vercel-ai-concurrent.jsonl",
    "langchain-invoke-concurrent.jsonl",
    "mastra-generate-concurrent.jsonl",
    "vercel-ai7-generate-concurrent.jsonl",
];

fn recording(name: &str) -> String {
    cli::read(&cli::recording(&format!("traces/{name}")))
}

fn contamination(name: &str) -> String {
    cli::read(&format!(
        "{}/tests/it/scripts/contamination/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// The in-process audit of a script: span label → exported span.
fn in_process(script: &str) -> HashMap<String, SpanData> {
    Harness::new().replay(script).spans
}

/// Asserts that `enrich` of `otlp` gives every span the `genai_audit.*` attributes the
/// in-process audit of `script` gave it (labels from `labels`), and returns the
/// findings per span label.
///
/// An export shows every final attribute at start, which the in-process audit of a
/// span that got them late could not see: the export may add running totals
/// (`genai_audit.cumulative.*`, written when the invocation is known when a
/// generation ends) and findings; every other key, and every finding found
/// in-process, must be the same. The callers check the extra findings.
fn assert_same_as_in_process(
    script: &str,
    otlp: &str,
    labels: &HashMap<SpanId, String>,
) -> HashMap<String, Vec<String>> {
    let expected = in_process(script);
    let file = temp_file("input.json", otlp);
    let enriched = cli::spans_of(&cli::enrich(&[&file], &[]));
    assert_eq!(
        enriched.len(),
        expected.len(),
        "every exported span comes out"
    );
    let mut findings = HashMap::new();
    let mut total = 0;
    for span in &enriched {
        let label = &labels[&cli::span_id_of(span)];
        let in_process = &expected[label];
        let extra =
            |key: &str| key.starts_with("genai_audit.cumulative.") || key == "genai_audit.findings";
        let mut want = cli::sdk_audit_attributes(in_process);
        let mut got = cli::audit_attributes(span);
        let got_cumulative: Vec<_> = got
            .iter()
            .filter(|(k, _)| k.starts_with("genai_audit.cumulative."))
            .cloned()
            .collect();
        let want_cumulative: Vec<_> = want
            .iter()
            .filter(|(k, _)| k.starts_with("genai_audit.cumulative."))
            .cloned()
            .collect();
        if !want_cumulative.is_empty() {
            assert_eq!(
                got_cumulative, want_cumulative,
                "span {label} ({})",
                span.name
            );
        }
        want.retain(|(k, _)| !extra(k));
        got.retain(|(k, _)| !extra(k));
        assert_eq!(got, want, "span {label} ({})", span.name);
        let got_findings = cli::findings(span);
        for code in crate::common::findings_of(in_process) {
            assert!(
                got_findings.contains(&code),
                "span {label}: {code} found in-process"
            );
        }
        total += got_findings.len();
        if !got_findings.is_empty() {
            findings.insert(label.clone(), got_findings);
        }
    }
    let (code, summary) = cli::check_json(&[&file], &[]);
    assert_eq!(summary["findings_total"], total as u64);
    assert_eq!(summary["spans"], expected.len() as u64);
    assert_eq!(code, if total == 0 { 0 } else { 1 });
    findings
}

#[test]
fn each_recording_as_otlp_gives_the_in_process_totals_and_no_findings() {
    for name in RECORDINGS {
        let script = recording(name);
        let exported = export_script(&script);
        // Batches of 10, in end order, as a BatchSpanProcessor sends them.
        let otlp = json_lines(&requests(&exported.spans, 10, name));
        let findings = assert_same_as_in_process(&script, &otlp, &exported.labels);
        assert!(findings.is_empty(), "{name}: {findings:?}");
    }
}

#[test]
fn recorded_contamination_as_otlp_gives_the_in_process_findings() {
    for name in [
        "shared_counters.jsonl",
        "foreign_nested.jsonl",
        "identity_mismatch.jsonl",
        "duplicate_rounds.jsonl",
    ] {
        let script = contamination(name);
        let exported = export_script(&script);
        let otlp = json_lines(&requests(&exported.spans, 3, name));
        let findings = assert_same_as_in_process(&script, &otlp, &exported.labels);
        assert!(!findings.is_empty(), "{name}");
        // The one finding only an export can show: `inv_c` gets its agent name and
        // conversation id after its generation ended (in-process, they were unknown
        // when it ended); the export shows the generation belongs to another one.
        let in_process: usize = in_process(&script)
            .values()
            .map(|s| crate::common::findings_of(s).len())
            .sum();
        let exported_total: usize = findings.values().map(Vec::len).sum();
        if name == "identity_mismatch.jsonl" {
            assert_eq!(exported_total, in_process + 1, "{findings:?}");
            assert_eq!(findings["chat_c1"], ["identity_mismatch"]);
        } else {
            assert_eq!(exported_total, in_process, "{name}: {findings:?}");
        }
    }
}

#[test]
fn a_trace_spread_over_requests_out_of_order_gives_the_same_result() {
    // Each trace's spans (in end order) are cut into requests of 2 spans; the
    // requests of the three traces are interleaved, the last trace's first: no trace
    // is contiguous, and the file is in neither start nor time order (each trace's
    // spans keep their end order, as one process's batch exporter writes them).
    let script = recording("vercel-ai7-generate-concurrent.jsonl");
    let exported = export_script(&script);
    let mut by_trace: Vec<Vec<SpanData>> = Vec::new();
    for span in &exported.spans {
        let trace = span.span_context.trace_id();
        match by_trace
            .iter_mut()
            .find(|t| t[0].span_context.trace_id() == trace)
        {
            Some(list) => list.push(span.clone()),
            None => by_trace.push(vec![span.clone()]),
        }
    }
    assert_eq!(by_trace.len(), 3);
    let chunks: Vec<Vec<_>> = by_trace
        .iter()
        .rev()
        .map(|spans| requests(spans, 2, "vercel-ai7"))
        .collect();
    let mut interleaved = Vec::new();
    for round in 0..chunks.iter().map(Vec::len).max().unwrap_or(0) {
        for list in &chunks {
            if let Some(request) = list.get(round) {
                interleaved.push(request.clone());
            }
        }
    }
    assert!(interleaved.len() >= 9);
    let otlp = json_lines(&interleaved);
    let findings = assert_same_as_in_process(&script, &otlp, &exported.labels);
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn the_trace_scripts_themselves_are_read_too() {
    let files: Vec<String> = RECORDINGS
        .iter()
        .map(|n| cli::recording(&format!("traces/{n}")))
        .collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let (code, summary) = cli::check_json(&files, &[]);
    assert_eq!(code, 0);
    assert_eq!(summary["findings_total"], 0);
    assert_eq!(summary["invocations"], 16);
}

#[test]
fn exit_codes_and_fail_on() {
    let clean = temp_file("clean.jsonl", &recording("hermes-concurrent-fixed.jsonl"));
    let dirty_script = contamination("shared_counters.jsonl");
    let exported = export_script(&dirty_script);
    let dirty = temp_file(
        "dirty.json",
        &json_lines(&requests(&exported.spans, 4, "app")),
    );
    let bad = temp_file("bad.json", "{\"resourceSpans\":[\n");

    assert_eq!(cli::run(&["check", &clean]).status.code(), Some(0));
    let output = cli::run(&["check", &dirty]);
    assert_eq!(output.status.code(), Some(1));
    assert!(cli::stdout(&output).contains("usage_mismatch"));
    assert_eq!(cli::run(&["check", &bad]).status.code(), Some(2));
    // A clean file with a dirty one fails; with an unreadable one, it is an input error.
    assert_eq!(cli::run(&["check", &clean, &dirty]).status.code(), Some(1));
    assert_eq!(cli::run(&["check", &clean, &bad]).status.code(), Some(2));

    // --fail-on narrows what fails the run.
    assert_eq!(
        cli::run(&["check", "--fail-on", "late_end", &dirty])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        cli::run(&["check", "--fail-on", "late_end,usage_mismatch", &dirty])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        cli::run(&["check", "--fail-on=foreign_response", &dirty])
            .status
            .code(),
        Some(1)
    );
    // An unknown code is a usage error (clap's exit status 2).
    assert_eq!(
        cli::run(&["check", "--fail-on", "nonsense", &dirty])
            .status
            .code(),
        Some(2)
    );

    // The repair policy, by flag and by environment, as for the processor.
    let repaired = cli::spans_of(&cli::enrich(
        &[&dirty],
        &["--contamination-policy", "repair"],
    ));
    assert!(repaired.iter().any(|s| s
        .attributes
        .iter()
        .any(|kv| kv.key.starts_with("genai_audit.reported."))));
    let out = cli::temp_path("env.json").to_string_lossy().into_owned();
    let output = cli::run_with(
        &["enrich", &dirty, "-o", &out],
        &[("GENAI_AUDIT_CONTAMINATION_POLICY", "repair")],
        None,
    );
    assert_eq!(output.status.code(), Some(0));
    assert!(cli::read(&out).contains("genai_audit.reported."));

    // Standard input.
    let output = cli::run_with(&["check", "-"], &[], Some(&cli::read(&dirty)));
    assert_eq!(output.status.code(), Some(1));
}

/// Auditing enriched, repaired output again reads what the first audit read: a value a
/// repair replaced is read back from `genai_audit.reported.*`, by `check` as by
/// `enrich`, so both find the same contamination again (DESIGN §5, §9).
#[test]
fn check_of_repaired_output_finds_what_check_of_the_input_found() {
    let exported = export_script(&contamination("shared_counters.jsonl"));
    let dirty = temp_file(
        "dirty-again.json",
        &json_lines(&requests(&exported.spans, 4, "app")),
    );
    let repair = ["--contamination-policy", "repair"];
    let repaired = cli::enrich(&[&dirty], &repair);
    assert!(cli::spans_of(&repaired).iter().any(|s| s
        .attributes
        .iter()
        .any(|kv| kv.key.starts_with("genai_audit.reported."))));
    let again = temp_file("repaired-again.json", &json_lines(&repaired));
    let (first_code, first) = cli::check_json(&[&dirty], &repair);
    let (second_code, second) = cli::check_json(&[&again], &repair);
    assert_eq!(first_code, second_code);
    assert_eq!(first["findings"], second["findings"], "{first} / {second}");
    assert!(
        first["findings_total"].as_u64().is_some_and(|n| n > 0),
        "the input has findings: {first}"
    );
    assert_eq!(first["findings_total"], second["findings_total"]);
}
