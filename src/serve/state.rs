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

pub(crate) use super::options::REQUEST_EXPANSION;

/// Memory set aside for a request being read, decompressed and decoded; given back
/// when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    counter: Arc<AtomicUsize>,
    bytes: usize,
}

impl Reservation {
    /// The bytes it sets aside.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The state every part of the server shares.
pub(crate) struct Shared {
    pub(crate) options: ServeOptions,
    pub(crate) holding: Mutex<Holding>,
    pub(crate) levels: Arc<Levels>,
    /// Memory of audited spans not yet sent.
    pub(crate) pending: AtomicUsize,
    /// Memory set aside for requests being received.
    in_flight: Arc<AtomicUsize>,
    /// The memory held spans take (the holding's own count, readable without its lock).
    held: AtomicUsize,
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
            in_flight: Arc::new(AtomicUsize::new(0)),
            held: AtomicUsize::new(0),
            telemetry,
            accepting: AtomicBool::new(true),
        }
    }

    /// The memory counted now: held, audited but not sent, and set aside for requests
    /// being received.
    pub(crate) fn used(&self) -> usize {
        self.held
            .load(Ordering::Acquire)
            .saturating_add(self.pending.load(Ordering::Acquire))
            .saturating_add(self.in_flight.load(Ordering::Acquire))
    }

    /// Refuses early when the server is stopping or has no room at all.
    pub(crate) fn check_room(&self) -> Result<(), Refused> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(Refused::Stopping);
        }
        if self.used() >= self.options.max_memory {
            return Err(Refused::Memory);
        }
        Ok(())
    }

    /// Sets aside `bytes` for a request about to be read, or refuses it (stopping, or
    /// no room within `--max-memory`).
    pub(crate) fn reserve(&self, bytes: usize) -> Result<Reservation, Refused> {
        let mut reservation = Reservation {
            counter: Arc::clone(&self.in_flight),
            bytes: 0,
        };
        self.grow(&mut reservation, bytes)?;
        Ok(reservation)
    }

    /// Sets aside `bytes` more for `reservation`, or refuses.
    pub(crate) fn grow(&self, reservation: &mut Reservation, bytes: usize) -> Result<(), Refused> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(Refused::Stopping);
        }
        let others = self
            .held
            .load(Ordering::Acquire)
            .saturating_add(self.pending.load(Ordering::Acquire));
        let mut current = self.in_flight.load(Ordering::Acquire);
        loop {
            let next = current.saturating_add(bytes);
            if others.saturating_add(next) > self.options.max_memory {
                return Err(Refused::Memory);
            }
            match self.in_flight.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    reservation.bytes += bytes;
                    return Ok(());
                }
                Err(now) => current = now,
            }
        }
    }

    /// Holds the spans of `request` (`reservation`: the memory set aside for it, given
    /// back once its parts are counted as held), or refuses it whole.
    pub(crate) fn receive(
        &self,
        request: ExportTraceServiceRequest,
        reservation: Reservation,
    ) -> Result<Taken, Refused> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(Refused::Stopping);
        }
        let split = split(request);
        let bytes: usize = split.parts.iter().map(|p| p.encoded.len()).sum();
        let spans: usize = split.parts.iter().map(|p| p.spans.len()).sum();
        {
            let mut holding = self.holding.lock();
            // Closed by the last round of the shutdown: nothing more is audited.
            if holding.is_closed() {
                return Err(Refused::Stopping);
            }
            let others = self.used().saturating_sub(reservation.bytes());
            if others.saturating_add(bytes) > self.options.max_memory {
                return Err(Refused::Memory);
            }
            holding.add(split.parts, Instant::now());
            self.held.store(holding.bytes(), Ordering::Release);
            self.levels
                .traces
                .store(holding.traces(), Ordering::Relaxed);
        }
        drop(reservation);
        self.levels.bytes.store(self.used(), Ordering::Relaxed);
        self.telemetry.count(Outcome::Received, spans);
        self.telemetry.count(Outcome::Rejected, split.rejected);
        Ok(Taken {
            rejected: split.rejected,
        })
    }

    /// Tells the others the holding's size after the audit took from it.
    pub(crate) fn held_now(&self, held: usize) {
        self.held.store(held, Ordering::Release);
    }
}
