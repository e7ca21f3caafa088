//! The inputs held for the audit: each request's text as it was read, and one compact
//! record per span (ids, times and where its text is), so that memory stays a small
//! multiple of the input whatever the spans hold.

use std::collections::HashMap;

use serde_json::value::RawValue;

use super::input::describe;
use super::json::{api_value_text, hex_id, offset_in, RequestHead, SpanHead};
use crate::hashing::hash_str;
use crate::keys::read::gen_ai;
use crate::recognition::{builtin_role, signal_index, Role};
use opentelemetry::{KeyValue, Value};

/// A request as read, and its place.
pub(crate) struct StoredRequest {
    /// Its JSON text, on one line.
    pub(crate) text: Box<str>,
    /// Its first span's index in [`Store::spans`].
    pub(crate) first_span: u32,
}

/// One span: what orders and links it, and where its text is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanRecord {
    pub(crate) trace: [u8; 16],
    pub(crate) id: [u8; 8],
    /// All zero: no parent.
    pub(crate) parent: [u8; 8],
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// The span's text: `request`'s text from `offset`, `len` bytes.
    pub(crate) offset: u32,
    pub(crate) len: u32,
    pub(crate) request: u32,
    /// Distinct resources and scopes (by their text) get distinct numbers: within one
    /// request, the spans of one are in the order they ended.
    pub(crate) resource: u32,
    pub(crate) flags: u32,
}

/// `flags` bits 8 and 9: whether the parent's remoteness is known, and whether it is
/// remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

impl SpanRecord {
    /// Whether its parent is known to be in another process.
    pub(crate) fn parent_remote(&self) -> bool {
        self.flags & HAS_IS_REMOTE != 0 && self.flags & IS_REMOTE != 0
    }

    pub(crate) fn has_parent(&self) -> bool {
        self.parent != [0; 8]
    }
}

/// Everything read, in input order (files in the order given, then lines).
#[derive(Default)]
pub(crate) struct Store {
    pub(crate) files: Vec<String>,
    pub(crate) requests: Vec<StoredRequest>,
    pub(crate) spans: Vec<SpanRecord>,
    resources: HashMap<Box<str>, u32>,
    /// The hash of each generation's response id, and its trace.
    pub(crate) responses: Vec<(u64, [u8; 16])>,
}

impl Store {
    /// The text of span `i`.
    pub(crate) fn text(&self, span: &SpanRecord) -> &str {
        let request = &self.requests[span.request as usize].text;
        let start = span.offset as usize;
        request
            .get(start..start + span.len as usize)
            .unwrap_or_default()
    }

    /// Starts a new input named `file`; returns its number.
    pub(crate) fn begin_file(&mut self, file: &str) -> u32 {
        self.files.push(file.to_owned());
        (self.files.len() - 1) as u32
    }

    /// Keeps a request read by [`parse`] (requests are kept in the order given).
    pub(crate) fn add(&mut self, parsed: Parsed) -> Result<(), String> {
        let index = u32::try_from(self.requests.len())
            .map_err(|_| "more than 4 294 967 295 requests".to_owned())?;
        let first_span = u32::try_from(self.spans.len() + parsed.spans.len())
            .map(|_| self.spans.len() as u32)
            .map_err(|_| "more than 4 294 967 295 spans".to_owned())?;
        // Each resource and scope (by their text) gets its number the first time it is
        // seen.
        let numbers: Vec<u32> = parsed
            .resources
            .iter()
            .map(|&((at, len), (scope_at, scope_len))| {
                let text = parsed.text.get(at..at + len).unwrap_or_default();
                let scope = parsed
                    .text
                    .get(scope_at..scope_at + scope_len)
                    .unwrap_or_default();
                let key = format!("{text}\u{0}{scope}");
                let next = self.resources.len() as u32;
                *self.resources.entry(key.into()).or_insert(next)
            })
            .collect();
        for mut record in parsed.spans {
            record.request = index;
            record.resource = numbers.get(record.resource as usize).copied().unwrap_or(0);
            self.spans.push(record);
        }
        self.responses.extend(parsed.responses);
        self.requests.push(StoredRequest {
            text: parsed.text,
            first_span,
        });
        Ok(())
    }
}

/// A request read, not yet kept: its text, its spans' records (`resource`: the place
/// of the span's resource and scope in `resources`), their places in the text, and the
/// response ids of its generations.
pub(crate) struct Parsed {
    text: Box<str>,
    spans: Vec<SpanRecord>,
    resources: Vec<((usize, usize), (usize, usize))>,
    responses: Vec<(u64, [u8; 16])>,
}

/// Reads the spans of one request (no state: requests can be read in parallel).
pub(crate) fn parse(text: String) -> Result<Parsed, String> {
    if u32::try_from(text.len()).is_err() {
        return Err("a request over 4 GiB".to_owned());
    }
    let text: Box<str> = text.into_boxed_str();
    let head: RequestHead<'_> = serde_json::from_str(&text).map_err(|e| describe(&e))?;
    let mut spans = Vec::new();
    let mut resources = Vec::new();
    let mut responses = Vec::new();
    for resource_spans in head.resource_spans.iter().flatten() {
        let resource = resource_spans
            .resource
            .map_or((0, 0), |r| (offset_in(&text, r.get()), r.get().len()));
        for scope_spans in resource_spans.scope_spans.iter().flatten() {
            let scope = scope_spans
                .scope
                .map_or((0, 0), |s| (offset_in(&text, s.get()), s.get().len()));
            let slot = resources.len() as u32;
            resources.push((resource, scope));
            for raw in scope_spans.spans.iter().flatten() {
                let (record, response) = read_span(raw, &text, slot)?;
                if let Some(hash) = response {
                    responses.push((hash, record.trace));
                }
                spans.push(record);
            }
        }
    }
    drop(head);
    Ok(Parsed {
        text,
        spans,
        resources,
        responses,
    })
}

/// One span's record, and the hash of its response id when it is a generation's.
fn read_span(
    raw: &RawValue,
    request: &str,
    resource: u32,
) -> Result<(SpanRecord, Option<u64>), String> {
    let head: SpanHead<'_> = serde_json::from_str(raw.get()).map_err(|e| describe(&e))?;
    let trace = hex_id::<16>(head.trace_id.as_deref(), "traceId")?
        .filter(|t| *t != [0; 16])
        .ok_or_else(|| "traceId must be 32 hex digits, not all zero (got none)".to_owned())?;
    let id = hex_id::<8>(head.span_id.as_deref(), "spanId")?
        .filter(|t| *t != [0; 8])
        .ok_or_else(|| "spanId must be 16 hex digits, not all zero (got none)".to_owned())?;
    let parent = hex_id::<8>(head.parent_span_id.as_deref(), "parentSpanId")?.unwrap_or([0; 8]);
    let time = |t: Option<super::json::Int>, what: &str| match t {
        None => Ok(0),
        Some(t) => t
            .as_u64()
            .ok_or_else(|| format!("{what} must be a non-negative 64-bit integer")),
    };
    let start = time(head.start_time_unix_nano, "startTimeUnixNano")?;
    let end = time(head.end_time_unix_nano, "endTimeUnixNano")?;
    let flags = head
        .flags
        .and_then(|f| u32::try_from(f.0).ok())
        .unwrap_or(0);
    let response = generation_response(&head);
    let record = SpanRecord {
        trace,
        id,
        parent,
        start,
        end,
        offset: offset_in(request, raw.get()) as u32,
        len: raw.get().len() as u32,
        request: 0,
        resource,
        flags,
    };
    Ok((record, response))
}

/// The hash of a span's response id, when the span is a generation (by its final
/// attributes: only the keys recognition reads are read).
fn generation_response(head: &SpanHead<'_>) -> Option<u64> {
    let attributes = head.attributes.as_deref()?;
    let id = attributes
        .iter()
        .rev()
        .find(|a| a.key.as_deref() == Some(gen_ai::RESPONSE_ID))?;
    let id = match id.value.and_then(api_value_text)? {
        Value::String(s) => s,
        _ => return None,
    };
    if id.as_str().trim().is_empty() {
        return None;
    }
    let signals: Vec<KeyValue> = attributes
        .iter()
        .filter_map(|a| {
            let key = a.key.as_deref()?;
            signal_index(key)?;
            Some(KeyValue::new(
                key.to_owned(),
                a.value.and_then(api_value_text)?,
            ))
        })
        .collect();
    let name = head.name.as_deref().unwrap_or("");
    (builtin_role(name, &signals) == Role::Generation).then(|| hash_str(id.as_str()))
}
