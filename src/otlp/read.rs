//! Reading OTLP JSON: `ExportTraceServiceRequest`s, one per line or one per file.

use std::fmt;
use std::io::{BufRead, Read};

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

/// What an input holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// OTLP JSON requests.
    Otlp(Vec<Request>),
    /// The text of a trace script (to be parsed by
    /// [`TraceScript::parse`](crate::script::TraceScript::parse)).
    Script(String),
}

/// Reads OTLP JSON `text` named `file`: one `ExportTraceServiceRequest` per line (as
/// the Collector's file exporter writes), or one request over the whole text (an
/// OTLP/HTTP JSON body, possibly pretty-printed). Blank lines are skipped.
///
/// Accepted beyond what the OTLP crate's serde mapping reads: 64-bit and 32-bit
/// integers as strings or numbers, enum values as numbers or names
/// (`SPAN_KIND_CLIENT`), `null` for an absent field. Every span must have a 16-byte
/// trace id and an 8-byte span id, and a parent id that is empty or 8 bytes.
/// An empty text, a line longer than `max_line_bytes`, or anything unreadable is an
/// [`InputError`] with its line.
pub fn parse_requests(
    text: &str,
    file: &str,
    max_line_bytes: usize,
) -> Result<Vec<Request>, InputError> {
    let mut reader = text.as_bytes();
    match read_input(&mut reader, file, max_line_bytes, Some(InputKind::Otlp))? {
        Input::Otlp(requests) => Ok(requests),
        Input::Script(_) => Err(InputError {
            file: file.to_owned(),
            line: 1,
            reason: "not OTLP JSON".to_owned(),
        }),
    }
}

/// Reads one input from `reader`, a line at a time (a request's text is dropped once
/// it is read), telling OTLP JSON from a trace script by its first line that is not
/// blank (see [`detect`]) unless `kind` says which it is. OTLP JSON is read as by
/// [`parse_requests`]; a trace script is returned as text.
pub fn read_input(
    reader: &mut dyn BufRead,
    file: &str,
    max_line_bytes: usize,
    kind: Option<InputKind>,
) -> Result<Input, InputError> {
    let error = |line: usize, reason: String| InputError {
        file: file.to_owned(),
        line,
        reason,
    };
    let too_long = |line: usize, what: &str, len: usize| {
        error(
            line,
            format!("{what} is {len} bytes or more, longer than the limit of {max_line_bytes} (--max-line-bytes)"),
        )
    };
    let mut requests = Vec::new();
    let mut skipped = String::new();
    let mut buffer: Vec<u8> = Vec::new();
    let mut line = 0;
    loop {
        let read = next_line(reader, &mut buffer, max_line_bytes)
            .map_err(|e| error(line + 1, format!("cannot read: {e}")))?;
        if read == 0 {
            break;
        }
        line += 1;
        while buffer.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buffer.pop();
        }
        if buffer.len() > max_line_bytes {
            return Err(too_long(line, "line", buffer.len()));
        }
        let text = std::str::from_utf8(&buffer)
            .map_err(|e| error(line, format!("not UTF-8 text: {e}")))?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            if requests.is_empty() {
                skipped.push('\n');
            }
            continue;
        }
        if requests.is_empty() {
            let kind = kind.unwrap_or_else(|| detect(trimmed));
            if kind == InputKind::Script {
                let mut script = std::mem::take(&mut skipped);
                script.push_str(text);
                script.push('\n');
                return read_rest(reader, &mut script, max_line_bytes, line)
                    .map(|()| Input::Script(script))
                    .map_err(|(at, reason)| error(at, reason));
            }
        }
        match parse_one(trimmed) {
            Ok(mut request) => {
                compact(&mut request);
                requests.push(Request { line, request });
            }
            Err(reason) => {
                // The first line of a request written over several lines: read the rest
                // of the text as one request.
                if requests.is_empty() && !complete_object(trimmed) {
                    let mut whole = text.to_owned();
                    whole.push('\n');
                    read_rest(reader, &mut whole, max_line_bytes, line)
                        .map_err(|(at, reason)| error(at, reason))?;
                    if whole.len() > max_line_bytes {
                        return Err(too_long(line, "request", whole.len()));
                    }
                    // An error at the very end (an unfinished request) is on the last
                    // line read, not on the one after it.
                    let last = line + whole.lines().count().saturating_sub(1);
                    let request = parse_one(&whole).map_err(|reason| {
                        error((line + reason.1.saturating_sub(1)).min(last), reason.0)
                    })?;
                    requests.push(Request { line, request });
                    check_requests(&requests, file)?;
                    return Ok(Input::Otlp(requests));
                }
                return Err(error(line, reason.0));
            }
        }
        check_requests(&requests[requests.len() - 1..], file)?;
    }
    if requests.is_empty() {
        return Err(error(
            1,
            "no OTLP trace request in the input (empty)".to_owned(),
        ));
    }
    Ok(Input::Otlp(requests))
}

/// Gives back the room a request's vectors grew into while parsing (inputs are kept
/// whole until the audit, so this is most of their memory).
fn compact(request: &mut ExportTraceServiceRequest) {
    request.resource_spans.shrink_to_fit();
    for rs in &mut request.resource_spans {
        rs.scope_spans.shrink_to_fit();
        for ss in &mut rs.scope_spans {
            ss.spans.shrink_to_fit();
            for span in &mut ss.spans {
                span.attributes.shrink_to_fit();
                span.events.shrink_to_fit();
                span.links.shrink_to_fit();
            }
        }
    }
}

/// Reads the rest of `reader` onto `text`, each line at most `max_line_bytes`.
fn read_rest(
    reader: &mut dyn BufRead,
    text: &mut String,
    max_line_bytes: usize,
    mut line: usize,
) -> Result<(), (usize, String)> {
    let mut buffer = Vec::new();
    loop {
        let read = next_line(reader, &mut buffer, max_line_bytes)
            .map_err(|e| (line + 1, format!("cannot read: {e}")))?;
        if read == 0 {
            return Ok(());
        }
        line += 1;
        let content = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.len() > max_line_bytes {
            return Err((
                line,
                format!(
                    "line is {} bytes or more, longer than the limit of {max_line_bytes} (--max-line-bytes)",
                    content.len()
                ),
            ));
        }
        let piece =
            std::str::from_utf8(&buffer).map_err(|e| (line, format!("not UTF-8 text: {e}")))?;
        text.push_str(piece);
    }
}

/// Reads the next line into `buffer` (emptied first), at most a little more than
/// `max_line_bytes` of it, so that a longer line is noticed without being read whole.
fn next_line(
    reader: &mut dyn BufRead,
    buffer: &mut Vec<u8>,
    max_line_bytes: usize,
) -> std::io::Result<usize> {
    buffer.clear();
    let limit = u64::try_from(max_line_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(2);
    reader.take(limit).read_until(b'\n', buffer)
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
