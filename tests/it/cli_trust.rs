//! What a user can rely on from `genai-audit check` and `enrich` (each trace audited
//! on its own, an exact round trip, nothing destroyed, bounded reading, every valid
//! form read, odd data audited, settings checked, a report safe to print).

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use crate::cli_support::{self as cli, temp_file, temp_path};

const T: u64 = 1_700_000_000_000_000_000;

fn s(v: &str) -> String {
    format!(
        r#"{{"stringValue":{}}}"#,
        serde_json::to_string(v).expect("json")
    )
}

fn i(v: u64) -> String {
    format!(r#"{{"intValue":"{v}"}}"#)
}

/// A span as OTLP JSON text.
fn span(
    trace: u128,
    id: u64,
    parent: Option<u64>,
    name: &str,
    start: u64,
    end: u64,
    attrs: &[(&str, String)],
) -> String {
    let parent = parent.map_or(String::new(), |p| format!(r#","parentSpanId":"{p:016x}""#));
    let attrs: Vec<String> = attrs
        .iter()
        .map(|(k, v)| format!(r#"{{"key":"{k}","value":{v}}}"#))
        .collect();
    format!(
        r#"{{"traceId":"{trace:032x}","spanId":"{id:016x}"{parent},"name":{},"kind":1,"startTimeUnixNano":"{start}","endTimeUnixNano":"{end}","attributes":[{}]}}"#,
        serde_json::to_string(name).expect("json"),
        attrs.join(",")
    )
}

/// One request (one line) of `spans`.
fn request(spans: &[String]) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{}},"scopeSpans":[{{"scope":{{"name":"app"}},"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

fn chat(trace: u128, id: u64, parent: Option<u64>, start: u64, end: u64) -> String {
    span(
        trace,
        id,
        parent,
        "chat gpt-4o",
        start,
        end,
        &[
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.request.model", s("gpt-4o")),
            ("gen_ai.usage.input_tokens", i(10)),
            ("gen_ai.usage.output_tokens", i(5)),
        ],
    )
}

fn invocation(trace: u128, id: u64, start: u64, end: u64) -> String {
    span(
        trace,
        id,
        None,
        "invoke_agent a",
        start,
        end,
        &[("gen_ai.operation.name", s("invoke_agent"))],
    )
}

fn findings(summary: &serde_json::Value) -> Vec<(String, u64)> {
    summary["findings"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default()
}

/// `enrich` of `files` with `extra` flags: the bytes written.
fn enrich_bytes(files: &[&str], extra: &[&str]) -> Vec<u8> {
    let out = temp_path("out.json");
    let out = out.to_string_lossy().into_owned();
    let mut args = vec!["enrich"];
    args.extend_from_slice(files);
    args.extend_from_slice(&["-o", &out]);
    args.extend_from_slice(extra);
    let output = cli::run(&args);
    assert_eq!(output.status.code(), Some(0), "{}", cli::stderr(&output));
    std::fs::read(&out).expect("read output")
}

#[test]
fn seventy_thousand_clean_traces_at_the_same_instant_give_no_finding() {
    let spans: Vec<String> = (1..=70_000u128)
        .flat_map(|t| {
            [
                chat(t, 2, Some(1), T, T + 1_000),
                invocation(t, 1, T, T + 2_000),
            ]
        })
        .collect();
    let file = temp_file("concurrent.json", &format!("{}\n", request(&spans)));
    let (code, summary) = cli::check_json(&[&file], &[]);
    assert_eq!(summary["traces"], 70_000);
    assert_eq!(findings(&summary), vec![]);
    assert_eq!(code, 0);
}

#[test]
fn many_children_open_when_their_invocation_ends_give_unclosed_child_once() {
    let mut spans = vec![invocation(7, 1, T, T + 1_000)];
    spans.extend((0..131_072u64).map(|c| {
        span(
            7,
            c + 2,
            Some(1),
            "chat gpt-4o",
            T + 1,
            T + 5_000,
            &[("gen_ai.operation.name", s("chat"))],
        )
    }));
    let file = temp_file("open.json", &format!("{}\n", request(&spans)));
    let (code, summary) = cli::check_json(
        &[&file],
        &[
            "--fail-on",
            "usage_mismatch,foreign_response,unclosed_child",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(summary["findings"]["unclosed_child"], 1);
    assert_eq!(summary["findings"]["late_end"], 131_072);
}

#[test]
fn a_step_starting_on_a_millisecond_clock_does_not_overlap_the_one_before() {
    // Step 2 reads as starting 18 µs before step 1 ends: a millisecond start clock.
    let base = 1_764_000_000_000_000_000u64;
    let step = |id, start, end, round: u64| {
        span(
            9,
            id,
            Some(1),
            "react step",
            start,
            end,
            &[
                ("gen_ai.operation.name", s("react")),
                ("gen_ai.react.round", i(round)),
            ],
        )
    };
    let spans = vec![
        step(2, base + 490_000_000, base + 498_017_998, 1),
        step(3, base + 498_000_000, base + 499_000_000, 2),
        invocation(9, 1, base, base + 500_000_000),
    ];
    let file = temp_file("msclock.json", &format!("{}\n", request(&spans)));
    let (code, summary) = cli::check_json(&[&file], &[]);
    assert_eq!(findings(&summary), vec![]);
    assert_eq!(code, 0);
    // Without the skew, the clocks are taken at their word.
    let (_, summary) = cli::check_json(&[&file], &["--skew", "0"]);
    assert_eq!(findings(&summary), vec![("overlapping_step".to_owned(), 1)]);
}

#[test]
fn rollups_are_exact_at_any_depth() {
    for depth in [255u64, 256, 257, 258, 1_000] {
        let mut spans = vec![chat(
            3,
            depth + 2,
            Some(depth + 1),
            T + depth + 1,
            T + depth + 2,
        )];
        spans.extend(
            (1..=depth)
                .rev()
                .map(|d| span(3, d + 1, Some(d), "plain", T + d, T + 10_000_000 - d, &[])),
        );
        spans.push(invocation(3, 1, T, T + 10_000_000));
        let file = temp_file("deep.json", &format!("{}\n", request(&spans)));
        let enriched = cli::spans_of(&cli::enrich(&[&file], &[]));
        let top = cli::named(&enriched, "invoke_agent a");
        assert_eq!(
            cli::attr(top, "genai_audit.total.generations").as_deref(),
            Some("1"),
            "depth {depth}"
        );
        assert_eq!(
            cli::attr(top, "genai_audit.total.input_tokens").as_deref(),
            Some("10"),
            "depth {depth}"
        );
        assert_eq!(
            cli::attr(top, "genai_audit.total.partial"),
            None,
            "depth {depth}"
        );
    }
}

/// Doubles whose shortest text is long, tiny, huge or at the edges of precision.
const TRICKY: [&str; 10] = [
    "0.009944534000000005",
    "0.30000000000000004",
    "5e-324",
    "2.2250738585072014e-308",
    "1.7976931348623157e308",
    "9007199254740993",
    "0.1",
    "1e21",
    "123456789.12345679",
    "-0.0",
];

#[test]
fn numbers_come_out_as_they_went_in_through_two_enriches() {
    let attrs: Vec<(&str, String)> = TRICKY
        .iter()
        .map(|d| ("x.value", format!(r#"{{"doubleValue":{d}}}"#)))
        .chain([("big", r#"{"intValue":"9223372036854775807"}"#.to_owned())])
        .collect();
    let mut generation_attrs = attrs.clone();
    generation_attrs.extend([
        ("gen_ai.operation.name", s("chat")),
        ("gen_ai.request.model", s("gpt-4o")),
        ("gen_ai.usage.input_tokens", i(1000)),
        ("gen_ai.usage.output_tokens", i(100)),
    ]);
    let spans = vec![
        span(5, 2, Some(1), "chat gpt-4o", T, T + 10, &generation_attrs),
        span(5, 3, Some(1), "plain", T, T + 10, &attrs),
        invocation(5, 1, T, T + 20),
    ];
    let input = format!("{}\n", request(&spans));
    let file = temp_file("doubles.json", &input);
    let once = enrich_bytes(&[&file], &[]);
    let text = String::from_utf8(once.clone()).expect("utf-8");
    for d in TRICKY {
        assert_eq!(
            text.matches(&format!(r#"{{"doubleValue":{d}}}"#)).count(),
            2,
            "{d} kept as written"
        );
    }
    // The plain span is written back byte for byte.
    assert!(text.contains(&spans[1]));
    let again = temp_file("doubles-once.json", &text);
    assert_eq!(
        enrich_bytes(&[&again], &[]),
        once,
        "a second enrich changes nothing"
    );
    // The cost written reads back to the same double.
    let cost = cli::spans_of(&cli::parse_lines(&text))
        .iter()
        .find_map(|s| cli::attr(s, "genai_audit.cost_usd"))
        .expect("a cost");
    assert!(cost.parse::<f64>().is_ok());
}

fn policies() -> Vec<Vec<&'static str>> {
    let mut all = Vec::new();
    for leak in ["flag", "close"] {
        for contamination in ["flag", "repair"] {
            all.push(vec![
                "--leak-policy",
                leak,
                "--contamination-policy",
                contamination,
            ]);
        }
    }
    all
}

#[test]
fn enriching_enriched_output_gives_the_same_bytes() {
    let mut inputs: Vec<String> = [
        "otlp/langchain-invoke-concurrent.otlp.json",
        "otlp/strands-concurrent-2agents.otlp.pb",
        "traces/mastra-generate-concurrent.jsonl",
    ]
    .iter()
    .map(|p| cli::recording(p))
    .collect();
    for script in [
        "shared_counters.jsonl",
        "foreign_nested.jsonl",
        "duplicate_rounds.jsonl",
        "early_close.jsonl",
        "usage_step.jsonl",
    ] {
        inputs.push(format!(
            "{}/tests/it/scripts/contamination/{script}",
            env!("CARGO_MANIFEST_DIR")
        ));
    }
    for input in &inputs {
        for flags in policies() {
            let once = enrich_bytes(&[input], &flags);
            let file = temp_file(
                "once.json",
                &String::from_utf8(once.clone()).expect("utf-8"),
            );
            assert!(
                enrich_bytes(&[&file], &flags) == once,
                "{input} {flags:?}: a second enrich changed the bytes"
            );
        }
    }
    // A bound of one tracked span makes stale findings; auditing that output again
    // without the bound forgets them.
    let input = &inputs[0];
    let bounded = enrich_bytes(&[input], &["--max-tracked-spans", "1"]);
    assert!(String::from_utf8_lossy(&bounded).contains("\"stale\""));
    let file = temp_file("bounded.json", &String::from_utf8(bounded).expect("utf-8"));
    assert_eq!(enrich_bytes(&[&file], &[]), enrich_bytes(&[input], &[]));
}

#[test]
fn output_keeps_the_input_order_across_files_and_unknown_fields() {
    let a = temp_file(
        "a.jsonl",
        &cli::read(&format!(
            "{}/tests/it/scripts/contamination/clean_depth2.jsonl",
            env!("CARGO_MANIFEST_DIR")
        )),
    );
    let line = request(&[chat(11, 2, None, T, T + 5)]).replacen(
        r#""kind":1"#,
        r#""kind":1,"futureField":{"x":[1.50,2]}"#,
        1,
    );
    let b = temp_file("b.json", &format!("{line}\n"));
    let text = String::from_utf8(enrich_bytes(&[&a, &b], &[])).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[1].contains(r#""futureField":{"x":[1.50,2]}"#),
        "{}",
        lines[1]
    );
    assert!(lines[0].contains("trace-script"));
}

#[cfg(unix)]
#[test]
fn a_failed_write_leaves_the_target_as_it_was() {
    let spans: Vec<String> = (1..=2_000u128)
        .map(|t| chat(t, 2, None, T, T + 1))
        .collect();
    let input = format!("{}\n", request(&spans));
    let file = temp_file("victim.json", &input);
    let program = env!("CARGO_BIN_EXE_genai-audit");
    let output = Command::new("sh")
        .args([
            "-c",
            &format!("ulimit -f 40; exec '{program}' enrich '{file}' -o '{file}'"),
        ])
        .output()
        .expect("run sh");
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(cli::read(&file), input, "the input is untouched");
    let dir = std::path::Path::new(&file).parent().expect("dir");
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "no temporary file left: {left:?}");
}

#[test]
fn every_valid_form_of_otlp_json_is_read() {
    let forms = [
        r#"{"arrayValue":{}}"#,
        r#"{"kvlistValue":{}}"#,
        r#"{"doubleValue":"NaN"}"#,
        r#"{"doubleValue":"Infinity"}"#,
        r#"{"doubleValue":"-Infinity"}"#,
        r#"{"doubleValue":"1.5"}"#,
        r#"{}"#,
    ];
    let mut attrs: Vec<(&str, String)> = forms.iter().map(|f| ("x", f.to_string())).collect();
    attrs.extend([
        ("gen_ai.operation.name", s("chat")),
        ("gen_ai.request.model", s("gpt-4o")),
    ]);
    let line = request(&[span(12, 2, None, "chat gpt-4o", T, T + 1, &attrs)]).replacen(
        r#"{"key":"x","value":{}}"#,
        r#"{"value":{"boolValue":true}}"#,
        1,
    );
    let file = temp_file("forms.json", &format!("{line}\n"));
    let output = cli::run(&["check", &file]);
    assert_eq!(output.status.code(), Some(0), "{}", cli::stderr(&output));
    let text = String::from_utf8(enrich_bytes(&[&file], &[])).expect("utf-8");
    for form in &forms[..6] {
        assert!(text.contains(form), "{form} kept");
    }
    assert!(text.contains(r#"{"value":{"boolValue":true}}"#));
}

#[test]
fn a_byte_order_mark_and_crlf_read_as_plain_text() {
    let lines = cli::read(&cli::recording(
        "otlp/langchain-invoke-concurrent.otlp.json",
    ));
    let plain = cli::check_json(&[&temp_file("plain.json", &lines)], &[]).1;
    let crlf = format!("\u{feff}{}", lines.replace('\n', "\r\n"));
    let (code, summary) = cli::check_json(&[&temp_file("bom.json", &crlf)], &[]);
    assert_eq!(code, 0);
    assert_eq!(summary, plain);
    let script = format!(
        "\u{feff}{}",
        cli::read(&cli::recording("traces/hermes-concurrent-fixed.jsonl")).replace('\n', "\r\n")
    );
    let (code, summary) = cli::check_json(&[&temp_file("bom.jsonl", &script)], &[]);
    assert_eq!((code, summary["invocations"].as_u64()), (0, Some(2)));
}

#[test]
fn a_span_ending_before_it_starts_is_audited_with_invalid_time() {
    let spans = vec![
        chat(13, 2, Some(1), T + 100, T + 50),
        span(13, 3, Some(1), "plain", T + 100, T + 50, &[]),
        invocation(13, 1, T, T + 200),
    ];
    let file = temp_file("time.json", &format!("{}\n", request(&spans)));
    let (code, summary) = cli::check_json(&[&file], &[]);
    assert_eq!(findings(&summary), vec![("invalid_time".to_owned(), 1)]);
    assert_eq!(code, 1);
    let enriched = cli::spans_of(&cli::enrich(&[&file], &[]));
    assert_eq!(
        cli::findings(cli::named(&enriched, "chat gpt-4o")),
        vec!["invalid_time"]
    );
    assert_eq!(
        cli::attr(
            cli::named(&enriched, "invoke_agent a"),
            "genai_audit.total.input_tokens"
        )
        .as_deref(),
        Some("10")
    );
}

#[test]
fn parent_cycles_and_self_parents_break_with_missing_parent() {
    // Tool calls, so that no step overlaps another of its invocation.
    let step = |id, parent, start| {
        span(
            14,
            id,
            Some(parent),
            "execute_tool t",
            start,
            start + 10,
            &[("gen_ai.operation.name", s("execute_tool"))],
        )
    };
    // 2 ends first (in one resource, the order of appearance is the end order).
    let spans = vec![step(2, 1, T + 1), step(1, 2, T), step(3, 3, T + 2)];
    let file = temp_file("cycle.json", &format!("{}\n", request(&spans)));
    let (code, summary) = cli::check_json(&[&file], &[]);
    // The cycle 1 ⇄ 2 breaks at 1 (it starts first); 3 names itself.
    assert_eq!(findings(&summary), vec![("missing_parent".to_owned(), 2)]);
    assert_eq!(code, 1);
    let enriched = cli::spans_of(&cli::enrich(&[&file], &[]));
    let with_finding: Vec<String> = enriched
        .iter()
        .filter(|s| cli::findings(s).contains(&"missing_parent".to_owned()))
        .map(|s| format!("{:?}", cli::span_id_of(s)))
        .collect();
    assert_eq!(with_finding.len(), 2);
    assert_eq!(
        cli::attr(&enriched[1], "genai_audit.total.tool_calls").as_deref(),
        Some("1")
    );
}

/// The spans of `enrich` output, as (span id, sorted audit attributes).
fn audited(
    requests: &[opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest],
) -> Vec<(String, Vec<(String, String)>)> {
    let mut spans: Vec<_> = cli::spans_of(requests)
        .iter()
        .map(|s| {
            let mut attrs = cli::audit_attributes(s);
            attrs.sort();
            (format!("{:?}", cli::span_id_of(s)), attrs)
        })
        .collect();
    spans.sort();
    spans
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[test]
fn protobuf_and_gzip_give_the_spans_of_the_json_form() {
    for name in ["openai-agents-concurrent", "strands-concurrent-2agents"] {
        let json = cli::recording(&format!("otlp/{name}.otlp.json"));
        let pb = cli::recording(&format!("otlp/{name}.otlp.pb"));
        let expected = audited(&cli::enrich(&[&json], &[]));
        assert!(!expected.is_empty());
        let body = std::fs::read(&pb).expect("read pb");
        let mut framed = (body.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&body);
        let write = |name: &str, bytes: &[u8]| {
            let path = temp_path(name);
            std::fs::write(&path, bytes).expect("write");
            path.to_string_lossy().into_owned()
        };
        let variants = [
            pb.clone(),
            write("framed.pb", &framed),
            write("body.pb.gz", &gzip(&body)),
            write("json.gz", &gzip(cli::read(&json).as_bytes())),
        ];
        for file in &variants {
            assert_eq!(
                audited(&cli::enrich(&[file], &[])),
                expected,
                "{name}: {file}"
            );
        }
    }
}

#[test]
fn every_invalid_setting_is_refused() {
    let file = cli::recording("otlp/strands-concurrent-2agents.otlp.json");
    let refused = |args: &[&str], env: &[(&str, &str)], says: &str| {
        let mut all = vec!["check", file.as_str()];
        all.extend_from_slice(args);
        let output = cli::run_with(&all, env, None);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}");
        assert!(
            cli::stderr(&output).contains(says),
            "{args:?} {env:?}: {}",
            cli::stderr(&output)
        );
    };
    refused(&["--prices-file", "/nope.json"], &[], "/nope.json");
    refused(&["--max-tracked-spans", "0"], &[], "--max-tracked-spans");
    refused(&["--max-span-age-secs", "0"], &[], "--max-span-age-secs");
    for (variable, value) in [
        ("GENAI_AUDIT_LEAK_POLICY", "sometimes"),
        ("GENAI_AUDIT_CONTAMINATION_POLICY", "fix"),
        ("GENAI_AUDIT_MAX_TRACKED_SPANS", "0"),
        ("GENAI_AUDIT_MAX_SPAN_AGE_SECS", "soon"),
        ("GENAI_AUDIT_PRICES_FILE", "/nope.json"),
        ("GENAI_AUDIT_BUDGET_USD", "-1"),
        ("GENAI_AUDIT_BUDGET_TOKENS", "many"),
    ] {
        refused(
            &[],
            &[(variable, value)],
            variable
                .strip_prefix("GENAI_AUDIT_PRICES")
                .map_or(variable, |_| "/nope.json"),
        );
    }
    // The processor's switch does not apply to the command: it audits, and says so.
    let dirty = temp_file(
        "dirty.json",
        &format!("{}\n", request(&[chat(15, 2, Some(1), T, T + 1)])),
    );
    let output = cli::run_with(
        &["check", &dirty],
        &[("GENAI_AUDIT_DISABLED", "true")],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(cli::stdout(&output).contains("missing_parent"));
    assert!(cli::stderr(&output).contains("GENAI_AUDIT_DISABLED"));
}

/// Runs the command with `args`, reads `keep` bytes of its standard output and closes
/// it; returns the exit code.
fn run_closing_stdout(args: &[&str], keep: usize) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_genai-audit"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut head = vec![0u8; keep];
    stdout.read_exact(&mut head).expect("read the head");
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    (child.wait().expect("wait").code(), stderr)
}

#[test]
fn a_closed_standard_output_ends_quietly() {
    let spans: Vec<String> = (1..=5_000u128)
        .flat_map(|t| [chat(t, 2, Some(1), T, T + 1), invocation(t, 1, T, T + 2)])
        .collect();
    let clean = temp_file("clean.json", &format!("{}\n", request(&spans)));
    assert_eq!(
        run_closing_stdout(&["check", "--all", &clean], 10),
        (Some(0), String::new())
    );
    assert_eq!(
        run_closing_stdout(&["enrich", &clean, "-o", "-"], 10),
        (Some(0), String::new())
    );
    let dirty: Vec<String> = (1..=5_000u128)
        .map(|t| chat(t, 2, Some(1), T, T + 1))
        .collect();
    let dirty = temp_file("dirty.json", &format!("{}\n", request(&dirty)));
    assert_eq!(
        run_closing_stdout(&["check", "--all", &dirty], 10),
        (Some(1), String::new())
    );
}

#[test]
fn control_characters_in_names_are_shown_escaped() {
    let spans = vec![span(
        16,
        1,
        None,
        "\u{1b}[2J\u{1b}[Hfake",
        T,
        T + 1,
        &[("gen_ai.operation.name", s("chat"))],
    )];
    let file = temp_file("escape.json", &format!("{}\n", request(&spans)));
    let output = cli::run(&["check", &file]);
    let stdout = cli::stdout(&output);
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    assert!(stdout.contains("\\u001b[2J\\u001b[Hfake"), "{stdout}");
}

#[test]
fn reading_is_bounded_and_errors_name_the_right_line() {
    // A truncated request on the first line is on line 1.
    let file = temp_file("cut.json", "{\"resourceSpans\":[\n");
    let output = cli::run(&["check", &file]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        cli::stderr(&output).contains(&format!("{file}:1: ")),
        "{}",
        cli::stderr(&output)
    );
    // An endless stream of `{` lines stops at the limit, with its line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_genai-audit"))
        .args(["check", "--max-line-bytes", "1000", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let chunk = "{\n".repeat(4096);
        // Stops when the command closes its end (after at most a few chunks).
        for _ in 0..1_000 {
            if stdin.write_all(chunk.as_bytes()).is_err() {
                return true;
            }
        }
        false
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert_eq!(child.wait().expect("wait").code(), Some(2));
    assert!(
        writer.join().expect("writer"),
        "the command stopped reading"
    );
    assert!(
        stderr.contains("-:501: the request is longer than the limit of 1000 bytes"),
        "{stderr}"
    );
}
