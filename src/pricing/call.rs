//! What one model call cost, and the keys that say so.
//!
//! A generation or embedding is priced once, as it ends. A cost the span already
//! reports (`gen_ai.usage.cost`, `gen_ai.usage.cost.amount` with currency `USD`,
//! `llm.cost.total`) is used as it is; otherwise its usage is priced by the
//! [`Pricer`] at the call's start time, for the model and provider it names, each read
//! from one precedence list ([`MODEL_KEYS`], [`PROVIDER_KEYS`]). The result is written as
//! `genai_audit.cost_usd` with its source and matched model, plus the cost keys other
//! backends read ([`CostAttributes`]), or as `genai_audit.cost.unpriced` when there is
//! no price: an unknown model is never priced at zero.

use std::time::SystemTime;

use opentelemetry::{KeyValue, Value};

use crate::attributes::{first_string, last_value, AttributeWrites};
use crate::keys::{self, read};
use crate::pricing::{PriceQuery, Pricer};
use crate::usage::Usage;

/// Where a call's model is read from, first present wins.
pub(crate) const MODEL_KEYS: [&str; 5] = [
    read::gen_ai::RESPONSE_MODEL,
    read::gen_ai::REQUEST_MODEL,
    read::openinference::MODEL_NAME,
    read::vercel::RESPONSE_MODEL,
    read::vercel::MODEL_ID,
];

/// The model a call asked for (metric attribute `gen_ai.request.model`): the request
/// keys first, then the model that answered.
pub(crate) const REQUEST_MODEL_KEYS: [&str; 5] = [
    read::gen_ai::REQUEST_MODEL,
    read::openinference::MODEL_NAME,
    read::vercel::MODEL_ID,
    read::gen_ai::RESPONSE_MODEL,
    read::vercel::RESPONSE_MODEL,
];

/// Where a call's provider is read from, first present wins.
pub(crate) const PROVIDER_KEYS: [&str; 4] = [
    read::gen_ai::PROVIDER_NAME,
    read::gen_ai::SYSTEM,
    read::openinference::PROVIDER,
    read::vercel::MODEL_PROVIDER,
];

/// The model a call names (the first non-blank of [`MODEL_KEYS`]).
pub(crate) fn model(attributes: &[KeyValue]) -> Option<&str> {
    first_string(attributes, &MODEL_KEYS)
}

/// The most a call may report it cost, in USD; a reported cost above it (or negative,
/// or not a finite number) is not used.
pub(crate) const MAX_REPORTED_COST_USD: f64 = 1_000_000.0;

/// What pricing one call found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CallCost<'a> {
    /// The cost in USD (`None`: unpriced).
    pub(crate) cost_usd: Option<f64>,
    /// The span reported a cost that cannot be used (the `invalid_usage` finding).
    pub(crate) invalid_reported: bool,
    /// `computed` or `reported` (meaningful when priced).
    pub(crate) source: &'static str,
    /// The provider the call names (the first non-blank of [`PROVIDER_KEYS`]).
    pub(crate) provider: Option<&'a str>,
}

/// Prices one generation or embedding and writes its cost keys.
pub(crate) fn price_call<'a>(
    pricer: &dyn Pricer,
    dialects: CostAttributes,
    attributes: &'a [KeyValue],
    usage: &Usage,
    start_time: SystemTime,
    writes: &mut AttributeWrites,
) -> CallCost<'a> {
    let provider = first_string(attributes, &PROVIDER_KEYS);
    let reported = reported_cost(attributes);
    let invalid_reported = matches!(reported, Some(None));
    let (cost_usd, source, matched) = if let Some(Some(reported)) = reported {
        (reported, "reported", None)
    } else {
        let price = if usage.invalid || usage.is_empty() {
            None
        } else {
            model(attributes).and_then(|model| {
                pricer.price(&PriceQuery {
                    provider,
                    model,
                    usage,
                    time: start_time,
                })
            })
        };
        // A pricer of the user's that answers something that is not a cost prices
        // nothing.
        match price.filter(|p| p.cost_usd.is_finite() && p.cost_usd >= 0.0) {
            Some(p) => (p.cost_usd, "computed", Some(p.matched)),
            None => {
                writes.set(keys::COST_UNPRICED, true);
                return CallCost {
                    cost_usd: None,
                    invalid_reported,
                    source: "computed",
                    provider,
                };
            }
        }
    };
    writes.set(keys::COST_USD, cost_usd);
    writes.set(keys::COST_SOURCE, source);
    if let Some(matched) = matched {
        writes.set(keys::COST_MODEL, Value::String(matched.into()));
    }
    // Without a reported cost, the span has neither of the two dialect keys that are
    // also reported-cost keys: `reported_cost` looked for them already.
    for (on, key, known_absent) in [
        (
            dialects.gen_ai_usage_cost,
            keys::GEN_AI_USAGE_COST,
            reported.is_none(),
        ),
        (
            dialects.llm_cost_total,
            keys::LLM_COST_TOTAL,
            reported.is_none(),
        ),
        (dialects.operation_cost, keys::OPERATION_COST, false),
    ] {
        if on && (known_absent || last_value(attributes, key).is_none()) {
            writes.set_absent(key, cost_usd);
        }
    }
    CallCost {
        cost_usd: Some(cost_usd),
        invalid_reported,
        source,
        provider,
    }
}

/// A cost the span reports itself, in USD: the first present of `gen_ai.usage.cost`,
/// `gen_ai.usage.cost.amount` with currency `USD`, `llm.cost.total`. `Some(None)` when
/// it is present but not a finite number from 0 to [`MAX_REPORTED_COST_USD`].
fn reported_cost(attributes: &[KeyValue]) -> Option<Option<f64>> {
    let number = |value: &Value| {
        match value {
            Value::F64(v) => Some(*v),
            Value::I64(v) => Some(*v as f64),
            Value::String(s) => s.as_str().trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|v: &f64| v.is_finite() && (0.0..=MAX_REPORTED_COST_USD).contains(v))
    };
    if let Some(value) = last_value(attributes, read::cost::GEN_AI_USAGE_COST) {
        return Some(number(value));
    }
    if let Some(value) = last_value(attributes, read::cost::GEN_AI_USAGE_COST_AMOUNT) {
        let usd = matches!(
            last_value(attributes, read::cost::GEN_AI_USAGE_COST_CURRENCY),
            Some(Value::String(c)) if c.as_str().trim().eq_ignore_ascii_case("USD")
        );
        if usd {
            return Some(number(value));
        }
    }
    last_value(attributes, read::cost::LLM_COST_TOTAL).map(number)
}

/// Which cost keys a priced generation or embedding gets besides `genai_audit.cost_usd`,
/// for backends that read cost from their own keys. Each is written only when the span
/// does not already carry it.
///
/// ```
/// use genai_audit::CostAttributes;
/// // The default: `gen_ai.usage.cost` only (read by Langfuse and OpenLIT).
/// assert_eq!(CostAttributes::default(), CostAttributes::GEN_AI_USAGE_COST);
/// // Also OpenInference's `llm.cost.total`:
/// let both = CostAttributes::GEN_AI_USAGE_COST.with_llm_cost_total(true);
/// assert!(both.llm_cost_total);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostAttributes {
    /// `gen_ai.usage.cost` (on by default).
    pub gen_ai_usage_cost: bool,
    /// `llm.cost.total`, read by OpenInference backends such as Phoenix (opt-in).
    pub llm_cost_total: bool,
    /// `operation.cost` (opt-in).
    pub operation_cost: bool,
}

impl CostAttributes {
    /// No cost key besides `genai_audit.cost_usd`.
    pub const NONE: CostAttributes = CostAttributes {
        gen_ai_usage_cost: false,
        llm_cost_total: false,
        operation_cost: false,
    };
    /// `gen_ai.usage.cost` only: the default.
    pub const GEN_AI_USAGE_COST: CostAttributes = CostAttributes {
        gen_ai_usage_cost: true,
        llm_cost_total: false,
        operation_cost: false,
    };

    /// Turns `gen_ai.usage.cost` on or off.
    pub const fn with_gen_ai_usage_cost(mut self, on: bool) -> Self {
        self.gen_ai_usage_cost = on;
        self
    }

    /// Turns `llm.cost.total` on or off.
    pub const fn with_llm_cost_total(mut self, on: bool) -> Self {
        self.llm_cost_total = on;
        self
    }

    /// Turns `operation.cost` on or off.
    pub const fn with_operation_cost(mut self, on: bool) -> Self {
        self.operation_cost = on;
        self
    }
}

impl Default for CostAttributes {
    fn default() -> Self {
        CostAttributes::GEN_AI_USAGE_COST
    }
}
