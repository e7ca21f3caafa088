//! Reading OTLP JSON: `ExportTraceServiceRequest`s, one per line or one per file.

use std::fmt;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::Value as Json;

/// The default longest line read, 256 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// Why an input could not be read: its name, the 1-based line, and the reason.
/// Displays as `FILE:LINE: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The input's name (a path, or `-` for standard input).
    pub file: String,
    /// 1-based line number (the line of the request, or of the JSON error in a
    /// request written over several lines).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

impl std::error::Error for InputError {}

/// One request read, with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// 1-based line where the request starts in its input.
    pub line: usize,
    /// The request.
    pub request: ExportTraceServiceRequest,
}

/// What kind of input a text is, judged by its first line that is not blank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// OTLP JSON.
    Otlp,
    /// A trace script (JSON Lines of span lifecycle events).
    Script,
}

/// Detects the kind of `text`: a trace script when its first non-blank line is a
/// `#` comment or an object with an `op` member and no `resourceSpans`; OTLP JSON
/// otherwise.
pub fn detect(text: &str) -> InputKind {
    let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return InputKind::Otlp;
    };
    if first.starts_with('#') {
        return InputKind::Script;
    }
    if first.contains("\"resourceSpans\"") || first.contains("\"resource_spans\"") {
        return InputKind::Otlp;
    }
    if first.starts_with('{') && first.contains("\"op\"") {
        return InputKind::Script;
    }
    InputKind::Otlp
}

/// Reads OTLP JSON `text` named `file`: one `ExportTraceServiceRequest` per line (as
/// the Collector's file exporter writes), or one request over the whole text (an
/// OTLP/HTTP JSON body, possibly pretty-printed). Blank lines are skipped.
///
/// Accepted beyond what the OTLP crate's serde mapping reads: 64-bit and 32-bit
/// integers as strings or numbers, enum values as numbers or names
/// (`SPAN_KIND_CLIENT`), `null` for an absent field. Every span must have a 16-byte
/// trace id and an 8-byte span id, and a parent id that is empty or 8 bytes.
/// A text without any span, a line longer than `max_line_bytes`, or anything
/// unreadable is an [`InputError`] with its line.
pub fn parse_requests(
    text: &str,
    file: &str,
    max_line_bytes: usize,
) -> Result<Vec<Request>, InputError> {
    let error = |line: usize, reason: String| InputError {
        file: file.to_owned(),
        line,
        reason,
    };
    let mut requests = Vec::new();
    let mut offset = 0;
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let start = offset;
        offset += raw.len() + 1;
        if raw.len() > max_line_bytes {
            return Err(error(
                line,
                format!(
                    "line is {} bytes, longer than the limit of {max_line_bytes} (--max-line-bytes)",
                    raw.len()
                ),
            ));
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        match parse_one(trimmed) {
            Ok(request) => requests.push(Request { line, request }),
            Err(reason) => {
                // The first line of a request written over several lines: read the rest
                // of the text as one request.
                if requests.is_empty() && !complete_object(trimmed) {
                    let rest = &text[start..];
                    if rest.len() > max_line_bytes {
                        return Err(error(
                            line,
                            format!("request is {} bytes, longer than the limit of {max_line_bytes} (--max-line-bytes)", rest.len()),
                        ));
                    }
                    return match parse_one(rest) {
                        Ok(request) => {
                            let requests = vec![Request { line, request }];
                            check_requests(&requests, file)?;
                            Ok(requests)
                        }
                        Err(reason) => Err(error(line + reason.1.saturating_sub(1), reason.0)),
                    };
                }
                return Err(error(line, reason.0));
            }
        }
    }
    if requests.is_empty() {
        return Err(error(
            1,
            "no OTLP trace request in the input (empty)".to_owned(),
        ));
    }
    check_requests(&requests, file)?;
    Ok(requests)
}

/// Whether a line holds a whole JSON value (rather than the start of one).
fn complete_object(line: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok()
}

/// One request from JSON text; on error, the reason and the (1-based) line of the
/// error within `text`.
fn parse_one(text: &str) -> Result<ExportTraceServiceRequest, (String, usize)> {
    match serde_json::from_str::<ExportTraceServiceRequest>(text) {
        Ok(request) => Ok(request),
        Err(typed) => {
            // Valid JSON that the typed mapping rejects: normalise what real exporters
            // write differently, then read it again.
            let mut json: Json =
                serde_json::from_str(text).map_err(|e| (describe(&e), e.line()))?;
            if !json.is_object() {
                return Err(("not a JSON object".to_owned(), 1));
            }
            normalise(&mut json, None);
            serde_json::from_value(json).map_err(|_| (describe(&typed), typed.line()))
        }
    }
}

fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    // serde_json appends " at line L column C"; the line is reported separately.
    match text.rfind(" at line ") {
        Some(cut) => format!("{} (column {})", &text[..cut], error.column()),
        None => text,
    }
}

const INTEGER_FIELDS: &[&str] = &[
    "droppedAttributesCount",
    "droppedEventsCount",
    "droppedLinksCount",
    "flags",
    "kind",
    "code",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "timeUnixNano",
];

/// Rewrites the forms of valid OTLP JSON the typed mapping does not read: `null`
/// members are removed, integers written as strings become numbers, enum names
/// become their numbers.
fn normalise(json: &mut Json, key: Option<&str>) {
    match json {
        Json::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for (k, v) in map.iter_mut() {
                normalise(v, Some(k.as_str()));
            }
        }
        Json::Array(items) => {
            for item in items {
                normalise(item, None);
            }
        }
        Json::String(s) => {
            let Some(key) = key else { return };
            if key == "kind" {
                if let Some(n) = enum_number(s, "SPAN_KIND_", SPAN_KINDS) {
                    *json = Json::from(n);
                    return;
                }
            }
            if key == "code" {
                if let Some(n) = enum_number(s, "STATUS_CODE_", STATUS_CODES) {
                    *json = Json::from(n);
                    return;
                }
            }
            if INTEGER_FIELDS.contains(&key) && !key.ends_with("UnixNano") {
                if let Ok(n) = s.trim().parse::<u64>() {
                    *json = Json::from(n);
                }
            }
        }
        _ => {}
    }
}

const SPAN_KINDS: &[&str] = &[
    "UNSPECIFIED",
    "INTERNAL",
    "SERVER",
    "CLIENT",
    "PRODUCER",
    "CONSUMER",
];
const STATUS_CODES: &[&str] = &["UNSET", "OK", "ERROR"];

fn enum_number(name: &str, prefix: &str, names: &[&str]) -> Option<u64> {
    let bare = name.strip_prefix(prefix)?;
    names.iter().position(|n| *n == bare).map(|n| n as u64)
}

/// Checks the ids of every span.
fn check_requests(requests: &[Request], file: &str) -> Result<(), InputError> {
    for request in requests {
        let fail = |reason: String| InputError {
            file: file.to_owned(),
            line: request.line,
            reason,
        };
        for rs in &request.request.resource_spans {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let who = || {
                        if span.name.is_empty() {
                            format!("span {}", hex(&span.span_id))
                        } else {
                            format!("span {:?}", span.name)
                        }
                    };
                    if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
                        return Err(fail(format!(
                            "{}: traceId must be 32 hex digits, not all zero (got {:?})",
                            who(),
                            hex(&span.trace_id)
                        )));
                    }
                    if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
                        return Err(fail(format!(
                            "{}: spanId must be 16 hex digits, not all zero (got {:?})",
                            who(),
                            hex(&span.span_id)
                        )));
                    }
                    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
                        return Err(fail(format!(
                            "{}: parentSpanId must be empty or 16 hex digits (got {:?})",
                            who(),
                            hex(&span.parent_span_id)
                        )));
                    }
                    if span.end_time_unix_nano < span.start_time_unix_nano {
                        return Err(fail(format!("{}: ends before it starts", who())));
                    }
                }
            }
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
