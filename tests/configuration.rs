//! Environment variables are read at build() for what code did not set; code wins;
//! invalid values fall back to the defaults. One test, in its own binary, because it
//! changes the process environment.

use std::time::Duration;

use genai_audit::{ContaminationPolicy, GenAiAuditProcessor, LeakPolicy};
use opentelemetry::trace::{Span, Tracer, TracerProvider};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};

const VARS: [&str; 8] = [
    "GENAI_AUDIT_DISABLED",
    "GENAI_AUDIT_LEAK_POLICY",
    "GENAI_AUDIT_CONTAMINATION_POLICY",
    "GENAI_AUDIT_MAX_TRACKED_SPANS",
    "GENAI_AUDIT_MAX_SPAN_AGE_SECS",
    "GENAI_AUDIT_PRICES_FILE",
    "GENAI_AUDIT_BUDGET_USD",
    "GENAI_AUDIT_BUDGET_TOKENS",
];

fn set(pairs: &[(&str, &str)]) {
    for v in VARS {
        std::env::remove_var(v);
    }
    for (k, v) in pairs {
        std::env::set_var(k, v);
    }
}

fn processor() -> GenAiAuditProcessor<SimpleSpanProcessor<InMemorySpanExporter>> {
    GenAiAuditProcessor::builder(SimpleSpanProcessor::new(InMemorySpanExporter::default())).build()
}

/// One ended gpt-4o call of `input_tokens` input tokens, under the span of `cx`.
fn gpt4o_call(
    tracer: &opentelemetry_sdk::trace::SdkTracer,
    input_tokens: i64,
    cx: &opentelemetry::Context,
) {
    let mut g = tracer
        .span_builder("chat gpt-4o")
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", input_tokens),
        ])
        .start_with_context(tracer, cx);
    g.end();
}

/// The cost written for one gpt-4o call through a processor built now.
fn gpt4o_cost(builder: impl FnOnce(InMemorySpanExporter) -> SdkTracerProvider) -> Option<f64> {
    let exporter = InMemorySpanExporter::default();
    let provider = builder(exporter.clone());
    let tracer = provider.tracer("t");
    gpt4o_call(&tracer, 1_000_000, &opentelemetry::Context::new());
    let spans = exporter.get_finished_spans().unwrap();
    spans[0]
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "genai_audit.cost_usd")
        .map(|kv| match kv.value {
            opentelemetry::Value::F64(v) => v,
            _ => panic!("cost is not a double"),
        })
}

/// The findings on an invocation of 1 000 input tokens (one gpt-4o call) through a
/// processor built by `configure` now.
fn invocation_findings(
    configure: impl FnOnce(
        genai_audit::GenAiAuditProcessorBuilder<SimpleSpanProcessor<InMemorySpanExporter>>,
    ) -> genai_audit::GenAiAuditProcessorBuilder<
        SimpleSpanProcessor<InMemorySpanExporter>,
    >,
) -> Vec<String> {
    use opentelemetry::trace::TraceContextExt;
    let exporter = InMemorySpanExporter::default();
    let audit = configure(GenAiAuditProcessor::builder(SimpleSpanProcessor::new(
        exporter.clone(),
    )))
    .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(audit)
        .build();
    let tracer = provider.tracer("t");
    let cx = opentelemetry::Context::current_with_span(tracer.start("invoke_agent coder"));
    gpt4o_call(&tracer, 1_000, &cx);
    cx.span().end();
    let spans = exporter.get_finished_spans().unwrap();
    let invocation = spans
        .iter()
        .find(|s| s.name == "invoke_agent coder")
        .unwrap();
    match genai_audit::last_value(&invocation.attributes, "genai_audit.findings") {
        Some(opentelemetry::Value::Array(opentelemetry::Array::String(codes))) => {
            codes.iter().map(|c| c.to_string()).collect()
        }
        _ => Vec::new(),
    }
}

#[test]
fn environment_then_code_then_defaults() {
    // Defaults.
    set(&[]);
    let p = processor();
    assert!(p.is_enabled());
    assert_eq!(p.leak_policy(), Some(LeakPolicy::Flag));
    assert_eq!(p.contamination_policy(), Some(ContaminationPolicy::Flag));
    assert_eq!(p.max_tracked_spans(), Some(65_536));
    assert_eq!(p.max_span_age(), Some(Duration::from_secs(3600)));

    // The environment fills what code did not set.
    set(&[
        ("GENAI_AUDIT_LEAK_POLICY", "close"),
        ("GENAI_AUDIT_CONTAMINATION_POLICY", "repair"),
        ("GENAI_AUDIT_MAX_TRACKED_SPANS", "10"),
        ("GENAI_AUDIT_MAX_SPAN_AGE_SECS", "30"),
    ]);
    let p = processor();
    assert_eq!(p.leak_policy(), Some(LeakPolicy::Close));
    assert_eq!(p.contamination_policy(), Some(ContaminationPolicy::Repair));
    assert_eq!(p.max_tracked_spans(), Some(10));
    assert_eq!(p.max_span_age(), Some(Duration::from_secs(30)));

    // Code wins.
    let p = GenAiAuditProcessor::builder(SimpleSpanProcessor::new(InMemorySpanExporter::default()))
        .leak_policy(LeakPolicy::Flag)
        .contamination_policy(ContaminationPolicy::Flag)
        .with_max_tracked_spans(3)
        .with_max_span_age(Duration::from_secs(4))
        .build();
    assert_eq!(p.leak_policy(), Some(LeakPolicy::Flag));
    assert_eq!(p.contamination_policy(), Some(ContaminationPolicy::Flag));
    assert_eq!(p.max_tracked_spans(), Some(3));
    assert_eq!(p.max_span_age(), Some(Duration::from_secs(4)));

    // Invalid values: a warning and the default, never a panic.
    set(&[
        ("GENAI_AUDIT_DISABLED", "maybe"),
        ("GENAI_AUDIT_LEAK_POLICY", "drop"),
        ("GENAI_AUDIT_MAX_TRACKED_SPANS", "-1"),
        ("GENAI_AUDIT_MAX_SPAN_AGE_SECS", "0"),
        ("GENAI_AUDIT_PRICES_FILE", "/nonexistent/prices.json"),
    ]);
    let p = processor();
    assert!(p.is_enabled());
    assert_eq!(p.leak_policy(), Some(LeakPolicy::Flag));
    assert_eq!(p.max_tracked_spans(), Some(65_536));
    assert_eq!(p.max_span_age(), Some(Duration::from_secs(3600)));
    // An unreadable price file falls back to the bundled prices.
    let bundled = gpt4o_cost(|e| {
        SdkTracerProvider::builder()
            .with_span_processor(GenAiAuditProcessor::builder(SimpleSpanProcessor::new(e)).build())
            .build()
    });
    assert!(bundled.is_some_and(|c| c > 0.0));

    // A price file in the genai-prices format replaces the bundled prices.
    let path = std::env::temp_dir().join(format!("genai-audit-prices-{}.json", std::process::id()));
    std::fs::write(
        &path,
        r#"[{"id":"openai","name":"OpenAI","api_pattern":"https://api\\.openai\\.com",
            "models":[{"id":"gpt-4o","match":{"equals":"gpt-4o"},
                       "prices":{"input_mtok":1.0,"output_mtok":2.0}}]}]"#,
    )
    .unwrap();
    set(&[("GENAI_AUDIT_PRICES_FILE", path.to_str().unwrap())]);
    let from_file = gpt4o_cost(|e| {
        SdkTracerProvider::builder()
            .with_span_processor(GenAiAuditProcessor::builder(SimpleSpanProcessor::new(e)).build())
            .build()
    });
    assert_eq!(from_file, Some(1.0));

    // Disabled: pure pass-through; code can turn it back on.
    set(&[("GENAI_AUDIT_DISABLED", "true")]);
    assert!(!processor().is_enabled());
    let cost = gpt4o_cost(|e| {
        SdkTracerProvider::builder()
            .with_span_processor(GenAiAuditProcessor::builder(SimpleSpanProcessor::new(e)).build())
            .build()
    });
    assert_eq!(cost, None);
    let p = GenAiAuditProcessor::builder(SimpleSpanProcessor::new(InMemorySpanExporter::default()))
        .with_disabled(false)
        .build();
    assert!(p.is_enabled());

    // Budgets from the environment: applied when code set none; an invalid one sets
    // no budget; a budget in code wins.
    set(&[("GENAI_AUDIT_BUDGET_TOKENS", "999")]);
    assert_eq!(invocation_findings(|b| b), ["budget_exceeded"]);
    set(&[("GENAI_AUDIT_BUDGET_TOKENS", "1000")]);
    assert!(invocation_findings(|b| b).is_empty());
    set(&[("GENAI_AUDIT_BUDGET_USD", "0.001")]);
    assert_eq!(invocation_findings(|b| b), ["budget_exceeded"]);
    for invalid in ["-1", "abc", "0"] {
        set(&[("GENAI_AUDIT_BUDGET_USD", invalid)]);
        assert!(invocation_findings(|b| b).is_empty(), "{invalid}");
    }
    set(&[("GENAI_AUDIT_BUDGET_TOKENS", "10")]);
    assert!(invocation_findings(|b| b.with_budget(genai_audit::Budget::usd(100.0))).is_empty());

    set(&[]);
    let _ = std::fs::remove_file(path);
}
