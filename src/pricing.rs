//! What a model call cost, in US dollars.
//!
//! The processor asks a [`Pricer`] for the price of each generation and embedding, one
//! call at a time: never summed usage, since tiered prices change the rate with the
//! size of a call. The default pricer, [`GenAiPrices`], uses the
//! [`genai-prices`](https://docs.rs/genai-prices) data bundled with that crate, or a
//! price file in the same JSON format, plus any per-model prices you add for private
//! or fine-tuned models. Implement [`Pricer`] to plug in your own.
//!
//! A call whose provider is absent, unknown to the price data, or without the model
//! is looked up under the provider its model id names by its shape ([`model_shape`]:
//! Bedrock ids are `aws`, Vertex resource names `google`, `provider/model` ids their
//! prefix), then by the model alone.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use genai_audit::pricing::{GenAiPrices, ModelPrice, PriceQuery, Pricer};
//! use genai_audit::usage::Usage;
//!
//! let prices = GenAiPrices::bundled()
//!     // A private fine-tune, $2 per million input tokens and $8 per million output.
//!     .with_model_price(None, "acme-coder-ft", ModelPrice::per_million(2.0, 8.0));
//!
//! let usage = Usage::default().with_input(1_000).with_output(100);
//! let when = UNIX_EPOCH + Duration::from_secs(1_760_000_000);
//! let price = prices
//!     .price(&PriceQuery::new("acme-coder-ft", &usage, when))
//!     .expect("priced");
//! assert!((price.cost_usd - 0.0028).abs() < 1e-12);
//! assert_eq!(&*price.matched, "custom/acme-coder-ft");
//!
//! let gpt = prices
//!     .price(&PriceQuery::new("gpt-4o", &usage, when).with_provider("openai"))
//!     .expect("gpt-4o is in the bundled data");
//! assert_eq!(&*gpt.matched, "openai/gpt-4o");
//!
//! // Unknown models are never priced at zero: there is no price.
//! let none = prices.price(&PriceQuery::new("my-model", &usage, when));
//! assert!(none.is_none());
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use genai_prices::{Calculator, ErrorKind, PriceRequest, UsageKey};
use parking_lot::RwLock;

use crate::hashing::{hash_str_pair, BuildIdHasher};
use crate::usage::Usage;

pub(crate) mod call;
mod card;
#[cfg(test)]
mod exact_tests;
mod rates;
mod shape;
#[cfg(test)]
mod shape_tests;
#[cfg(test)]
mod tests;

pub use call::CostAttributes;
pub use card::{RateCard, RateTier};
pub use shape::{model_shape, ModelShape};

use rates::{Known, Lookup, RateMemo, Slot, Tokens};

/// One model call to price.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PriceQuery<'a> {
    /// The provider as the span reports it (`gen_ai.provider.name`, `gen_ai.system`,
    /// ...), not yet mapped to a price-data id.
    pub provider: Option<&'a str>,
    /// The model as the span reports it.
    pub model: &'a str,
    /// The call's normalised usage.
    pub usage: &'a Usage,
    /// When the call started: prices change over time.
    pub time: SystemTime,
}

impl<'a> PriceQuery<'a> {
    /// A call of `model` with this usage, started at `time`, with no provider.
    pub fn new(model: &'a str, usage: &'a Usage, time: SystemTime) -> Self {
        PriceQuery {
            provider: None,
            model,
            usage,
            time,
        }
    }

    /// The provider as the span reports it.
    pub fn with_provider(mut self, provider: &'a str) -> Self {
        self.provider = Some(provider);
        self
    }
}

/// The price of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPrice {
    /// The cost in US dollars.
    pub cost_usd: f64,
    /// `provider/model` of the price that matched (written to `genai_audit.cost.model`).
    pub matched: Arc<str>,
}

/// Prices model calls. Implementations run inside `on_end`: they must not block or panic.
pub trait Pricer: Send + Sync + fmt::Debug {
    /// The price of one call, or `None` when the model has no known price (the span is
    /// then marked `genai_audit.cost.unpriced`; never answer 0 for "unknown").
    fn price(&self, query: &PriceQuery<'_>) -> Option<CallPrice>;
}

/// A price per million tokens, for models the price data does not know.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    /// USD per million input tokens that are not cache reads or writes.
    pub input_per_million: f64,
    /// USD per million output tokens (reasoning included).
    pub output_per_million: f64,
    /// USD per million cache-read tokens; the input price when `None`.
    pub cache_read_per_million: Option<f64>,
    /// USD per million cache-write tokens; the input price when `None`.
    pub cache_write_per_million: Option<f64>,
}

impl ModelPrice {
    /// A price with input and output rates only.
    pub const fn per_million(input: f64, output: f64) -> Self {
        ModelPrice {
            input_per_million: input,
            output_per_million: output,
            cache_read_per_million: None,
            cache_write_per_million: None,
        }
    }

    /// The same price with a cache-read rate.
    pub const fn with_cache_read(mut self, per_million: f64) -> Self {
        self.cache_read_per_million = Some(per_million);
        self
    }

    /// The same price with a cache-write rate.
    pub const fn with_cache_write(mut self, per_million: f64) -> Self {
        self.cache_write_per_million = Some(per_million);
        self
    }

    fn cost(&self, usage: &Usage) -> f64 {
        let cache_read = usage.cache_read.unwrap_or(0);
        let cache_write = usage.cache_write.unwrap_or(0);
        let uncached = usage
            .input
            .unwrap_or(0)
            .saturating_sub(cache_read)
            .saturating_sub(cache_write);
        let rate_read = self
            .cache_read_per_million
            .unwrap_or(self.input_per_million);
        let rate_write = self
            .cache_write_per_million
            .unwrap_or(self.input_per_million);
        (uncached as f64 * self.input_per_million
            + cache_read as f64 * rate_read
            + cache_write as f64 * rate_write
            + usage.output.unwrap_or(0) as f64 * self.output_per_million)
            / 1_000_000.0
    }
}

/// An error loading price data: a file that cannot be read (its `io::Error` is the
/// [`source`](std::error::Error::source)), or data that is not in the genai-prices
/// format.
#[derive(Debug)]
pub struct PriceDataError {
    path: Option<std::path::PathBuf>,
    kind: PriceDataErrorKind,
}

#[derive(Debug)]
enum PriceDataErrorKind {
    Read(std::io::Error),
    Invalid(String),
}

impl PriceDataError {
    /// The file the error is about, when the data came from a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl fmt::Display for PriceDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}: ", path.display())?;
        }
        match &self.kind {
            PriceDataErrorKind::Read(e) => write!(f, "cannot read the price file: {e}"),
            PriceDataErrorKind::Invalid(e) => write!(f, "invalid price data: {e}"),
        }
    }
}

impl std::error::Error for PriceDataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            PriceDataErrorKind::Read(e) => Some(e),
            PriceDataErrorKind::Invalid(_) => None,
        }
    }
}

enum Data {
    Bundled,
    Loaded(Box<Calculator>),
}

#[derive(Debug, Clone)]
struct ExtraPrice {
    provider: Option<String>,
    model: String,
    price: ModelPrice,
    matched: Arc<str>,
}

/// The [`Pricer`] backed by the `genai-prices` data: bundled, or loaded from a price
/// file in its JSON format, plus per-model prices of your own (which win).
///
/// Prices are memoised, and a memoised price is the one `genai-prices` gives:
///
/// - The first call for a (provider, model) pair finds the model in the price data;
///   later calls reuse what it found, or that nothing was found (an unknown model is
///   then answered without touching the data).
/// - For a known model, the price of a few probe usages at the call's time gives its
///   per-token rates (input, cache read, cache write, output) and any per-request fee
///   for that UTC day; further probes, from one token to 2^40, check that those rates
///   reproduce `genai-prices`' prices. The first call in each later minute of the day
///   checks again, at its own time, with two probes. Calls of a checked minute are then
///   priced from the rates with the same arithmetic as `genai-prices` (tens of
///   nanoseconds instead of microseconds).
/// - Everything else is priced by `genai-prices` on each call: models whose price is
///   not linear in the usage (tiered prices), minutes whose price differs from the
///   day's (prices that change with the time of day), usages it may reject (cache
///   counts without an input count or above it), counts above 2^40, times before 1970.
///
/// Prices in the `genai-prices` data change on calendar dates (at midnight UTC) or at
/// times of day; the memo relies on those times of day being whole minutes, as they
/// are in the bundled data. The memo holds at most 4096 (provider, model) pairs, with
/// the rates of at most two days each (under 1 KB a pair), and starts over when full;
/// each thread also keeps its last 8 pairs (and their rates for one minute) at hand,
/// which it reads without any lock. Lookups in the shared memo take a read lock;
/// probing is done outside any lock, and its findings are recorded under a brief
/// write lock.
pub struct GenAiPrices {
    /// Tells this pricer's rates from other pricers' in the threads' recent rates.
    id: u64,
    data: Data,
    extra: Vec<ExtraPrice>,
    memo: RwLock<Memo>,
}

/// Resolutions by hash of (provider, model), and how many there are.
#[derive(Debug, Default)]
struct Memo {
    buckets: HashMap<u64, Vec<MemoEntry>, BuildIdHasher>,
    len: usize,
}

const MEMO_CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
struct MemoEntry {
    provider: Box<str>,
    model: Box<str>,
    resolution: Resolution,
}

#[derive(Debug, Clone)]
enum Resolution {
    /// Shared, so that work outside the lock copies a pointer, not the strings; the
    /// rates are changed under the memo's write lock.
    Found(Arc<Found>, Box<RateMemo>),
    NotFound,
}

#[derive(Debug)]
struct Found {
    /// The provider id the first lookup was made with (from the provider name or the
    /// model id's shape), so that later calculations make the very same request.
    request_provider: Option<Box<str>>,
    /// The model the first lookup was made with, when not the query's (the last
    /// segment of a Vertex resource name, the rest of a `provider/model` id).
    request_model: Option<Box<str>>,
    matched: Arc<str>,
}

impl fmt::Debug for GenAiPrices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenAiPrices")
            .field(
                "data",
                &match self.data {
                    Data::Bundled => "bundled",
                    Data::Loaded(_) => "loaded",
                },
            )
            .field("extra_prices", &self.extra.len())
            .finish_non_exhaustive()
    }
}

impl GenAiPrices {
    /// The prices bundled with the `genai-prices` crate.
    ///
    /// The bundled data is decoded here, once per process (it takes tens of
    /// milliseconds), so that no `on_end` ever waits for it.
    pub fn bundled() -> Self {
        let _ = Calculator::bundled();
        Self::with_data(Data::Bundled)
    }

    /// Prices from a JSON document in the `genai-prices` format.
    pub fn from_json(json: impl AsRef<[u8]>) -> Result<Self, PriceDataError> {
        let calculator = Calculator::from_json(json).map_err(|e| PriceDataError {
            path: None,
            kind: PriceDataErrorKind::Invalid(e.to_string()),
        })?;
        Ok(Self::with_data(Data::Loaded(Box::new(calculator))))
    }

    /// Prices from a file in the `genai-prices` JSON format.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PriceDataError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| PriceDataError {
            path: Some(path.to_owned()),
            kind: PriceDataErrorKind::Read(e),
        })?;
        Self::from_json(bytes).map_err(|e| PriceDataError {
            path: Some(path.to_owned()),
            ..e
        })
    }

    fn with_data(data: Data) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        GenAiPrices {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            data,
            extra: Vec::new(),
            memo: RwLock::new(Memo::default()),
        }
    }

    /// Adds a price for `model` (compared without regard to case), for one provider or,
    /// with `None`, for any. It wins over the price data.
    pub fn with_model_price(
        mut self,
        provider: Option<&str>,
        model: &str,
        price: ModelPrice,
    ) -> Self {
        let provider = provider.map(str::to_ascii_lowercase);
        let matched = format!("{}/{model}", provider.as_deref().unwrap_or("custom"));
        self.extra.push(ExtraPrice {
            provider,
            model: model.to_ascii_lowercase(),
            price,
            matched: Arc::from(matched),
        });
        self
    }

    fn calculator(&self) -> &Calculator {
        match &self.data {
            Data::Bundled => Calculator::bundled(),
            Data::Loaded(c) => c,
        }
    }

    fn extra_price(&self, provider: Option<&str>, model: &str) -> Option<&ExtraPrice> {
        self.extra.iter().rev().find(|e| {
            e.model.eq_ignore_ascii_case(model)
                && match (&e.provider, provider) {
                    (None, _) => true,
                    (Some(p), Some(q)) => p.eq_ignore_ascii_case(q),
                    (Some(_), None) => false,
                }
        })
    }

    /// The memoised resolution of (provider, model); for a known model whose rates for
    /// the call's minute are confirmed, the price itself, computed under the read lock
    /// (no reference count is touched but the matched name's).
    fn memo_get(&self, key: u64, query: &PriceQuery<'_>, model: &str) -> Option<MemoHit> {
        let provider = query.provider.unwrap_or("");
        let memo = self.memo.read();
        let entry = memo
            .buckets
            .get(&key)?
            .iter()
            .find(|e| &*e.provider == provider && &*e.model == model)?;
        Some(match &entry.resolution {
            Resolution::NotFound => MemoHit::NotFound,
            Resolution::Found(found, rates) => {
                let fast = Tokens::of(query.usage).zip(Slot::of(query.time));
                match fast.map(|(tokens, slot)| (tokens, slot, rates.lookup(tokens, slot))) {
                    Some((_, slot, Lookup::Priced(cost, rates))) => MemoHit::Priced(
                        finite_cost(cost).map(|cost_usd| CallPrice {
                            cost_usd,
                            matched: found.matched.clone(),
                        }),
                        slot,
                        rates,
                    ),
                    Some((tokens, slot, lookup)) => MemoHit::Found {
                        found: found.clone(),
                        work: Some((tokens, slot, lookup)),
                    },
                    None => MemoHit::Found {
                        found: found.clone(),
                        work: None,
                    },
                }
            }
        })
    }

    /// Prices a call of a known model that the memo could not price from confirmed
    /// rates: derives or confirms the rates when that may help, else asks
    /// `genai-prices`.
    fn price_found(
        &self,
        key: u64,
        found: &Found,
        model: &str,
        query: &PriceQuery<'_>,
        work: Option<(Tokens, Slot, Lookup)>,
    ) -> Option<CallPrice> {
        let provider = found.request_provider.as_deref();
        let request_model = found.request_model.as_deref().unwrap_or(model);
        let probe = |tokens: Tokens| self.probe(request_model, provider, tokens, query.time);
        let cost = match work {
            Some((tokens, slot, Lookup::Derive)) => {
                let rates = rates::derive(probe);
                self.update_rates(key, query, model, |memo| memo.derived(slot, rates));
                rates.map(|r| r.price(tokens).total)
            }
            Some((tokens, slot, Lookup::Confirm(rates))) => {
                let same = rates::confirm(&rates, probe);
                self.update_rates(key, query, model, |memo| memo.confirmed(slot, same));
                same.then(|| rates.price(tokens).total)
            }
            Some((_, _, Lookup::Priced(cost, _))) => Some(cost),
            Some((_, _, Lookup::Direct)) | None => None,
        };
        let cost = match cost {
            Some(cost) => cost,
            None => {
                let usage = price_usage(query.usage);
                self.calculate(request_model, provider, &usage, query.time)
                    .ok()?
                    .total_price
            }
        };
        finite_cost(cost).map(|cost_usd| CallPrice {
            cost_usd,
            matched: found.matched.clone(),
        })
    }

    /// Updates the rates of a memoised pair under the write lock (briefly), unless the
    /// memo started over meanwhile.
    fn update_rates(
        &self,
        key: u64,
        query: &PriceQuery<'_>,
        model: &str,
        update: impl FnOnce(&mut RateMemo),
    ) {
        let provider = query.provider.unwrap_or("");
        let mut memo = self.memo.write();
        let entry = memo.buckets.get_mut(&key).and_then(|bucket| {
            bucket
                .iter_mut()
                .find(|e| &*e.provider == provider && &*e.model == model)
        });
        if let Some(MemoEntry {
            resolution: Resolution::Found(_, rates),
            ..
        }) = entry
        {
            update(rates);
        }
    }

    /// One probe for the rate memo: the same request as a call's, with all four token
    /// counts given.
    fn probe(
        &self,
        model: &str,
        provider_id: Option<&str>,
        tokens: Tokens,
        time: SystemTime,
    ) -> rates::ProbeResult {
        let mut usage = genai_prices::Usage::new();
        usage.insert(UsageKey::INPUT_TOKENS, tokens.input as f64);
        usage.insert(UsageKey::OUTPUT_TOKENS, tokens.output as f64);
        usage.insert(UsageKey::CACHE_READ_TOKENS, tokens.cache_read as f64);
        usage.insert(UsageKey::CACHE_WRITE_TOKENS, tokens.cache_write as f64);
        match self.calculate(model, provider_id, &usage, time) {
            Ok(calc) => Ok(rates::Priced {
                input: calc.input_price,
                output: calc.output_price,
                total: calc.total_price,
            }),
            Err(e) => Err(matches!(e.kind(), ErrorKind::InvalidUsage)),
        }
    }

    fn memo_put(&self, key: u64, provider: &str, model: &str, resolution: Resolution) {
        let mut memo = self.memo.write();
        if memo.len >= MEMO_CAPACITY {
            *memo = Memo::default();
        }
        let bucket = memo.buckets.entry(key).or_default();
        if !bucket
            .iter()
            .any(|e| &*e.provider == provider && &*e.model == model)
        {
            bucket.push(MemoEntry {
                provider: provider.into(),
                model: model.into(),
                resolution,
            });
            memo.len += 1;
        }
    }

    fn calculate(
        &self,
        model: &str,
        provider_id: Option<&str>,
        usage: &genai_prices::Usage,
        time: SystemTime,
    ) -> Result<genai_prices::PriceCalculation, genai_prices::Error> {
        let mut request = PriceRequest::new(model, usage).with_timestamp(time);
        if let Some(provider_id) = provider_id {
            request = request.with_provider_id(provider_id);
        }
        self.calculator().calculate(&request)
    }

    /// The price-data provider id for a provider name as spans report it, or `None`
    /// when the data has no such provider (the model alone then picks).
    fn resolve_provider(&self, provider: &str) -> Option<String> {
        let id = price_provider_id(provider)?;
        match self.calculator().find_provider(Some(&id), None) {
            Ok(Some(found)) => Some(found.id().to_owned()),
            _ => None,
        }
    }

    /// The requests to make of the price data for a call of `model` from `provider`,
    /// in order, each a (provider id, model): the provider the call names, when the
    /// data knows it; then the provider the model id names by its shape
    /// ([`model_shape`]); then, when the call's provider did not resolve, the model
    /// alone (the price data's own model patterns pick the provider).
    fn requests<'m>(
        &self,
        provider: Option<&str>,
        model: &'m str,
    ) -> Vec<(Option<String>, &'m str)> {
        let mut out = Vec::with_capacity(3);
        let named = provider.and_then(|p| self.resolve_provider(p));
        let resolved = named.is_some();
        if named.is_some() {
            out.push((named, model));
        }
        if let Some(shape) = model_shape(model) {
            if let Some(id) = self.resolve_provider(shape.provider) {
                if !out
                    .iter()
                    .any(|(p, m)| p.as_deref() == Some(&id) && *m == shape.model)
                {
                    out.push((Some(id), shape.model));
                }
            }
        }
        if !resolved {
            out.push((None, model));
        }
        out
    }

    /// The first of [`requests`](Self::requests) the price data prices this usage
    /// for: its provider id and model, and the calculation. `Err(true)` when none
    /// finds the model, `Err(false)` when the data rejected the request otherwise
    /// (such as the usage).
    fn lookup<'m>(
        &self,
        provider: Option<&str>,
        model: &'m str,
        usage: &genai_prices::Usage,
        time: SystemTime,
    ) -> Result<(Option<String>, &'m str, genai_prices::PriceCalculation), bool> {
        for (provider_id, request_model) in self.requests(provider, model) {
            match self.calculate(request_model, provider_id.as_deref(), usage, time) {
                Ok(calc) => return Ok((provider_id, request_model, calc)),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ModelNotFound | ErrorKind::ProviderNotFound
                    ) => {}
                Err(_) => return Err(false),
            }
        }
        Err(true)
    }
}

/// What the memo knows of a (provider, model).
enum MemoHit {
    NotFound,
    /// Priced from the rates confirmed for a minute (`None`: the cost was not a valid
    /// price).
    Priced(Option<CallPrice>, Slot, rates::Rates),
    /// Known, to be priced with more work.
    Found {
        found: Arc<Found>,
        work: Option<(Tokens, Slot, Lookup)>,
    },
}

impl Pricer for GenAiPrices {
    fn price(&self, query: &PriceQuery<'_>) -> Option<CallPrice> {
        let model = query.model.trim();
        if model.is_empty() {
            return None;
        }
        if let Some(extra) = self.extra_price(query.provider, model) {
            return Some(CallPrice {
                cost_usd: extra.price.cost(query.usage),
                matched: extra.matched.clone(),
            });
        }
        let provider = query.provider.unwrap_or("");
        // What this thread knows of the pair, without the shared memo's lock.
        match rates::recent(self.id, provider, model, query.time) {
            Some(Known::Unknown) => return None,
            Some(Known::Rates { rates, matched, .. }) => {
                if let Some(tokens) = Tokens::of(query.usage) {
                    return finite_cost(rates.price(tokens).total)
                        .map(|cost_usd| CallPrice { cost_usd, matched });
                }
            }
            None => {}
        }
        let key = hash_str_pair(provider, model);
        match self.memo_get(key, query, model) {
            Some(MemoHit::NotFound) => {
                rates::remember(self.id, provider, model, Known::Unknown);
                None
            }
            Some(MemoHit::Priced(price, slot, rates)) => {
                if let Some(price) = &price {
                    let matched = price.matched.clone();
                    let known = Known::Rates {
                        slot,
                        rates,
                        matched,
                    };
                    rates::remember(self.id, provider, model, known);
                }
                price
            }
            Some(MemoHit::Found { found, work }) => {
                self.price_found(key, &found, model, query, work)
            }
            None => {
                let usage = price_usage(query.usage);
                match self.lookup(query.provider, model, &usage, query.time) {
                    Ok((provider_id, request_model, calc)) => {
                        let matched: Arc<str> =
                            Arc::from(format!("{}/{}", calc.provider_id, calc.model_id));
                        self.memo_put(
                            key,
                            provider,
                            model,
                            Resolution::Found(
                                Arc::new(Found {
                                    request_provider: provider_id.map(String::into_boxed_str),
                                    request_model: (request_model != model)
                                        .then(|| request_model.into()),
                                    matched: matched.clone(),
                                }),
                                Box::default(),
                            ),
                        );
                        finite_cost(calc.total_price)
                            .map(|cost_usd| CallPrice { cost_usd, matched })
                    }
                    Err(true) => {
                        self.memo_put(key, provider, model, Resolution::NotFound);
                        None
                    }
                    Err(false) => None,
                }
            }
        }
    }
}

fn finite_cost(cost: f64) -> Option<f64> {
    (cost.is_finite() && cost >= 0.0).then_some(cost)
}

fn price_usage(usage: &Usage) -> genai_prices::Usage {
    let mut out = genai_prices::Usage::new();
    let mut put = |key: UsageKey, value: Option<u64>| {
        if let Some(v) = value {
            out.insert(key, v as f64);
        }
    };
    put(UsageKey::INPUT_TOKENS, usage.input);
    put(UsageKey::OUTPUT_TOKENS, usage.output);
    put(UsageKey::CACHE_READ_TOKENS, usage.cache_read);
    put(UsageKey::CACHE_WRITE_TOKENS, usage.cache_write);
    out
}

/// Maps a provider name as instrumentations write it (OpenTelemetry's
/// `gen_ai.provider.name` values, OpenInference's `llm.provider`, the Vercel AI SDK's
/// `ai.model.provider` such as `openai.chat`) to the price data's provider id.
///
/// Returns `None` for an empty name. Names without a mapping are returned lowercased,
/// and are kept only if the price data knows them.
///
/// ```
/// use genai_audit::pricing::price_provider_id;
/// assert_eq!(price_provider_id("aws.bedrock").as_deref(), Some("aws"));
/// assert_eq!(price_provider_id("gcp.vertex_ai").as_deref(), Some("google"));
/// assert_eq!(price_provider_id("x_ai").as_deref(), Some("x-ai"));
/// assert_eq!(price_provider_id("anthropic.messages").as_deref(), Some("anthropic"));
/// assert_eq!(price_provider_id("OpenAI").as_deref(), Some("openai"));
/// ```
pub fn price_provider_id(provider: &str) -> Option<Cow<'static, str>> {
    let lower = provider.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return None;
    }
    if let Some(id) = mapped_provider(&lower) {
        return Some(Cow::Borrowed(id));
    }
    // Vercel AI SDK ids are `<provider>.<api>`: `openai.chat`, `google.vertex.chat`.
    if let Some((head, _)) = lower.split_once('.') {
        if let Some(id) = mapped_provider(head) {
            return Some(Cow::Borrowed(id));
        }
        if !head.is_empty() {
            return Some(Cow::Owned(head.to_owned()));
        }
    }
    Some(Cow::Owned(lower))
}

fn mapped_provider(name: &str) -> Option<&'static str> {
    Some(match name {
        "aws.bedrock" | "amazon-bedrock" | "amazon.bedrock" | "bedrock" | "aws" => "aws",
        "gcp.vertex_ai"
        | "gcp.gen_ai"
        | "gcp.gemini"
        | "vertex_ai"
        | "vertexai"
        | "google-vertex"
        | "google.vertex"
        | "google.generative-ai"
        | "gemini"
        | "google" => "google",
        "az.ai.inference" | "az.ai.openai" | "azure.ai.inference" | "azure.ai.openai"
        | "azure-openai" | "azure" => "azure",
        "x_ai" | "xai" | "x-ai" => "x-ai",
        "mistral_ai" | "mistralai" | "mistral" => "mistral",
        "openai" => "openai",
        "anthropic" => "anthropic",
        "deepseek" => "deepseek",
        "groq" => "groq",
        "cohere" => "cohere",
        "perplexity" => "perplexity",
        _ => return None,
    })
}
