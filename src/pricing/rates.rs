//! Memoised prices: per-token rates learnt from `genai-prices`' own answers.
//!
//! `Calculator::calculate` costs microseconds even for a model it has priced before, and
//! the crate offers no public way to reuse a resolved price. But at a given time most
//! models charge a fixed rate per token of each kind, plus possibly a fixed fee per
//! request. So, for one (provider, model), one UTC day and one minute of that day, this
//! module asks `genai-prices` for the price of a few probe usages, derives the rates
//! from the answers, checks that those rates reproduce further probes (small and large,
//! every quantity alone and together), and from then on prices calls of that minute as
//! `genai-prices` does, from the rates, with the same floating-point operations in the
//! same order:
//!
//! ```text
//! input  = cache_read * r_cache_read / 1e6 + cache_write * r_cache_write / 1e6
//!          + (input - priced cache tokens) * r_input / 1e6
//! output = output * r_output / 1e6
//! total  = per_request_fee + (input + output)
//! ```
//!
//! A cache quantity the model has no price for is charged inside the input (found by
//! asking for a cache count above the input: `genai-prices` rejects that usage exactly
//! when the cache quantity has its own price).
//!
//! What falls back to a direct calculation:
//!
//! - a model whose probes do not fit one set of rates (tiered prices that change with
//!   the size of the call, anything else non-linear), or whose probes fail;
//! - a minute whose price differs from the rates derived for that day (prices that
//!   change with the time of day): each new minute of a day is checked with two probes
//!   at the call's own time before any call in it takes the fast path;
//! - a usage `genai-prices` could reject or treat specially: cache counts without an
//!   input count or above it, and counts above [`FAST_MAX_TOKENS`];
//! - a call time before 1970.
//!
//! Why minutes: in the `genai-prices` data a price starts on a calendar date (midnight
//! UTC) or applies between two times of day. Every bundled time of day is a whole minute
//! (and a data file's times of day must be whole minutes for the memo to be exact), so
//! the price is constant within each UTC minute: rates are derived per day and
//! confirmed per minute, and are never used outside the minute they were confirmed for.
//!
//! The probes are finite, so a price structure that no probe sees (a tier whose rate
//! differs only between probe sizes and returns to the same rate above, or a
//! time-of-day price equal to the day's at both probes of a minute) could escape them;
//! the crate's tests price every bundled model on a grid (tier boundaries included) at
//! dates around price changes and find the memoised prices equal to direct ones.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::usage::Usage;

/// The largest token count (of any kind) the fast path prices; the probes reach it.
pub(crate) const FAST_MAX_TOKENS: u64 = 1 << 40;

/// Token units per price unit: `genai-prices` prices tokens per million.
const PER: f64 = 1_000_000.0;

/// Probe size for deriving a rate: the answer is then the rate itself.
const RATE_PROBE: u64 = 1_000_000;

/// The four quantities `genai-prices` is given (reasoning is part of output and is not
/// passed on), each present; absent counts are zero, which `genai-prices` treats alike
/// for the usages the fast path takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Tokens {
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) cache_read: u64,
    pub(crate) cache_write: u64,
}

impl Tokens {
    /// The tokens of a usage the fast path may price, or `None` when the usage must go
    /// to `genai-prices` (which may reject it, or treat a missing input specially).
    #[inline]
    pub(crate) fn of(usage: &Usage) -> Option<Tokens> {
        let tokens = Tokens {
            input: usage.input.unwrap_or(0),
            output: usage.output.unwrap_or(0),
            cache_read: usage.cache_read.unwrap_or(0),
            cache_write: usage.cache_write.unwrap_or(0),
        };
        let cached = tokens.cache_read.checked_add(tokens.cache_write)?;
        let ok = tokens.input <= FAST_MAX_TOKENS
            && tokens.output <= FAST_MAX_TOKENS
            && cached <= tokens.input
            && (cached == 0 || usage.input.is_some());
        ok.then_some(tokens)
    }

    const fn new(input: u64, cache_read: u64, cache_write: u64, output: u64) -> Tokens {
        Tokens {
            input,
            output,
            cache_read,
            cache_write,
        }
    }
}

/// The three prices `genai-prices` reports for a call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Priced {
    pub(crate) input: f64,
    pub(crate) output: f64,
    pub(crate) total: f64,
}

/// How a cache quantity is charged.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CacheRate {
    /// At its own rate (USD per million), and not as input.
    Own(f64),
    /// As input tokens: the model has no price for it.
    AsInput,
}

/// One model's prices at one time, when linear.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rates {
    /// The price of a call without tokens (a per-request fee, or 0).
    fixed: f64,
    /// USD per million input tokens that are not priced cache tokens.
    input: f64,
    cache_read: CacheRate,
    cache_write: CacheRate,
    /// USD per million output tokens.
    output: f64,
}

impl Rates {
    /// The price of `tokens`, computed as `genai-prices` computes it.
    #[inline]
    pub(crate) fn price(&self, tokens: Tokens) -> Priced {
        // `rate * 0 / PER` is 0.0, which `genai-prices` adds too: skip the division.
        let part = |rate: f64, count: u64| {
            if count == 0 {
                0.0
            } else {
                rate * count as f64 / PER
            }
        };
        let mut uncached = tokens.input;
        let mut input = 0.0;
        // `genai-prices` sums in the order of its price keys: cache_read_mtok,
        // cache_write_mtok, input_mtok. Zero terms (0.0) leave a sum unchanged.
        if let CacheRate::Own(rate) = self.cache_read {
            input += part(rate, tokens.cache_read);
            uncached = uncached.saturating_sub(tokens.cache_read);
        }
        if let CacheRate::Own(rate) = self.cache_write {
            input += part(rate, tokens.cache_write);
            uncached = uncached.saturating_sub(tokens.cache_write);
        }
        input += part(self.input, uncached);
        let output = part(self.output, tokens.output);
        Priced {
            input,
            output,
            total: self.fixed + (input + output),
        }
    }
}

/// A probe's answer: the prices, or whether `genai-prices` rejected the usage as
/// invalid (`Err(true)`) or failed otherwise (`Err(false)`).
pub(crate) type ProbeResult = Result<Priced, bool>;

/// Small, all quantities, below every tier start in the bundled data.
const CHECK_SMALL: Tokens = Tokens::new(7_919, 1_009, 101, 3_571);
/// The largest the fast path takes, every quantity.
const CHECK_LARGE: Tokens =
    Tokens::new(FAST_MAX_TOKENS, (1 << 38) + 1, (1 << 36) + 3, (1 << 39) + 5);
/// All quantities, between the usual tier starts of 200 000 and 256 000 input tokens.
const CHECK_MIDDLE: Tokens = Tokens::new(250_007, 60_013, 7_001, 12_007);

/// Whether two prices agree: equal, or within 1e-12 of each other relative to the
/// larger (rates recovered from a probe can differ from the data's in the last bit).
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

fn agrees(rates: &Rates, tokens: Tokens, answer: ProbeResult) -> bool {
    match answer {
        Ok(actual) => {
            let predicted = rates.price(tokens);
            close(predicted.input, actual.input)
                && close(predicted.output, actual.output)
                && close(predicted.total, actual.total)
        }
        Err(_) => false,
    }
}

/// The data's rate from what `genai-prices` charged for a million tokens (`million`,
/// about the rate) and for one (`one`): the rate near `million` that reproduces both,
/// else `million`. A rate such as 0.13999999999999999 comes back from the million as
/// 0.14, one bit off, and a bit off would show in some prices.
fn refine(million: f64, one: f64) -> f64 {
    if !(million.is_finite() && million > 0.0) {
        return million;
    }
    let bits = million.to_bits();
    let reproduces =
        |rate: f64| rate * RATE_PROBE as f64 / PER == million && rate * 1.0 / PER == one;
    (0..=8u64)
        .flat_map(|k| [bits.wrapping_add(k), bits.wrapping_sub(k)])
        .map(f64::from_bits)
        .find(|&rate| rate.is_finite() && rate > 0.0 && reproduces(rate))
        .unwrap_or(million)
}

/// Derives the rates from probes priced by `probe` (at the call's time), or `None` when
/// they do not fit one set of linear rates. Takes 10 to 13 probes.
pub(crate) fn derive(mut probe: impl FnMut(Tokens) -> ProbeResult) -> Option<Rates> {
    let zero = probe(Tokens::default()).ok()?;
    if zero.input != 0.0 || zero.output != 0.0 {
        return None;
    }
    let input_probe = Tokens::new(RATE_PROBE, 0, 0, 0);
    let output_probe = Tokens::new(0, 0, 0, RATE_PROBE);
    let one_probe = Tokens::new(1, 0, 0, 1);
    let input = probe(input_probe).ok()?;
    let output = probe(output_probe).ok()?;
    let one = probe(one_probe).ok()?;
    let mut answers = vec![
        (input_probe, Ok(input)),
        (output_probe, Ok(output)),
        (one_probe, Ok(one)),
    ];
    // A cache count above the input is invalid only when the cache has a price of its
    // own (its tokens are then subtracted from the input).
    let mut cache_rate = |read: bool| {
        let tokens = |input: u64, count: u64| {
            if read {
                Tokens::new(input, count, 0, 0)
            } else {
                Tokens::new(input, 0, count, 0)
            }
        };
        match probe(tokens(0, 1)) {
            Err(true) => {
                let (million, one) = (tokens(RATE_PROBE, RATE_PROBE), tokens(1, 1));
                let (million_answer, one_answer) = (probe(million).ok()?, probe(one).ok()?);
                answers.push((million, Ok(million_answer)));
                answers.push((one, Ok(one_answer)));
                Some(CacheRate::Own(refine(
                    million_answer.input,
                    one_answer.input,
                )))
            }
            Ok(_) => Some(CacheRate::AsInput),
            Err(false) => None,
        }
    };
    let cache_read = cache_rate(true)?;
    let cache_write = cache_rate(false)?;
    let rates = Rates {
        fixed: zero.total,
        input: refine(input.input, one.input),
        cache_read,
        cache_write,
        output: refine(output.output, one.output),
    };
    let valid = |rate: f64| rate.is_finite() && rate >= 0.0;
    let cache_valid = |c: CacheRate| match c {
        CacheRate::Own(rate) => valid(rate),
        CacheRate::AsInput => true,
    };
    if !(valid(rates.fixed)
        && valid(rates.input)
        && valid(rates.output)
        && cache_valid(cache_read)
        && cache_valid(cache_write))
    {
        return None;
    }
    // The rate probes themselves (a check of the structure, e.g. output tokens that
    // would be charged as input), then sizes from one token to the largest.
    let fits = answers
        .into_iter()
        .all(|(tokens, answer)| agrees(&rates, tokens, answer))
        && [CHECK_SMALL, CHECK_MIDDLE, CHECK_LARGE]
            .into_iter()
            .all(|tokens| agrees(&rates, tokens, probe(tokens)));
    fits.then_some(rates)
}

/// Whether the rates derived earlier the same day still hold at the time `probe` prices
/// at (a new minute): two probes, small and large, all quantities.
pub(crate) fn confirm(rates: &Rates, mut probe: impl FnMut(Tokens) -> ProbeResult) -> bool {
    [CHECK_SMALL, CHECK_LARGE]
        .into_iter()
        .all(|tokens| agrees(rates, tokens, probe(tokens)))
}

/// A UTC day and a minute of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    day: u64,
    minute: u16,
}

impl Slot {
    /// The slot of a time, or `None` before 1970.
    #[inline]
    pub(crate) fn of(time: SystemTime) -> Option<Slot> {
        let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(Slot {
            day: secs / 86_400,
            minute: ((secs % 86_400) / 60) as u16,
        })
    }
}

const MINUTE_WORDS: usize = 1440_usize.div_ceil(64);

/// What is known of one day.
#[derive(Debug, Clone)]
struct Day {
    day: u64,
    /// `None`: the day's prices are not linear (or the probes failed): price directly.
    rates: Option<Rates>,
    /// Minutes whose prices were confirmed to be `rates`.
    confirmed: [u64; MINUTE_WORDS],
    /// Minutes whose prices differ from `rates`.
    differ: [u64; MINUTE_WORDS],
}

impl Day {
    #[inline]
    fn bit(minute: u16) -> (usize, u64) {
        (usize::from(minute / 64), 1u64 << (minute % 64))
    }
}

/// What to do with a call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Lookup {
    /// Its price, from confirmed rates (and those rates).
    Priced(f64, Rates),
    /// Price it directly.
    Direct,
    /// Nothing is known of its day: derive the rates.
    Derive,
    /// Its day's rates are known but its minute is not confirmed.
    Confirm(Rates),
}

/// The rates of one (provider, model), for the two most recent days it was priced on
/// (calls around midnight, or an old call among new ones, do not evict each other).
/// About 800 bytes; guarded by the pricing memo's lock.
#[derive(Debug, Default, Clone)]
pub(crate) struct RateMemo {
    days: [Option<Day>; 2],
}

impl RateMemo {
    /// What is known for a call at `slot`.
    #[inline]
    pub(crate) fn lookup(&self, tokens: Tokens, slot: Slot) -> Lookup {
        let days = &self.days;
        let Some(day) = days.iter().flatten().find(|d| d.day == slot.day) else {
            return Lookup::Derive;
        };
        let Some(rates) = &day.rates else {
            return Lookup::Direct;
        };
        let (word, bit) = Day::bit(slot.minute);
        if day.confirmed[word] & bit != 0 {
            Lookup::Priced(rates.price(tokens).total, *rates)
        } else if day.differ[word] & bit != 0 {
            Lookup::Direct
        } else {
            Lookup::Confirm(*rates)
        }
    }

    /// Records the rates derived at `slot` (its minute is then confirmed), replacing the
    /// older of the two days unless another thread recorded this day first.
    pub(crate) fn derived(&mut self, slot: Slot, rates: Option<Rates>) {
        if let Some(known) = self.days.iter().flatten().find(|d| d.day == slot.day) {
            // Another thread derived this day first, maybe at another minute.
            let same = known.rates == rates;
            self.confirmed(slot, same);
            return;
        }
        let days = &mut self.days;
        let (word, bit) = Day::bit(slot.minute);
        let mut confirmed = [0; MINUTE_WORDS];
        confirmed[word] = bit;
        let new = Day {
            day: slot.day,
            rates,
            confirmed,
            differ: [0; MINUTE_WORDS],
        };
        // Keep the more recent day; an empty place goes first.
        let replace = match (&days[0], &days[1]) {
            (None, _) => 0,
            (_, None) => 1,
            (Some(a), Some(b)) => usize::from(b.day < a.day),
        };
        days[replace] = Some(new);
    }

    /// Records whether the minute of `slot` has its day's rates.
    pub(crate) fn confirmed(&mut self, slot: Slot, same: bool) {
        if let Some(day) = self.days.iter_mut().flatten().find(|d| d.day == slot.day) {
            let (word, bit) = Day::bit(slot.minute);
            if same {
                day.confirmed[word] |= bit;
            } else {
                day.differ[word] |= bit;
            }
        }
    }

    /// Whether the day of `slot` has rates (`Some(true)`), prices directly
    /// (`Some(false)`), or is unknown (`None`).
    #[cfg(test)]
    pub(crate) fn is_linear(&self, slot: Slot) -> Option<bool> {
        self.days
            .iter()
            .flatten()
            .find(|d| d.day == slot.day)
            .map(|d| d.rates.is_some())
    }
}

/// How many (pricer, provider, model) pairs each thread keeps at hand.
const RECENT: usize = 8;

/// What a thread keeps at hand of a pair: its rates for one minute, or that the price
/// data does not know it.
#[derive(Debug, Clone)]
pub(crate) enum Known {
    /// The rates confirmed for `slot`.
    Rates {
        slot: Slot,
        rates: Rates,
        matched: std::sync::Arc<str>,
    },
    /// The price data has no such model.
    Unknown,
}

/// A pair as one thread last saw it in the shared memo, so that its next calls skip
/// the memo's lock and hash. Facts about a pricer's price data never change (the rates
/// confirmed for a minute stay its rates), so nothing here is ever stale.
#[derive(Debug)]
struct RecentPair {
    pricer: u64,
    provider: Box<str>,
    model: Box<str>,
    known: Known,
}

#[derive(Debug)]
struct Recent {
    pairs: [Option<RecentPair>; RECENT],
    next: usize,
}

thread_local! {
    static RECENT_PAIRS: std::cell::RefCell<Recent> = const {
        std::cell::RefCell::new(Recent {
            pairs: [const { None }; RECENT],
            next: 0,
        })
    };
}

/// What this thread keeps of (provider, model) of pricer `pricer`, for a call at `time`:
/// `Some(Known::Rates)` only when they are the rates of `time`'s minute.
#[inline]
pub(crate) fn recent(pricer: u64, provider: &str, model: &str, time: SystemTime) -> Option<Known> {
    RECENT_PAIRS
        .try_with(|recent| {
            let recent = recent.try_borrow().ok()?;
            let pair =
                recent.pairs.iter().flatten().find(|p| {
                    p.pricer == pricer && *p.model == *model && *p.provider == *provider
                })?;
            match &pair.known {
                Known::Rates { slot, .. } if Slot::of(time) != Some(*slot) => None,
                known => Some(known.clone()),
            }
        })
        .ok()
        .flatten()
}

/// Keeps what is known of (provider, model) at hand in this thread, in place of what
/// it kept of that pair, else of the pair kept longest.
pub(crate) fn remember(pricer: u64, provider: &str, model: &str, known: Known) {
    let _ = RECENT_PAIRS.try_with(|recent| {
        if let Ok(mut recent) = recent.try_borrow_mut() {
            let same = recent
                .pairs
                .iter_mut()
                .flatten()
                .find(|p| p.pricer == pricer && *p.model == *model && *p.provider == *provider);
            if let Some(pair) = same {
                pair.known = known;
                return;
            }
            let at = recent.next % RECENT;
            recent.pairs[at] = Some(RecentPair {
                pricer,
                provider: provider.into(),
                model: model.into(),
                known,
            });
            recent.next = (at + 1) % RECENT;
        }
    });
}
