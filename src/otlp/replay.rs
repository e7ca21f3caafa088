//! One trace's replay: its spans' starts and ends, in an order that respects their
//! parents and their clocks, fed straight to the audit [`Engine`], with the time of
//! each event as "now".
//!
//! A worker keeps one engine for all the traces it audits. Each replayed span gets an
//! id of the worker's own, never used before, so that nothing the engine remembers of
//! one trace (ended spans, spans it closed) can touch another; the response-id memory
//! is scoped to the trace, and a [`ForeignResponses`] index answers for the other
//! traces. So a trace's findings never depend on the other traces of the input, nor on
//! which worker audited it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{Array, KeyValue, StringValue, Value};

use super::json::{SpanBody, SpanBodyRead};
use super::options::RunSettings;
use super::store::{SpanRecord, Store};
use super::write_back::{read_kept, Fed, List, Splice};
use crate::attributes::last_value;
use crate::engine::{id_of, Engine, ForeignResponses, Parent, Sink, SpanEnd, SpanStart, Verdict};
use crate::findings::FindingCode;
use crate::keys;
use crate::metrics::AuditMetrics;
use crate::report::ReportSpan;

/// A span as the audit exported it: its name and attributes.
type ExportedSpan = (String, Vec<KeyValue>);

/// Tells whether a span was audited and sent on earlier (by trace and span id), so
/// that a late child naming it as parent is not taken for an orphan.
pub(crate) type Sent<'a> = &'a (dyn Fn([u8; 16], [u8; 8]) -> bool + Sync);

/// What the audit of one trace gives.
pub(crate) struct TraceOutcome {
    /// One per span, in input order.
    pub(crate) reports: Vec<ReportSpan>,
    /// The change to each span whose text changed: its index in the store, and the
    /// change.
    pub(crate) enriched: Vec<(u32, Splice)>,
    /// With lists asked for, in place of `enriched`: each changed span's new attribute
    /// list, by its index in the store.
    pub(crate) lists: Vec<(u32, List)>,
}

/// A worker: one engine (and its metrics), reused trace after trace.
pub(crate) struct Worker {
    engine: Engine,
    metrics: Option<AuditMetrics>,
    next_id: u64,
    skew: u64,
    enrich: bool,
    lists: bool,
}

impl Worker {
    pub(crate) fn new(settings: &RunSettings, foreign: Arc<dyn ForeignResponses>) -> Worker {
        let engine = settings
            .engine_builder()
            .with_foreign_responses(foreign)
            .build_recording(settings.meter_provider.is_some());
        let metrics = match (&settings.meter_provider, engine.tracked_handle()) {
            (Some(provider), Some(tracked)) => Some(AuditMetrics::new(
                provider,
                tracked,
                settings.metric_options(),
            )),
            _ => None,
        };
        Worker {
            engine,
            metrics,
            next_id: 0,
            skew: u64::try_from(settings.skew.as_nanos()).unwrap_or(u64::MAX),
            enrich: settings.enrich,
            lists: settings.lists,
        }
    }

    /// Audits one trace: `spans` are its spans' indices in `store`, in input order.
    /// A parent the input lacks is not missing when `sent` knows it (a live audit
    /// sent it on earlier).
    pub(crate) fn audit(
        &mut self,
        store: &Store,
        spans: &[u32],
        sent: Option<Sent<'_>>,
    ) -> TraceOutcome {
        let plan = Plan::new(store, spans, self.skew, sent);
        let n = spans.len();
        let base = self.next_id;
        // Ids: the spans `base + 1 ..= base + n`, the parents they name but the input
        // lacks `base + n + 1 ..= base + 2n`.
        self.next_id = base.saturating_add(2 * n as u64 + 1);
        let trace = TraceId::from_bytes(store.spans[spans[0] as usize].trace);
        let mut replay = TraceReplay {
            store,
            spans,
            plan: &plan,
            engine: &self.engine,
            sink: self.metrics.as_ref().map(|m| m as &dyn Sink),
            trace,
            base,
            live: HashMap::new(),
            started: vec![false; n],
            exported: (0..n).map(|_| None).collect(),
            fed: if self.enrich {
                (0..n).map(|_| None).collect()
            } else {
                Vec::new()
            },
        };
        replay.run();
        let TraceReplay { exported, fed, .. } = replay;
        self.outcome(store, spans, &plan, exported, fed)
    }

    fn outcome(
        &self,
        store: &Store,
        spans: &[u32],
        plan: &Plan,
        exported: Vec<Option<ExportedSpan>>,
        mut fed: Vec<Option<Fed<'_>>>,
    ) -> TraceOutcome {
        let mut outcome = TraceOutcome {
            reports: Vec::with_capacity(spans.len()),
            enriched: Vec::new(),
            lists: Vec::new(),
        };
        for (i, (&index, exported)) in spans.iter().zip(exported).enumerate() {
            let record = &store.spans[index as usize];
            let text = store.text(record);
            let entry = &plan.entries[i];
            let (name, mut attributes, written_back) = match exported {
                Some((name, attributes)) => {
                    (name, attributes, fed.get_mut(i).and_then(Option::take))
                }
                // Not replayed (a second copy of an id): written back as read, its
                // earlier audit's keys removed.
                None => {
                    let body: Option<SpanBody<'_>> = serde_json::from_str(text).ok();
                    let name = body
                        .as_ref()
                        .and_then(|b| b.name.as_deref())
                        .unwrap_or("")
                        .to_owned();
                    let items = body.and_then(|b| b.attributes).unwrap_or_default();
                    let (fed, attributes) = Fed::read(items);
                    (name, attributes, self.enrich.then_some(fed))
                }
            };
            let recognised = last_value(&attributes, keys::ROLE).is_some();
            if recognised && !entry.duplicate {
                if entry.missing_parent {
                    add_finding(&mut attributes, FindingCode::MissingParent);
                }
                if entry.invalid_time {
                    add_finding(&mut attributes, FindingCode::InvalidTime);
                }
            }
            if let Some(fed) = written_back {
                if self.lists {
                    if let Some(list) = fed.write_back_list(&attributes) {
                        outcome.lists.push((index, list));
                    }
                } else if let Some(span) = fed.write_back_span(text, &attributes) {
                    outcome.enriched.push((index, span));
                }
            }
            outcome.reports.push(
                ReportSpan::new(
                    TraceId::from_bytes(record.trace),
                    SpanId::from_bytes(record.id),
                    SpanId::from_bytes(record.parent),
                    name,
                    record.start,
                    &attributes,
                )
                .with_end(entry.end),
            );
        }
        outcome
    }
}

fn add_finding(attributes: &mut Vec<KeyValue>, code: FindingCode) {
    let mut codes: Vec<StringValue> = match last_value(attributes, keys::FINDINGS) {
        Some(Value::Array(Array::String(codes))) => codes.clone(),
        _ => Vec::new(),
    };
    if codes.iter().any(|c| c.as_str() == code.as_str()) {
        return;
    }
    codes.push(StringValue::from(code.as_str()));
    attributes.retain(|kv| kv.key.as_str() != keys::FINDINGS);
    attributes.push(KeyValue::new(
        keys::FINDINGS,
        Value::Array(Array::String(codes)),
    ));
}

/// A span of the trace as the replay sees it.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// Its parent's place in the trace.
    parent: Option<u32>,
    /// It names a parent (same trace, not remote) that the input lacks, or one that
    /// closes a parent cycle.
    missing_parent: bool,
    start: u64,
    /// Its end (its start when it ends before it starts).
    end: u64,
    invalid_time: bool,
    depth: u32,
    /// When its end is replayed (its end, lifted past its children's that end less
    /// than the skew after it).
    key: u64,
    /// A second span with the same id: not replayed, written back as read.
    duplicate: bool,
    first_child: Option<u32>,
    next_sibling: Option<u32>,
}

/// The order of a trace's events.
struct Plan {
    entries: Vec<Entry>,
    /// One sequence of ends per request, resource and scope, in order of appearance.
    sequences: Vec<Vec<u32>>,
    /// Spans by start (then depth, then place).
    starts: Vec<u32>,
    /// A start less than this before an end is replayed after it.
    skew: u64,
}

impl Plan {
    fn new(store: &Store, spans: &[u32], skew: u64, sent: Option<Sent<'_>>) -> Plan {
        let n = spans.len();
        let records: Vec<&SpanRecord> = spans.iter().map(|&i| &store.spans[i as usize]).collect();
        let mut place: HashMap<[u8; 8], u32> = HashMap::with_capacity(n);
        let mut entries: Vec<Entry> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let duplicate = place.insert(r.id, i as u32).is_some();
                Entry {
                    start: r.start,
                    end: r.end.max(r.start),
                    invalid_time: r.end < r.start,
                    key: r.end.max(r.start),
                    duplicate,
                    ..Entry::default()
                }
            })
            .collect();
        // The first copy of an id is the one replayed.
        for (i, r) in records.iter().enumerate().rev() {
            if !entries[i].duplicate {
                place.insert(r.id, i as u32);
            }
        }
        for (i, r) in records.iter().enumerate() {
            if !r.has_parent() {
                continue;
            }
            match place.get(&r.parent) {
                Some(&p) if p as usize != i && !entries[i].duplicate => entries[i].parent = Some(p),
                Some(_) => entries[i].missing_parent = !entries[i].duplicate,
                None => {
                    entries[i].missing_parent =
                        !r.parent_remote() && !sent.is_some_and(|sent| sent(r.trace, r.parent));
                }
            }
        }
        break_cycles(&mut entries);
        // Depths, without recursion.
        let mut known = vec![false; n];
        let mut path: Vec<usize> = Vec::new();
        for i in 0..n {
            let mut at = i;
            let base = loop {
                if known[at] {
                    break entries[at].depth + 1;
                }
                path.push(at);
                match entries[at].parent {
                    Some(p) => at = p as usize,
                    None => break 0,
                }
            };
            let mut depth = base;
            while let Some(j) = path.pop() {
                entries[j].depth = depth;
                known[j] = true;
                depth += 1;
            }
        }
        // Children lists (in place order).
        for i in (0..n).rev() {
            if let Some(p) = entries[i].parent {
                entries[i].next_sibling = entries[p as usize].first_child;
                entries[p as usize].first_child = Some(i as u32);
            }
        }
        // A parent's end comes after its children's that end less than the skew after
        // it (deepest first, so that keys lift through the levels).
        let mut by_depth: Vec<u32> = (0..n as u32).collect();
        by_depth.sort_by_key(|&i| Reverse(entries[i as usize].depth));
        for &c in &by_depth {
            let child = &entries[c as usize];
            if let Some(p) = child.parent {
                let (end, key) = (child.end, child.key);
                let parent = &mut entries[p as usize];
                if end < parent.end.saturating_add(skew) {
                    parent.key = parent.key.max(key.saturating_add(1));
                }
            }
        }
        // Order of appearance is an order of ends only within one request (one batch
        // of one process), per resource and scope: across requests it means nothing
        // (senders run in parallel), so each request's spans are a sequence of their own.
        let mut sequences: Vec<Vec<u32>> = Vec::new();
        let mut sequence_of: HashMap<(u32, u32), usize> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            if entries[i].duplicate {
                continue;
            }
            let next = sequences.len();
            let at = *sequence_of.entry((r.request, r.resource)).or_insert(next);
            if at == next {
                sequences.push(Vec::new());
            }
            sequences[at].push(i as u32);
        }
        let mut starts: Vec<u32> = (0..n as u32)
            .filter(|&i| !entries[i as usize].duplicate)
            .collect();
        starts.sort_by_key(|&i| {
            let e = &entries[i as usize];
            (e.start, e.depth, i)
        });
        Plan {
            entries,
            sequences,
            starts,
            skew,
        }
    }
}

/// Breaks every parent cycle at the span of the cycle that starts first (then comes
/// first): it becomes a root that names a missing parent.
fn break_cycles(entries: &mut [Entry]) {
    // 0: not seen, 1: on the current path, 2: done.
    let mut state = vec![0u8; entries.len()];
    let mut path: Vec<usize> = Vec::new();
    for i in 0..entries.len() {
        let mut at = i;
        loop {
            match state[at] {
                2 => break,
                1 => {
                    // `at` is on the path: the cycle is the path from `at`.
                    let from = path.iter().position(|&p| p == at).unwrap_or(0);
                    let cycle = &path[from..];
                    if let Some(&first) = cycle.iter().min_by_key(|&&c| (entries[c].start, c)) {
                        entries[first].parent = None;
                        entries[first].missing_parent = true;
                    }
                    break;
                }
                _ => {}
            }
            state[at] = 1;
            path.push(at);
            match entries[at].parent {
                Some(p) => at = p as usize,
                None => break,
            }
        }
        for p in path.drain(..) {
            state[p] = 2;
        }
    }
}

/// A span open in the replay: what its end event needs.
struct Live {
    name: String,
    kind: SpanKind,
    status: Status,
    attributes: Vec<KeyValue>,
}

/// The replay of one trace.
struct TraceReplay<'a> {
    store: &'a Store,
    spans: &'a [u32],
    plan: &'a Plan,
    engine: &'a Engine,
    sink: Option<&'a dyn Sink>,
    trace: TraceId,
    base: u64,
    /// The spans open now.
    live: HashMap<u32, Live>,
    started: Vec<bool>,
    /// What the audit exported of each span, first: the span ended, or closed by the
    /// audit (whose real end is then not exported).
    exported: Vec<Option<ExportedSpan>>,
    /// For `enrich`: how each span's attributes were read, to write them back.
    fed: Vec<Option<Fed<'a>>>,
}

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

fn kind(kind: i64) -> SpanKind {
    match kind {
        2 => SpanKind::Server,
        3 => SpanKind::Client,
        4 => SpanKind::Producer,
        5 => SpanKind::Consumer,
        _ => SpanKind::Internal,
    }
}

impl TraceReplay<'_> {
    fn run(&mut self) {
        let plan = self.plan;
        let mut heads: BinaryHeap<Reverse<(u64, u32, u32)>> = plan
            .sequences
            .iter()
            .enumerate()
            .filter_map(|(g, seq)| {
                seq.first()
                    .map(|&i| Reverse((plan.entries[i as usize].key, g as u32, 0)))
            })
            .collect();
        let mut s = 0;
        while let Some(Reverse((_, g, pos))) = heads.pop() {
            let sequence = &plan.sequences[g as usize];
            let e = sequence[pos as usize];
            if let Some(&next) = sequence.get(pos as usize + 1) {
                heads.push(Reverse((plan.entries[next as usize].key, g, pos + 1)));
            }
            let end = plan.entries[e as usize].end;
            // Starts well before this end go first; one within the skew of it is
            // replayed after it (a millisecond start clock), unless it is a child's.
            while let Some(&next) = plan.starts.get(s) {
                if plan.entries[next as usize].start.saturating_add(plan.skew) >= end {
                    break;
                }
                self.start(next);
                s += 1;
            }
            self.start(e);
            let mut child = plan.entries[e as usize].first_child;
            while let Some(c) = child {
                if plan.entries[c as usize].start <= end {
                    self.start(c);
                }
                child = plan.entries[c as usize].next_sibling;
            }
            if let Some(live) = self.live.remove(&e) {
                self.end(e, live, end);
            }
        }
    }

    /// The parent span `i` names, by its replay id.
    fn parent(&self, i: u32) -> Parent {
        let record = &self.store.spans[self.spans[i as usize] as usize];
        let n = self.spans.len() as u64;
        match self.plan.entries[i as usize].parent {
            Some(p) => Parent::Local(self.id(u64::from(p))),
            None if record.has_parent() && record.parent_remote() => {
                Parent::Remote(self.id(n + u64::from(i)))
            }
            None if record.has_parent() => Parent::Local(self.id(n + u64::from(i))),
            None => Parent::Root,
        }
    }

    /// The replay id of place `place` (spans first, then the parents the input lacks).
    fn id(&self, place: u64) -> SpanId {
        SpanId::from(self.base + 1 + place)
    }

    /// The place of a replay id among the trace's spans.
    fn place(&self, id: SpanId) -> Option<usize> {
        let i = id_of(id).checked_sub(self.base + 1)?;
        usize::try_from(i).ok().filter(|&i| i < self.spans.len())
    }

    /// Ends span `i` at `end`, and keeps what the audit exported.
    fn end(&mut self, i: u32, live: Live, end: u64) {
        let start = self.plan.entries[i as usize].start;
        let verdict = self.engine.end_into(
            &SpanEnd {
                trace_id: self.trace,
                span_id: self.id(u64::from(i)),
                parent: self.parent(i),
                name: &live.name,
                kind: live.kind.clone(),
                start_time: time(start),
                end_time: time(end),
                status: &live.status,
                attributes: &live.attributes,
                now: time(end),
            },
            self.sink,
        );
        let Live {
            name,
            mut attributes,
            ..
        } = live;
        let Verdict {
            writes,
            forward,
            closed,
            ..
        } = verdict;
        self.export_closed(closed);
        if forward {
            writes.apply(&mut attributes);
            self.export(i as usize, name, attributes);
        }
    }

    /// Keeps the first export of span `i`.
    fn export(&mut self, i: usize, name: String, attributes: Vec<KeyValue>) {
        if let Some(slot @ None) = self.exported.get_mut(i) {
            *slot = Some((name, attributes));
        }
    }

    /// Exports the spans the audit closed: each as it started (all its attributes, in
    /// a replay), with the audit's writes.
    fn export_closed(&mut self, closed: Vec<crate::engine::ClosedSpan>) {
        for c in closed {
            let Some(i) = self.place(c.span_id) else {
                continue;
            };
            let Some(live) = self.live.get(&(i as u32)) else {
                continue;
            };
            let mut attributes = live.attributes.clone();
            c.writes.apply(&mut attributes);
            self.export(i, c.name, attributes);
        }
    }

    /// Starts span `i` (its ancestors first, when they have not started).
    fn start(&mut self, i: u32) {
        let mut chain = vec![i];
        let mut at = i;
        while let Some(p) = self.plan.entries[at as usize].parent {
            if self.started[p as usize] {
                break;
            }
            chain.push(p);
            at = p;
        }
        while let Some(j) = chain.pop() {
            self.start_one(j);
        }
    }

    fn start_one(&mut self, i: u32) {
        if std::mem::replace(&mut self.started[i as usize], true) {
            return;
        }
        let entry = &self.plan.entries[i as usize];
        let record = &self.store.spans[self.spans[i as usize] as usize];
        let text = self.store.text(record);
        // For `check`, the attributes are read at once; for `enrich` (or a value read as
        // its text), each one's text is kept to write them back.
        let mut read: Option<SpanBodyRead<'_>> = if self.fed.is_empty() {
            serde_json::from_str(text).ok()
        } else {
            None
        };
        let engine = self.engine;
        let keep = |key: &str| engine.reads(key) || ReportSpan::reads(key);
        let mut attributes = read
            .as_mut()
            .map(|b| read_kept(b.attributes.take().unwrap_or_default(), &keep));
        let mut body: Option<SpanBody<'_>> = None;
        if attributes.is_none() {
            body = serde_json::from_str(text).ok();
            let items = body
                .as_mut()
                .and_then(|b| b.attributes.take())
                .unwrap_or_default();
            let (fed, all) = Fed::read(items);
            attributes = Some(all);
            if let Some(slot) = self.fed.get_mut(i as usize) {
                *slot = Some(fed);
            }
        }
        let attributes = attributes.unwrap_or_default();
        let (name, status, kind) = match (&body, &read) {
            (Some(b), _) => (b.name.as_deref(), b.status.as_ref(), b.kind),
            (None, Some(b)) => (b.name.as_deref(), b.status.as_ref(), b.kind),
            _ => (None, None, None),
        };
        let name = name.unwrap_or("").to_owned();
        let status = match status {
            Some(s) if s.code.map_or(0, |c| c.0) == 2 => {
                Status::error(s.message.as_deref().unwrap_or("").to_owned())
            }
            Some(s) if s.code.map_or(0, |c| c.0) == 1 => Status::Ok,
            _ => Status::Unset,
        };
        let kind = self::kind(kind.map_or(1, |k| k.0));
        drop(body);
        drop(read);
        let verdict = self.engine.start_into(
            &SpanStart {
                trace_id: self.trace,
                span_id: self.id(u64::from(i)),
                parent: self.parent(i),
                name: &name,
                kind: kind.clone(),
                start_time: time(entry.start),
                attributes: &attributes,
                now: time(entry.start),
            },
            self.sink,
        );
        self.live.insert(
            i,
            Live {
                name,
                kind,
                status,
                attributes,
            },
        );
        self.export_closed(verdict.closed);
    }
}
