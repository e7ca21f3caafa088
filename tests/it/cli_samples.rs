//! `genai-audit` on the OTLP JSON samples of `tests/recordings/otlp/` (written by the
//! JavaScript SDK's serializer, and Collector-style): the totals of the recordings'
//! README, no findings, and a lossless, idempotent `enrich`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::cli_support::{self as cli, attr};

const SAMPLES: [&str; 3] = [
    "otlp/mastra-generate-concurrent.otlp.json",
    "otlp/langchain-invoke-concurrent.otlp.json",
    "otlp/vercel-ai7-stream-error-fixed.collector-style.otlp.json",
];

fn span_by_id<'a>(
    spans: &'a [opentelemetry_proto::tonic::trace::v1::Span],
    id: &str,
) -> &'a opentelemetry_proto::tonic::trace::v1::Span {
    spans
        .iter()
        .find(|s| {
            s.span_id
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                == id
        })
        .unwrap_or_else(|| panic!("no span {id}"))
}

fn assert_totals(
    spans: &[opentelemetry_proto::tonic::trace::v1::Span],
    id: &str,
    input: i64,
    output: i64,
    generations: i64,
    tools: i64,
) {
    let span = span_by_id(spans, id);
    assert_eq!(
        attr(span, "genai_audit.role").as_deref(),
        Some("invocation"),
        "{id}"
    );
    assert_eq!(
        attr(span, "genai_audit.total.input_tokens"),
        Some(input.to_string()),
        "{id}"
    );
    assert_eq!(
        attr(span, "genai_audit.total.output_tokens"),
        Some(output.to_string()),
        "{id}"
    );
    assert_eq!(
        attr(span, "genai_audit.total.generations"),
        Some(generations.to_string()),
        "{id}"
    );
    assert_eq!(
        attr(span, "genai_audit.total.tool_calls"),
        Some(tools.to_string()),
        "{id}"
    );
}

#[test]
fn check_finds_nothing_in_the_samples() {
    for sample in SAMPLES {
        let path = cli::recording(sample);
        let output = cli::run(&["check", &path]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{sample}: {}",
            cli::stderr(&output)
        );
        let report = cli::stdout(&output);
        assert!(report.contains("findings: none"), "{report}");
        assert!(
            report.lines().all(|l| l.chars().count() <= 80),
            "80 columns:\n{report}"
        );
        assert!(!report.contains('\x1b'), "no colour in a pipe");
        let (code, summary) = cli::check_json(&[&path], &[]);
        assert_eq!(code, 0);
        assert_eq!(summary["findings_total"], 0);
        assert_eq!(summary["invocations"], 3);
        assert_eq!(summary["traces"], 3);
    }
}

#[test]
fn enrich_gives_the_readme_totals() {
    let mastra = cli::spans_of(&cli::enrich(&[&cli::recording(SAMPLES[0])], &[]));
    assert_totals(&mastra, "cb964256c960cb59", 252, 34, 1, 1);
    assert_totals(&mastra, "989c2642fa90e744", 324, 42, 1, 1);
    assert_totals(&mastra, "779eef4aa9c477a1", 420, 50, 1, 1);
    assert_eq!(
        attr(span_by_id(&mastra, "cb964256c960cb59"), "genai_audit.steps").as_deref(),
        Some("2")
    );
    assert_eq!(
        attr(
            span_by_id(&mastra, "688885916c86ca61"),
            "genai_audit.step.index"
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        attr(
            span_by_id(&mastra, "00be72512a99d929"),
            "genai_audit.step.index"
        )
        .as_deref(),
        Some("2")
    );

    let langchain = cli::spans_of(&cli::enrich(&[&cli::recording(SAMPLES[1])], &[]));
    assert_totals(&langchain, "a0f3b482d15be709", 1098, 74, 2, 1);
    assert_totals(&langchain, "2287bbed58291245", 1274, 84, 2, 1);
    assert_totals(&langchain, "236a53e0e3240c3b", 1466, 94, 2, 1);
    for spans in [&mastra, &langchain] {
        assert!(spans.iter().all(|s| cli::findings(s).is_empty()));
    }
}

/// Asserts that `after` is `before` plus attributes: every field equal, every
/// original attribute in place (the audit may only add keys), per span.
fn assert_only_added(before: &[ExportTraceServiceRequest], after: &[ExportTraceServiceRequest]) {
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(after) {
        assert_eq!(b.resource_spans.len(), a.resource_spans.len());
        for (brs, ars) in b.resource_spans.iter().zip(&a.resource_spans) {
            assert_eq!(brs.resource, ars.resource);
            assert_eq!(brs.schema_url, ars.schema_url);
            assert_eq!(brs.scope_spans.len(), ars.scope_spans.len());
            for (bss, ass) in brs.scope_spans.iter().zip(&ars.scope_spans) {
                assert_eq!(bss.scope, ass.scope);
                assert_eq!(bss.schema_url, ass.schema_url);
                assert_eq!(bss.spans.len(), ass.spans.len());
                for (bs, as_) in bss.spans.iter().zip(&ass.spans) {
                    let mut without = as_.clone();
                    assert!(without.attributes.len() >= bs.attributes.len());
                    let added = without.attributes.split_off(bs.attributes.len());
                    assert_eq!(&without, bs, "span {}", bs.name);
                    for kv in &added {
                        assert!(
                            kv.key.starts_with("genai_audit.") || kv.key == "gen_ai.usage.cost",
                            "{}: added {}",
                            bs.name,
                            kv.key
                        );
                        assert!(
                            !bs.attributes.iter().any(|o| o.key == kv.key),
                            "{} twice",
                            kv.key
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn enrich_round_trips_losslessly_and_is_idempotent() {
    for sample in SAMPLES {
        let path = cli::recording(sample);
        let input: Vec<ExportTraceServiceRequest> = cli::parse_lines(&cli::read(&path));
        let once = cli::enrich(&[&path], &[]);
        assert_only_added(&input, &once);
        assert!(cli::spans_of(&once)
            .iter()
            .any(|s| attr(s, "genai_audit.role").is_some()));

        // Enriching the enriched output changes nothing and duplicates no key.
        let once_file = cli::temp_file("once.json", &cli::json_lines(&once));
        let twice = cli::enrich(&[&once_file], &[]);
        assert_eq!(once, twice, "{sample}: enrich is idempotent");
        for span in cli::spans_of(&twice) {
            let mut keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
            let n = keys.len();
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), n, "{}: duplicate keys", span.name);
        }
    }
}

#[test]
fn collector_style_forms_are_read() {
    // What the Collector writes differently from the JavaScript serializer: intValue
    // as a string, zero fields omitted (`"status":{}`), plus forms valid OTLP JSON
    // allows: 64-bit integers as numbers, enum names, null members, uppercase hex.
    let line = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"app"}}]},"scopeSpans":[{"scope":{},"spans":[
      {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"aaa19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b174","name":"chat gpt-4o","kind":3,
       "startTimeUnixNano":"1700000001000000000","endTimeUnixNano":1700000002000000000,"status":{"code":"STATUS_CODE_OK"},"droppedAttributesCount":"0",
       "attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},
                     {"key":"gen_ai.usage.input_tokens","value":{"intValue":"1000"}},{"key":"gen_ai.usage.output_tokens","value":{"intValue":100}}]},
      {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174","parentSpanId":null,"name":"invoke_agent a","kind":"SPAN_KIND_INTERNAL",
       "startTimeUnixNano":1700000000000000000,"endTimeUnixNano":"1700000003000000000","status":{},
       "attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"invoke_agent"}}]}]}]}]}"#
        .replace('\n', "");
    let file = cli::temp_file("collector.json", &format!("{line}\n"));
    let spans = cli::spans_of(&cli::enrich(&[&file], &[]));
    // In one resource the order of appearance is the end order: the chat span first.
    let invocation = cli::named(&spans, "invoke_agent a");
    assert_eq!(
        attr(invocation, "genai_audit.total.input_tokens").as_deref(),
        Some("1000")
    );
    let chat = cli::named(&spans, "chat gpt-4o");
    assert_eq!(
        attr(chat, "genai_audit.role").as_deref(),
        Some("generation")
    );
    assert_eq!(chat.status.as_ref().map(|s| s.code), Some(1));

    // One request over several lines (an OTLP/HTTP body, pretty-printed).
    let pretty = serde_json::to_string_pretty(
        &serde_json::from_str::<serde_json::Value>(
            cli::read(&cli::recording(SAMPLES[0]))
                .lines()
                .next()
                .unwrap_or_default(),
        )
        .expect("json"),
    )
    .expect("pretty");
    let file = cli::temp_file("pretty.json", &pretty);
    // (The first request alone lacks the parents exported later: `missing_parent`.)
    let output = cli::run(&["check", "--fail-on", "late_end", &file]);
    assert_eq!(output.status.code(), Some(0), "{}", cli::stderr(&output));
    assert!(
        cli::stdout(&output).contains("10 spans"),
        "{}",
        cli::stdout(&output)
    );
}
