//! Reading an input, told by its content: OTLP JSON (one request per line, or one
//! request over the whole text), the binary protobuf `ExportTraceServiceRequest` (the
//! OTLP/HTTP body, or the Collector file exporter's `format: proto` stream of
//! length-prefixed requests), a trace script; any of them gzip-compressed, with or
//! without a byte-order mark, with LF or CRLF line ends.
//!
//! Reading is bounded: no line, request or message longer than the limit is ever held
//! whole; the error names it with its line.

use std::fmt;
use std::io::{BufRead, BufReader, Read};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::doubles::{request_json, WriteJsonError};
use super::json::minify;

/// The default longest line read, 256 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// Why an input could not be read: its name, the 1-based line (or, for protobuf, the
/// 1-based message), and the reason. Displays as `FILE:LINE: reason`, or
/// `FILE: reason` when no line applies (line 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The input's name (a path, or `-` for standard input).
    pub file: String,
    /// 1-based line number; 0 when the error is about the whole input.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

impl std::error::Error for InputError {}

impl InputError {
    fn at(file: &str, line: usize, reason: String) -> InputError {
        InputError {
            file: file.to_owned(),
            line,
            reason,
        }
    }
}

/// What kind of text an input is, judged by its first line that is not blank.
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
    let first = first.trim_start_matches('\u{feff}');
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

/// One OTLP request read: its JSON text on one line, and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestText {
    /// The request as JSON text with no line break (a request written over several
    /// lines has the white space between its tokens removed; a protobuf request is
    /// written in the OTLP JSON mapping).
    pub(crate) text: String,
    /// 1-based line (protobuf: message) where it starts.
    pub(crate) line: usize,
}

/// What an input held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// OTLP requests (each handed to the sink as it was read).
    Otlp,
    /// The text of a trace script.
    Script(String),
}

const GZIP: [u8; 2] = [0x1f, 0x8b];
const BOM: &[u8] = b"\xef\xbb\xbf";

/// Reads one input from `reader`, handing each OTLP request to `sink` as soon as it
/// is read (so that the text of the input is never held twice).
pub(crate) fn read_source(
    reader: Box<dyn Read + '_>,
    file: &str,
    max_line_bytes: usize,
    sink: &mut dyn FnMut(RequestText) -> Result<(), InputError>,
) -> Result<Source, InputError> {
    let error = |line: usize, reason: String| InputError::at(file, line, reason);
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let head = reader
        .fill_buf()
        .map_err(|e| error(0, format!("cannot read: {e}")))?;
    if head.starts_with(&GZIP) {
        let inflated = flate2::bufread::MultiGzDecoder::new(reader);
        return read_source(Box::new(inflated), file, max_line_bytes, sink);
    }
    let head = reader
        .fill_buf()
        .map_err(|e| error(0, format!("cannot read: {e}")))?;
    let head = head.strip_prefix(BOM).unwrap_or(head);
    let text = head
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|b| matches!(b, b'{' | b'#' | b'['));
    match head.first() {
        _ if text => read_text(&mut reader, file, max_line_bytes, sink),
        Some(0x0a) => {
            read_protobuf_body(&mut reader, file, max_line_bytes, sink)?;
            Ok(Source::Otlp)
        }
        Some(0x00) => {
            read_protobuf_stream(&mut reader, file, max_line_bytes, sink)?;
            Ok(Source::Otlp)
        }
        _ => read_text(&mut reader, file, max_line_bytes, sink),
    }
}

/// Why a protobuf request could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtobufError {
    /// It is not a request.
    #[error("not an OTLP protobuf ExportTraceServiceRequest: {0}")]
    Decode(#[from] prost::DecodeError),
    /// It cannot be written as OTLP JSON.
    #[error("cannot convert to OTLP JSON: {0}")]
    Convert(#[from] WriteJsonError),
}

/// A protobuf request as one request of OTLP JSON text, the error as text (for
/// `otlp::audit`, which takes it so).
pub(crate) fn protobuf_request(bytes: &[u8]) -> Result<String, String> {
    read_protobuf(bytes).map_err(|e| e.to_string())
}

/// A protobuf request as one request of OTLP JSON text.
fn read_protobuf(bytes: &[u8]) -> Result<String, ProtobufError> {
    let mut request = ExportTraceServiceRequest::decode(bytes)?;
    // OTLP JSON takes about twice the bytes of protobuf (hex ids, member names).
    Ok(request_json(
        &mut request,
        bytes.len().saturating_mul(2).saturating_add(64),
    )?)
}

/// Reads `limit` + 1 bytes at most, so that a longer input is noticed unread.
fn read_bounded(reader: &mut dyn Read, limit: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(out).map(|_| ())
}

fn too_long(what: &str, max_line_bytes: usize) -> String {
    format!("{what} is longer than the limit of {max_line_bytes} bytes (--max-line-bytes)")
}

/// The body an OTLP/HTTP exporter sends: one `ExportTraceServiceRequest`.
fn read_protobuf_body(
    reader: &mut dyn Read,
    file: &str,
    max_line_bytes: usize,
    sink: &mut dyn FnMut(RequestText) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let error = |reason: String| InputError {
        file: file.to_owned(),
        line: 1,
        reason,
    };
    let mut bytes = Vec::new();
    read_bounded(reader, max_line_bytes, &mut bytes)
        .map_err(|e| error(format!("cannot read: {e}")))?;
    if bytes.len() > max_line_bytes {
        return Err(error(too_long("the protobuf request", max_line_bytes)));
    }
    let text = read_protobuf(&bytes).map_err(|e| error(e.to_string()))?;
    drop(bytes);
    sink(RequestText { text, line: 1 })
}

/// The Collector file exporter's `format: proto`: each request preceded by its length
/// as a 4-byte big-endian integer. Errors name the 1-based message.
fn read_protobuf_stream(
    reader: &mut dyn BufRead,
    file: &str,
    max_line_bytes: usize,
    sink: &mut dyn FnMut(RequestText) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let mut message = 0;
    loop {
        let at_end = reader
            .fill_buf()
            .map(<[u8]>::is_empty)
            .map_err(|e| InputError {
                file: file.to_owned(),
                line: message + 1,
                reason: format!("cannot read: {e}"),
            })?;
        if at_end {
            return Ok(());
        }
        message += 1;
        let error = |reason: String| InputError {
            file: file.to_owned(),
            line: message,
            reason,
        };
        let mut length = [0u8; 4];
        reader
            .read_exact(&mut length)
            .map_err(|e| error(format!("cannot read the message length: {e}")))?;
        let length = u32::from_be_bytes(length) as usize;
        if length > max_line_bytes {
            return Err(error(too_long("the protobuf message", max_line_bytes)));
        }
        let mut bytes = Vec::new();
        read_bounded(&mut *reader, length.saturating_sub(1), &mut bytes)
            .map_err(|e| error(format!("cannot read: {e}")))?;
        if bytes.len() < length {
            return Err(error(format!(
                "the message is cut short ({} of {length} bytes)",
                bytes.len()
            )));
        }
        let text = read_protobuf(&bytes).map_err(|e| error(e.to_string()))?;
        sink(RequestText {
            text,
            line: message,
        })?;
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
fn complete_value(line: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok()
}

fn read_text(
    reader: &mut dyn BufRead,
    file: &str,
    max_line_bytes: usize,
    sink: &mut dyn FnMut(RequestText) -> Result<(), InputError>,
) -> Result<Source, InputError> {
    let error = |line: usize, reason: String| InputError::at(file, line, reason);
    let mut buffer: Vec<u8> = Vec::new();
    let mut line = 0;
    let mut requests = 0usize;
    // Blank lines before the first one that is not (kept for a script's line numbers).
    let mut leading = String::new();
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
            return Err(error(line, too_long("the line", max_line_bytes)));
        }
        let mut bytes = buffer.as_slice();
        if line == 1 {
            bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        }
        let text =
            std::str::from_utf8(bytes).map_err(|e| error(line, format!("not UTF-8 text: {e}")))?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            if requests == 0 {
                leading.push('\n');
            }
            continue;
        }
        if requests == 0 {
            if detect(trimmed) == InputKind::Script {
                let mut script = std::mem::take(&mut leading);
                script.push_str(text);
                script.push('\n');
                read_rest(reader, &mut script, max_line_bytes, line, None)
                    .map_err(|(at, reason)| error(at, reason))?;
                return Ok(Source::Script(script));
            }
            if !complete_value(trimmed) {
                // A request written over several lines: the whole text is one request.
                let mut whole = text.to_owned();
                let last = read_rest(
                    reader,
                    &mut whole,
                    max_line_bytes,
                    line,
                    Some(max_line_bytes),
                )
                .map_err(|(at, reason)| error(at, reason))?;
                if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&whole) {
                    let at = (line + e.line().saturating_sub(1)).clamp(line, last);
                    return Err(error(at, describe(&e)));
                }
                sink(RequestText {
                    text: minify(&whole),
                    line,
                })?;
                return Ok(Source::Otlp);
            }
        }
        requests += 1;
        // The line itself, without a copy when it needs no trimming.
        let text = if trimmed.len() == buffer.len() {
            String::from_utf8(std::mem::take(&mut buffer)).unwrap_or_default()
        } else {
            trimmed.to_owned()
        };
        sink(RequestText { text, line })?;
    }
    if requests == 0 {
        return Err(error(
            1,
            "no OTLP trace request in the input (empty)".to_owned(),
        ));
    }
    Ok(Source::Otlp)
}

/// Reads the rest of `reader` onto `text` (lines joined by `\n`), each line at most
/// `max_line_bytes` and, with `total`, all of it at most `total`. Returns the number
/// of the last line read.
fn read_rest(
    reader: &mut dyn BufRead,
    text: &mut String,
    max_line_bytes: usize,
    mut line: usize,
    total: Option<usize>,
) -> Result<usize, (usize, String)> {
    let mut buffer = Vec::new();
    loop {
        let read = next_line(reader, &mut buffer, max_line_bytes)
            .map_err(|e| (line + 1, format!("cannot read: {e}")))?;
        if read == 0 {
            return Ok(line);
        }
        line += 1;
        while buffer.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buffer.pop();
        }
        if buffer.len() > max_line_bytes {
            return Err((line, too_long("the line", max_line_bytes)));
        }
        let piece =
            std::str::from_utf8(&buffer).map_err(|e| (line, format!("not UTF-8 text: {e}")))?;
        if total.is_some_and(|total| text.len() + 1 + piece.len() > total) {
            return Err((line, too_long("the request", max_line_bytes)));
        }
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(piece);
        if total.is_none() {
            text.push('\n');
        }
    }
}

/// A JSON error without serde_json's " at line L column C" (the line is reported
/// apart).
pub(crate) fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => format!("{} (column {})", &text[..cut], error.column()),
        None => text,
    }
}
