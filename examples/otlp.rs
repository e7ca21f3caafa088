//! The audit processor in front of an OTLP exporter: send an audited agent trace to an
//! OpenTelemetry Collector, Jaeger, Langfuse or any other OTLP/HTTP endpoint.
//!
//! ```text
//! # a local Collector or Jaeger (OTLP/HTTP on port 4318, the default endpoint):
//! cargo run --example otlp
//!
//! # anywhere else, with the standard OpenTelemetry variables, e.g. a self-hosted Langfuse:
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:3000/api/public/otel \
//! OTEL_EXPORTER_OTLP_HEADERS="Authorization=Basic $(printf '%s' "$LANGFUSE_PUBLIC_KEY:$LANGFUSE_SECRET_KEY" | base64 -w0),x-langfuse-ingestion-version=4" \
//!   cargo run --example otlp
//! ```
//!
//! The exporter is `opentelemetry-otlp` over HTTP with protobuf encoding and the
//! blocking `reqwest` client, so no async runtime is needed. It reads
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL; `/v1/traces` is appended),
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), `OTEL_EXPORTER_OTLP_HEADERS` /
//! `_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT` / `_TRACES_TIMEOUT`, and the SDK
//! reads `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`. The audit processor reads
//! its own `GENAI_AUDIT_*` variables (see the README).
//!
//! This example is built without TLS. For an `https://` endpoint (Langfuse Cloud, a
//! hosted collector), enable a TLS feature of `opentelemetry-otlp` in your
//! application, e.g. `reqwest-rustls`.
//!
//! It emits one small agent trace — `invoke_agent support-bot` → two `react step`s →
//! `chat gpt-4o` calls on openai with token usage, and a tool call — and shuts the
//! provider down, which exports it. Each chat arrives with its cost
//! (`genai_audit.cost_usd`, and `gen_ai.usage.cost` for Langfuse), the steps and the
//! invocation with their totals (`genai_audit.total.*`).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genai_audit::GenAiAuditProcessor;
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;

fn main() -> ExitCode {
    // --- The pipeline -------------------------------------------------------------
    // The exporter, configured by the standard OTEL_EXPORTER_OTLP_* variables.
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("error: cannot build the OTLP exporter: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The batch processor logs export failures only through OpenTelemetry's internal
    // log; this wrapper lets the example say whether the export worked.
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let exporter = Reporting {
        inner: exporter,
        outcome: outcome.clone(),
    };
    // The audit processor wraps the processor that exports and is the only one
    // registered.
    let audit = GenAiAuditProcessor::builder(BatchSpanProcessor::builder(exporter).build()).build();
    // The SDK takes the service name from OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES;
    // without either, name it after the example rather than `unknown_service`.
    let mut resource = Resource::builder();
    let named_in_env = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    if !named_in_env {
        resource = resource.with_service_name("genai-audit-otlp-example");
    }
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_span_processor(audit)
        .build();

    // --- One agent invocation -------------------------------------------------------
    let tracer = provider.tracer("genai-audit-otlp-example");
    invoke_agent(&tracer);

    // --- Export ---------------------------------------------------------------------
    // Shutting down flushes the batch to the endpoint.
    let shutdown = provider.shutdown();
    let outcome = outcome.lock().unwrap_or_else(|e| e.into_inner());
    let error = outcome
        .error
        .clone()
        .or_else(|| shutdown.err().map(|e| e.to_string()));
    match error {
        None => {
            println!(
                "exported {} spans: one agent invocation, 2 steps, 2 generations, 1 tool call",
                outcome.exported
            );
            ExitCode::SUCCESS
        }
        Some(e) => {
            eprintln!("error: exporting the trace failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Default)]
struct Outcome {
    exported: usize,
    error: Option<String>,
}

/// A span exporter that passes everything to `inner` and remembers how it went.
#[derive(Debug)]
struct Reporting<E> {
    inner: E,
    outcome: Arc<Mutex<Outcome>>,
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        let mut outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(()) => outcome.exported += spans,
            Err(e) => outcome.error = Some(e.to_string()),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A support agent answers "Where is order 1234?": step 1 calls the model, which asks
/// for a tool, and runs the tool; step 2 calls the model for the answer.
fn invoke_agent(tracer: &SdkTracer) {
    let invocation = tracer
        .span_builder("invoke_agent support-bot")
        .with_kind(SpanKind::Internal)
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "support-bot"),
            KeyValue::new("gen_ai.conversation.id", "conv-1234"),
        ])
        .start(tracer);
    let cx = Context::new().with_span(invocation);

    let step1 = step(tracer, &cx, 1);
    chat(tracer, &step1, 1_200, 85);
    let mut tool = tracer
        .span_builder("execute_tool lookup_order")
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", "lookup_order"),
            KeyValue::new("gen_ai.tool.call.id", "call_1"),
            KeyValue::new("gen_ai.tool.type", "function"),
        ])
        .start_with_context(tracer, &step1);
    tool.end();
    step1.span().end();

    let step2 = step(tracer, &cx, 2);
    chat(tracer, &step2, 1_420, 140);
    step2.span().end();

    cx.span().end();
}

fn step(tracer: &SdkTracer, parent: &Context, round: i64) -> Context {
    let span = tracer
        .span_builder("react step")
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "react"),
            KeyValue::new("gen_ai.react.round", round),
        ])
        .start_with_context(tracer, parent);
    parent.with_span(span)
}

/// One model call, with the attributes an instrumented OpenAI client records.
fn chat(tracer: &SdkTracer, parent: &Context, input_tokens: i64, output_tokens: i64) {
    let mut span = tracer
        .span_builder("chat gpt-4o")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
        ])
        .start_with_context(tracer, parent);
    // Known once the reply is in.
    span.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", input_tokens));
    span.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", output_tokens));
    span.end();
}
