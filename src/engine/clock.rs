//! The processor's clock: what a tracked span's age is measured against.
//!
//! A span's age is how long the processor has been tracking it, by the processor's
//! clock ([`SystemTime::now`] unless the builder was given another), not what the
//! span's own timestamps say: a recorded trace replayed days later must not look old.
//! Reading the clock at every tracked start is not free, though (a tenth of the audit's
//! time on an agent turn on a VM), and the SDK has just read the same clock for the
//! span's start time. So with the default clock a span's own start time stands for
//! "now" when it is within [`LIVE_SLACK`] of the clock's last reading, which live spans
//! are; a start time further off (replayed or back-dated spans, or the first span
//! after a quiet spell) has the clock read, and that reading becomes the last one.
//! A clock given to the builder is read every time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;

/// A time source for span ages.
pub(crate) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// How close to the default clock's last reading a span's start time must be to stand
/// for the time of its start.
pub(crate) const LIVE_SLACK: Duration = Duration::from_millis(100);

/// Nanoseconds since the Unix epoch (0 before it, `u64::MAX` past 2554).
pub(crate) fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The processor's clock.
pub(crate) struct AuditClock {
    /// A clock from the builder (`None`: [`SystemTime::now`]).
    custom: Option<Clock>,
    /// The default clock's last reading, in [`nanos`] (0: none yet).
    /// On a cache line of its own: read at every tracked start, by every thread.
    last_reading: CachePadded<AtomicU64>,
}

impl std::fmt::Debug for AuditClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditClock")
            .field("custom", &self.custom.is_some())
            .finish_non_exhaustive()
    }
}

impl AuditClock {
    pub(crate) fn new(custom: Option<Clock>) -> Self {
        AuditClock {
            custom,
            last_reading: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Now, by the processor's clock.
    pub(crate) fn now(&self) -> SystemTime {
        match &self.custom {
            Some(clock) => clock(),
            None => {
                let now = SystemTime::now();
                self.last_reading.store(nanos(now), Ordering::Relaxed);
                now
            }
        }
    }

    /// Now, for a span starting at `span_start` (its own start time), with its
    /// [`nanos`]: that start time when the default clock is in use and it is within
    /// [`LIVE_SLACK`] of the clock's last reading (or of a new one), else the clock
    /// read now.
    pub(crate) fn at_start(&self, span_start: SystemTime) -> (SystemTime, u64) {
        if self.custom.is_some() {
            let now = self.now();
            return (now, nanos(now));
        }
        let slack = u64::try_from(LIVE_SLACK.as_nanos()).unwrap_or(u64::MAX);
        let start = nanos(span_start);
        if start.abs_diff(self.last_reading.load(Ordering::Relaxed)) <= slack {
            return (span_start, start);
        }
        let now = self.now();
        let now_nanos = nanos(now);
        if start.abs_diff(now_nanos) <= slack {
            (span_start, start)
        } else {
            (now, now_nanos)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_start_time_stands_for_now_and_a_replayed_one_does_not() {
        let clock = AuditClock::new(None);
        let live = SystemTime::now();
        assert_eq!(clock.at_start(live), (live, nanos(live)));
        // Within the slack of the last reading: no new reading needed.
        let soon = live + Duration::from_millis(10);
        assert_eq!(clock.at_start(soon), (soon, nanos(soon)));
        // Days old (a replayed recording): the clock is read.
        let replayed = live - Duration::from_secs(3 * 86_400);
        let (now, now_nanos) = clock.at_start(replayed);
        assert!(now >= live && now != replayed);
        assert_eq!(now_nanos, nanos(now));
        // Far in the future (a skewed clock elsewhere): the clock is read.
        let ahead = live + Duration::from_secs(3600);
        assert!(clock.at_start(ahead).0 < ahead);
    }

    #[test]
    fn a_clock_from_the_builder_is_always_read() {
        let fixed = UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = AuditClock::new(Some(Arc::new(move || fixed)));
        assert_eq!(clock.at_start(SystemTime::now()).0, fixed);
        assert_eq!(clock.at_start(fixed + Duration::from_millis(1)).0, fixed);
        assert_eq!(clock.now(), fixed);
    }

    #[test]
    fn nanos_before_the_epoch_is_zero() {
        assert_eq!(nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(nanos(UNIX_EPOCH + Duration::from_nanos(7)), 7);
    }
}
