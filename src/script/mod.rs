//! Trace scripts: recorded span lifecycles that can be replayed through any
//! OpenTelemetry [`Tracer`].
//!
//! A trace script is a JSON Lines text with one span lifecycle event per line, in
//! the order in which a tracing SDK saw them. Blank lines and lines whose first
//! non-blank character is `#` are ignored (they still count for line numbers).
//! Every event is a JSON object with an `op` and the `span` label it applies to:
//!
//! | `op` | fields | meaning |
//! | --- | --- | --- |
//! | `"start"` | `parent` (required: a label started earlier, or `null` for a new trace root), `name` (required), `kind` (`"internal"` default, `"client"`, `"server"`, `"producer"`, `"consumer"`), `time_ns`, `attributes` | the span starts with these attributes |
//! | `"set"` | `attributes` (required) | adds or overwrites attributes of a started, not yet ended span, in the order given |
//! | `"end"` | `time_ns`, `status` (`"unset"` default, `"ok"`, `"error"`), `status_message` (the error description; must be empty or absent with another status) | the span ends |
//!
//! `time_ns` is a non-negative integer, UNIX time in nanoseconds. When a `start` or
//! `end` has no `time_ns`, it takes the time of the closest earlier `start` or
//! `end` of the script; the first `start` must carry one. Attribute keys are
//! non-empty strings; attribute values are
//! strings, booleans, integers (`i64`; larger integers are read as `f64`), floats, or
//! arrays whose elements are all strings, all booleans or all numbers (an array of
//! numbers with at least one non-`i64` element is read as an `f64` array; an empty
//! array is read as an empty string array). Optional fields given as `null` count as
//! absent. Every object member is kept in text order, so attributes replay in the
//! order written (a key repeated within one object is set twice, the last value
//! winning). A span that is started and never ended models a leaked span. Labels
//! are any strings, unique per script.
//!
//! [`TraceScript::parse`] checks the whole script before anything can be replayed:
//! invalid JSON, an unknown `op`, field, `kind` or `status`, a missing required
//! field, a field that does not belong to the event's `op`, a field given twice, an
//! invalid attribute value, a `parent` never started earlier, a second `start` of a
//! label, or a `set`/`end` of a label that was never started or has already ended
//! are all reported as a [`ScriptError`] with the 1-based line number.
//!
//! [`TraceScript::replay`] then drives the OpenTelemetry API with the script and
//! returns a [`Replay`] that keeps every span alive and maps span ids back to the
//! script's labels.
//!
//! # Example
//!
//! ```
//! use genai_audit::script::TraceScript;
//! use opentelemetry::trace::TracerProvider as _;
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
//!
//! let script = TraceScript::parse(
//!     r#"{"op":"start","span":"inv","parent":null,"name":"invoke_agent coder","time_ns":1700000000000000000}
//! {"op":"start","span":"llm","parent":"inv","name":"chat gpt-4o","kind":"client","time_ns":1700000000001000000,"attributes":{"gen_ai.request.model":"gpt-4o"}}
//! {"op":"end","span":"llm","time_ns":1700000000900000000,"status":"ok"}"#,
//! )?;
//!
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder()
//!     .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
//!     .build();
//! let replay = script.replay(&provider.tracer("replay"));
//!
//! // Only `llm` has ended; `inv` is still open (it models a leaked span).
//! let spans = exporter.get_finished_spans()?;
//! assert_eq!(spans.len(), 1);
//! assert_eq!(replay.label_of(spans[0].span_context.span_id()), Some("llm"));
//! assert_eq!(Some(spans[0].parent_span_id), replay.span_id("inv"));
//!
//! // Shut the provider down first, as an application does at exit, then drop the replay.
//! provider.shutdown()?;
//! drop(replay);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Tracer`]: opentelemetry::trace::Tracer

mod model;
mod parse;
mod replay;
mod value;

pub use model::{EndEvent, Event, ScriptError, SetEvent, StartEvent, TraceScript};
pub use replay::Replay;
