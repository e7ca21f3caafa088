//! Auditing what was read: every trace on its own, in parallel across the cores, and
//! the enriched text written back in input order.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use opentelemetry::trace::TraceId;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use parking_lot::RwLock;

use super::input::{protobuf_request, read_source, InputError, RequestText, Source};
use super::options::{AuditOptions, RunSettings, SettingsError};
use super::replay::{Sent, TraceOutcome, Worker};
use super::scripted::export_text;
use super::store::{parse, Parsed, Store};
use super::write_back::{List, Splice};
use crate::engine::ForeignResponses;
use crate::hashing::{hash_str, BuildIdHasher};
use crate::report::ReportSpan;
use crate::script::TraceScript;

/// Everything read from the inputs, held compactly until it is audited: each request's
/// text as it came (on one line) and a small record per span.
///
/// ```
/// use genai_audit::otlp::{enrich, AuditOptions, Inputs};
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
/// let mut spans = Vec::new();
/// let mut out = Vec::new();
/// enrich(&inputs, &AuditOptions::default(), &mut |trace| spans.extend(trace), &|_| {}, &mut out)?;
/// assert_eq!(spans[0].role.as_deref(), Some("generation"));
/// assert!(spans[0].cost_usd.is_some());
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
        self.store.begin_file(name);
        let store = &mut self.store;
        let max_line_bytes = self.max_line_bytes;
        // Requests are read in batches; a batch is parsed (across the cores) while the
        // next one is read, and kept in order.
        let source = std::thread::scope(|scope| {
            let mut batch: Vec<RequestText> = Vec::new();
            let mut bytes = 0usize;
            let mut parsing: Option<std::thread::ScopedJoinHandle<'_, Batch>> = None;
            let source = read_source(Box::new(reader), name, max_line_bytes, &mut |request| {
                bytes += request.text.len();
                batch.push(request);
                if bytes >= BATCH_BYTES || batch.len() >= BATCH_REQUESTS {
                    bytes = 0;
                    if let Some(previous) = parsing.take() {
                        keep(store, joined(previous), name)?;
                    }
                    let full = std::mem::take(&mut batch);
                    parsing = Some(scope.spawn(move || parse_batch(full)));
                }
                Ok(())
            });
            if let Some(previous) = parsing.take() {
                keep(store, joined(previous), name)?;
            }
            let source = source?;
            keep(store, parse_batch(batch), name)?;
            Ok::<Source, InputError>(source)
        })?;
        if let Source::Script(text) = source {
            let script = TraceScript::parse(&text).map_err(|e| InputError {
                file: name.to_owned(),
                line: e.line,
                reason: e.reason,
            })?;
            if let Some(text) = export_text(&script) {
                let batch = parse_batch(vec![RequestText { text, line: 1 }]);
                keep(&mut self.store, batch, name)?;
            }
        }
        Ok(())
    }

    /// Reads binary protobuf `ExportTraceServiceRequest`s (each a request of input
    /// `name`, numbered from 1), converted and parsed across the cores.
    pub(crate) fn read_protobuf(
        &mut self,
        name: &str,
        requests: &[&[u8]],
    ) -> Result<(), InputError> {
        self.store.begin_file(name);
        let parsed = across_cores(requests.to_vec(), |bytes| parse(protobuf_request(bytes)?));
        let lines = 1..=parsed.len();
        keep(
            &mut self.store,
            parsed.into_iter().zip(lines).collect(),
            name,
        )
    }

    /// The response ids of generations read: each id's hash, and its trace.
    pub(crate) fn responses(&self) -> &[(u64, [u8; 16])] {
        &self.store.responses
    }

    /// How many spans were read.
    pub fn spans(&self) -> usize {
        self.store.spans.len()
    }
}

/// Traces a worker audits before it hands their outcomes over.
const TRACES_PER_BLOCK: usize = 16;

/// Requests read in parallel at a time: at most this many, or this many bytes.
const BATCH_REQUESTS: usize = 256;
const BATCH_BYTES: usize = 32 << 20;

/// Reads `batch` (requests of input `name`, in order) across the cores, and keeps it
/// in order; the first request that cannot be read is the error.
/// Requests parsed, each with its line.
type Batch = Vec<(Result<Parsed, String>, usize)>;

/// The cores this process may use (asked once: the answer reads the cgroup files).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Parses `batch` (requests in order) across the cores.
fn parse_batch(batch: Vec<RequestText>) -> Batch {
    let lines: Vec<usize> = batch.iter().map(|r| r.line).collect();
    let texts: Vec<String> = batch.into_iter().map(|r| r.text).collect();
    across_cores(texts, parse).into_iter().zip(lines).collect()
}

/// `read` of each item, in order, across the cores.
fn across_cores<T: Send>(
    items: Vec<T>,
    read: impl Fn(T) -> Result<Parsed, String> + Sync,
) -> Vec<Result<Parsed, String>> {
    let threads = cores().min(items.len()).max(1);
    if threads == 1 {
        return items.into_iter().map(read).collect();
    }
    let n = items.len();
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    let per = slots.len().div_ceil(threads);
    let read = &read;
    std::thread::scope(|scope| {
        let handles: Vec<_> = slots
            .chunks_mut(per)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter_mut()
                        .map(|t| match t.take() {
                            Some(t) => read(t),
                            None => Err(FAILED.to_owned()),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        for handle in handles {
            match handle.join() {
                Ok(part) => all.extend(part),
                // A parse never panics; were it to, the batch is an error, never
                // a request lost.
                Err(_) => return None,
            }
        }
        Some(all)
    })
    .unwrap_or_else(|| vec![Err(FAILED.to_owned())])
}

const FAILED: &str = "the reader failed";

/// What a parsing thread gave: an error in place of a panic.
fn joined(handle: std::thread::ScopedJoinHandle<'_, Batch>) -> Batch {
    handle
        .join()
        .unwrap_or_else(|_| vec![(Err(FAILED.to_owned()), 0)])
}

/// Keeps a parsed batch of input `name`, in order; the first request that cannot be
/// read is the error.
fn keep(store: &mut Store, batch: Batch, name: &str) -> Result<(), InputError> {
    for (parsed, line) in batch {
        let error = |reason| InputError {
            file: name.to_owned(),
            line,
            reason,
        };
        store.add(parsed.map_err(error)?).map_err(error)?;
    }
    Ok(())
}

/// Which response ids belong to generations of which traces, over the whole input.
#[derive(Debug, Default)]
pub(crate) struct ResponseIndex(HashMap<u64, ([u8; 16], bool)>);

impl ResponseIndex {
    fn of(store: &Store) -> ResponseIndex {
        let mut index = ResponseIndex::default();
        index.add(&store.responses, &mut |_| {});
        index
    }

    /// Adds response ids (each id's hash, and its trace); `new` gets each hash not
    /// known before.
    pub(crate) fn add(&mut self, responses: &[(u64, [u8; 16])], new: &mut dyn FnMut(u64)) {
        for &(hash, trace) in responses {
            self.0
                .entry(hash)
                .and_modify(|(first, several)| *several |= *first != trace)
                .or_insert_with(|| {
                    new(hash);
                    (trace, false)
                });
        }
    }

    /// Forgets a response id, by its hash.
    pub(crate) fn forget(&mut self, hash: u64) {
        self.0.remove(&hash);
    }
}

impl ForeignResponses for ResponseIndex {
    fn is_foreign(&self, trace: TraceId, response_id: &str) -> bool {
        self.0
            .get(&hash_str(response_id))
            .is_some_and(|(first, several)| *several || *first != trace.to_bytes())
    }
}

/// Why [`enrich`] stopped.
#[derive(Debug)]
pub enum EnrichError {
    /// A setting cannot be used (nothing was written).
    RunSettings(SettingsError),
    /// Writing the output failed.
    Write(io::Error),
}

impl std::fmt::Display for EnrichError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnrichError::RunSettings(e) => write!(f, "{e}"),
            EnrichError::Write(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

impl std::error::Error for EnrichError {}

/// Audits everything read, each trace on its own (its spans wherever they are in the
/// inputs), in parallel across the machine's cores. `on_trace` gets each trace's
/// [`ReportSpan`]s (in input order) as its audit ends, traces in no set order;
/// `progress` the number of spans audited so far, now and then.
///
/// Settings left unset come from the `GENAI_AUDIT_*` environment variables; any
/// value that cannot be used is an error before anything is audited.
pub fn audit(
    inputs: &Inputs,
    options: &AuditOptions,
    on_trace: &mut dyn FnMut(Vec<ReportSpan>),
    progress: &dyn Fn(u64),
) -> Result<(), SettingsError> {
    let mut auditor = Auditor::new(options, false, None)?;
    let foreign = Arc::new(ResponseIndex::of(&inputs.store));
    auditor
        .run(inputs, foreign, None, on_trace, progress, Output::None)
        .map_err(|e| SettingsError(e.to_string()))
}

/// Audits as [`audit`] does, and writes every request read to `out`, in input order,
/// one per line: each span's attribute list enriched where the audit changed it, every
/// other byte as it was read. A request is written as soon as all its spans' traces
/// are audited, so memory holds only the enriched spans of requests not yet written.
pub fn enrich(
    inputs: &Inputs,
    options: &AuditOptions,
    on_trace: &mut dyn FnMut(Vec<ReportSpan>),
    progress: &dyn Fn(u64),
    out: &mut dyn Write,
) -> Result<(), EnrichError> {
    let mut auditor = Auditor::new(options, true, None).map_err(EnrichError::RunSettings)?;
    let foreign = Arc::new(ResponseIndex::of(&inputs.store));
    auditor
        .run(inputs, foreign, None, on_trace, progress, Output::Text(out))
        .map_err(EnrichError::Write)
}

/// The cross-trace index of the run in progress, swapped in before each run.
#[derive(Clone)]
struct CurrentIndex(Arc<RwLock<Arc<dyn ForeignResponses>>>);

impl std::fmt::Debug for CurrentIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CurrentIndex")
    }
}

impl ForeignResponses for CurrentIndex {
    fn is_foreign(&self, trace: TraceId, response_id: &str) -> bool {
        self.0.read().is_foreign(trace, response_id)
    }
}

/// What a run writes of the enriched spans.
pub(crate) enum Output<'a> {
    /// Nothing (`check`).
    None,
    /// Every request read, each span's attribute list enriched (`enrich`).
    Text(&'a mut dyn Write),
    /// The new attribute list of each span the audit changed, with the span's place
    /// among the spans read (`serve`; the auditor made [`with_lists`]).
    ///
    /// [`with_lists`]: Auditor::with_lists
    Lists(&'a mut dyn FnMut(u32, List)),
}

/// An auditor that lives across runs: settings checked once, and one worker per core
/// (a tracer provider and audit processor each) kept from run to run, so that the
/// metrics of a long-lived audit (`serve`) are registered once.
pub(crate) struct Auditor {
    settings: RunSettings,
    index: CurrentIndex,
    workers: Vec<Worker>,
}

impl Auditor {
    /// Checks `options` (with the environment); `enrich`: the spans will be written
    /// back; `meter_provider`: the audit's metrics (section "Metrics") go there.
    pub(crate) fn new(
        options: &AuditOptions,
        enrich: bool,
        meter_provider: Option<SdkMeterProvider>,
    ) -> Result<Auditor, SettingsError> {
        let mut settings = options.settings(&|name| std::env::var(name).ok(), enrich)?;
        settings.meter_provider = meter_provider;
        Ok(Auditor {
            settings,
            index: CurrentIndex(Arc::new(RwLock::new(Arc::new(ResponseIndex::default())))),
            workers: Vec::new(),
        })
    }

    /// Hands back changed attribute lists ([`Output::Lists`]) rather than text.
    pub(crate) fn with_lists(mut self) -> Auditor {
        self.settings.lists = true;
        self.workers.clear();
        self
    }

    /// Audits `inputs` as [`enrich`] does (or [`audit`], without `out`), answering
    /// cross-trace questions with `foreign`, and taking a parent that `sent` knows for
    /// present.
    pub(crate) fn run(
        &mut self,
        inputs: &Inputs,
        foreign: Arc<dyn ForeignResponses>,
        sent: Option<Sent<'_>>,
        on_trace: &mut dyn FnMut(Vec<ReportSpan>),
        progress: &dyn Fn(u64),
        out: Output<'_>,
    ) -> io::Result<()> {
        *self.index.0.write() = foreign;
        run(self, inputs, sent, on_trace, progress, out)
    }
}

/// Writes requests, in input order, as soon as all their spans are audited.
struct Writer<'a> {
    store: &'a Store,
    out: &'a mut dyn Write,
    /// Spans of each request not audited yet.
    remaining: Vec<u32>,
    /// The changes to audited spans of requests not written yet.
    pending: HashMap<u32, Splice, BuildIdHasher>,
    next: usize,
}

impl<'a> Writer<'a> {
    fn new(store: &'a Store, out: &'a mut dyn Write) -> Writer<'a> {
        let mut remaining = vec![0u32; store.requests.len()];
        for record in &store.spans {
            remaining[record.request as usize] += 1;
        }
        Writer {
            store,
            out,
            remaining,
            pending: HashMap::default(),
            next: 0,
        }
    }

    /// Takes a trace's audit (its spans, and the new text of those that changed),
    /// and writes every request now complete.
    fn take(&mut self, spans: &[u32], enriched: Vec<(u32, Splice)>) -> io::Result<()> {
        for &i in spans {
            let request = self.store.spans[i as usize].request as usize;
            self.remaining[request] -= 1;
        }
        self.pending.extend(enriched);
        while self.next < self.remaining.len() && self.remaining[self.next] == 0 {
            self.write_request(self.next)?;
            self.next += 1;
        }
        Ok(())
    }

    fn write_request(&mut self, r: usize) -> io::Result<()> {
        let store = self.store;
        let request = &store.requests[r];
        let end = store
            .requests
            .get(r + 1)
            .map_or(store.spans.len(), |n| n.first_span as usize);
        let text = request.text.as_bytes();
        let mut at = 0usize;
        for i in request.first_span as usize..end {
            let Some(splice) = self.pending.remove(&(i as u32)) else {
                continue;
            };
            let span = store.spans[i].offset as usize;
            self.out
                .write_all(text.get(at..span + splice.from).unwrap_or_default())?;
            self.out.write_all(splice.text.as_bytes())?;
            at = span + splice.to;
        }
        self.out.write_all(text.get(at..).unwrap_or_default())?;
        self.out.write_all(b"\n")
    }
}

fn run(
    auditor: &mut Auditor,
    inputs: &Inputs,
    sent: Option<Sent<'_>>,
    on_trace: &mut dyn FnMut(Vec<ReportSpan>),
    progress: &dyn Fn(u64),
    out: Output<'_>,
) -> io::Result<()> {
    let store = &inputs.store;
    // The traces: runs of span indices, each in input order; traces in the order of
    // their first span, so that requests can be written early.
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
    traces.sort_unstable_by_key(|&(from, _)| order[from as usize]);
    let threads = cores().min(traces.len().div_ceil(TRACES_PER_BLOCK)).max(1);
    while auditor.workers.len() < threads {
        let index: Arc<dyn ForeignResponses> = Arc::new(auditor.index.clone());
        auditor.workers.push(Worker::new(&auditor.settings, index));
    }
    let next = AtomicUsize::new(0);
    let (mut writer, mut lists) = match out {
        Output::None => (None, None),
        Output::Text(out) => (Some(Writer::new(store, out)), None),
        Output::Lists(lists) => (None, Some(lists)),
    };
    let mut done = 0u64;
    let mut failed = None;
    std::thread::scope(|scope| {
        let (send, receive) = mpsc::sync_channel::<Vec<(usize, TraceOutcome)>>(16);
        for worker in auditor.workers.iter_mut().take(threads) {
            let send = send.clone();
            let (order, traces, next) = (&order, &traces, &next);
            scope.spawn(move || {
                // Traces in blocks (one message each), taken in input order.
                loop {
                    let first = next.fetch_add(TRACES_PER_BLOCK, Ordering::Relaxed);
                    if first >= traces.len() {
                        break;
                    }
                    let block: Vec<(usize, TraceOutcome)> = (first
                        ..traces.len().min(first + TRACES_PER_BLOCK))
                        .map(|t| {
                            let (from, to) = traces[t];
                            (
                                t,
                                worker.audit(store, &order[from as usize..to as usize], sent),
                            )
                        })
                        .collect();
                    if send.send(block).is_err() {
                        break;
                    }
                }
            });
        }
        drop(send);
        'receiving: for block in receive {
            for (t, mut outcome) in block {
                done += outcome.reports.len() as u64;
                if let Some(lists) = &mut lists {
                    for (span, list) in std::mem::take(&mut outcome.lists) {
                        lists(span, list);
                    }
                }
                if let Some(writer) = &mut writer {
                    let (from, to) = traces[t];
                    if let Err(e) =
                        writer.take(&order[from as usize..to as usize], outcome.enriched)
                    {
                        failed = Some(e);
                        // Dropping the receiver stops the workers.
                        break 'receiving;
                    }
                }
                on_trace(outcome.reports);
            }
            progress(done);
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
