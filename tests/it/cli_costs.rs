//! The cost reports of the `genai-audit` command (DESIGN §12) on the shared recordings:
//! `check --by` gives the README's totals, with the cost the pricing module gives for
//! each call; `diff` of a file against itself moves nothing, against a copy with one
//! more call it fails the gates; `prices` prints the pricing module's own rates;
//! `report --html` writes one page with a timeline per trace and every finding, with
//! nothing from a span able to become markup.

use std::time::{Duration, UNIX_EPOCH};

use genai_audit::pricing::{GenAiPrices, PriceQuery, Pricer};
use genai_audit::usage::Usage;
use serde_json::Value as Json;

use crate::cli_support::{self as cli, run, run_with, stderr, stdout, temp_file, temp_path};

const LANGCHAIN: &str = "otlp/langchain-invoke-concurrent.otlp.json";

fn langchain() -> String {
    cli::recording(LANGCHAIN)
}

fn code(output: &std::process::Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn json_of(output: &std::process::Output) -> Json {
    serde_json::from_str(stdout(output).trim())
        .unwrap_or_else(|e| panic!("{e}: {} / {}", stdout(output), stderr(output)))
}

/// Every span of an OTLP JSON lines file, as JSON.
fn spans_of(text: &str) -> Vec<Json> {
    let mut spans = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let request: Json = serde_json::from_str(line).expect("OTLP JSON");
        for rs in request["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                spans.extend(ss["spans"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    spans
}

fn attribute(span: &Json, key: &str) -> Option<Json> {
    span["attributes"]
        .as_array()?
        .iter()
        .rev()
        .find(|kv| kv["key"] == key)
        .and_then(|kv| kv["value"].as_object()?.values().next().cloned())
}

fn int_attribute(span: &Json, key: &str) -> Option<u64> {
    match attribute(span, key)? {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// 10⁻²⁴ USD: the report's exact fixed point.
fn units(usd: f64) -> i128 {
    (usd * 1e24).round() as i128
}

/// The cost the pricing module gives each LLM call of the LangChain recording (at its
/// start time, model `llm.model_name`, no provider), summed exactly per trace.
fn expected_costs() -> Vec<(String, i128)> {
    let prices = GenAiPrices::bundled();
    let mut per_trace: Vec<(String, i128)> = Vec::new();
    for span in spans_of(&cli::read(&langchain())) {
        let Some(input) = int_attribute(&span, "llm.token_count.prompt") else {
            continue;
        };
        let output = int_attribute(&span, "llm.token_count.completion").expect("completion");
        let mut usage = Usage::default().with_input(input).with_output(output);
        if let Some(cached) = int_attribute(&span, "llm.token_count.prompt_details.cache_read") {
            usage = usage.with_cache_read(cached);
        }
        let model = attribute(&span, "llm.model_name").expect("model");
        let start: u64 = span["startTimeUnixNano"]
            .as_str()
            .expect("start")
            .parse()
            .expect("nanos");
        let when = UNIX_EPOCH + Duration::from_nanos(start);
        let cost = prices
            .price(&PriceQuery::new(
                model.as_str().expect("model"),
                &usage,
                when,
            ))
            .expect("gpt-4o-mini is priced")
            .cost_usd;
        let trace = span["traceId"].as_str().expect("trace").to_owned();
        match per_trace.iter_mut().find(|(t, _)| *t == trace) {
            Some((_, sum)) => *sum += units(cost),
            None => per_trace.push((trace, units(cost))),
        }
    }
    per_trace
}

fn row<'a>(table: &'a Json, name: &str) -> &'a Json {
    table["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no row {name} in {table}"))
}

fn tokens(row: &Json) -> (u64, u64, u64, u64) {
    let n = |key: &str| {
        row[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {row}"))
    };
    (
        n("calls"),
        n("input_tokens"),
        n("output_tokens"),
        n("cache_read_tokens"),
    )
}

#[test]
fn check_by_agent_gives_the_readme_totals() {
    let output = run(&[
        "check",
        "--json",
        "--by",
        "agent",
        "--by",
        "trace",
        &langchain(),
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let json = json_of(&output);
    let expected = expected_costs();
    let total_units: i128 = expected.iter().map(|(_, u)| u).sum();
    let total_usd = total_units as f64 / 1e24;

    let by_agent = &json["breakdowns"][0];
    assert_eq!(by_agent["by"], "agent");
    assert_eq!(by_agent["rows"].as_array().map(Vec::len), Some(1));
    // README: A 1098/74 (512 cached), B 1274/84, C 1466/94 (640 cached), 2 calls each.
    let agent = row(by_agent, "weather_agent");
    assert_eq!(
        tokens(agent),
        (6, 1098 + 1274 + 1466, 74 + 84 + 94, 512 + 640)
    );
    assert_eq!(agent["unpriced_calls"], 0);
    assert_eq!(agent["reasoning_tokens"], 0);
    assert_eq!(agent["cache_write_tokens"], 0);
    assert_eq!(agent["cost_usd"].as_f64(), Some(total_usd));
    assert_eq!(by_agent["total"]["cost_usd"].as_f64(), Some(total_usd));
    assert_eq!(tokens(&by_agent["total"]), (6, 3838, 252, 1152));
    // The same exact sum as the summary.
    assert_eq!(json["cost_usd"].as_f64(), Some(total_usd));
    assert_eq!(json["generations"], 6);

    let by_trace = &json["breakdowns"][1];
    for (trace, calls) in [
        ("a0f3b482d15be709a0f3b482d15be709", (2, 1098, 74, 512)),
        ("2287bbed582912452287bbed58291245", (2, 1274, 84, 0)),
        ("236a53e0e3240c3b236a53e0e3240c3b", (2, 1466, 94, 640)),
    ] {
        let r = row(by_trace, trace);
        assert_eq!(tokens(r), calls, "{trace}");
        let (_, want) = expected
            .iter()
            .find(|(t, _)| t == trace)
            .expect("a trace of the recording");
        assert_eq!(r["cost_usd"].as_f64(), Some(*want as f64 / 1e24), "{trace}");
    }
    // By cost, highest first.
    let names: Vec<&str> = by_trace["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    let mut by_cost = expected.clone();
    by_cost.sort_by_key(|b| std::cmp::Reverse(b.1));
    let want: Vec<&str> = by_cost.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, want);
}

#[test]
fn check_by_prints_tables_and_keeps_unpriced_calls_apart() {
    let strands = cli::recording("otlp/strands-concurrent-2agents.otlp.json");
    let output = run(&[
        "check",
        "--by",
        "model",
        "--by",
        "provider",
        &langchain(),
        &strands,
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("cost by model\nmodel "), "{text}");
    assert!(text.contains("\ncost by provider\nprovider "), "{text}");
    assert!(
        text.contains("findings: none"),
        "the summary follows: {text}"
    );
    assert!(
        !text.contains("trace a0f3b482"),
        "no trees with --by: {text}"
    );

    // smolagents' calls are unpriced (a fake model).
    let smolagents = format!(
        "{}/tests/recordings/python/smolagents/smolagents-concurrent.otlp.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let output = run(&[
        "check",
        "--json",
        "--by",
        "session",
        &langchain(),
        &smolagents,
    ]);
    let json = json_of(&output);
    let table = &json["breakdowns"][0];
    let total = &table["total"];
    assert_eq!(total["calls"], 12);
    assert_eq!(total["unpriced_calls"], 6);
    assert_eq!(total["cost_usd"], json["cost_usd"]);
    let output = run(&["check", "--json", "--by", "model", &smolagents]);
    let json = json_of(&output);
    let rows = json["breakdowns"][0]["rows"].as_array().expect("rows");
    assert!(!rows.is_empty());
    for r in rows {
        assert!(
            r["cost_usd"].is_null(),
            "all unpriced: no cost, not $0: {r}"
        );
        assert_eq!(r["unpriced_calls"], r["calls"]);
    }
    // Strands' default model (`gen_ai.system = strands-agents`, a Bedrock
    // cross-region id) is priced as the aws model its id names: 572 input and 70
    // output tokens at $3.30 and $16.50 per million.
    let output = run(&["check", "--json", "--by", "model", &strands]);
    let json = json_of(&output);
    let rows = json["breakdowns"][0]["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["name"],
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    );
    assert_eq!(rows[0]["calls"], 4);
    assert_eq!(rows[0]["unpriced_calls"], 0);
    let cost = rows[0]["cost_usd"].as_f64().expect("priced");
    assert!(
        (cost - (572.0 * 3.3 + 70.0 * 16.5) / 1e6).abs() < 1e-12,
        "{cost}"
    );

    let output = run(&["check", "--by", "price", &langchain()]);
    assert_eq!(code(&output), 2, "an unknown grouping is a usage error");
}

/// The LangChain recording with one more LLM call: a copy of call `9c0a812edb486e8c`
/// (577/43, 512 cached) under the same step, with a new span id, next to it in the
/// same request (so it ends in the same order).
fn with_one_more_call() -> String {
    let mut out = String::new();
    for line in cli::read(&langchain()).lines() {
        let mut request: Json = serde_json::from_str(line).expect("OTLP JSON");
        for rs in request["resourceSpans"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            for ss in rs["scopeSpans"].as_array_mut().into_iter().flatten() {
                let Some(spans) = ss["spans"].as_array_mut() else {
                    continue;
                };
                if let Some(at) = spans.iter().position(|s| s["spanId"] == "9c0a812edb486e8c") {
                    let mut copy = spans[at].clone();
                    copy["spanId"] = Json::from("9c0a812edb486e8d");
                    spans.insert(at + 1, copy);
                }
            }
        }
        out.push_str(&request.to_string());
        out.push('\n');
    }
    assert_eq!(spans_of(&out).len(), 31, "one span more");
    out
}

#[test]
fn diff_of_a_file_against_itself_moves_nothing() {
    let file = langchain();
    let output = run(&[
        "diff",
        &file,
        &file,
        "--fail-over",
        "0",
        "--fail-over-tokens",
        "0",
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("weather_agent: no change (3 invocations, 6 calls"),
        "{text}"
    );
    assert!(text.contains("total: no change"), "{text}");

    let output = run(&["diff", "--json", &file, &file, "--fail-over", "0"]);
    assert_eq!(code(&output), 0);
    let json = json_of(&output);
    assert_eq!(json["matched_by"], "invocation");
    let change = &json["total"]["change"];
    for key in ["count", "calls", "input_tokens", "output_tokens", "tokens"] {
        assert_eq!(change[key], 0, "{key}");
    }
    assert_eq!(change["cost_usd"].as_f64(), Some(0.0));
    assert_eq!(change["cost_pct"].as_f64(), Some(0.0));
    assert_eq!(json["gates"]["failed"], false);

    // Standard input for one of the two.
    let text = cli::read(&file);
    let output = run_with(&["diff", &file, "-", "--fail-over", "0"], &[], Some(&text));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
}

#[test]
fn diff_against_one_more_call_fails_the_gates() {
    let before = langchain();
    let after = temp_file("one-more.json", &with_one_more_call());
    let output = run(&["diff", &before, &after, "--fail-over", "1"]);
    assert_eq!(code(&output), 1, "{}\n{}", stdout(&output), stderr(&output));
    assert!(
        stdout(&output).contains("(limit +1%): FAIL"),
        "{}",
        stdout(&output)
    );
    let output = run(&["diff", &before, &after, "--fail-over-tokens", "1"]);
    assert_eq!(code(&output), 1);
    // Without a gate, or under a generous one, the diff passes.
    assert_eq!(code(&run(&["diff", &before, &after])), 0);
    let output = run(&[
        "diff",
        "--json",
        &before,
        &after,
        "--fail-over",
        "100",
        "--fail-over-tokens",
        "100",
    ]);
    assert_eq!(code(&output), 0);
    let json = json_of(&output);
    let total = &json["total"];
    assert_eq!(total["change"]["calls"], 1);
    assert_eq!(total["change"]["input_tokens"], 577);
    assert_eq!(total["change"]["output_tokens"], 43);
    assert_eq!(total["after"]["calls"], 7);
    assert_eq!(total["after"]["models"], serde_json::json!(["gpt-4o-mini"]));
    let pct = total["change"]["tokens_pct"].as_f64().expect("pct");
    assert!((pct - 620.0 / 4090.0 * 100.0).abs() < 1e-9, "{pct}");
    let cost_pct = total["change"]["cost_pct"].as_f64().expect("pct");
    assert!(cost_pct > 1.0 && cost_pct < 100.0, "{cost_pct}");
    assert_eq!(json["names"][0]["name"], "weather_agent");
    assert_eq!(json["names"][0]["change"]["count"], 0);
    // The other way round, cost fell: no gate fails.
    assert_eq!(
        code(&run(&["diff", &after, &before, "--fail-over", "0"])),
        0
    );
}

#[test]
fn diff_of_unreadable_input_exits_2() {
    let file = langchain();
    let missing = temp_path("missing.json");
    let missing = missing.to_string_lossy();
    assert_eq!(code(&run(&["diff", &file, &missing])), 2);
    let garbage = temp_file("garbage.json", "{\"resourceSpans\": [nope\n");
    let output = run(&["diff", &garbage, &file, "--fail-over", "1"]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("garbage.json"),
        "{}",
        stderr(&output)
    );
    assert_eq!(code(&run(&["diff", &file])), 2, "two files");
    assert_eq!(code(&run(&["diff", "-", "-"])), 2, "stdin once");
}

#[test]
fn prices_prints_the_pricing_modules_rates() {
    let output = run(&[
        "prices",
        "gpt-4o-mini",
        "--provider",
        "openai",
        "--at",
        "2025-10-01",
        "--json",
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let json = json_of(&output);
    assert_eq!(json["matched"], "openai/gpt-4o-mini");
    assert_eq!(json["at"], "2025-10-01T00:00:00Z");
    let prices = GenAiPrices::bundled();
    let when = UNIX_EPOCH + Duration::from_secs(1_759_276_800); // 2025-10-01
    let price = |usage: Usage| {
        prices
            .price(&PriceQuery::new("gpt-4o-mini", &usage, when).with_provider("openai"))
            .map(|p| p.cost_usd)
    };
    let million = 1_000_000;
    let tier = &json["tiers"][0];
    assert_eq!(json["tiers"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        tier["input_per_million"].as_f64(),
        price(Usage::default().with_input(million))
    );
    assert_eq!(
        tier["output_per_million"].as_f64(),
        price(Usage::default().with_output(million))
    );
    assert_eq!(
        tier["cache_read_per_million"].as_f64(),
        price(
            Usage::default()
                .with_input(million)
                .with_cache_read(million)
        )
    );

    let output = run(&[
        "prices",
        "gpt-4o-mini",
        "--provider",
        "openai",
        "--at",
        "2025-10-01T12:00:00Z",
    ]);
    assert_eq!(code(&output), 0);
    let text = stdout(&output);
    assert!(
        text.starts_with(
            "gpt-4o-mini (provider openai) at 2025-10-01T12:00:00Z: openai/gpt-4o-mini"
        ),
        "{text}"
    );
    let input = format!("${} per million tokens", tier["input_per_million"]);
    assert!(text.contains(&input), "{text}");
}

/// `genai-audit prices` finds a model whose id names its provider, without
/// `--provider`, as the audit prices its calls.
#[test]
fn prices_of_ids_that_name_their_provider() {
    for (model, matched, input, output) in [
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
            3.3,
            16.5,
        ),
        (
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
            3.3,
            16.5,
        ),
        (
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "aws/global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            3.0,
            15.0,
        ),
        (
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "aws/regional.anthropic.claude-3-5-haiku-20241022-v1:0",
            0.8,
            4.0,
        ),
        (
            "us.amazon.nova-pro-v1:0",
            "aws/amazon.nova-pro-v1:0",
            0.8,
            3.2,
        ),
        (
            "publishers/google/models/gemini-2.5-flash",
            "google/gemini-2.5-flash",
            0.3,
            2.5,
        ),
        ("openai/gpt-4o-mini", "openai/gpt-4o-mini", 0.15, 0.6),
        (
            "anthropic/claude-sonnet-4-5",
            "anthropic/claude-sonnet-4-5",
            3.0,
            15.0,
        ),
    ] {
        let output_ = run(&["prices", model, "--at", "2025-10-09", "--json"]);
        assert_eq!(code(&output_), 0, "{model}: {}", stderr(&output_));
        let json = json_of(&output_);
        assert_eq!(json["matched"], matched, "{model}");
        assert_eq!(
            json["tiers"][0]["input_per_million"].as_f64(),
            Some(input),
            "{model}"
        );
        assert_eq!(
            json["tiers"][0]["output_per_million"].as_f64(),
            Some(output),
            "{model}"
        );
    }
    // A fake id of the same shapes has no price.
    for model in ["us.anthropic.fake-model-v1:0", "openai/fake-model"] {
        let output = run(&["prices", model]);
        assert_eq!(code(&output), 1, "{model}");
    }
}

#[test]
fn prices_of_an_unknown_model_says_no_price() {
    let output = run(&["prices", "no-such-model-xyz"]);
    assert_eq!(code(&output), 1);
    assert!(
        stdout(&output).starts_with("no price for no-such-model-xyz"),
        "{}",
        stdout(&output)
    );
    let output = run(&["prices", "no-such-model-xyz", "--json"]);
    assert_eq!(code(&output), 1);
    assert_eq!(json_of(&output)["priced"], false);
    // An unreadable price file, from the flag or the variable, or a bad date: exit 2.
    let missing = temp_path("prices.json");
    let missing = missing.to_string_lossy();
    assert_eq!(
        code(&run(&["prices", "gpt-4o", "--prices-file", &missing])),
        2
    );
    let env = [("GENAI_AUDIT_PRICES_FILE", &*missing)];
    assert_eq!(code(&run_with(&["prices", "gpt-4o"], &env, None)), 2);
    assert_eq!(code(&run(&["prices", "gpt-4o", "--at", "2025-02-30"])), 2);
}

#[test]
fn report_html_shows_every_trace_and_finding() {
    let scripts = format!(
        "{}/tests/it/scripts/contamination",
        env!("CARGO_MANIFEST_DIR")
    );
    let files = [
        langchain(),
        format!("{scripts}/early_close.jsonl"),
        format!("{scripts}/duplicate_rounds.jsonl"),
    ];
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let (_, summary) = cli::check_json(&files, &[]);
    let findings = summary["findings_total"].as_u64().expect("findings");
    assert!(findings > 0, "the scripts have findings");
    let out = temp_path("report.html");
    let out_text = out.to_string_lossy().into_owned();
    let mut args = vec!["report", "--html", &out_text];
    args.extend_from_slice(&files);
    let output = run(&args);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let html = cli::read(&out_text);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        html.matches("<section class=\"trace\" data-trace=").count() as u64,
        summary["traces"].as_u64().expect("traces")
    );
    assert_eq!(html.matches(" data-finding=").count() as u64, findings);
    assert!(html.contains(&format!("data-expect-findings=\"{findings}\"")));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network"
    );
    assert!(!html.contains(" src="), "no external file");
    assert!(
        html.contains("started under a parent that had already ended")
            || html.contains("its react round differs")
    );
    // No temporary file left beside it.
    let dir = out.parent().expect("dir");
    let leftovers = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn report_html_escapes_span_text() {
    let evil = "<script>alert(\"x\")</script><img src=x onerror=alert(1)>";
    let text = cli::read(&langchain()).replace(
        "\"name\":\"weather_agent\"",
        &format!("\"name\":{}", Json::from(evil)),
    );
    let text = text.replace(
        "\\\"lc_agent_name\\\":\\\"weather_agent\\\"",
        "\\\"lc_agent_name\\\":\\\"</td><script>1</script>\\\"",
    );
    let input = temp_file("evil.json", &text);
    let out = temp_path("evil.html");
    let out = out.to_string_lossy().into_owned();
    let output = run(&["report", "--html", &out, &input]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let html = cli::read(&out);
    assert!(
        html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x"),
        "the name is shown, escaped"
    );
    assert!(!html.contains("<img"), "no element from a span");
    assert!(
        !html.contains("<script>alert") && !html.contains("<script>1"),
        "no script from a span"
    );
    assert!(!html.contains("</td><script>"));
    assert_eq!(
        html.matches("<script>").count(),
        2,
        "only the page's own scripts"
    );
}

#[test]
fn report_html_leaves_the_previous_file_on_error() {
    let out = temp_path("kept.html");
    std::fs::write(&out, "previous").expect("write");
    let out_text = out.to_string_lossy().into_owned();
    let missing = temp_path("missing.json");
    let output = run(&["report", "--html", &out_text, &missing.to_string_lossy()]);
    assert_eq!(code(&output), 2);
    assert_eq!(cli::read(&out_text), "previous");
    let nowhere = temp_path("no-dir").join("r.html");
    let output = run(&["report", "--html", &nowhere.to_string_lossy(), &langchain()]);
    assert_eq!(code(&output), 2, "an unwritable output");
}
