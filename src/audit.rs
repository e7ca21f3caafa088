//! The audit engine: what happens at a span's start and end.
//!
//! It works on [`StartedSpan`] and [`EndedSpan`], views the SDK adapter
//! ([`crate::sdk_adapter`]) builds from the SDK's types, so that the SDK's signatures can
//! change without touching this logic.

use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::{KeyValue, Value};

use crate::config::{CostAttributes, Resolved};
use crate::findings::{Finding, FindingCode, SpanFindings};
use crate::keys::{audit, cost, gen_ai, openinference, vercel};
use crate::ledger::{Ended, Ledger, NewSpan};
use crate::metrics::AuditMetrics;
use crate::pricing::{PriceQuery, Pricer};
use crate::recognition::{Recogniser, Role};
use crate::span_attributes::{last_value, AttributeWrites};
use crate::usage::{count_value, Totals, Usage};

const MODEL_KEYS: [&str; 5] = [
    gen_ai::RESPONSE_MODEL,
    gen_ai::REQUEST_MODEL,
    openinference::MODEL_NAME,
    vercel::RESPONSE_MODEL,
    vercel::MODEL_ID,
];
const PROVIDER_KEYS: [&str; 4] = [
    gen_ai::PROVIDER_NAME,
    gen_ai::SYSTEM,
    openinference::PROVIDER,
    vercel::MODEL_PROVIDER,
];

/// A span as seen at its start.
#[derive(Debug)]
pub(crate) struct StartedSpan<'a> {
    pub(crate) id: u64,
    pub(crate) parent: Option<u64>,
    pub(crate) name: &'a str,
    pub(crate) attributes: &'a [KeyValue],
}

/// A span as seen at its end; the engine edits its attributes in place.
#[derive(Debug)]
pub(crate) struct EndedSpan<'a> {
    pub(crate) id: u64,
    pub(crate) name: &'a str,
    pub(crate) start_time: SystemTime,
    pub(crate) attributes: &'a mut Vec<KeyValue>,
}

/// The engine's state and collaborators.
#[derive(Debug)]
pub(crate) struct Audit {
    pub(crate) recogniser: Recogniser,
    pub(crate) pricer: Arc<dyn Pricer>,
    pub(crate) ledger: Ledger,
    pub(crate) metrics: Option<AuditMetrics>,
    pub(crate) cost_attributes: CostAttributes,
    /// Policies and bounds, as resolved at build.
    pub(crate) settings: Resolved,
}

impl Audit {
    /// Classifies a starting span and tracks it if it is recognised or its parent is
    /// tracked.
    pub(crate) fn on_start(&self, span: StartedSpan<'_>) {
        let role = self.recogniser.classify(span.name, span.attributes);
        self.ledger.start(
            NewSpan {
                id: span.id,
                parent: span.parent,
                role,
            },
            role.is_recognised(),
        );
    }

    /// Classifies an ending span again, from its final attributes, and writes what the
    /// processor knows about it.
    pub(crate) fn on_end(&self, span: EndedSpan<'_>) {
        let tracked = self.ledger.end(span.id);
        let role = self.recogniser.classify(span.name, span.attributes);
        if tracked.is_none() && !role.is_recognised() {
            return;
        }
        let mut writes = AttributeWrites::default();
        let mut findings = SpanFindings::default();
        if role.is_recognised() {
            writes.set(audit::ROLE, role.as_str());
        }

        match role {
            Role::Generation | Role::Embedding => {
                let usage = Usage::from_attributes(span.attributes);
                if usage.invalid {
                    findings.record(Finding {
                        code: FindingCode::InvalidUsage,
                        role,
                        repaired: false,
                    });
                }
                if usage.cache_exclusive {
                    writes.set(audit::USAGE_CACHE_EXCLUSIVE, true);
                }
                if usage.reasoning_exclusive {
                    writes.set(audit::USAGE_REASONING_EXCLUSIVE, true);
                }
                let cost = self.cost(&span, &usage, &mut writes);
                match (&tracked, role) {
                    (Some(t), Role::Generation) => {
                        let contribution = Totals::of_generation(&usage, cost);
                        let cumulative =
                            self.ledger
                                .contribute(span.id, t.parent, t.invocation, &contribution);
                        if let Some(c) = cumulative {
                            write_cumulative(&mut writes, &c);
                        }
                    }
                    (Some(t), _) => self.ledger.detach(span.id, t.parent),
                    (None, _) => {}
                }
            }
            Role::Tool => {
                if let Some(t) = &tracked {
                    self.ledger.contribute(
                        span.id,
                        t.parent,
                        t.invocation,
                        &Totals::of_tool_call(),
                    );
                }
            }
            _ => {
                if let Some(t) = &tracked {
                    self.ledger.detach(span.id, t.parent);
                }
            }
        }

        if let Some(t) = &tracked {
            self.write_structure(role, t, &mut writes);
        }
        findings.emit(&mut writes, self.metrics.as_ref());
        writes.apply(span.attributes);
    }

    /// Totals, step counts and step positions.
    fn write_structure(&self, role: Role, t: &Ended, writes: &mut AttributeWrites) {
        if role.carries_totals() && t.totals.has_calls() {
            write_totals(writes, &t.totals, t.open_children > 0);
        }
        match role {
            Role::Invocation => writes.set(audit::STEPS, i64::from(t.steps)),
            Role::Step => {
                // A step recognised only at its end gets its position then.
                let index = match (t.step_index, t.invocation) {
                    (0, Some(inv)) => self.ledger.next_step(inv),
                    (index, _) => index,
                };
                if index > 0 {
                    writes.set(audit::STEP_INDEX, i64::from(index));
                }
            }
            _ => {}
        }
    }

    /// The cost of one generation or embedding: the one it reports, else the price of
    /// its usage. `None` when unpriced.
    fn cost(
        &self,
        span: &EndedSpan<'_>,
        usage: &Usage,
        writes: &mut AttributeWrites,
    ) -> Option<f64> {
        let attrs: &[KeyValue] = span.attributes;
        let (cost_usd, source, matched) = if let Some(reported) = reported_cost(attrs) {
            (reported, "reported", None)
        } else {
            let price = if usage.invalid || usage.is_empty() {
                None
            } else {
                first_string(attrs, &MODEL_KEYS).and_then(|model| {
                    self.pricer.price(&PriceQuery {
                        provider: first_string(attrs, &PROVIDER_KEYS),
                        model,
                        usage,
                        time: span.start_time,
                    })
                })
            };
            match price {
                Some(p) => (p.cost_usd, "computed", Some(p.matched)),
                None => {
                    writes.set(audit::COST_UNPRICED, true);
                    return None;
                }
            }
        };
        writes.set(audit::COST_USD, cost_usd);
        writes.set(audit::COST_SOURCE, source);
        if let Some(matched) = matched {
            writes.set(audit::COST_MODEL, Value::String(matched.to_string().into()));
        }
        let dialects = self.cost_attributes;
        for (on, key) in [
            (dialects.gen_ai_usage_cost, cost::GEN_AI_USAGE_COST),
            (dialects.llm_cost_total, cost::LLM_COST_TOTAL),
            (dialects.operation_cost, cost::OPERATION_COST),
        ] {
            if on && last_value(attrs, key).is_none() {
                writes.set(key, cost_usd);
            }
        }
        Some(cost_usd)
    }
}

/// A cost the span reports itself, in USD: `gen_ai.usage.cost`, then
/// `gen_ai.usage.cost.amount` with currency `USD`, then `llm.cost.total`.
fn reported_cost(attrs: &[KeyValue]) -> Option<f64> {
    let number = |key| {
        match last_value(attrs, key)? {
            Value::F64(v) => Some(*v),
            Value::I64(v) => Some(*v as f64),
            Value::String(s) => s.as_str().trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
    };
    number(cost::GEN_AI_USAGE_COST)
        .or_else(|| {
            let usd = matches!(
                last_value(attrs, cost::GEN_AI_USAGE_COST_CURRENCY),
                Some(Value::String(c)) if c.as_str().trim().eq_ignore_ascii_case("USD")
            );
            usd.then(|| number(cost::GEN_AI_USAGE_COST_AMOUNT))
                .flatten()
        })
        .or_else(|| number(cost::LLM_COST_TOTAL))
}

fn first_string<'a>(attrs: &'a [KeyValue], keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|key| match last_value(attrs, key)? {
        Value::String(s) if !s.as_str().trim().is_empty() => Some(s.as_str().trim()),
        _ => None,
    })
}

fn write_cumulative(writes: &mut AttributeWrites, c: &Totals) {
    use audit::cumulative as k;
    writes.set(k::INPUT_TOKENS, count_value(c.input));
    writes.set(k::OUTPUT_TOKENS, count_value(c.output));
    writes.set(k::CACHE_READ_TOKENS, count_value(c.cache_read));
    writes.set(k::CACHE_WRITE_TOKENS, count_value(c.cache_write));
    writes.set(k::REASONING_TOKENS, count_value(c.reasoning));
    if c.priced > 0 {
        writes.set(k::COST_USD, c.cost_usd);
    }
    writes.set(k::GENERATIONS, count_value(c.generations));
}

fn write_totals(writes: &mut AttributeWrites, t: &Totals, open_children: bool) {
    use audit::total as k;
    writes.set(k::INPUT_TOKENS, count_value(t.input));
    writes.set(k::OUTPUT_TOKENS, count_value(t.output));
    writes.set(k::CACHE_READ_TOKENS, count_value(t.cache_read));
    writes.set(k::CACHE_WRITE_TOKENS, count_value(t.cache_write));
    writes.set(k::REASONING_TOKENS, count_value(t.reasoning));
    if t.priced > 0 {
        writes.set(k::COST_USD, t.cost_usd);
    }
    writes.set(k::GENERATIONS, count_value(t.generations));
    writes.set(k::TOOL_CALLS, count_value(t.tool_calls));
    if t.partial || open_children {
        writes.set(k::PARTIAL, true);
    }
}
