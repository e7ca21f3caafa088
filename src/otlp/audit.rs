//! Auditing what was read: every trace on its own, in parallel across the cores, and
//! the enriched text written back in input order.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use opentelemetry::trace::TraceId;

use super::input::{read_source, InputError, RequestText, Source};
use super::options::{AuditOptions, SettingsError};
use super::replay::{TraceOutcome, Worker};
use super::scripted::export_text;
use super::store::Store;
use crate::engine::ForeignResponses;
use crate::hashing::hash_str;
use crate::report::ReportSpan;
use crate::script::TraceScript;

/// Everything read from the inputs, held compactly until it is audited: each request's
/// text as it came (on one line) and a small record per span.
///
/// ```
/// use genai_audit::otlp::{audit, AuditOptions, Inputs};
///
/// let line = r#"{"resourceSpans":[{"resource":{},"scopeSpans":[{"scope":{"name":"app"},"spans":[
///   {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"chat gpt-4o","kind":3,
///    "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001000000000",
///    "attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},
///                  {"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},
///                  {"key":"gen_ai.usage.input_tokens","value":{"intValue":"1000"}},
///                  {"key":"gen_ai.usage.output_tokens","value":{"intValue":100}}]}]}]}]}"#;
/// let mut inputs = Inputs::new(1 << 20);
/// inputs.read("example.json", line.as_bytes())?;
/// let options = AuditOptions { enrich: true, ..AuditOptions::default() };
/// let mut spans = Vec::new();
/// let audited = audit(&inputs, &options, &mut |trace| spans.extend(trace), &|_| {})?;
/// assert_eq!(spans[0].role.as_deref(), Some("generation"));
/// assert!(spans[0].cost_usd.is_some());
/// let mut out = Vec::new();
/// audited.write(&mut out, &inputs)?;
/// assert!(String::from_utf8(out)?.contains("genai_audit.cost_usd"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Inputs {
    store: Store,
    max_line_bytes: usize,
}

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("files", &self.store.files)
            .field("requests", &self.store.requests.len())
            .field("spans", &self.store.spans.len())
            .finish()
    }
}

impl Inputs {
    /// No input yet; no line, request or protobuf message longer than
    /// `max_line_bytes` will be read.
    pub fn new(max_line_bytes: usize) -> Inputs {
        Inputs {
            store: Store::default(),
            max_line_bytes,
        }
    }

    /// Reads one input named `name` (for errors), of any kind the command reads (told
    /// by content). A trace script is read as the export it would produce: its ended
    /// spans, with their final attributes. On error, what this input added may be
    /// partly kept: drop the `Inputs`.
    pub fn read(&mut self, name: &str, reader: impl Read) -> Result<(), InputError> {
        let file = self.store.begin_file(name);
        let store = &mut self.store;
        let source = read_source(
            Box::new(reader),
            name,
            self.max_line_bytes,
            None,
            &mut |r| store.add(file, r),
        )?;
        if let Source::Script(text) = source {
            let script = TraceScript::parse(&text).map_err(|e| InputError {
                file: name.to_owned(),
                line: e.line,
                reason: e.reason,
            })?;
            if let Some(text) = export_text(&script) {
                self.store.add(file, RequestText { text, line: 1 })?;
            }
        }
        Ok(())
    }

    /// How many spans were read.
    pub fn spans(&self) -> usize {
        self.store.spans.len()
    }
}

/// Which response ids belong to generations of which traces, over the whole input.
#[derive(Debug, Default)]
struct ResponseIndex(HashMap<u64, ([u8; 16], bool)>);

impl ResponseIndex {
    fn of(store: &Store) -> ResponseIndex {
        let mut index: HashMap<u64, ([u8; 16], bool)> = HashMap::new();
        for &(hash, trace) in &store.responses {
            index
                .entry(hash)
                .and_modify(|(first, several)| *several |= *first != trace)
                .or_insert((trace, false));
        }
        ResponseIndex(index)
    }
}

impl ForeignResponses for ResponseIndex {
    fn is_foreign(&self, trace: TraceId, response_id: &str) -> bool {
        self.0
            .get(&hash_str(response_id))
            .is_some_and(|(first, several)| *several || *first != trace.to_bytes())
    }
}

/// What [`audit`] leaves for writing: the new text of each span the audit changed.
#[derive(Debug, Default)]
pub struct Audited {
    /// By span index, ascending.
    enriched: Vec<(u32, String)>,
}

impl Audited {
    /// Writes every request read, in input order, one per line, each span enriched
    /// where the audit changed it and every other byte as it was read.
    pub fn write(&self, out: &mut dyn Write, inputs: &Inputs) -> io::Result<()> {
        let store = &inputs.store;
        let mut next = self.enriched.iter().peekable();
        for (r, request) in store.requests.iter().enumerate() {
            let end = store
                .requests
                .get(r + 1)
                .map_or(store.spans.len(), |n| n.first_span as usize);
            let text = request.text.as_bytes();
            let mut at = 0usize;
            while let Some((i, span_text)) = next.peek() {
                let i = *i as usize;
                if i >= end {
                    break;
                }
                next.next();
                let Some(record) = store.spans.get(i) else {
                    continue;
                };
                let from = record.offset as usize;
                out.write_all(text.get(at..from).unwrap_or_default())?;
                out.write_all(span_text.as_bytes())?;
                at = from + record.len as usize;
            }
            out.write_all(text.get(at..).unwrap_or_default())?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Audits everything read, each trace on its own (its spans wherever they are in the
/// inputs), in parallel across the machine's cores. `on_trace` gets each trace's
/// [`ReportSpan`]s (in input order) as its audit ends, traces in no set order;
/// `progress` the number of spans audited so far, now and then. With
/// [`AuditOptions::enrich`], returns the spans' new text for [`Audited::write`].
///
/// Settings left unset come from the `GENAI_AUDIT_*` environment variables; any
/// value that cannot be used is an error before anything is audited.
pub fn audit(
    inputs: &Inputs,
    options: &AuditOptions,
    on_trace: &mut dyn FnMut(Vec<ReportSpan>),
    progress: &dyn Fn(u64),
) -> Result<Audited, SettingsError> {
    let settings = options.settings(&|name| std::env::var(name).ok())?;
    let store = &inputs.store;
    // The traces: runs of span indices, each in input order.
    let mut order: Vec<u32> = (0..store.spans.len() as u32).collect();
    order.sort_unstable_by_key(|&i| (store.spans[i as usize].trace, i));
    let mut traces: Vec<(u32, u32)> = Vec::new();
    let mut from = 0;
    for i in 1..=order.len() {
        if i == order.len()
            || store.spans[order[i] as usize].trace != store.spans[order[from] as usize].trace
        {
            traces.push((from as u32, i as u32));
            from = i;
        }
    }
    let foreign: Arc<dyn ForeignResponses> = Arc::new(ResponseIndex::of(store));
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(traces.len().div_ceil(16))
        .max(1);
    let next = AtomicUsize::new(0);
    let mut audited = Audited::default();
    let mut done = 0u64;
    std::thread::scope(|scope| {
        let (send, receive) = mpsc::sync_channel::<TraceOutcome>(256);
        for _ in 0..workers {
            let send = send.clone();
            let (settings, foreign, order, traces, next) =
                (&settings, Arc::clone(&foreign), &order, &traces, &next);
            scope.spawn(move || {
                let mut worker = Worker::new(settings, foreign);
                loop {
                    let t = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(from, to)) = traces.get(t) else {
                        break;
                    };
                    let outcome = worker.audit(store, &order[from as usize..to as usize]);
                    if send.send(outcome).is_err() {
                        break;
                    }
                }
            });
        }
        drop(send);
        for outcome in receive {
            done += outcome.reports.len() as u64;
            audited.enriched.extend(outcome.enriched);
            on_trace(outcome.reports);
            progress(done);
        }
    });
    audited.enriched.sort_unstable_by_key(|(i, _)| *i);
    Ok(audited)
}
