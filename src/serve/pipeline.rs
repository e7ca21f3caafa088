//! The audit of held traces: a thread of its own takes the traces that are due, audits
//! them as `enrich` does, and hands the enriched spans to the sender and the output.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::trace::TraceId;
use parking_lot::RwLock;
use tokio::sync::mpsc::UnboundedSender;

use super::batch::Batch;
use super::hold::Held;
use super::state::Shared;
use super::telemetry::Outcome;
use crate::engine::ForeignResponses;
use crate::otlp::{request_json, Auditor, Inputs, List, Output, ResponseIndex};

/// The most response ids remembered across traces.
const RECENT_RESPONSES: usize = 1 << 20;
/// The most spans, and encoded bytes, audited and sent as one request.
const BATCH_SPANS: usize = 8192;
const BATCH_BYTES: usize = 4 << 20;

/// Response ids of recent generations, by trace, in bounded memory (oldest forgotten
/// first): a response id also seen in another trace is `foreign_response`, as
/// `check` finds it across a whole input.
#[derive(Debug, Default)]
pub(crate) struct RecentResponses(RwLock<Recent>);

/// The index, and the hashes in the order they came.
type Recent = (ResponseIndex, VecDeque<u64>);

impl RecentResponses {
    fn add(&self, responses: &[(u64, [u8; 16])]) {
        if responses.is_empty() {
            return;
        }
        let mut recent = self.0.write();
        let (index, order) = &mut *recent;
        index.add(responses, &mut |hash| order.push_back(hash));
        while order.len() > RECENT_RESPONSES {
            if let Some(old) = order.pop_front() {
                index.forget(old);
            }
        }
    }
}

impl ForeignResponses for RecentResponses {
    fn is_foreign(&self, trace: TraceId, response_id: &str) -> bool {
        self.0.read().0.is_foreign(trace, response_id)
    }
}

/// The audit thread's state.
pub(crate) struct Pipeline {
    pub(crate) shared: Arc<Shared>,
    pub(crate) auditor: Auditor,
    pub(crate) recent: Arc<RecentResponses>,
    pub(crate) forward: Option<UnboundedSender<Batch>>,
    pub(crate) output: Option<BufWriter<File>>,
    /// Set at shutdown: audit everything held, then stop.
    pub(crate) draining: Arc<AtomicBool>,
}

impl Pipeline {
    /// Audits what is due, now and then, until told to drain.
    pub(crate) fn run(mut self) {
        let options = &self.shared.options;
        let tick = (options.wait / 10).clamp(Duration::from_millis(10), Duration::from_millis(250));
        let (wait, age) = (options.wait, options.max_trace_age);
        loop {
            let drain = self.draining.load(Ordering::Acquire);
            let due = {
                let mut holding = self.shared.holding.lock();
                if drain {
                    // The last round: whatever a receiver was still handling is refused
                    // (its client retries), never held after this and lost.
                    holding.close();
                }
                let due = holding.take_due(Instant::now(), wait, age, drain);
                // Taken from the holding, counted as pending until written or sent: the
                // receivers see the same memory whichever side has it.
                let taken: usize = due.iter().map(|h| h.bytes).sum();
                self.shared.pending.fetch_add(taken, Ordering::AcqRel);
                self.shared.held_now(holding.bytes());
                self.shared
                    .levels
                    .traces
                    .store(holding.traces(), Ordering::Relaxed);
                due
            };
            let busy = !due.is_empty();
            for group in groups(due) {
                self.audit(group);
            }
            self.update_levels();
            if drain {
                break;
            }
            // After a round with work, look again at once: more may be due.
            if !busy {
                std::thread::sleep(tick);
            }
        }
    }

    fn update_levels(&self) {
        self.shared
            .levels
            .bytes
            .store(self.shared.used(), Ordering::Relaxed);
    }

    /// Audits one group of traces and sends it on (assembled off this thread when
    /// it goes to `--forward`).
    fn audit(&mut self, group: Vec<Held>) {
        let spans: usize = group.iter().map(|h| h.spans.len()).sum();
        let bytes: usize = group.iter().map(|h| h.bytes).sum();
        let parts: Vec<Vec<u8>> = group.into_iter().flat_map(|h| h.parts).collect();
        let mut lists: HashMap<u32, List> = HashMap::new();
        let mut inputs = Inputs::new(usize::MAX);
        let views: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        match inputs.read_protobuf("serve", &views) {
            Ok(()) => {
                self.recent.add(inputs.responses());
                let holding = &self.shared.holding;
                let sent = |trace: [u8; 16], span: [u8; 8]| holding.lock().was_sent(trace, span);
                let foreign: Arc<dyn ForeignResponses> = self.recent.clone();
                let mut take = |span: u32, list: List| {
                    lists.insert(span, list);
                };
                if let Err(e) = self.auditor.run(
                    &inputs,
                    foreign,
                    Some(&sent),
                    &mut |_| {},
                    &|_| {},
                    Output::Lists(&mut take),
                ) {
                    // Nothing is written by this run: it cannot fail; were it to, the
                    // spans go on as they came.
                    super::log::warn(format_args!(
                        "the audit failed ({e}); the spans are sent on as they came"
                    ));
                    lists.clear();
                }
            }
            // The parts were encoded here, so they read; were one not to, the spans go
            // on as they came, never lost.
            Err(e) => super::log::warn(format_args!(
                "{spans} spans could not be audited ({e}); they are sent on as they came"
            )),
        }
        drop(views);
        drop(inputs);
        let mut batch = Batch {
            parts,
            lists,
            spans,
            bytes,
        };
        let forward = self.forward.clone();
        let Some(output) = &mut self.output else {
            if let Some(forward) = forward {
                self.send(&forward, batch);
            }
            return;
        };
        // To the file here; to `--forward`, assembled by the sender.
        let (mut request, unaudited) = match &forward {
            Some(_) => Batch {
                parts: batch.parts.clone(),
                lists: batch.lists.clone(),
                spans,
                bytes,
            }
            .assemble(),
            None => Batch {
                parts: std::mem::take(&mut batch.parts),
                lists: std::mem::take(&mut batch.lists),
                spans,
                bytes,
            }
            .assemble(),
        };
        report_unaudited(unaudited);
        let written = request_json(&mut request, bytes.saturating_mul(2))
            .map_err(std::io::Error::other)
            .and_then(|text| {
                output.write_all(text.as_bytes())?;
                output.write_all(b"\n")?;
                // Written through, so that a failure is this group's, and counted.
                output.flush()
            });
        let outcome = match &written {
            Ok(()) => Outcome::Forwarded,
            Err(e) => {
                super::log::warn(format_args!("{spans} spans not written to the output: {e}"));
                Outcome::Dropped
            }
        };
        match forward {
            Some(forward) => self.send(&forward, batch),
            None => {
                self.shared.telemetry.count(outcome, spans);
                self.shared.pending.fetch_sub(bytes, Ordering::AcqRel);
            }
        }
    }

    /// Hands `batch` to the sender, which gives back its pending memory once it is
    /// sent or dropped.
    fn send(&self, forward: &UnboundedSender<Batch>, batch: Batch) {
        if let Err(unsent) = forward.send(batch) {
            // The sender stopped (it never does before the pipeline): counted, said.
            let batch = unsent.0;
            self.shared
                .pending
                .fetch_sub(batch.bytes, Ordering::Relaxed);
            self.shared.telemetry.count(Outcome::Dropped, batch.spans);
            super::log::warn(format_args!(
                "{} spans dropped: the sender stopped",
                batch.spans
            ));
        }
    }
}

/// Says how many spans go on unaudited because their audited attributes have no
/// OTLP form (it cannot happen: the audit writes OTLP JSON).
pub(crate) fn report_unaudited(unaudited: usize) {
    if unaudited > 0 {
        super::log::warn(format_args!(
            "{unaudited} spans are sent on unaudited: their audited attributes have no OTLP form"
        ));
    }
}

/// Due traces in groups of at most [`BATCH_SPANS`] spans and [`BATCH_BYTES`] bytes
/// (a larger trace is a group of its own).
fn groups(due: Vec<Held>) -> Vec<Vec<Held>> {
    let mut groups: Vec<Vec<Held>> = Vec::new();
    let (mut spans, mut bytes) = (0usize, 0usize);
    for held in due {
        let fits = spans + held.spans.len() <= BATCH_SPANS && bytes + held.bytes <= BATCH_BYTES;
        match groups.last_mut() {
            Some(group) if fits => group.push(held),
            _ => {
                spans = 0;
                bytes = 0;
                groups.push(vec![held]);
            }
        }
        if let Some(group) = groups.last() {
            if let Some(last) = group.last() {
                spans += last.spans.len();
                bytes += last.bytes;
            }
        }
    }
    groups
}
