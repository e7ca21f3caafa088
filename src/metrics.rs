//! The processor's metrics, created only when a meter provider is given.
//!
//! | instrument | kind, unit | attributes |
//! | --- | --- | --- |
//! | `genai_audit.findings` | `Counter<u64>`, `{finding}` | `genai_audit.finding`, `genai_audit.role`, `genai_audit.repaired` |
//! | `genai_audit.spans.tracked` | observable `UpDownCounter<i64>`, `{span}` | none |
//! | `genai_audit.cost` | `Counter<f64>`, `USD` | `gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.agent.name` (when known), `genai_audit.cost.source` |
//! | `genai_audit.invocation.cost` | `Histogram<f64>`, `USD` | `gen_ai.agent.name` |
//! | `genai_audit.invocation.tokens` | `Histogram<u64>`, `{token}` | `gen_ai.agent.name`, `gen_ai.token.type` |
//! | `gen_ai.client.token.usage` (opt-in) | `Histogram<u64>`, `{token}`, the GenAI conventions' buckets | `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.token.type`, `gen_ai.request.model`, `gen_ai.response.model` |
//!
//! All live in the instrumentation scope `genai-audit` with the crate's version. The
//! tracked-span count is read from an atomic the live-span ledger keeps anyway, so it
//! costs nothing per span. Attribute values that come from spans (models, providers,
//! agent names) are bounded: past a configurable number of distinct values per
//! attribute, `_other` is recorded instead.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use std::sync::Arc;

use opentelemetry::metrics::{Counter, Histogram, MeterProvider, ObservableUpDownCounter};
use opentelemetry::{InstrumentationScope, KeyValue, StringValue};
use parking_lot::RwLock;

use crate::hashing::BuildIdHasher;
use crate::keys::metric;

/// The bucket boundaries the OpenTelemetry GenAI conventions give
/// `gen_ai.client.token.usage`.
const TOKEN_BUCKETS: [f64; 14] = [
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// Bucket boundaries for the invocation cost histogram, in USD.
const COST_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0,
];

/// The distinct values of one attribute recorded so far, at most `limit`; past it,
/// `_other`.
#[derive(Debug)]
struct Bounded {
    /// Hashed cheaply: at most `limit` values, compared in full on a match.
    seen: RwLock<HashSet<Arc<str>, BuildIdHasher>>,
    limit: usize,
    /// Tells this set's values apart in the threads' caches ([`RECENT_VALUES`]).
    id: u64,
}

/// The next [`Bounded::id`] (0: none).
static NEXT_BOUNDED_ID: AtomicU64 = AtomicU64::new(1);

/// How many admitted values each thread keeps at hand.
const RECENT: usize = 8;

/// Admitted values, each with the id of the set that admitted it, and the slot the next
/// one takes.
type RecentValues = ([(u64, Option<Arc<str>>); RECENT], usize);

thread_local! {
    /// Each thread's latest admitted values, with the id of the set that admitted them:
    /// an agent's calls name the same few providers, models and agents over and over,
    /// and a hit takes no lock shared with the other threads.
    static RECENT_VALUES: RefCell<RecentValues> =
        const { RefCell::new(([const { (0, None) }; RECENT], 0)) };
}

/// The cost attributes a thread recorded last, and the names they were made from: an
/// agent's calls repeat the same provider, model, agent and source, and the attributes
/// are then passed again as they are (no name admitted again, no value cloned). The
/// values a name maps to never change once admitted (or refused), so this is exact.
struct LastCost {
    /// The metrics that recorded it (their model set's id).
    owner: u64,
    provider: String,
    model: String,
    agent: String,
    source: &'static str,
    attributes: [KeyValue; 4],
}

impl LastCost {
    fn is_for(&self, owner: u64, call: &CallRecord<'_>) -> bool {
        self.owner == owner
            && call.source == self.source
            && call.provider == Some(self.provider.as_str())
            && call.model == Some(self.model.as_str())
            && call.agent == Some(self.agent.as_str())
    }
}

thread_local! {
    static LAST_COST: RefCell<Option<LastCost>> = const { RefCell::new(None) };
}

impl Bounded {
    fn new(limit: usize) -> Self {
        Bounded {
            seen: RwLock::new(HashSet::default()),
            limit,
            id: NEXT_BOUNDED_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The value to record for `value`.
    fn value(&self, value: &str) -> StringValue {
        let recent = RECENT_VALUES.with(|recent| {
            let recent = recent.try_borrow().ok()?;
            recent.0.iter().find_map(|(id, known)| {
                known
                    .as_ref()
                    .filter(|known| *id == self.id && known.as_ref() == value)
                    .cloned()
            })
        });
        if let Some(known) = recent {
            return StringValue::from(known);
        }
        let known = self.admit(value);
        if let Some(known) = &known {
            RECENT_VALUES.with(|recent| {
                if let Ok(mut recent) = recent.try_borrow_mut() {
                    let (values, next) = &mut *recent;
                    values[*next % RECENT] = (self.id, Some(known.clone()));
                    *next = next.wrapping_add(1);
                }
            });
        }
        known.map_or(StringValue::from(metric::OTHER), StringValue::from)
    }

    /// `value` as admitted to the set, or `None` past the limit (`_other`).
    fn admit(&self, value: &str) -> Option<Arc<str>> {
        if let Some(known) = self.seen.read().get(value) {
            return Some(known.clone());
        }
        let mut seen = self.seen.write();
        if let Some(known) = seen.get(value) {
            return Some(known.clone());
        }
        if seen.len() >= self.limit {
            return None;
        }
        let known: Arc<str> = Arc::from(value);
        seen.insert(known.clone());
        Some(known)
    }
}

/// What one priced call records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallRecord<'a> {
    pub(crate) operation: Option<&'a str>,
    pub(crate) provider: Option<&'a str>,
    pub(crate) model: Option<&'a str>,
    pub(crate) response_model: Option<&'a str>,
    pub(crate) agent: Option<&'a str>,
    pub(crate) cost_usd: Option<f64>,
    pub(crate) source: &'static str,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
}

/// Options of the metrics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MetricOptions {
    /// Most distinct model, provider and agent names recorded (per attribute).
    pub(crate) cardinality_limit: usize,
    /// Record `gen_ai.client.token.usage`.
    pub(crate) token_usage: bool,
}

/// The instruments, created on the meter provider given to the builder.
#[derive(Debug)]
pub(crate) struct AuditMetrics {
    findings: Counter<u64>,
    _tracked: ObservableUpDownCounter<i64>,
    cost: Counter<f64>,
    invocation_cost: Histogram<f64>,
    invocation_tokens: Histogram<u64>,
    token_usage: Option<Histogram<u64>>,
    models: Bounded,
    providers: Bounded,
    agents: Bounded,
}

impl AuditMetrics {
    pub(crate) fn new(
        provider: &dyn MeterProvider,
        tracked: Arc<CachePadded<AtomicUsize>>,
        options: MetricOptions,
    ) -> Self {
        let scope = InstrumentationScope::builder("genai-audit")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let meter = provider.meter_with_scope(scope);
        let findings = meter
            .u64_counter(metric::FINDINGS)
            .with_unit("{finding}")
            .with_description("Findings about gen-ai spans, by code, role and repair.")
            .build();
        let tracked = meter
            .i64_observable_up_down_counter(metric::SPANS_TRACKED)
            .with_unit("{span}")
            .with_description("Spans the audit processor currently keeps state for.")
            .with_callback(move |observer| {
                let n = tracked.load(Ordering::Relaxed);
                observer.observe(i64::try_from(n).unwrap_or(i64::MAX), &[]);
            })
            .build();
        let cost = meter
            .f64_counter(metric::COST)
            .with_unit("USD")
            .with_description("Cost of priced model calls.")
            .build();
        let invocation_cost = meter
            .f64_histogram(metric::INVOCATION_COST)
            .with_unit("USD")
            .with_description("Cost of each agent invocation.")
            .with_boundaries(COST_BUCKETS.to_vec())
            .build();
        let invocation_tokens = meter
            .u64_histogram(metric::INVOCATION_TOKENS)
            .with_unit("{token}")
            .with_description("Input and output tokens of each agent invocation.")
            .with_boundaries(TOKEN_BUCKETS.to_vec())
            .build();
        let token_usage = options.token_usage.then(|| {
            meter
                .u64_histogram(metric::CLIENT_TOKEN_USAGE)
                .with_unit("{token}")
                .with_description("Number of input and output tokens used.")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build()
        });
        let limit = options.cardinality_limit.max(1);
        AuditMetrics {
            findings,
            _tracked: tracked,
            cost,
            invocation_cost,
            invocation_tokens,
            token_usage,
            models: Bounded::new(limit),
            providers: Bounded::new(limit),
            agents: Bounded::new(limit),
        }
    }

    /// Counts one finding: its code, the role of the span it is about, and whether it
    /// was repaired.
    pub(crate) fn count_finding(&self, code: &'static str, role: &'static str, repaired: bool) {
        self.findings.add(
            1,
            &[
                KeyValue::new(metric::FINDING, code),
                KeyValue::new(metric::ROLE, role),
                KeyValue::new(metric::REPAIRED, repaired),
            ],
        );
    }

    /// Whether `gen_ai.client.token.usage` is recorded (it needs the call's operation
    /// and response model).
    pub(crate) fn records_token_usage(&self) -> bool {
        self.token_usage.is_some()
    }

    /// Records one generation or embedding: its cost (when priced) and, when asked for,
    /// its tokens in `gen_ai.client.token.usage`.
    pub(crate) fn record_call(&self, call: &CallRecord<'_>) {
        if let Some(cost) = call.cost_usd {
            if !self.add_cost_again(cost, call) {
                self.add_cost(cost, call);
            }
        }
        if let Some(histogram) = &self.token_usage {
            let provider = call.provider.map(|p| self.providers.value(p));
            let model = call.model.map(|m| self.models.value(m));
            let mut attributes = Vec::with_capacity(5);
            if let Some(op) = call.operation {
                attributes.push(KeyValue::new(metric::OPERATION_NAME, op.to_owned()));
            }
            if let Some(p) = provider {
                attributes.push(KeyValue::new(metric::PROVIDER_NAME, p));
            }
            if let Some(m) = model {
                attributes.push(KeyValue::new(metric::REQUEST_MODEL, m));
            }
            if let Some(r) = call.response_model {
                attributes.push(KeyValue::new(metric::RESPONSE_MODEL, self.models.value(r)));
            }
            for (kind, tokens) in [("input", call.input_tokens), ("output", call.output_tokens)] {
                if let Some(tokens) = tokens {
                    let mut with_type = attributes.clone();
                    with_type.push(KeyValue::new(metric::TOKEN_TYPE, kind));
                    histogram.record(tokens, &with_type);
                }
            }
        }
    }

    /// Adds a call's cost with the attributes this thread recorded last, when the call
    /// names the same provider, model, agent and source; `false` otherwise.
    fn add_cost_again(&self, cost: f64, call: &CallRecord<'_>) -> bool {
        LAST_COST.with(|last| {
            let Ok(last) = last.try_borrow() else {
                return false;
            };
            match &*last {
                Some(last) if last.is_for(self.models.id, call) => {
                    self.cost.add(cost, &last.attributes);
                    true
                }
                _ => false,
            }
        })
    }

    /// Adds a call's cost, its attribute values admitted by the bounded sets; the usual
    /// attributes (provider, model and agent all known) are kept for the next call.
    fn add_cost(&self, cost: f64, call: &CallRecord<'_>) {
        let source = KeyValue::new(metric::COST_SOURCE, call.source);
        match (call.provider, call.model, call.agent) {
            (Some(provider), Some(model), Some(agent)) => {
                let attributes = [
                    KeyValue::new(metric::PROVIDER_NAME, self.providers.value(provider)),
                    KeyValue::new(metric::REQUEST_MODEL, self.models.value(model)),
                    KeyValue::new(metric::AGENT_NAME, self.agents.value(agent)),
                    source,
                ];
                self.cost.add(cost, &attributes);
                LAST_COST.with(|last| {
                    if let Ok(mut last) = last.try_borrow_mut() {
                        *last = Some(LastCost {
                            owner: self.models.id,
                            provider: provider.to_owned(),
                            model: model.to_owned(),
                            agent: agent.to_owned(),
                            source: call.source,
                            attributes,
                        });
                    }
                });
            }
            (provider, model, agent) => {
                let mut attributes = Vec::with_capacity(4);
                if let Some(p) = provider {
                    attributes.push(KeyValue::new(
                        metric::PROVIDER_NAME,
                        self.providers.value(p),
                    ));
                }
                if let Some(m) = model {
                    attributes.push(KeyValue::new(metric::REQUEST_MODEL, self.models.value(m)));
                }
                if let Some(a) = agent {
                    attributes.push(KeyValue::new(metric::AGENT_NAME, self.agents.value(a)));
                }
                attributes.push(source);
                self.cost.add(cost, &attributes);
            }
        }
    }

    /// Records one ended invocation: its cost (when some call was priced) and tokens.
    pub(crate) fn record_invocation(
        &self,
        agent: Option<&str>,
        cost_usd: Option<f64>,
        input_tokens: u64,
        output_tokens: u64,
    ) {
        let agent = agent.map(|a| KeyValue::new(metric::AGENT_NAME, self.agents.value(a)));
        let input = KeyValue::new(metric::TOKEN_TYPE, "input");
        let output = KeyValue::new(metric::TOKEN_TYPE, "output");
        match agent {
            Some(agent) => {
                if let Some(cost) = cost_usd {
                    self.invocation_cost
                        .record(cost, std::slice::from_ref(&agent));
                }
                self.invocation_tokens
                    .record(input_tokens, &[agent.clone(), input]);
                self.invocation_tokens
                    .record(output_tokens, &[agent, output]);
            }
            None => {
                if let Some(cost) = cost_usd {
                    self.invocation_cost.record(cost, &[]);
                }
                self.invocation_tokens.record(input_tokens, &[input]);
                self.invocation_tokens.record(output_tokens, &[output]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_values_fall_back_to_other() {
        let b = Bounded::new(2);
        assert_eq!(b.value("a").as_str(), "a");
        assert_eq!(b.value("b").as_str(), "b");
        assert_eq!(b.value("c").as_str(), "_other");
        assert_eq!(b.value("a").as_str(), "a");
    }

    /// A value one set admitted, at hand in the thread's cache, is not another set's:
    /// each keeps its own limit, and a full cache forgets its oldest values.
    #[test]
    fn the_threads_cache_keeps_each_sets_limit() {
        let models = Bounded::new(1);
        let agents = Bounded::new(1);
        assert_eq!(models.value("m").as_str(), "m");
        assert_eq!(agents.value("a").as_str(), "a");
        assert_eq!(agents.value("m").as_str(), "_other");
        assert_eq!(models.value("a").as_str(), "_other");
        let many = Bounded::new(100);
        for i in 0..3 * RECENT {
            assert_eq!(many.value(&format!("v{i}")).as_str(), format!("v{i}"));
        }
        assert_eq!(
            models.value("m").as_str(),
            "m",
            "found again after the cache forgot it"
        );
        assert_eq!(many.seen.read().len(), 3 * RECENT);
    }
}
