//! Auditing exported spans: replaying their starts and ends through a real
//! `SdkTracerProvider` whose only processor is the audit processor.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::common::v1::KeyValue as OtlpKeyValue;
use opentelemetry_proto::tonic::trace::v1::{status, Span as OtlpSpan};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    IdGenerator, Sampler, SdkTracerProvider, Span, SpanData, SpanLimits, SpanProcessor,
};
use parking_lot::Mutex;

use super::read::Request;
use super::value::{into_api, to_api, to_otlp};
use crate::attributes::last_value;
use crate::config::{ContaminationPolicy, LeakPolicy};
use crate::engine::nanos;
use crate::findings::FindingCode;
use crate::keys;
use crate::processor::{GenAiAuditProcessor, GenAiAuditProcessorBuilder};
use crate::report::ReportSpan;

/// How exported spans are audited. Settings left `None` come from the
/// `GENAI_AUDIT_*` environment variables, then the defaults, as for the processor.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditOptions {
    /// A child ending less than this after its parent, in another resource, counts as
    /// ending before it (default 2 ms: JavaScript SDKs stamp starts with a millisecond
    /// clock and ends with a high-resolution one).
    pub skew: Duration,
    /// Leak policy.
    pub leak_policy: Option<LeakPolicy>,
    /// Contamination policy.
    pub contamination_policy: Option<ContaminationPolicy>,
    /// A price file in the genai-prices JSON format.
    pub prices_file: Option<PathBuf>,
    /// The most spans tracked at once.
    pub max_tracked_spans: Option<usize>,
    /// The age after which an open span is evicted (judged against the replayed time).
    pub max_span_age: Option<Duration>,
    /// Write the audit's attributes back onto the spans of the requests.
    pub enrich: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            skew: Duration::from_millis(2),
            leak_policy: None,
            contamination_policy: None,
            prices_file: None,
            max_tracked_spans: None,
            max_span_age: None,
            enrich: false,
        }
    }
}

impl AuditOptions {
    /// Applies these options to a processor builder.
    pub(crate) fn configure<P: SpanProcessor>(
        &self,
        mut builder: GenAiAuditProcessorBuilder<P>,
    ) -> GenAiAuditProcessorBuilder<P> {
        if let Some(policy) = self.leak_policy {
            builder = builder.leak_policy(policy);
        }
        if let Some(policy) = self.contamination_policy {
            builder = builder.contamination_policy(policy);
        }
        if let Some(path) = &self.prices_file {
            builder = builder.with_prices_file(path.clone());
        }
        if let Some(max) = self.max_tracked_spans {
            builder = builder.with_max_tracked_spans(max);
        }
        if let Some(age) = self.max_span_age {
            builder = builder.with_max_span_age(age);
        }
        builder
    }
}

/// Where a span sits in the requests: request, resource spans, scope spans, span.
type Location = (u32, u32, u32, u32);

struct Entry {
    trace: TraceId,
    id: SpanId,
    parent: SpanId,
    parent_remote: bool,
    parent_index: Option<u32>,
    start: u64,
    end: u64,
    depth: u32,
    key: u64,
    /// A second span with the same ids: not replayed, passed through.
    duplicate: bool,
}

/// The `SpanId`s the SDK hands out: the ones of the span being replayed.
#[derive(Debug)]
struct NextIds(Mutex<(TraceId, SpanId)>);

impl Default for NextIds {
    fn default() -> Self {
        NextIds(Mutex::new((TraceId::INVALID, SpanId::INVALID)))
    }
}

#[derive(Debug, Default, Clone)]
struct SharedIds(Arc<NextIds>);

impl IdGenerator for SharedIds {
    fn new_trace_id(&self) -> TraceId {
        self.0 .0.lock().0
    }
    fn new_span_id(&self) -> SpanId {
        self.0 .0.lock().1
    }
}

#[derive(Default)]
struct Collected {
    /// Reports in export order (grown as spans end, while `check` frees their input).
    reports: Vec<ReportSpan>,
    /// Whether span `i` was exported (a span is kept once).
    exported: Vec<bool>,
    attributes: Vec<Option<Vec<KeyValue>>>,
}

/// The processor the audit wraps: it keeps, for each span, what the audit exported
/// first (a span is never exported twice).
struct Collector {
    index: Arc<HashMap<(TraceId, SpanId), u32>>,
    /// Whether span `i`'s parent is missing from the input (`missing_parent`).
    missing: Arc<Vec<bool>>,
    keep_attributes: bool,
    collected: Arc<Mutex<Collected>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").finish_non_exhaustive()
    }
}

impl SpanProcessor for Collector {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let key = (span.span_context.trace_id(), span.span_context.span_id());
        let Some(&index) = self.index.get(&key) else {
            return;
        };
        let index = index as usize;
        let mut collected = self.collected.lock();
        match collected.exported.get_mut(index) {
            Some(exported) if !*exported => *exported = true,
            _ => return,
        }
        let mut report = ReportSpan::new(
            key.0,
            key.1,
            span.parent_span_id,
            span.name.as_ref(),
            nanos(span.start_time),
            &span.attributes,
        );
        // Findings are written only onto recognised spans.
        let missing_parent =
            self.missing.get(index).copied().unwrap_or(false) && report.role.is_some();
        if missing_parent {
            report.add_finding(FindingCode::MissingParent);
        }
        collected.reports.push(report);
        if self.keep_attributes {
            let mut attributes = span.attributes;
            if missing_parent {
                add_finding(&mut attributes, FindingCode::MissingParent);
            }
            if let Some(slot) = collected.attributes.get_mut(index) {
                *slot = Some(attributes);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

fn trace_id(bytes: &[u8]) -> TraceId {
    <[u8; 16]>::try_from(bytes).map_or(TraceId::INVALID, TraceId::from_bytes)
}

fn span_id(bytes: &[u8]) -> SpanId {
    <[u8; 8]>::try_from(bytes).map_or(SpanId::INVALID, SpanId::from_bytes)
}

/// `flags` bits 8 and 9: whether the parent's remoteness is known, and whether it is
/// remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

fn kind(kind: i32) -> SpanKind {
    match kind {
        2 => SpanKind::Server,
        3 => SpanKind::Client,
        4 => SpanKind::Producer,
        5 => SpanKind::Consumer,
        _ => SpanKind::Internal,
    }
}

fn status(span: &OtlpSpan) -> Status {
    match span.status.as_ref() {
        Some(s) if s.code == status::StatusCode::Error as i32 => Status::error(s.message.clone()),
        Some(s) if s.code == status::StatusCode::Ok as i32 => Status::Ok,
        _ => Status::Unset,
    }
}

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// Whether an input attribute is one a previous audit wrote (it is left out of what
/// the audit reads, so that auditing enriched spans again gives the same result).
fn written_before(key: &str, computed_cost: bool) -> bool {
    key.starts_with("genai_audit.") || (computed_cost && key == keys::GEN_AI_USAGE_COST)
}

fn has_computed_cost(attributes: &[OtlpKeyValue]) -> bool {
    attributes.iter().rev().any(|kv| {
        kv.key == keys::COST_SOURCE
            && matches!(
                kv.value.as_ref().and_then(|v| v.value.as_ref()),
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) if s == "computed"
            )
    })
}

/// What the audit reads of a span's attributes, taking them.
fn fed_owned(attributes: Vec<OtlpKeyValue>) -> Vec<KeyValue> {
    let computed = has_computed_cost(&attributes);
    attributes
        .into_iter()
        .filter(|kv| !written_before(&kv.key, computed))
        .map(into_api)
        .collect()
}

/// What the audit reads of a span's attributes.
fn fed(attributes: &[OtlpKeyValue]) -> Vec<KeyValue> {
    let computed = has_computed_cost(attributes);
    attributes
        .iter()
        .filter(|kv| !written_before(&kv.key, computed))
        .map(to_api)
        .collect()
}

fn span_at(requests: &[Request], (r, rs, ss, sp): Location) -> Option<&OtlpSpan> {
    requests
        .get(r as usize)?
        .request
        .resource_spans
        .get(rs as usize)?
        .scope_spans
        .get(ss as usize)?
        .spans
        .get(sp as usize)
}

fn span_at_mut(requests: &mut [Request], (r, rs, ss, sp): Location) -> Option<&mut OtlpSpan> {
    requests
        .get_mut(r as usize)?
        .request
        .resource_spans
        .get_mut(rs as usize)?
        .scope_spans
        .get_mut(ss as usize)?
        .spans
        .get_mut(sp as usize)
}

/// Audits every span of `requests` and returns one [`ReportSpan`] per span, in the
/// order the audit exported them. With [`AuditOptions::enrich`] the audit's attributes are written onto the
/// spans (and `missing_parent` added to their findings); nothing else of a span is
/// touched.
///
/// Spans are grouped by trace and every trace's starts and ends are replayed through
/// a real `SdkTracerProvider` whose only processor is [`GenAiAuditProcessor`], with
/// the original ids, name, kind, times and status, and every final attribute visible
/// at start. Starts go in time order (a parent before its children); ends go, within
/// one resource, in their order of appearance (a batch exporter sends spans in the
/// order they ended) and otherwise (across traces and resources) by time, a child ending less than
/// [`AuditOptions::skew`] after its parent counting as ending first. `progress` is
/// called now and then with the number of spans replayed.
pub fn audit(
    requests: &mut [Request],
    options: &AuditOptions,
    progress: &mut dyn FnMut(u64),
) -> Vec<ReportSpan> {
    // --- The spans, their resources and their parents.
    let mut locations: Vec<Location> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut group_of_span: Vec<u32> = Vec::new();
    let mut groups: HashMap<String, u32> = HashMap::new();
    let mut index: HashMap<(TraceId, SpanId), u32> = HashMap::new();
    for (r, request) in requests.iter().enumerate() {
        for (rs, resource_spans) in request.request.resource_spans.iter().enumerate() {
            let resource_key = serde_json::to_string(&resource_spans.resource).unwrap_or_default();
            let next = groups.len() as u32;
            let group = *groups.entry(resource_key).or_insert(next);
            for (ss, scope_spans) in resource_spans.scope_spans.iter().enumerate() {
                for (sp, span) in scope_spans.spans.iter().enumerate() {
                    let i = entries.len() as u32;
                    let trace = trace_id(&span.trace_id);
                    let id = span_id(&span.span_id);
                    let duplicate = index.insert((trace, id), i).is_some_and(|first| {
                        index.insert((trace, id), first);
                        true
                    });
                    locations.push((r as u32, rs as u32, ss as u32, sp as u32));
                    group_of_span.push(group);
                    entries.push(Entry {
                        trace,
                        id,
                        parent: span_id(&span.parent_span_id),
                        parent_remote: span.flags & HAS_IS_REMOTE != 0
                            && span.flags & IS_REMOTE != 0,
                        parent_index: None,
                        start: span.start_time_unix_nano,
                        end: span.end_time_unix_nano.max(span.start_time_unix_nano),
                        depth: 0,
                        key: 0,
                        duplicate,
                    });
                }
            }
        }
    }
    let n = entries.len();
    for entry in &mut entries {
        if entry.parent != SpanId::INVALID {
            entry.parent_index = index.get(&(entry.trace, entry.parent)).copied();
        }
        entry.key = entry.end;
    }
    // Depths, without recursion (a parent cycle in corrupt input ends the walk).
    let mut known = vec![false; n];
    let mut on_path = vec![false; n];
    let mut path: Vec<usize> = Vec::new();
    for i in 0..n {
        let mut at = i;
        let base = loop {
            if known[at] {
                break entries[at].depth + 1;
            }
            if on_path[at] {
                break 0;
            }
            on_path[at] = true;
            path.push(at);
            match entries[at].parent_index {
                Some(p) => at = p as usize,
                None => break 0,
            }
        };
        let mut depth = base;
        while let Some(j) = path.pop() {
            on_path[j] = false;
            entries[j].depth = depth;
            known[j] = true;
            depth += 1;
        }
    }
    // A parent's end key comes after its children's that end less than the skew
    // after it (deepest first, so that keys lift through the levels).
    let skew = u64::try_from(options.skew.as_nanos()).unwrap_or(u64::MAX);
    let mut by_depth: Vec<u32> = (0..n as u32).collect();
    by_depth.sort_by_key(|&i| Reverse(entries[i as usize].depth));
    for &c in &by_depth {
        let child = &entries[c as usize];
        if let Some(p) = child.parent_index {
            let (end, key) = (child.end, child.key);
            let parent = &mut entries[p as usize];
            if end < parent.end.saturating_add(skew) {
                parent.key = parent.key.max(key.saturating_add(1));
            }
        }
    }

    // --- The order of events.
    // One sequence per trace and resource, in order of appearance.
    let mut sequences: Vec<Vec<u32>> = Vec::new();
    let mut sequence_of: HashMap<(u32, TraceId), usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        if !entry.duplicate {
            let next = sequences.len();
            let at = *sequence_of
                .entry((group_of_span[i], entry.trace))
                .or_insert(next);
            if at == next {
                sequences.push(Vec::new());
            }
            sequences[at].push(i as u32);
        }
    }
    drop(sequence_of);
    let mut starts: Vec<u32> = (0..n as u32)
        .filter(|&i| !entries[i as usize].duplicate)
        .collect();
    starts.sort_by_key(|&i| {
        let e = &entries[i as usize];
        (e.start, e.depth, i)
    });
    let mut heads: BinaryHeap<Reverse<(u64, u32, u32)>> = sequences
        .iter()
        .enumerate()
        .filter_map(|(g, seq)| {
            seq.first()
                .map(|&i| Reverse((entries[i as usize].key, g as u32, 0)))
        })
        .collect();

    // --- The pipeline.
    let index = Arc::new(index);
    let missing: Arc<Vec<bool>> = Arc::new(
        entries
            .iter()
            .map(|e| e.parent != SpanId::INVALID && !e.parent_remote && e.parent_index.is_none())
            .collect(),
    );
    let collected = Arc::new(Mutex::new(Collected {
        reports: Vec::new(),
        exported: vec![false; n],
        attributes: if options.enrich {
            (0..n).map(|_| None).collect()
        } else {
            Vec::new()
        },
    }));
    let clock = Arc::new(AtomicU64::new(
        entries.iter().map(|e| e.start).min().unwrap_or(0),
    ));
    let ids = SharedIds::default();
    let replay_clock = Arc::clone(&clock);
    let collector = Collector {
        index: Arc::clone(&index),
        missing: Arc::clone(&missing),
        keep_attributes: options.enrich,
        collected: Arc::clone(&collected),
    };
    let audit = options
        .configure(GenAiAuditProcessor::builder(collector))
        .with_clock(move || time(replay_clock.load(Ordering::Relaxed)))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOn)
        .with_id_generator(ids.clone())
        .with_span_limits(SpanLimits {
            max_events_per_span: 0,
            max_attributes_per_span: u32::MAX,
            max_links_per_span: 0,
            max_attributes_per_event: 0,
            max_attributes_per_link: 0,
        })
        .with_span_processor(audit)
        .build();
    let tracer = provider.tracer("genai-audit");

    // Only the spans open at a time (an SDK span is a few hundred bytes).
    let mut live: HashMap<usize, opentelemetry_sdk::trace::Span> = HashMap::new();
    let mut started = vec![false; n];
    let enrich = options.enrich;
    let mut start = |i: usize,
                     live: &mut HashMap<usize, opentelemetry_sdk::trace::Span>,
                     requests: &mut [Request]| {
        if std::mem::replace(&mut started[i], true) {
            return;
        }
        let entry = &entries[i];
        let Some(span) = span_at_mut(requests, locations[i]) else {
            return;
        };
        clock.store(entry.start, Ordering::Relaxed);
        *ids.0 .0.lock() = (entry.trace, entry.id);
        let parent_cx = if entry.parent == SpanId::INVALID {
            Context::new()
        } else {
            Context::new().with_remote_span_context(SpanContext::new(
                entry.trace,
                entry.parent,
                TraceFlags::SAMPLED,
                entry.parent_remote,
                TraceState::NONE,
            ))
        };
        // `check` needs a span's name and attributes no more once it started: they
        // move into the SDK's span (the report reads them from what the audit exports).
        let (name, attributes) = if enrich {
            (span.name.clone(), fed(&span.attributes))
        } else {
            let attributes = std::mem::take(&mut span.attributes);
            (std::mem::take(&mut span.name), fed_owned(attributes))
        };
        let builder = tracer
            .span_builder(name)
            .with_kind(kind(span.kind))
            .with_start_time(time(entry.start))
            .with_attributes(attributes);
        live.insert(i, tracer.build_with_context(builder, &parent_cx));
    };
    let mut replayed = 0u64;
    let mut s = 0;
    while let Some(Reverse((_, g, pos))) = heads.pop() {
        let sequence = &sequences[g as usize];
        let e = sequence[pos as usize] as usize;
        if let Some(&next) = sequence.get(pos as usize + 1) {
            heads.push(Reverse((entries[next as usize].key, g, pos + 1)));
        }
        let end = entries[e].end;
        while let Some(&next) = starts.get(s) {
            if entries[next as usize].start > end {
                break;
            }
            start(next as usize, &mut live, requests);
            s += 1;
        }
        start(e, &mut live, requests);
        if let Some(mut span) = live.remove(&e) {
            clock.store(end, Ordering::Relaxed);
            if let Some(otlp) = span_at(requests, locations[e]) {
                let status = status(otlp);
                if status != Status::Unset {
                    span.set_status(status);
                }
            }
            span.end_with_timestamp(time(end));
        }
        replayed += 1;
        if replayed % 4096 == 0 {
            progress(replayed);
        }
    }
    let _ = provider.shutdown();
    progress(replayed);
    drop(live);

    // --- The results: spans never exported (a second copy of a span) pass through.
    let mut collected = std::mem::take(&mut *collected.lock());
    let mut reports = std::mem::take(&mut collected.reports);
    for (i, entry) in entries.iter().enumerate() {
        if collected.exported.get(i).copied().unwrap_or(true) {
            continue;
        }
        if let Some(span) = span_at(requests, locations[i]) {
            let attributes: Vec<KeyValue> = span.attributes.iter().map(to_api).collect();
            let mut report = ReportSpan::new(
                entry.trace,
                entry.id,
                entry.parent,
                span.name.as_str(),
                entry.start,
                &attributes,
            );
            if missing[i] && report.role.is_some() {
                report.add_finding(FindingCode::MissingParent);
            }
            reports.push(report);
        }
    }
    if options.enrich {
        for (i, audited) in collected.attributes.iter_mut().enumerate() {
            if let (Some(audited), Some(span)) =
                (audited.take(), span_at_mut(requests, locations[i]))
            {
                merge(&mut span.attributes, &audited);
            }
        }
    }
    reports
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

/// Writes the audit's attributes onto the original ones: a key the audit changed
/// takes its new value at its last position, a key it added is appended; every
/// other attribute stays as it came, in its order.
fn merge(original: &mut Vec<OtlpKeyValue>, audited: &[KeyValue]) {
    let computed = has_computed_cost(original);
    let fed: HashMap<&str, Value> = original
        .iter()
        .filter(|kv| !written_before(&kv.key, computed))
        .map(|kv| (kv.key.as_str(), to_api(kv).value))
        .collect();
    let mut last_audited: HashMap<&str, &Value> = HashMap::with_capacity(audited.len());
    for kv in audited {
        last_audited.insert(kv.key.as_str(), &kv.value);
    }
    let mut last_position: HashMap<&str, usize> = HashMap::with_capacity(original.len());
    for (i, kv) in original.iter().enumerate() {
        last_position.insert(kv.key.as_str(), i);
    }
    let mut replace: Vec<(usize, OtlpKeyValue)> = Vec::new();
    let mut append: Vec<OtlpKeyValue> = Vec::new();
    let mut appended: Vec<&str> = Vec::new();
    for kv in audited {
        let key = kv.key.as_str();
        let Some(&value) = last_audited.get(key) else {
            continue;
        };
        if !std::ptr::eq(value, &kv.value) {
            continue; // not the last value of this key
        }
        match (last_position.get(key), fed.get(key)) {
            (Some(_), Some(before)) if before == value => {}
            (Some(&position), _) => replace.push((position, to_otlp(kv))),
            (None, _) => {
                if !appended.contains(&key) {
                    appended.push(key);
                    append.push(to_otlp(kv));
                }
            }
        }
    }
    for (position, kv) in replace {
        if let Some(slot) = original.get_mut(position) {
            if slot.value != kv.value {
                *slot = kv;
            }
        }
    }
    original.extend(append);
}
