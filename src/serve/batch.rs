//! Audited spans on their way out: the held requests as they came, and the attribute
//! lists the audit changed, put together into one request off the audit's thread.

use std::collections::HashMap;

use opentelemetry::{Array, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use prost::Message;

use crate::otlp::{List, Piece};

/// Audited spans to send, as one request once assembled.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The held requests, encoded, in order.
    pub(crate) parts: Vec<Vec<u8>>,
    /// The new attribute list of each span the audit changed, by the span's place
    /// among the parts' spans.
    pub(crate) lists: HashMap<u32, List>,
    pub(crate) spans: usize,
    /// The memory it is counted for until it is sent or dropped.
    pub(crate) bytes: usize,
}

impl Batch {
    /// The request to send: every part's spans, each changed span with its new
    /// attributes. A list with no OTLP form (it cannot happen: the audit writes
    /// OTLP JSON) leaves its span as it came, and is counted in the second value.
    pub(crate) fn assemble(self) -> (ExportTraceServiceRequest, usize) {
        let mut lists = self.lists;
        let mut request = ExportTraceServiceRequest::default();
        let mut place = 0u32;
        let mut unaudited = 0usize;
        for part in &self.parts {
            // Encoded here from a decoded request: it decodes.
            let Ok(mut part) = ExportTraceServiceRequest::decode(part.as_slice()) else {
                unaudited += 1;
                continue;
            };
            for span in part
                .resource_spans
                .iter_mut()
                .flat_map(|r| &mut r.scope_spans)
                .flat_map(|s| &mut s.spans)
            {
                if let Some(list) = lists.remove(&place) {
                    match attributes(&mut span.attributes, &list) {
                        Some(new) => span.attributes = new,
                        None => unaudited += 1,
                    }
                }
                place += 1;
            }
            request.resource_spans.append(&mut part.resource_spans);
        }
        (request, unaudited)
    }
}

/// The attribute list `list` describes: the attributes it keeps taken from `read`
/// (the span's attributes as they came, in the order the audit read them), the new
/// ones read from their OTLP JSON. `None` (and `read` as it was) when a place or a
/// text does not read.
fn attributes(read: &mut [KeyValue], list: &List) -> Option<Vec<KeyValue>> {
    if list
        .pieces
        .iter()
        .any(|p| matches!(p, Piece::Original(at) if *at >= read.len()))
    {
        return None;
    }
    let mut new = Vec::with_capacity(list.pieces.len());
    for piece in &list.pieces {
        match piece {
            Piece::Original(_) => new.push(None),
            Piece::Text(range) => {
                let text = list.texts.get(range.clone())?;
                new.push(Some(serde_json::from_str::<KeyValue>(text).ok()?));
            }
            Piece::New(kv) => new.push(Some(KeyValue {
                key: kv.key.to_string(),
                value: Some(any_value(&kv.value)?),
                ..KeyValue::default()
            })),
        }
    }
    Some(
        list.pieces
            .iter()
            .zip(new)
            .map(|(piece, new)| match (piece, new) {
                (_, Some(kv)) => kv,
                (Piece::Original(at), None) => std::mem::take(&mut read[*at]),
                (Piece::Text(_) | Piece::New(_), None) => KeyValue::default(),
            })
            .collect(),
    )
}

/// An attribute value in its OTLP form (`None` for a kind OTLP has no form for).
fn any_value(value: &Value) -> Option<AnyValue> {
    fn list<T: Clone>(items: &[T], one: impl Fn(T) -> Value) -> ArrayValue {
        ArrayValue {
            values: items
                .iter()
                .filter_map(|item| any_value(&one(item.clone())))
                .collect(),
        }
    }
    let value = match value {
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::I64(i) => Kind::IntValue(*i),
        Value::F64(d) => Kind::DoubleValue(*d),
        Value::String(s) => Kind::StringValue(s.as_str().to_owned()),
        Value::Array(Array::Bool(items)) => Kind::ArrayValue(list(items, Value::Bool)),
        Value::Array(Array::I64(items)) => Kind::ArrayValue(list(items, Value::I64)),
        Value::Array(Array::F64(items)) => Kind::ArrayValue(list(items, Value::F64)),
        Value::Array(Array::String(items)) => Kind::ArrayValue(list(items, Value::String)),
        _ => return None,
    };
    Some(AnyValue { value: Some(value) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn part(names: &[&str]) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: names
                        .iter()
                        .map(|n| Span {
                            name: (*n).to_owned(),
                            ..Span::default()
                        })
                        .collect(),
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
        .encode_to_vec()
    }

    fn list(texts: &[&str]) -> List {
        let mut list = List::default();
        for text in texts {
            let from = list.texts.len();
            list.texts.push_str(text);
            list.pieces.push(Piece::Text(from..list.texts.len()));
        }
        list
    }

    #[test]
    fn kept_attributes_are_moved_and_new_ones_read() {
        let mut read = vec![
            KeyValue {
                key: "a".to_owned(),
                ..KeyValue::default()
            },
            KeyValue {
                key: "genai_audit.role".to_owned(),
                ..KeyValue::default()
            },
        ];
        let mut kept = list(&[r#"{"key":"genai_audit.role","value":{"stringValue":"tool"}}"#]);
        kept.pieces.insert(0, Piece::Original(0));
        let new = attributes(&mut read, &kept).expect("reads");
        let keys: Vec<&str> = new.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["a", "genai_audit.role"]);
        // A place past the list read: nothing is taken.
        let mut wrong = List::default();
        wrong.pieces.push(Piece::Original(5));
        assert_eq!(attributes(&mut read, &wrong), None);
    }

    #[test]
    fn changed_lists_go_to_their_spans_by_place_across_parts() {
        let batch = Batch {
            parts: vec![part(&["a", "b"]), part(&["c"])],
            lists: HashMap::from([
                (1, list(&[r#"{"key":"k","value":{"intValue":"7"}}"#])),
                (2, list(&[r#"{"key":"x","value":{"doubleValue":"NaN"}}"#])),
            ]),
            spans: 3,
            bytes: 0,
        };
        let (request, unaudited) = batch.assemble();
        let spans: Vec<&Span> = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        assert_eq!(spans.len(), 3);
        assert!(spans[0].attributes.is_empty());
        assert_eq!(spans[1].attributes[0].key, "k");
        // A value the OTLP crate's JSON mapping does not read: the span as it came.
        assert!(spans[2].attributes.is_empty());
        assert_eq!(unaudited, 1);
    }
}
