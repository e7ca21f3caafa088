//! Audited spans on their way out: the held requests as they came, and the attribute
//! lists the audit changed, put together into one request off the audit's thread.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// Audited spans to send, as one request once assembled.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The held requests, encoded, in order.
    pub(crate) parts: Vec<Vec<u8>>,
    /// The new attribute list (OTLP JSON) of each span the audit changed, by the
    /// span's place among the parts' spans.
    pub(crate) lists: HashMap<u32, String>,
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
                    match serde_json::from_str::<Vec<KeyValue>>(&list) {
                        Ok(list) => span.attributes = list,
                        Err(_) => unaudited += 1,
                    }
                }
                place += 1;
            }
            request.resource_spans.append(&mut part.resource_spans);
        }
        (request, unaudited)
    }
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

    #[test]
    fn changed_lists_go_to_their_spans_by_place_across_parts() {
        let batch = Batch {
            parts: vec![part(&["a", "b"]), part(&["c"])],
            lists: HashMap::from([
                (1, r#"[{"key":"k","value":{"intValue":"7"}}]"#.to_owned()),
                (
                    2,
                    r#"[{"key":"x","value":{"doubleValue":"NaN"}}]"#.to_owned(),
                ),
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
