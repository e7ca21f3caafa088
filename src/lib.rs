//! # genai-audit
//!
//! An OpenTelemetry [`SpanProcessor`](opentelemetry_sdk::trace::SpanProcessor) that
//! audits the traces of AI agents. It recognises gen-ai agent spans from the
//! OpenTelemetry GenAI conventions, LoongSuite, OpenInference (LangChain and LangGraph
//! included), OpenLLMetry, Langfuse, the Vercel AI SDK and Mastra ([`recognition`]),
//! whether their attributes arrive at start or only at end; reads their token usage
//! ([`usage`]); prices each model call with the `genai-prices` data ([`pricing`]);
//! writes per-call cost, running totals on generations and rolled-up totals on steps
//! and invocations; reports [`findings`] as span attributes and metrics (names in
//! [`keys::metric`]); and enforces [`budget`]s per invocation.
//!
//! ## Wiring
//!
//! The SDK hands every registered processor its own copy of each span, so the audit
//! processor *wraps* the processor that exports and is the only one registered:
//!
//! ```
//! use genai_audit::{ContaminationPolicy, GenAiAuditProcessor};
//! use opentelemetry::trace::{Span, Tracer, TracerProvider};
//! use opentelemetry::KeyValue;
//! use opentelemetry_sdk::metrics::SdkMeterProvider;
//! use opentelemetry_sdk::trace::{BatchSpanProcessor, InMemorySpanExporter, SdkTracerProvider};
//!
//! # let exporter = InMemorySpanExporter::default();
//! # let meter_provider = SdkMeterProvider::builder().build();
//! let inner = BatchSpanProcessor::builder(exporter.clone()).build();
//! let audit = GenAiAuditProcessor::builder(inner)
//!     .with_meter_provider(meter_provider.clone())   // turns on the metrics
//!     .contamination_policy(ContaminationPolicy::Repair)
//!     .build();
//! let provider = SdkTracerProvider::builder().with_span_processor(audit).build();
//!
//! let tracer = provider.tracer("my-agent");
//! tracer.in_span("invoke_agent coder", |_cx| {
//!     tracer.in_span("react step", |_cx| {
//!         let mut llm = tracer.start("chat claude-sonnet-4-5");
//!         llm.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
//!         llm.set_attribute(KeyValue::new("gen_ai.provider.name", "anthropic"));
//!         llm.set_attribute(KeyValue::new("gen_ai.request.model", "claude-sonnet-4-5"));
//!         llm.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 1056));
//!         llm.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", 170));
//!         llm.end();
//!     });
//! });
//! provider.force_flush().unwrap();
//!
//! let spans = exporter.get_finished_spans().unwrap();
//! let invocation = spans.iter().find(|s| s.name == "invoke_agent coder").unwrap();
//! let total = |key: &str| genai_audit::last_value(&invocation.attributes, key).cloned();
//! assert_eq!(total("genai_audit.total.input_tokens"), Some(1056i64.into()));
//! assert!(total("genai_audit.total.cost_usd").is_some());
//! ```
//!
//! Every call reaches the wrapped processor: `on_start`, `on_end` (with the enriched
//! span), `force_flush`, `shutdown_with_timeout` and `set_resource`. Spans that are not
//! gen-ai pass through untouched.
//!
//! ## Attributes
//!
//! Every key the processor writes is in [`keys`]; the keys it owns start with
//! `genai_audit.`. Finding codes are [`FindingCode`]s. Trace-script replay, for tests
//! and for offline audits of recorded traces, is in [`script`]; a readable report of
//! audited spans in [`report`]. With the feature `cli`, the `otlp` module audits
//! exported OTLP (JSON, protobuf, gzip), each trace on its own, and the `genai-audit`
//! command does it from the command line.
//!
//! ## Configuration
//!
//! Everything is set on the [builder](GenAiAuditProcessorBuilder); environment
//! variables are read at `build()` for what code did not set (code wins). An invalid
//! value is reported through OpenTelemetry's internal log and the default is used.
//!
//! | variable | values | default |
//! | --- | --- | --- |
//! | `GENAI_AUDIT_DISABLED` | `true`/`false` | `false` (true: pure pass-through) |
//! | `GENAI_AUDIT_LEAK_POLICY` | `flag`, `close` | `flag` |
//! | `GENAI_AUDIT_CONTAMINATION_POLICY` | `flag`, `repair` | `flag` |
//! | `GENAI_AUDIT_MAX_TRACKED_SPANS` | integer ≥ 1 | 65536 |
//! | `GENAI_AUDIT_MAX_SPAN_AGE_SECS` | integer ≥ 1 | 3600 |
//! | `GENAI_AUDIT_PRICES_FILE` | path to a genai-prices JSON file | bundled prices |
//! | `GENAI_AUDIT_BUDGET_USD` | number > 0, per invocation | none |
//! | `GENAI_AUDIT_BUDGET_TOKENS` | integer ≥ 1 (input + output), per invocation | none |
//!
//! ## How it is built
//!
//! Dependencies point one way, from the edges inward:
//!
//! - the edges, each feeding the [`engine`] span events and applying its verdicts: the
//!   processor (struct, builder, `impl SpanProcessor`: the only module that names the
//!   SDK's span types); the `genai-audit` command (feature `cli`) over `otlp` (reading
//!   exported OTLP into a compact store, replaying each trace's events into the
//!   engine, writing the text back with only the attribute lists changed), `serve`,
//!   `costs` (breakdowns, diffs, rate cards and the HTML page, from report spans) and
//!   [`report`] (the printer of audited spans); [`script`] (trace scripts);
//! - the [`engine`]: its event API, start and end (in phases), the live-span ledger,
//!   leaks, contamination and the findings they make; plus `metrics`, a leaf;
//! - the semantics: [`recognition`] (roles), [`usage`] (token counts), [`pricing`] (a
//!   [`Pricer`], and what a call cost through it), [`keys`] and [`findings`].
#![warn(missing_docs)]

mod attributes;
pub mod budget;
mod config;
#[cfg(feature = "cli")]
pub mod costs;
pub mod engine;
pub mod findings;
mod hashing;
pub mod keys;
mod metrics;
#[cfg(feature = "cli")]
pub mod otlp;
pub mod pricing;
mod processor;
pub mod recognition;
pub mod report;
pub mod script;
#[cfg(feature = "cli")]
pub mod serve;
pub mod usage;

pub use attributes::last_value;
pub use budget::{Budget, BudgetExceeded};
pub use config::{ContaminationPolicy, LeakPolicy, ParsePolicyError, Policy};
pub use findings::FindingCode;
pub use pricing::CostAttributes;
pub use pricing::{GenAiPrices, ModelPrice, Pricer};
pub use processor::{GenAiAuditProcessor, GenAiAuditProcessorBuilder};
pub use recognition::{Classifier, Role, RoleRule};
