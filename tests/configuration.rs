//! Environment variables are read at build() for what code did not set; code wins;
//! invalid values fall back to the defaults. One test, in its own binary, because it
//! changes the process environment.

use std::time::Duration;

use genai_audit::{ContaminationPolicy, GenAiAuditProcessor, LeakPolicy};
use opentelemetry::trace::{Span, Tracer, TracerProvider};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};

const VARS: [&str; 6] = [
    "GENAI_AUDIT_DISABLED",
    "GENAI_AUDIT_LEAK_POLICY",
    "GENAI_AUDIT_CONTAMINATION_POLICY",
    "GENAI_AUDIT_MAX_TRACKED_SPANS",
    "GENAI_AUDIT_MAX_SPAN_AGE_SECS",
    "GENAI_AUDIT_PRICES_FILE",
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

/// The cost written for one gpt-4o call through a processor built now.
fn gpt4o_cost(builder: impl FnOnce(InMemorySpanExporter) -> SdkTracerProvider) -> Option<f64> {
    let exporter = InMemorySpanExporter::default();
    let provider = builder(exporter.clone());
    let tracer = provider.tracer("t");
    let mut g = tracer
        .span_builder("chat gpt-4o")
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", 1_000_000),
        ])
        .start(&tracer);
    g.end();
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
    set(&[]);
    let _ = std::fs::remove_file(path);
}
