//! What the receivers, the audit and the sender share: the holding, the memory
//! bound, and the counters.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use parking_lot::Mutex;

use super::hold::{split, Holding};
use super::options::ServeOptions;
use super::telemetry::{Levels, Outcome, Telemetry};

/// Why a request was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Taking it would pass `--max-memory`: try again later.
    Memory,
    /// The server is stopping.
    Stopping,
}

/// A request taken: how many of its spans were refused (no valid id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) rejected: usize,
}

/// The state every part of the server shares.
pub(crate) struct Shared {
    pub(crate) options: ServeOptions,
    pub(crate) holding: Mutex<Holding>,
    pub(crate) levels: Arc<Levels>,
    /// Memory of audited spans not yet sent.
    pub(crate) pending: AtomicUsize,
    pub(crate) telemetry: Telemetry,
    pub(crate) accepting: AtomicBool,
}

impl Shared {
    pub(crate) fn new(options: ServeOptions, levels: Arc<Levels>, telemetry: Telemetry) -> Shared {
        Shared {
            options,
            holding: Mutex::new(Holding::default()),
            levels,
            pending: AtomicUsize::new(0),
            telemetry,
            accepting: AtomicBool::new(true),
        }
    }

    /// Whether `bytes` more would stay within `--max-memory`.
    fn admits(&self, held: usize, bytes: usize) -> bool {
        held.saturating_add(self.pending.load(Ordering::Relaxed))
            .saturating_add(bytes)
            <= self.options.max_memory
    }

    /// Refuses early when a request of `size` bytes cannot be held.
    pub(crate) fn check_room(&self, size: usize) -> Result<(), Refused> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(Refused::Stopping);
        }
        let held = self.holding.lock().bytes();
        if self.admits(held, size) {
            Ok(())
        } else {
            Err(Refused::Memory)
        }
    }

    /// Holds the spans of `request` (`size`: its encoded size), or refuses it whole.
    pub(crate) fn receive(
        &self,
        request: ExportTraceServiceRequest,
        size: usize,
    ) -> Result<Taken, Refused> {
        self.check_room(size)?;
        let split = split(request);
        let bytes: usize = split.parts.iter().map(|p| p.encoded.len()).sum();
        let spans: usize = split.parts.iter().map(|p| p.spans.len()).sum();
        {
            let mut holding = self.holding.lock();
            if !self.admits(holding.bytes(), bytes) {
                return Err(Refused::Memory);
            }
            holding.add(split.parts, Instant::now());
            self.levels
                .traces
                .store(holding.traces(), Ordering::Relaxed);
            self.levels.bytes.store(
                holding.bytes() + self.pending.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
        self.telemetry.count(Outcome::Received, spans);
        self.telemetry.count(Outcome::Rejected, split.rejected);
        Ok(Taken {
            rejected: split.rejected,
        })
    }
}
