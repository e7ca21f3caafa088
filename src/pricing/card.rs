//! The rates that apply to one model at one time: what `genai-audit prices` prints.
//!
//! `genai-prices` does not publish a model's rates, only the price of a usage, so the
//! rates are read back from prices, through the very lookup the audit uses: the
//! model is first priced through [`Pricer::price`] (the same provider mapping and memo
//! as every audited call), then the request that price came from is asked for the
//! price of probe usages at the same time:
//!
//! - a rate is the price of `n` tokens of one kind alone, times 10⁶ / `n`, with `n` a
//!   million when the tier allows (the rate is then exactly the data's);
//! - a cache quantity has a rate of its own when `genai-prices` rejects more cached
//!   tokens than input tokens (the test the audit's memo uses); otherwise its tokens
//!   are charged as input;
//! - tiers (rates that change with the input size of a call) are found by comparing the
//!   rates at every power of two of input tokens up to 2⁴⁰, and placing each change
//!   exactly by bisection. A tier that starts and ends between two powers of two with
//!   the same rates on both sides would not be seen; no bundled model has one.
//!
//! Reasoning tokens are billed as output tokens: the audit passes them to
//! `genai-prices` inside the output count, as the OpenTelemetry conventions count them.

use std::time::SystemTime;

use genai_prices::{ErrorKind, UsageKey};

use super::{GenAiPrices, PriceQuery, Pricer};
use crate::usage::Usage;

/// The rates of one input-size tier, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RateTier {
    /// The tier applies to calls with more input tokens than this (0 for the first).
    pub above_input_tokens: u64,
    /// Input tokens that are not priced cache tokens.
    pub input_per_million: f64,
    /// Output tokens (reasoning included).
    pub output_per_million: f64,
    /// Cache-read tokens; `None`: charged as input tokens.
    pub cache_read_per_million: Option<f64>,
    /// Cache-write tokens; `None`: charged as input tokens.
    pub cache_write_per_million: Option<f64>,
}

/// The rates that apply to a model at one time, as the audit would price its calls.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use genai_audit::pricing::{GenAiPrices, PriceQuery, Pricer};
/// use genai_audit::usage::Usage;
///
/// let prices = GenAiPrices::bundled();
/// let when = UNIX_EPOCH + Duration::from_secs(1_760_000_000);
/// let card = prices.rate_card(Some("openai"), "gpt-4o", when).expect("a known model");
/// assert_eq!(card.matched, "openai/gpt-4o");
/// // The first tier's input rate is the price of a million input tokens.
/// let million = Usage::default().with_input(1_000_000);
/// let price = prices.price(&PriceQuery::new("gpt-4o", &million, when).with_provider("openai"));
/// assert_eq!(Some(card.tiers[0].input_per_million), price.map(|p| p.cost_usd));
/// assert!(prices.rate_card(None, "no-such-model", when).is_none());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RateCard {
    /// `provider/model` of the price that matched, as the audit writes it to
    /// `genai_audit.cost.model`.
    pub matched: String,
    /// A fee per call, whatever its tokens (USD; 0 for most models).
    pub per_call_usd: f64,
    /// The tiers, by input size; one for a model without tiers.
    pub tiers: Vec<RateTier>,
}

/// The most input tokens probed (the audit's fast path prices up to the same).
const MAX_PROBE: u64 = 1 << 40;
const MILLION: f64 = 1_000_000.0;

/// `a` and `b` equal, or within 1e-12 of each other relative to the larger.
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

fn close_option(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn same_rates(a: &RateTier, b: &RateTier) -> bool {
    close(a.input_per_million, b.input_per_million)
        && close(a.output_per_million, b.output_per_million)
        && close_option(a.cache_read_per_million, b.cache_read_per_million)
        && close_option(a.cache_write_per_million, b.cache_write_per_million)
}

/// A rate per million from the price of `count` tokens (exact for a million tokens).
fn per_million(price: f64, count: u64) -> f64 {
    if count == 1_000_000 {
        return price;
    }
    price * MILLION / count as f64
}

/// A rate read back from another count than a million, rounded to 12 significant
/// digits (the data's rates have far fewer; the division leaves the last bits off).
fn rounded(rate: f64) -> f64 {
    format!("{rate:.11e}").parse().unwrap_or(rate)
}

/// Probes one resolved (provider, model) at one time.
struct Prober<'a> {
    prices: &'a GenAiPrices,
    model: &'a str,
    provider_id: Option<&'a str>,
    time: SystemTime,
    /// Whether the cache quantities have rates of their own.
    own_cache_read: bool,
    own_cache_write: bool,
}

impl Prober<'_> {
    /// (input price, output price, total) of a usage, or `None` when it fails.
    fn price(
        &self,
        input: u64,
        output: u64,
        cache_read: u64,
        cache_write: u64,
    ) -> Option<(f64, f64, f64)> {
        let mut usage = genai_prices::Usage::new();
        usage.insert(UsageKey::INPUT_TOKENS, input as f64);
        usage.insert(UsageKey::OUTPUT_TOKENS, output as f64);
        usage.insert(UsageKey::CACHE_READ_TOKENS, cache_read as f64);
        usage.insert(UsageKey::CACHE_WRITE_TOKENS, cache_write as f64);
        let calc = self
            .prices
            .calculate(self.model, self.provider_id, &usage, self.time)
            .ok()?;
        Some((calc.input_price, calc.output_price, calc.total_price))
    }

    /// Whether a cache quantity has a rate of its own: `genai-prices` then rejects
    /// more of it than input tokens.
    fn own_cache(&self, read: bool) -> bool {
        let mut usage = genai_prices::Usage::new();
        usage.insert(UsageKey::INPUT_TOKENS, 0.0);
        let key = if read {
            UsageKey::CACHE_READ_TOKENS
        } else {
            UsageKey::CACHE_WRITE_TOKENS
        };
        usage.insert(key, 1.0);
        matches!(
            self.prices.calculate(self.model, self.provider_id, &usage, self.time),
            Err(e) if e.kind() == ErrorKind::InvalidUsage
        )
    }

    /// The rates for calls of `input` input tokens (at least 1).
    fn rates_at(&self, input: u64) -> Option<RateTier> {
        let (input_price, _, _) = self.price(input, 0, 0, 0)?;
        let (_, output_price, _) = self.price(input, 1_000_000, 0, 0)?;
        let cache = |own: bool, read: bool| -> Option<Option<f64>> {
            if !own {
                return Some(None);
            }
            let (price, _, _) = if read {
                self.price(input, 0, input, 0)?
            } else {
                self.price(input, 0, 0, input)?
            };
            Some(Some(per_million(price, input)))
        };
        Some(RateTier {
            above_input_tokens: 0,
            input_per_million: per_million(input_price, input),
            output_per_million: output_price,
            cache_read_per_million: cache(self.own_cache_read, true)?,
            cache_write_per_million: cache(self.own_cache_write, false)?,
        })
    }

    /// The smallest input size in `(low, high]` whose rates are those of `high`
    /// (`low`'s differ).
    fn tier_start(&self, mut low: u64, mut high: u64, rates: &RateTier) -> u64 {
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            match self.rates_at(middle) {
                Some(r) if same_rates(&r, rates) => high = middle,
                _ => low = middle,
            }
        }
        high
    }

    fn card(&self, matched: String) -> Option<RateCard> {
        let (_, _, fee) = self.price(0, 0, 0, 0)?;
        // Rates at every power of two; a change between two marks a tier start.
        let mut starts: Vec<u64> = vec![1];
        let mut previous = self.rates_at(1)?;
        let mut size = 1u64;
        while size < MAX_PROBE {
            let next = size * 2;
            let rates = self.rates_at(next)?;
            if !same_rates(&rates, &previous) {
                starts.push(self.tier_start(size, next, &rates));
                previous = rates;
            }
            size = next;
        }
        let mut tiers = Vec::with_capacity(starts.len());
        for (i, &start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(MAX_PROBE, |&next| next - 1);
            // A million tokens gives the exact rate, when the tier holds it.
            let probe = 1_000_000u64.clamp(start, end);
            let mut tier = self.rates_at(probe)?;
            tier.above_input_tokens = start - 1;
            if probe != 1_000_000 {
                tier.input_per_million = rounded(tier.input_per_million);
                tier.cache_read_per_million = tier.cache_read_per_million.map(rounded);
                tier.cache_write_per_million = tier.cache_write_per_million.map(rounded);
            }
            tiers.push(tier);
        }
        Some(RateCard {
            matched,
            per_call_usd: fee,
            tiers,
        })
    }
}

impl GenAiPrices {
    /// The rates the audit would price a call of `model` (from `provider`, as spans
    /// name it: `gen_ai.provider.name` values such as `aws.bedrock` are mapped as for
    /// the audit) at `time`, or `None` when it has no price.
    pub fn rate_card(
        &self,
        provider: Option<&str>,
        model: &str,
        time: SystemTime,
    ) -> Option<RateCard> {
        let model = model.trim();
        let usage = Usage::default().with_input(1).with_output(1);
        let mut query = PriceQuery::new(model, &usage, time);
        if let Some(provider) = provider {
            query = query.with_provider(provider);
        }
        let price = self.price(&query)?;
        if let Some(extra) = self.extra_price(provider, model) {
            let p = extra.price;
            return Some(RateCard {
                matched: price.matched.to_string(),
                per_call_usd: 0.0,
                tiers: vec![RateTier {
                    above_input_tokens: 0,
                    input_per_million: p.input_per_million,
                    output_per_million: p.output_per_million,
                    cache_read_per_million: p.cache_read_per_million,
                    cache_write_per_million: p.cache_write_per_million,
                }],
            });
        }
        // The request the audit's pricing makes (the same lookup, so the same provider
        // and model, inferred from the model id's shape when the provider is absent or
        // unknown).
        let mut probe_usage = genai_prices::Usage::new();
        probe_usage.insert(UsageKey::INPUT_TOKENS, 1.0);
        probe_usage.insert(UsageKey::OUTPUT_TOKENS, 1.0);
        let (provider_id, request_model, _) =
            self.lookup(provider, model, &probe_usage, time).ok()?;
        let mut prober = Prober {
            prices: self,
            model: request_model,
            provider_id: provider_id.as_deref(),
            time,
            own_cache_read: false,
            own_cache_write: false,
        };
        prober.own_cache_read = prober.own_cache(true);
        prober.own_cache_write = prober.own_cache(false);
        prober.card(price.matched.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Every rate of the card reproduces the pricer's own prices, tier by tier.
    #[test]
    fn tiered_model_rates_reproduce_the_prices() {
        let prices = GenAiPrices::bundled();
        // claude-haiku-5-5: its rates change above 100 000 input tokens.
        let when = at(1_790_000_000);
        let card = prices
            .rate_card(Some("anthropic"), "claude-haiku-5-5", when)
            .expect("a tiered model in the bundled data");
        assert_eq!(card.tiers.len(), 2, "{card:?}");
        assert_eq!(card.tiers[1].above_input_tokens, 100_000);
        for tier in &card.tiers {
            let input = tier.above_input_tokens + 1_000;
            let usage = Usage::default().with_input(input).with_output(10);
            let price = prices
                .price(
                    &PriceQuery::new("claude-haiku-5-5", &usage, when).with_provider("anthropic"),
                )
                .map(|p| p.cost_usd);
            let expected = (input as f64 * tier.input_per_million + 10.0 * tier.output_per_million)
                / MILLION
                + card.per_call_usd;
            let price = price.unwrap_or(f64::NAN);
            assert!(
                (price - expected).abs() <= 1e-12 * expected,
                "{price} vs {expected}"
            );
        }
    }

    #[test]
    fn custom_prices_are_their_own_card() {
        let prices = GenAiPrices::bundled().with_model_price(
            None,
            "acme",
            super::super::ModelPrice::per_million(2.0, 8.0).with_cache_read(0.5),
        );
        let card = prices
            .rate_card(None, "acme", at(1_760_000_000))
            .expect("custom");
        assert_eq!(card.matched, "custom/acme");
        assert_eq!(card.tiers.len(), 1);
        assert_eq!(card.tiers[0].input_per_million, 2.0);
        assert_eq!(card.tiers[0].cache_read_per_million, Some(0.5));
        assert_eq!(card.tiers[0].cache_write_per_million, None);
    }

    #[test]
    fn linear_model_has_one_tier_with_cache_rates() {
        let prices = GenAiPrices::bundled();
        let when = at(1_760_000_000);
        let card = prices
            .rate_card(Some("openai"), "gpt-4o-mini", when)
            .expect("gpt-4o-mini");
        assert_eq!(card.tiers.len(), 1, "{card:?}");
        let tier = card.tiers[0];
        let cached = Usage::default()
            .with_input(1_000_000)
            .with_cache_read(1_000_000);
        let price = prices
            .price(&PriceQuery::new("gpt-4o-mini", &cached, when).with_provider("openai"))
            .map(|p| p.cost_usd);
        assert_eq!(tier.cache_read_per_million, price);
    }
}
