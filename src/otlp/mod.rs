//! Exported traces (feature `cli`, which also builds the `genai-audit` command):
//! reading OTLP in every form exporters write, auditing each trace on its own with the
//! same engine as the processor, and writing the spans back enriched, every other byte
//! as it was read.
//!
//! - [`Inputs`] reads inputs, told by content: OTLP JSON (one
//!   `ExportTraceServiceRequest` per line as the Collector's file exporter writes, or
//!   one per text as an OTLP/HTTP JSON body), the binary protobuf request (the
//!   OTLP/HTTP body, or the Collector's `format: proto` stream), trace scripts; any of
//!   them gzip-compressed. It keeps each request's text and a compact record per span;
//! - [`audit`] replays each trace's starts and ends through a real `SdkTracerProvider`
//!   whose only processor is the audit processor, one trace at a time per core, and
//!   hands back a [`ReportSpan`](crate::report::ReportSpan) per span;
//! - [`enrich`] does the same and writes the requests back as it goes, each span's
//!   attributes enriched.
//!
//! The example on [`Inputs`] shows the three together.

mod doubles;
mod input;
mod json;
mod options;
mod replay;
mod run;
mod scripted;
mod store;
mod write_back;

pub(crate) use doubles::{each_double, is_stand_in, request_json, stand_in, STAND_INS};
pub use input::{detect, InputError, InputKind, DEFAULT_MAX_LINE_BYTES};
pub(crate) use json::enum_number;
pub use options::{AuditOptions, SettingsError};
pub use run::{audit, enrich, EnrichError, Inputs};
pub(crate) use run::{Auditor, Output, ResponseIndex};
pub(crate) use write_back::{List, Piece};
