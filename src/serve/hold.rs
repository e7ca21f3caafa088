//! Holding each trace until it is complete: requests split by trace, kept encoded,
//! with what decides when a trace is due.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// The span flag bits that say whether the parent is remote (OTLP `SpanFlags`).
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// What the holding costs beyond the encoded spans: per trace, and per part.
const TRACE_OVERHEAD: usize = 160;
const PART_OVERHEAD: usize = 32;

/// One trace's part of a request: a request of its own, encoded.
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) trace: [u8; 16],
    pub(crate) encoded: Vec<u8>,
    pub(crate) spans: Vec<[u8; 8]>,
    /// A span of it is a local root.
    pub(crate) root: bool,
}

/// A request split by trace; `rejected` spans had no valid trace or span id.
#[derive(Debug, Default)]
pub(crate) struct Split {
    pub(crate) parts: Vec<Part>,
    pub(crate) rejected: usize,
}

fn id<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    let id: [u8; N] = bytes.try_into().ok()?;
    (id != [0; N]).then_some(id)
}

fn is_local_root(span: &Span) -> bool {
    span.parent_span_id.is_empty()
        || span.parent_span_id.iter().all(|b| *b == 0)
        || (span.flags & HAS_IS_REMOTE != 0 && span.flags & IS_REMOTE != 0)
}

/// A trace's request being built: its spans' ids, whether one is a local root, and
/// the resource and scope its last spans came from.
type Building = (ExportTraceServiceRequest, Vec<[u8; 8]>, bool, usize, usize);

/// Splits `request` into one request per trace (resource and scope repeated in each),
/// spans in their order.
pub(crate) fn split(request: ExportTraceServiceRequest) -> Split {
    let mut rejected = 0;
    let mut order: Vec<[u8; 16]> = Vec::new();
    // Per trace: its request, and the resource and scope its last spans came from.
    let mut built: HashMap<[u8; 16], Building> = HashMap::new();
    for (r, resource_spans) in request.resource_spans.into_iter().enumerate() {
        let ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        } = resource_spans;
        for (s, scope_spans) in scope_spans.into_iter().enumerate() {
            let ScopeSpans {
                scope,
                spans,
                schema_url: scope_schema_url,
            } = scope_spans;
            for span in spans {
                let (Some(trace), Some(span_id)) =
                    (id::<16>(&span.trace_id), id::<8>(&span.span_id))
                else {
                    rejected += 1;
                    continue;
                };
                let (part, ids, root, last_r, last_s) = built.entry(trace).or_insert_with(|| {
                    order.push(trace);
                    (
                        ExportTraceServiceRequest::default(),
                        Vec::new(),
                        false,
                        usize::MAX,
                        usize::MAX,
                    )
                });
                if *last_r != r {
                    part.resource_spans.push(ResourceSpans {
                        resource: resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: schema_url.clone(),
                    });
                    *last_r = r;
                    *last_s = usize::MAX;
                }
                let Some(resource_part) = part.resource_spans.last_mut() else {
                    continue;
                };
                if *last_s != s {
                    resource_part.scope_spans.push(ScopeSpans {
                        scope: scope.clone(),
                        spans: Vec::new(),
                        schema_url: scope_schema_url.clone(),
                    });
                    *last_s = s;
                }
                *root |= is_local_root(&span);
                ids.push(span_id);
                if let Some(scope_part) = resource_part.scope_spans.last_mut() {
                    scope_part.spans.push(span);
                }
            }
        }
    }
    let parts = order
        .into_iter()
        .filter_map(|trace| {
            let (request, spans, root, _, _) = built.remove(&trace)?;
            Some(Part {
                trace,
                encoded: request.encode_to_vec(),
                spans,
                root,
            })
        })
        .collect();
    Split { parts, rejected }
}

/// A trace being held.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) trace: [u8; 16],
    pub(crate) parts: Vec<Vec<u8>>,
    pub(crate) spans: Vec<[u8; 8]>,
    root: bool,
    /// Its trace was sent on before: it goes on alone, with no root to wait for.
    late: bool,
    first: Instant,
    last: Instant,
    pub(crate) bytes: usize,
}

/// Spans of traces sent on, remembered for a while so that a late child is not taken
/// for an orphan.
#[derive(Debug, Default)]
struct Sent {
    traces: HashMap<[u8; 16], (HashSet<[u8; 8]>, Instant)>,
    order: VecDeque<([u8; 16], Instant)>,
    spans: usize,
}

/// The most span ids remembered of traces already sent.
const SENT_SPANS: usize = 1 << 20;

impl Sent {
    fn add(&mut self, trace: [u8; 16], spans: &[[u8; 8]], now: Instant) {
        let (known, at) = self
            .traces
            .entry(trace)
            .or_insert_with(|| (HashSet::new(), now));
        *at = now;
        let before = known.len();
        known.extend(spans.iter().copied());
        self.spans += known.len() - before;
        self.order.push_back((trace, now));
    }

    fn forget(&mut self, now: Instant, age: Duration) {
        while let Some(&(trace, at)) = self.order.front() {
            if self.spans <= SENT_SPANS && now.saturating_duration_since(at) < age {
                break;
            }
            self.order.pop_front();
            // Only the trace's latest mention forgets it.
            if self.traces.get(&trace).is_some_and(|(_, last)| *last == at) {
                if let Some((known, _)) = self.traces.remove(&trace) {
                    self.spans -= known.len();
                }
            }
        }
    }
}

/// Every trace held, and the memory they take.
#[derive(Debug, Default)]
pub(crate) struct Holding {
    traces: HashMap<[u8; 16], Held>,
    bytes: usize,
    spans: usize,
    sent: Sent,
    /// Nothing more is taken: the last round of a shutdown has begun.
    closed: bool,
}

impl Holding {
    /// Takes nothing more from now on.
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// Whether it takes nothing more.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// The memory held spans take (their encoded size and the holding's own).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many traces are held.
    pub(crate) fn traces(&self) -> usize {
        self.traces.len()
    }

    /// How many spans are held.
    #[cfg(test)]
    pub(crate) fn spans(&self) -> usize {
        self.spans
    }

    /// Holds the parts of a request.
    pub(crate) fn add(&mut self, parts: Vec<Part>, now: Instant) {
        for part in parts {
            let late = self.sent.traces.contains_key(&part.trace);
            let held = self.traces.entry(part.trace).or_insert_with(|| {
                self.bytes += TRACE_OVERHEAD;
                Held {
                    trace: part.trace,
                    parts: Vec::new(),
                    spans: Vec::new(),
                    root: false,
                    late,
                    first: now,
                    last: now,
                    bytes: TRACE_OVERHEAD,
                }
            });
            let bytes = part.encoded.len() + PART_OVERHEAD + 8 * part.spans.len();
            held.bytes += bytes;
            self.bytes += bytes;
            self.spans += part.spans.len();
            held.root |= part.root;
            held.last = now;
            held.spans.extend_from_slice(&part.spans);
            held.parts.push(part.encoded);
        }
    }

    /// Takes every trace due at `now` (all of them with `all`): a trace whose root
    /// arrived (or that was sent before) and that got no span for `wait`, or that is
    /// older than `max_age`. They count as sent from now on.
    pub(crate) fn take_due(
        &mut self,
        now: Instant,
        wait: Duration,
        max_age: Duration,
        all: bool,
    ) -> Vec<Held> {
        let due: Vec<[u8; 16]> = self
            .traces
            .values()
            .filter(|h| {
                all || ((h.root || h.late) && now.saturating_duration_since(h.last) >= wait)
                    || now.saturating_duration_since(h.first) >= max_age
            })
            .map(|h| h.trace)
            .collect();
        let mut taken = Vec::with_capacity(due.len());
        for trace in due {
            if let Some(held) = self.traces.remove(&trace) {
                self.bytes -= held.bytes;
                self.spans -= held.spans.len();
                self.sent.add(trace, &held.spans, now);
                taken.push(held);
            }
        }
        self.sent.forget(now, max_age);
        // Oldest first, so that output follows arrival.
        taken.sort_unstable_by_key(|h| h.first);
        taken
    }

    /// Whether span `span` of trace `trace` was sent on already.
    pub(crate) fn was_sent(&self, trace: [u8; 16], span: [u8; 8]) -> bool {
        self.sent
            .traces
            .get(&trace)
            .is_some_and(|(known, _)| known.contains(&span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn span(trace: u8, id: u8, parent: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 {
                Vec::new()
            } else {
                vec![parent; 8]
            },
            name: format!("s{id}"),
            ..Span::default()
        }
    }

    fn request(resources: Vec<Vec<Span>>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: resources
                .into_iter()
                .map(|spans| ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                })
                .collect(),
        }
    }

    #[test]
    fn a_request_splits_by_trace_keeping_resources_and_order() {
        let split = split(request(vec![
            vec![span(1, 2, 1), span(2, 5, 0), span(1, 1, 0)],
            vec![span(1, 3, 1)],
            vec![
                Span {
                    trace_id: vec![0; 16],
                    ..span(9, 9, 0)
                },
                span(3, 7, 6),
            ],
        ]));
        assert_eq!(split.rejected, 1);
        let traces: Vec<u8> = split.parts.iter().map(|p| p.trace[0]).collect();
        assert_eq!(traces, [1, 2, 3]);
        let first = ExportTraceServiceRequest::decode(&split.parts[0].encoded[..]).unwrap();
        assert_eq!(first.resource_spans.len(), 2);
        let names: Vec<&str> = first
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["s2", "s1", "s3"]);
        assert!(split.parts[0].root && split.parts[1].root && !split.parts[2].root);
    }

    #[test]
    fn a_trace_is_due_after_its_root_and_the_wait_or_at_its_age() {
        let start = Instant::now();
        let (wait, age) = (Duration::from_secs(5), Duration::from_secs(600));
        let mut holding = Holding::default();
        let parts = split(request(vec![vec![span(1, 2, 1), span(2, 5, 4)]])).parts;
        holding.add(parts, start);
        assert_eq!((holding.traces(), holding.spans()), (2, 2));
        // No root yet for either: not due after the wait.
        assert!(holding.take_due(start + wait, wait, age, false).is_empty());
        holding.add(
            split(request(vec![vec![span(1, 1, 0)]])).parts,
            start + wait,
        );
        assert!(holding
            .take_due(
                start + wait * 2 - Duration::from_millis(1),
                wait,
                age,
                false
            )
            .is_empty());
        let due = holding.take_due(start + wait * 2, wait, age, false);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].spans.len(), 2);
        assert!(holding.was_sent([1; 16], [1; 8]));
        // The rootless trace goes at its age.
        let due = holding.take_due(start + age, wait, age, false);
        assert_eq!(due.len(), 1);
        assert_eq!(holding.bytes(), 0);
        // A late span of a sent trace goes after the wait, root or not.
        holding.add(split(request(vec![vec![span(1, 9, 1)]])).parts, start + age);
        assert_eq!(
            holding.take_due(start + age + wait, wait, age, false).len(),
            1
        );
    }
}
