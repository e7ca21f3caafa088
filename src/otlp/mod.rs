//! Exported traces: reading OTLP JSON, auditing its spans with the same engine as the
//! processor, and writing them back enriched (feature `cli`, which also builds the
//! `genai-audit` command).
//!
//! - [`parse_requests`] reads OTLP JSON (`ExportTraceServiceRequest`s, one per line as
//!   the Collector's file exporter writes them, or one per text as an OTLP/HTTP JSON
//!   body) into the OTLP crate's own types; [`read_input`] reads a file a line at a
//!   time and tells OTLP JSON from a trace script ([`detect`]);
//! - [`audit`] replays the spans through a tracer provider whose only processor is
//!   the audit processor, returns a [`ReportSpan`](crate::report::ReportSpan) per
//!   span, and on request writes the audit's attributes back onto the spans;
//! - [`audit_script`] does the same for a trace script;
//! - [`write_requests`] writes requests as OTLP JSON, one per line.
//!
//! ```
//! use genai_audit::otlp::{audit, parse_requests, AuditOptions};
//!
//! let line = r#"{"resourceSpans":[{"resource":{},"scopeSpans":[{"scope":{"name":"app"},"spans":[
//!   {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"chat gpt-4o","kind":3,
//!    "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001000000000",
//!    "attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},
//!                  {"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},
//!                  {"key":"gen_ai.usage.input_tokens","value":{"intValue":"1000"}},
//!                  {"key":"gen_ai.usage.output_tokens","value":{"intValue":100}}]}]}]}]}"#;
//! let mut requests = parse_requests(&line.replace('\n', ""), "example.json", 1 << 20)?;
//! let options = AuditOptions { enrich: true, ..AuditOptions::default() };
//! let spans = audit(&mut requests, &options, &mut |_| {});
//! assert_eq!(spans[0].role.as_deref(), Some("generation"));
//! assert!(spans[0].cost_usd.is_some());
//! let enriched = &requests[0].request.resource_spans[0].scope_spans[0].spans[0];
//! assert!(enriched.attributes.iter().any(|kv| kv.key == "genai_audit.cost_usd"));
//! # Ok::<(), genai_audit::otlp::InputError>(())
//! ```

mod audit;
mod read;
mod scripted;
mod value;
mod write;

pub use audit::{audit, AuditOptions};
pub use read::{
    detect, parse_requests, read_input, Input, InputError, InputKind, Request,
    DEFAULT_MAX_LINE_BYTES,
};
pub use scripted::audit_script;
pub use write::write_requests;
