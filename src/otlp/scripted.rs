//! A trace script read as the export it would produce: the spans it ends, in the order
//! they end, each with its final attributes, written as one OTLP JSON request. Spans
//! the script never ends are absent, as from any export (their children get
//! `missing_parent`).
//!
//! Ids are deterministic: a label of 16 hex digits is the span id (the recordings use
//! their span ids as labels), any other label gets one derived from it; a trace's id
//! is its root's span id written twice.

use std::collections::HashMap;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::KeyValue;

use super::json::attribute_text;
use crate::hashing::hash_str;
use crate::script::{Event, TraceScript};

struct Open<'a> {
    id: [u8; 8],
    trace: [u8; 16],
    parent: Option<[u8; 8]>,
    name: &'a str,
    kind: &'a SpanKind,
    start: u64,
    attributes: Vec<&'a KeyValue>,
}

fn span_id(label: &str) -> [u8; 8] {
    if label.len() == 16 {
        if let Ok(n) = u64::from_str_radix(label, 16) {
            if n != 0 {
                return n.to_be_bytes();
            }
        }
    }
    hash_str(label).to_be_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn kind_number(kind: &SpanKind) -> u8 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// The script's ended spans as one OTLP JSON request (one line), or `None` when it
/// ends no span.
pub(crate) fn export_text(script: &TraceScript) -> Option<String> {
    let mut open: HashMap<&str, Open<'_>> = HashMap::new();
    let mut known: HashMap<&str, ([u8; 8], [u8; 16])> = HashMap::new();
    let mut spans: Vec<String> = Vec::new();
    for event in script.events() {
        match event {
            Event::Start(start) => {
                let id = span_id(&start.span);
                let parent = start.parent.as_deref().and_then(|p| known.get(p).copied());
                let trace = match parent {
                    Some((_, trace)) => trace,
                    None => {
                        let mut trace = [0u8; 16];
                        trace[..8].copy_from_slice(&id);
                        trace[8..].copy_from_slice(&id);
                        trace
                    }
                };
                known.insert(&start.span, (id, trace));
                open.insert(
                    &start.span,
                    Open {
                        id,
                        trace,
                        parent: parent.map(|(p, _)| p),
                        name: &start.name,
                        kind: &start.kind,
                        start: start.time_ns,
                        attributes: start.attributes.iter().collect(),
                    },
                );
            }
            Event::Set(set) => {
                if let Some(span) = open.get_mut(set.span.as_str()) {
                    span.attributes.extend(set.attributes.iter());
                }
            }
            Event::End(end) => {
                let Some(span) = open.remove(end.span.as_str()) else {
                    continue;
                };
                let mut text = format!(
                    "{{\"traceId\":\"{}\",\"spanId\":\"{}\"",
                    hex(&span.trace),
                    hex(&span.id)
                );
                if let Some(parent) = span.parent {
                    text.push_str(&format!(",\"parentSpanId\":\"{}\"", hex(&parent)));
                }
                text.push_str(",\"name\":");
                text.push_str(&serde_json::to_string(span.name).unwrap_or_default());
                text.push_str(&format!(
                    ",\"kind\":{},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":[",
                    kind_number(span.kind),
                    span.start,
                    end.time_ns
                ));
                for (i, kv) in span.attributes.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    attribute_text(kv, &mut text);
                }
                text.push(']');
                match &end.status {
                    Status::Error { description } => {
                        text.push_str(",\"status\":{\"code\":2,\"message\":");
                        text.push_str(
                            &serde_json::to_string(description.as_ref()).unwrap_or_default(),
                        );
                        text.push('}');
                    }
                    Status::Ok => text.push_str(",\"status\":{\"code\":1}"),
                    Status::Unset => {}
                }
                text.push('}');
                spans.push(text);
            }
        }
    }
    if spans.is_empty() {
        return None;
    }
    Some(format!(
        "{{\"resourceSpans\":[{{\"resource\":{{}},\"scopeSpans\":[{{\"scope\":{{\"name\":\"trace-script\"}},\"spans\":[{}]}}]}}]}}",
        spans.join(",")
    ))
}
