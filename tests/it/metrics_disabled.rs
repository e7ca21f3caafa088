//! Without a meter provider given to the builder, no instrument is created, not even on
//! the global meter provider (the design contract (DESIGN.md) §7: the metrics are on "when enabled in the
//! builder"). This binary sets the global meter provider, so it has this test alone.

use crate::common;

use common::findings_of;
use genai_audit::script::TraceScript;
use genai_audit::{GenAiAuditProcessor, LeakPolicy};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{global, KeyValue};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};

const SCRIPT: &str = r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1000,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"step","parent":"inv","name":"react step","time_ns":2000,"attributes":{"gen_ai.operation.name":"react"}}
{"op":"start","span":"g","parent":"step","name":"chat m","time_ns":3000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":-1}}
{"op":"end","span":"g","time_ns":4000}
{"op":"end","span":"inv","time_ns":5000}
{"op":"end","span":"step","time_ns":6000}
{"op":"start","span":"leak","parent":null,"name":"execute_tool x","time_ns":7000,"attributes":{}}
"#;

#[test]
fn no_meter_provider_no_instruments() {
    let metric_exporter = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metric_exporter.clone()).build())
        .build();
    global::set_meter_provider(meter_provider.clone());

    let exporter = InMemorySpanExporter::default();
    let audit = GenAiAuditProcessor::builder(SimpleSpanProcessor::new(exporter.clone()))
        .with_disabled(false)
        .leak_policy(LeakPolicy::Flag)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(audit)
        .build();
    let replay = TraceScript::parse(SCRIPT)
        .unwrap()
        .replay(&provider.tracer("test"));

    // Findings were made: they are on the spans.
    let spans = exporter.get_finished_spans().unwrap();
    let findings: Vec<(String, Vec<String>)> = spans
        .iter()
        .map(|s| (s.name.to_string(), findings_of(s)))
        .collect();
    assert_eq!(
        findings,
        [
            ("chat m".to_owned(), vec!["invalid_usage".to_owned()]),
            (
                "invoke_agent a".to_owned(),
                vec!["unclosed_child".to_owned()]
            ),
            ("react step".to_owned(), vec!["late_end".to_owned()]),
        ]
    );
    // And one more at shutdown (the tool call never ended).
    provider.shutdown().unwrap();
    drop(replay);

    // A control instrument on the global provider shows the pipeline exports.
    global::meter("control")
        .u64_counter("control.count")
        .build()
        .add(1, &[KeyValue::new("k", "v")]);
    meter_provider.force_flush().unwrap();
    let exported = metric_exporter.get_finished_metrics().unwrap();
    let mut scopes = Vec::new();
    let mut names = Vec::new();
    for rm in &exported {
        for scope in rm.scope_metrics() {
            scopes.push(scope.scope().name().to_string());
            for metric in scope.metrics() {
                names.push(metric.name().to_string());
            }
        }
    }
    assert!(
        names.iter().any(|n| n == "control.count"),
        "the control counter is exported: {names:?}"
    );
    assert!(
        !scopes.iter().any(|s| s == "genai-audit"),
        "no genai-audit scope: {scopes:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("genai_audit.")),
        "no genai_audit instrument: {names:?}"
    );
}
