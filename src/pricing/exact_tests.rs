//! The memoised price equals `genai-prices`' own, for every bundled model.
//!
//! Every bundled (provider, model) is priced through [`GenAiPrices`] (memo warm after
//! the first call) and directly with `Calculator::calculate` (the request the memo's
//! first lookup makes), on a grid of usages at several times, and the two must agree:
//! both `None`, or within 1e-9 relative. Nothing is timed. `GENAI_AUDIT_LONG_TESTS=1`
//! widens the grid and the times; `SHOW_BITS=1` prints the first memoised prices that
//! are not bit-for-bit the direct ones (there are none with the bundled data).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use genai_prices::{Calculator, PriceRequest};

use super::rates::Slot;
use super::*;

fn long() -> bool {
    std::env::var_os("GENAI_AUDIT_LONG_TESTS").is_some_and(|v| v == "1")
}

/// Seconds since the epoch of a UTC date and time.
fn at(date: &str, hms: (u64, u64, u64)) -> SystemTime {
    let days = match date {
        "2025-10-09" => 20_370,
        "2026-02-02" => 20_486,
        "2026-03-12" => 20_524,
        "2026-03-13" => 20_525,
        "2026-08-16" => 20_681,
        "2026-08-17" => 20_682,
        "2026-09-10" => 20_706,
        "2026-10-12" => 20_738,
        _ => unreachable!("add the date"),
    };
    UNIX_EPOCH + Duration::from_secs(days * 86_400 + hms.0 * 3600 + hms.1 * 60 + hms.2)
}

#[test]
fn dates_are_right() {
    // 2026-03-13T00:00:00Z and 2025-10-09T00:00:00Z.
    assert_eq!(
        at("2026-03-13", (0, 0, 0)),
        UNIX_EPOCH + Duration::from_secs(1_773_360_000)
    );
    assert_eq!(
        at("2025-10-09", (0, 0, 0)),
        UNIX_EPOCH + Duration::from_secs(1_759_968_000)
    );
}

fn times() -> Vec<SystemTime> {
    let mut t = vec![
        at("2025-10-09", (8, 53, 20)),
        // claude-sonnet-4-6 drops its long-context tier on 2026-03-13.
        at("2026-03-12", (23, 59, 59)),
        at("2026-03-13", (0, 0, 0)),
        // DeepSeek's peak windows (00:30-16:30, 01:00-04:00, 06:00-10:00 UTC), on one
        // day: the later times are new minutes of a known day.
        at("2026-10-12", (3, 0, 0)),
        at("2026-10-12", (16, 30, 0)),
    ];
    if long() {
        t.extend([
            at("2026-02-02", (12, 0, 0)),
            at("2026-03-13", (0, 0, 1)),
            at("2026-08-16", (23, 59, 59)),
            at("2026-08-17", (0, 0, 0)),
            at("2026-09-10", (5, 59, 59)),
            at("2026-09-10", (6, 0, 0)),
            at("2026-10-12", (0, 29, 59)),
            at("2026-10-12", (0, 30, 0)),
            at("2026-10-12", (10, 0, 0)),
            at("2026-10-12", (16, 29, 59)),
            at("2026-10-12", (23, 59, 59)),
            UNIX_EPOCH + Duration::from_nanos(1_760_000_000_500_000_000),
        ]);
    }
    t
}

fn u(
    input: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    output: Option<u64>,
    reasoning: Option<u64>,
) -> Usage {
    Usage {
        input,
        output,
        cache_read,
        cache_write,
        reasoning,
        ..Usage::default()
    }
}

/// Tier starts found in the bundled data (input tokens; a tier applies above its start).
const TIER_STARTS: [u64; 9] = [
    32_000, 100_000, 128_000, 199_999, 200_000, 256_000, 272_000, 512_000, 524_288,
];

fn usages() -> Vec<Usage> {
    let m = 10_000_000;
    let mut g = vec![
        Usage::default(),
        u(Some(0), Some(0), Some(0), Some(0), Some(0)),
        u(Some(1), None, None, None, None),
        u(None, None, None, Some(1), None),
        u(Some(1), Some(1), None, None, None),
        u(Some(1), None, Some(1), None, None),
        u(None, None, None, Some(1), Some(1)),
        // Cache counts without input, or above it: genai-prices rejects these.
        u(None, Some(5), None, None, None),
        u(Some(10), Some(20), None, Some(3), None),
        u(Some(m), None, None, None, None),
        u(None, None, None, Some(m), None),
        u(Some(m), Some(m), None, None, None),
        u(Some(m), None, Some(m), None, None),
        u(None, None, None, Some(m), Some(m)),
        u(Some(m), Some(m / 2), Some(m / 4), Some(m), Some(m / 3)),
    ];
    for s in TIER_STARTS {
        for input in [s, s + 1] {
            g.push(u(
                Some(input),
                Some(input / 2),
                Some(1_000),
                Some(1_000),
                Some(10),
            ));
        }
    }
    if long() {
        let big = 1 << 40;
        g.extend([
            u(Some(big), None, None, Some(big), None),
            u(Some(big + 1), None, None, Some(1), None),
            u(Some(3), Some(1), Some(1), Some(7), Some(2)),
            u(Some(1_056), Some(512), None, Some(170), None),
            u(None, None, Some(4), None, None),
            u(None, None, None, None, Some(9)),
        ]);
        for s in TIER_STARTS {
            for input in [s - 1, s, s + 1] {
                g.push(u(Some(input), None, None, None, None));
                g.push(u(Some(input), None, None, Some(input), None));
                g.push(u(Some(input), None, Some(input / 3), Some(7), None));
            }
        }
    }
    g
}

/// The bundled (provider, model) ids.
fn models() -> Vec<(String, String)> {
    Calculator::bundled()
        .providers()
        .flat_map(|p| {
            p.models()
                .map(move |m| (p.id().to_owned(), m.id().to_owned()))
        })
        .collect()
}

/// What pricing one shard found.
#[derive(Debug, Default)]
struct Tally {
    /// (model, time) pairs, by the memo's verdict on the time's day.
    linear: usize,
    direct: usize,
    unpriced: usize,
    /// Models priced from rates at every time / at none / at some.
    models_fast: usize,
    models_fallback: usize,
    models_mixed: usize,
    checks: usize,
    /// Priced checks where the memoised price is not bit-for-bit the direct one.
    not_bitwise: usize,
}

fn run_shard(shard: usize, shards: usize) -> Tally {
    let models = models();
    let times = times();
    let usages = usages();
    let prices = GenAiPrices::bundled();
    let calculator = Calculator::bundled();
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for (provider, model) in models.iter().skip(shard).step_by(shards) {
        let request_provider = prices.resolve_provider(provider);
        let (mut fast, mut slow) = (0, 0);
        for &time in &times {
            for usage in &usages {
                let query = PriceQuery {
                    provider: Some(provider),
                    model,
                    usage,
                    time,
                };
                let memoised = prices.price(&query).map(|p| p.cost_usd);
                let usage_map = price_usage(usage);
                let mut request = PriceRequest::new(model, &usage_map).with_timestamp(time);
                if let Some(p) = request_provider.as_deref() {
                    request = request.with_provider_id(p);
                }
                let direct = calculator
                    .calculate(&request)
                    .ok()
                    .and_then(|c| finite_cost(c.total_price));
                tally.checks += 1;
                let agree = match (memoised, direct) {
                    (None, None) => true,
                    (Some(a), Some(b)) => {
                        if a.to_bits() != b.to_bits() {
                            if tally.not_bitwise < 3 && std::env::var_os("SHOW_BITS").is_some() {
                                eprintln!("{provider}/{model} {time:?} {usage:?}: {a:e} vs {b:e}");
                            }
                            tally.not_bitwise += 1;
                        }
                        a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
                    }
                    _ => false,
                };
                if !agree && failures.len() < 20 {
                    failures.push(format!(
                        "{provider}/{model} at {time:?} {usage:?}: memoised {memoised:?}, direct {direct:?}"
                    ));
                }
            }
            match memo_state(&prices, provider, model, time) {
                Some(true) => {
                    tally.linear += 1;
                    fast += 1;
                }
                Some(false) => {
                    tally.direct += 1;
                    slow += 1;
                }
                None => tally.unpriced += 1,
            }
        }
        match (fast, slow) {
            (0, 0) => {}
            (_, 0) => tally.models_fast += 1,
            (0, _) => tally.models_fallback += 1,
            _ => tally.models_mixed += 1,
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    tally
}

/// Whether the memo prices (provider, model) from rates on the day of `time`.
fn memo_state(prices: &GenAiPrices, provider: &str, model: &str, time: SystemTime) -> Option<bool> {
    let memo = prices.memo.read();
    let entry = memo
        .buckets
        .get(&hash_str_pair(provider, model))?
        .iter()
        .find(|e| &*e.provider == provider && &*e.model == model)?;
    match &entry.resolution {
        Resolution::Found(_, rates) => rates.is_linear(Slot::of(time)?),
        Resolution::NotFound => None,
    }
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.linear += o.linear;
        self.direct += o.direct;
        self.unpriced += o.unpriced;
        self.models_fast += o.models_fast;
        self.models_fallback += o.models_fallback;
        self.models_mixed += o.models_mixed;
        self.checks += o.checks;
        self.not_bitwise += o.not_bitwise;
    }
}

/// Every bundled model, on two threads (half the models each, each its own memo).
#[test]
fn memoised_prices_equal_direct_prices() {
    const SHARDS: usize = 2;
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..SHARDS)
            .map(|n| scope.spawn(move || run_shard(n, SHARDS)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut total = Tally::default();
    for t in &tallies {
        total.add(t);
    }
    let models = models().len();
    eprintln!(
        "{models} bundled models, {} times, {} usages, {} checks: priced from rates at every \
         time {}, priced directly at every time {} (not linear), some of each {}, never found \
         by id {}; (model, time) pairs: from rates {}, direct {}, unpriced {}; memoised \
         prices not bit-for-bit equal to direct ones: {}",
        times().len(),
        usages().len(),
        total.checks,
        total.models_fast,
        total.models_fallback,
        total.models_mixed,
        models - total.models_fast - total.models_fallback - total.models_mixed,
        total.linear,
        total.direct,
        total.unpriced,
        total.not_bitwise,
    );
    assert!(total.models_fast > 10 * total.models_fallback, "{total:?}");
}

/// The rates are used where they apply, and not elsewhere: a linear model is priced
/// from rates; a tiered one, and a minute whose price differs from the day's, are not.
#[test]
fn fast_path_and_fallbacks() {
    let prices = GenAiPrices::bundled();
    let usage = u(Some(1_056), Some(512), None, Some(170), None);
    let price = |provider: &str, model: &str, time: SystemTime| {
        let q = PriceQuery {
            provider: Some(provider),
            model,
            usage: &usage,
            time,
        };
        prices.price(&q).map(|p| p.cost_usd)
    };
    let day = at("2026-10-12", (3, 0, 0));
    for _ in 0..3 {
        assert!(price("openai", "gpt-4o", day).is_some());
        assert!(price("anthropic", "claude-sonnet-4-5", day).is_some());
    }
    assert_eq!(memo_state(&prices, "openai", "gpt-4o", day), Some(true));
    assert_eq!(
        memo_state(&prices, "anthropic", "claude-sonnet-4-5", day),
        Some(false),
        "tiered"
    );

    // deepseek-chat: peak price 00:30-16:30 UTC, off-peak otherwise.
    // The first call resolves the model, the second derives the day's rates.
    let peak = price("deepseek", "deepseek-chat", day);
    assert_eq!(price("deepseek", "deepseek-chat", day), peak);
    let off = at("2026-10-12", (17, 0, 0));
    let off_peak = price("deepseek", "deepseek-chat", off);
    assert!(off_peak < peak, "{off_peak:?} {peak:?}");
    assert_eq!(price("deepseek", "deepseek-chat", off), off_peak);
    let slot = Slot::of(off).expect("after 1970");
    let found = match prices
        .memo
        .read()
        .buckets
        .get(&hash_str_pair("deepseek", "deepseek-chat"))
        .and_then(|b| b.first())
        .map(|e| e.resolution.clone())
    {
        Some(Resolution::Found(_, rates)) => rates,
        other => panic!("{other:?}"),
    };
    let tokens = Tokens::of(&usage).expect("valid");
    assert_eq!(
        found.lookup(tokens, slot),
        Lookup::Direct,
        "the minute differs from the day's rates"
    );
}
