//! Runs the `otlp` example binary against a loopback OTLP/HTTP receiver written here,
//! configured only by the standard `OTEL_EXPORTER_OTLP_*` environment variables, and
//! decodes what arrives (protobuf `ExportTraceServiceRequest`).

use crate::common;
use crate::http_support;

use std::collections::HashMap;
use std::process::Output;

use common::{direct_price, run_example};
use http_support::{Request, Response, Server};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// Runs the example with only the given `OTEL_*` / `GENAI_AUDIT_*` variables set.
fn run_otlp_example(env: &[(&str, &str)]) -> Output {
    run_example("otlp", &[], env, None)
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    // Last wins, as for the processor.
    attributes
        .iter()
        .rev()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn int(span: &Span, key: &str) -> i64 {
    match attribute(&span.attributes, key) {
        Some(AnyValue::IntValue(v)) => *v,
        other => panic!("{}: {key} is not an integer: {other:?}", span.name),
    }
}

fn double(span: &Span, key: &str) -> f64 {
    match attribute(&span.attributes, key) {
        Some(AnyValue::DoubleValue(v)) => *v,
        other => panic!("{}: {key} is not a double: {other:?}", span.name),
    }
}

fn string(span: &Span, key: &str) -> String {
    match attribute(&span.attributes, key) {
        Some(AnyValue::StringValue(v)) => v.clone(),
        other => panic!("{}: {key} is not a string: {other:?}", span.name),
    }
}

fn decode(request: &Request) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(request.body.as_slice()).expect("an OTLP protobuf body")
}

#[test]
fn the_example_exports_the_enriched_trace_over_otlp_http() {
    let receiver = Server::start(|_, _| Response {
        status: 200,
        content_type: "application/x-protobuf",
        body: Vec::new(),
    });
    let endpoint = receiver.url();
    let output = run_otlp_example(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Basic dGVzdDp0ZXN0,x-langfuse-ingestion-version=4",
        ),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the example failed: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "exported 6 spans: one agent invocation, 2 steps, 2 generations, 1 tool call\n"
    );

    let requests = receiver.received();
    assert_eq!(requests.len(), 1, "one batch");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/traces");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(request.header("authorization"), Some("Basic dGVzdDp0ZXN0"));
    assert_eq!(request.header("x-langfuse-ingestion-version"), Some("4"));
    // The enriched keys travel in the body.
    for key in [
        "genai_audit.cost_usd",
        "genai_audit.total.input_tokens",
        "gen_ai.usage.cost",
    ] {
        assert!(
            request.body.windows(key.len()).any(|w| w == key.as_bytes()),
            "{key} not in the request body"
        );
    }

    let export = decode(request);
    assert_eq!(export.resource_spans.len(), 1);
    let resource = export.resource_spans[0]
        .resource
        .as_ref()
        .expect("a resource");
    assert_eq!(
        attribute(&resource.attributes, "service.name"),
        Some(&AnyValue::StringValue("genai-audit-otlp-example".into()))
    );
    let spans: Vec<&Span> = export.resource_spans[0]
        .scope_spans
        .iter()
        .flat_map(|s| &s.spans)
        .collect();
    let mut by_name: HashMap<&str, Vec<&Span>> = HashMap::new();
    for span in &spans {
        by_name.entry(span.name.as_str()).or_default().push(span);
    }
    let mut names: Vec<(&str, usize)> = by_name.iter().map(|(n, s)| (*n, s.len())).collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("chat gpt-4o", 2),
            ("execute_tool lookup_order", 1),
            ("invoke_agent support-bot", 1),
            ("react step", 2),
        ]
    );
    let invocation = by_name["invoke_agent support-bot"][0];
    let tool = by_name["execute_tool lookup_order"][0];
    let mut steps = by_name["react step"].clone();
    steps.sort_by_key(|s| int(s, "genai_audit.step.index"));
    let mut chats = by_name["chat gpt-4o"].clone();
    chats.sort_by_key(|s| s.start_time_unix_nano);

    // Roles.
    assert_eq!(string(invocation, "genai_audit.role"), "invocation");
    assert_eq!(string(tool, "genai_audit.role"), "tool");
    for step in &steps {
        assert_eq!(string(step, "genai_audit.role"), "step");
    }
    for chat in &chats {
        assert_eq!(string(chat, "genai_audit.role"), "generation");
    }

    // Per-call cost, for genai-audit and for Langfuse / OpenLIT.
    let usage = [(1_200, 85), (1_420, 140)];
    let mut costs = Vec::new();
    for (chat, (input, output)) in chats.iter().zip(usage) {
        assert_eq!(int(chat, "gen_ai.usage.input_tokens"), input as i64);
        let cost = direct_price(
            Some("openai"),
            "gpt-4o",
            input,
            output,
            chat.start_time_unix_nano,
        );
        assert_eq!(double(chat, "genai_audit.cost_usd"), cost);
        assert_eq!(double(chat, "gen_ai.usage.cost"), cost);
        assert_eq!(string(chat, "genai_audit.cost.model"), "openai/gpt-4o");
        costs.push(cost);
    }

    // Totals: each step has its own chat (and step 1 the tool call); the invocation all.
    assert_eq!(int(steps[0], "genai_audit.step.index"), 1);
    assert_eq!(int(steps[0], "genai_audit.total.input_tokens"), 1_200);
    assert_eq!(int(steps[0], "genai_audit.total.tool_calls"), 1);
    assert_eq!(double(steps[0], "genai_audit.total.cost_usd"), costs[0]);
    assert_eq!(int(steps[1], "genai_audit.step.index"), 2);
    assert_eq!(int(steps[1], "genai_audit.total.input_tokens"), 1_420);
    assert_eq!(int(steps[1], "genai_audit.total.tool_calls"), 0);
    assert_eq!(double(steps[1], "genai_audit.total.cost_usd"), costs[1]);
    assert_eq!(int(invocation, "genai_audit.total.input_tokens"), 2_620);
    assert_eq!(int(invocation, "genai_audit.total.output_tokens"), 225);
    assert_eq!(int(invocation, "genai_audit.total.generations"), 2);
    assert_eq!(int(invocation, "genai_audit.total.tool_calls"), 1);
    assert_eq!(int(invocation, "genai_audit.steps"), 2);
    assert_eq!(
        double(invocation, "genai_audit.total.cost_usd"),
        costs[0] + costs[1]
    );
    for span in &spans {
        assert_eq!(
            attribute(&span.attributes, "genai_audit.findings"),
            None,
            "{}",
            span.name
        );
    }
}

#[test]
fn the_example_reports_a_failed_export() {
    // The receiver answers 400: the export fails, and the example says so.
    let receiver = Server::start(|_, _| Response {
        status: 400,
        content_type: "text/plain",
        body: b"bad request".to_vec(),
    });
    let traces_endpoint = format!("{}/custom/traces", receiver.url());
    let output = run_otlp_example(&[(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        traces_endpoint.as_str(),
    )]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: exporting the trace failed: Operation failed: HTTP export failed with status code: 400\n"
    );
    // A 400 is not retried.
    let requests = receiver.received();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/custom/traces");
    let spans: usize = decode(&requests[0]).resource_spans[0]
        .scope_spans
        .iter()
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(spans, 6);
}
