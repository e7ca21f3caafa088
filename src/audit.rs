//! The audit engine: what happens at a span's start and end.
//!
//! It works on [`StartedSpan`] and [`EndedSpan`], views the SDK adapter
//! ([`crate::sdk_adapter`]) builds from the SDK's types, so that the SDK's signatures can
//! change without touching this logic.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::{KeyValue, Value};

use crate::config::{ContaminationPolicy, CostAttributes, LeakPolicy, Resolved};
use crate::contamination::{self, ResponseOwners};
use crate::findings::{self, FindingCode, SpanFindings};
use crate::keys::{audit, cost, gen_ai, openinference, vercel};
use crate::ledger::{
    Contribution, Ended, Ending, Identity, Kept, Ledger, NewSpan, OwnUsage, Start,
};
use crate::metrics::AuditMetrics;
use crate::pricing::{PriceQuery, Pricer};
use crate::recognition::{Recogniser, Role};
use crate::sdk_adapter::Snapshot;
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
    pub(crate) end_time: SystemTime,
    pub(crate) attributes: &'a mut Vec<KeyValue>,
}

/// What [`Audit::plan_start`] decided about a starting span, before the adapter hands
/// over what to keep of it.
#[derive(Debug)]
pub(crate) struct StartPlan {
    id: u64,
    parent: Option<u64>,
    role: Role,
    identity: Identity,
    close_policy: bool,
}

impl StartPlan {
    /// Keep the whole span (leak policy `close`: it may have to be exported closed).
    pub(crate) fn keep_snapshot(&self) -> bool {
        self.close_policy
    }

    /// Keep its name: a recognised span with a parent may be listed as an unclosed
    /// child (a root never is).
    pub(crate) fn keep_name(&self) -> bool {
        self.role.is_recognised() && self.parent.is_some()
    }
}

/// A span the audit closed, to be exported by the adapter: the span as it started,
/// ended at `end_time` with status error `status`, with the audit's attributes.
#[derive(Debug)]
pub(crate) struct Synthetic {
    pub(crate) snapshot: Box<Snapshot>,
    pub(crate) end_time: SystemTime,
    pub(crate) status: &'static str,
    pub(crate) writes: AttributeWrites,
}

/// What to do with an ended span.
#[derive(Debug)]
pub(crate) struct EndOutcome {
    /// False when the audit already exported it closed (leak policy `close`).
    pub(crate) forward: bool,
    /// Spans the audit closed because this one ended with them open.
    pub(crate) synthetic: Vec<Synthetic>,
}

/// The source of "now", for span ages (the builder's `with_clock`).
pub(crate) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The engine's state and collaborators.
pub(crate) struct Audit {
    pub(crate) recogniser: Recogniser,
    pub(crate) pricer: Arc<dyn Pricer>,
    pub(crate) ledger: Ledger,
    pub(crate) responses: ResponseOwners,
    pub(crate) metrics: Option<AuditMetrics>,
    pub(crate) cost_attributes: CostAttributes,
    pub(crate) clock: Clock,
    /// Policies and bounds, as resolved at build.
    pub(crate) settings: Resolved,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("recogniser", &self.recogniser)
            .field("pricer", &self.pricer)
            .field("ledger", &self.ledger)
            .field("metrics", &self.metrics.is_some())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Nanoseconds since the Unix epoch (0 before it).
pub(crate) fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Audit {
    pub(crate) fn close_policy(&self) -> bool {
        self.settings.leak_policy == LeakPolicy::Close
    }

    fn repair(&self) -> bool {
        self.settings.contamination_policy == ContaminationPolicy::Repair
    }

    /// Classifies a starting span.
    pub(crate) fn plan_start(&self, span: &StartedSpan<'_>) -> StartPlan {
        let role = self.recogniser.classify(span.name, span.attributes);
        let identity = if role == Role::Invocation {
            contamination::identity_of(span.attributes)
        } else {
            Identity::default()
        };
        StartPlan {
            id: span.id,
            parent: span.parent,
            role,
            identity,
            close_policy: self.close_policy(),
        }
    }

    /// Tracks a starting span if it is recognised or its parent is tracked, after
    /// evicting what is due (returned, closed, under leak policy `close`).
    ///
    /// `kept` makes what the span keeps from its start; it is called only when the span
    /// is tracked, so the fast path never copies or boxes anything.
    pub(crate) fn start(&self, plan: StartPlan, kept: impl FnOnce() -> Kept) -> Vec<Synthetic> {
        let mut synthetic = Vec::new();
        let mut kept = Some(kept);
        let span = NewSpan {
            id: plan.id,
            parent: plan.parent,
            role: plan.role,
            identity: plan.identity,
        };
        let recognised = plan.role.is_recognised();
        // The clock is read at most once per start, and only for a tracked span.
        let now = std::cell::OnceCell::new();
        let now = || *now.get_or_init(|| (self.clock)());
        match self
            .ledger
            .start(span, recognised, || nanos(now()), &mut kept)
        {
            Start::Untracked => {}
            Start::Tracked => self.evict_due(false, now, &mut synthetic),
            Start::Full(span) => {
                // Make room (the oldest spans go first), then try once more.
                self.evict_due(true, now, &mut synthetic);
                self.ledger
                    .start(span, recognised, || nanos(now()), &mut kept);
            }
        }
        synthetic
    }

    /// Evicts, a bounded number per call, the spans tracked for longer than the maximum
    /// age and, when the ledger is over capacity (or full, with `make_room`), the
    /// oldest.
    fn evict_due(
        &self,
        make_room: bool,
        now: impl Fn() -> SystemTime,
        synthetic: &mut Vec<Synthetic>,
    ) {
        let max_age = u64::try_from(self.settings.max_span_age.as_nanos()).unwrap_or(u64::MAX);
        self.ledger.evict_due(
            || nanos(now()).saturating_sub(max_age),
            make_room,
            |ended| self.evicted(ended, now(), synthetic),
        );
    }

    /// Evicts every span still open (at shutdown); returns those to export closed.
    pub(crate) fn shutdown(&self) -> Vec<Synthetic> {
        let mut synthetic = Vec::new();
        let now = (self.clock)();
        self.ledger
            .evict_all(|ended| self.evicted(ended, now, &mut synthetic));
        synthetic
    }

    /// Classifies an ending span again, from its final attributes, and writes what the
    /// processor knows about it.
    pub(crate) fn on_end(&self, span: EndedSpan<'_>) -> EndOutcome {
        let mut outcome = EndOutcome {
            forward: true,
            synthetic: Vec::new(),
        };
        let mut evicted_as = None;
        let tracked = match self.ledger.end(span.id) {
            Ending::Tracked(t) => Some(t),
            Ending::Closed(role) => {
                // Already exported, closed by the audit: its real end is only counted.
                findings::count_only(self.metrics.as_ref(), FindingCode::LateEnd, role);
                outcome.forward = false;
                return outcome;
            }
            Ending::Evicted(role) => {
                evicted_as = Some(role);
                None
            }
            Ending::Untracked => None,
        };
        let role = self.recogniser.classify(span.name, span.attributes);
        if tracked.is_none() && evicted_as.is_none() && !role.is_recognised() {
            return outcome;
        }
        let mut writes = AttributeWrites::default();
        let mut findings = SpanFindings::default();
        if role.is_recognised() {
            writes.set(audit::ROLE, role.as_str());
        }
        if evicted_as.is_some() {
            // Counted when it was evicted; the span itself learns it now.
            findings.note(FindingCode::Stale, role);
        }

        match role {
            Role::Generation | Role::Embedding => {
                self.call(&span, role, tracked.as_ref(), &mut writes, &mut findings)
            }
            Role::Tool => {
                if let Some(t) = &tracked {
                    let contribution = Contribution {
                        totals: Totals::of_tool_call(),
                        ..Contribution::default()
                    };
                    self.ledger
                        .contribute(span.id, t.parent, t.invocation, contribution);
                }
            }
            _ => {
                if let Some(t) = &tracked {
                    self.ledger.detach(span.id, t.parent);
                }
            }
        }

        if let Some(t) = &tracked {
            for code in t.pending.iter() {
                findings.record(code, role, false);
            }
            if t.parent_ended {
                findings.record(FindingCode::LateEnd, role, false);
            }
            let step_index = self.write_structure(role, t, &mut writes);
            let attrs: &[KeyValue] = span.attributes;
            let mut check = contamination::Check {
                attributes: attrs,
                role,
                repair: self.repair(),
                writes: &mut writes,
                findings: &mut findings,
            };
            if matches!(role, Role::Invocation | Role::Step) {
                check.usage(&t.own, &t.totals);
            }
            if role == Role::Invocation {
                check.response(span.id, &self.responses, t.last_response.as_deref());
            }
            if role == Role::Step && step_index > 0 {
                check.round(step_index);
            }
            if role.is_recognised() && role != Role::Invocation {
                if let Some(inv) = t.invocation {
                    check.identity(|| self.ledger.identity(inv));
                }
            }
            if !t.open_children.is_empty() {
                self.open_children_at_end(
                    &t.open_children,
                    span.end_time,
                    (&mut writes, &mut findings, role),
                    &mut outcome.synthetic,
                );
            }
        }
        findings.emit(&mut writes, self.metrics.as_ref());
        writes.apply(span.attributes);
        outcome
    }

    /// Usage, cost and contribution of a generation or embedding.
    fn call(
        &self,
        span: &EndedSpan<'_>,
        role: Role,
        tracked: Option<&Ended>,
        writes: &mut AttributeWrites,
        findings: &mut SpanFindings,
    ) {
        let usage = Usage::from_attributes(span.attributes);
        if usage.invalid {
            findings.record(FindingCode::InvalidUsage, role, false);
        }
        if usage.cache_exclusive {
            writes.set(audit::USAGE_CACHE_EXCLUSIVE, true);
        }
        if usage.reasoning_exclusive {
            writes.set(audit::USAGE_REASONING_EXCLUSIVE, true);
        }
        let cost = self.cost(span, &usage, writes);
        let Some(t) = tracked else { return };
        if role != Role::Generation {
            self.ledger.detach(span.id, t.parent);
            return;
        }
        let attrs: &[KeyValue] = span.attributes;
        let response = t
            .invocation
            .and_then(|inv| self.responses.record(attrs, inv, self.repair()));
        let contribution = Contribution {
            totals: Totals::of_generation(&usage, cost),
            own: OwnUsage {
                input: usage.input.unwrap_or(0),
                output: usage.output.unwrap_or(0),
                reporting: u32::from(usage.input.is_some() || usage.output.is_some()),
            },
            response,
        };
        let cumulative = self
            .ledger
            .contribute(span.id, t.parent, t.invocation, contribution);
        if let Some(c) = cumulative {
            write_cumulative(writes, &c);
        }
    }

    /// Totals, step counts and step positions; returns the step's index (0: none).
    pub(crate) fn write_structure(
        &self,
        role: Role,
        t: &Ended,
        writes: &mut AttributeWrites,
    ) -> u32 {
        if role.carries_totals() && t.totals.has_calls() {
            write_totals(writes, &t.totals, !t.open_children.is_empty());
        }
        match role {
            Role::Invocation => {
                writes.set(audit::STEPS, i64::from(t.steps));
                0
            }
            Role::Step => {
                // A step recognised only at its end gets its position then.
                let index = match (t.step_index, t.invocation) {
                    (0, Some(inv)) => self.ledger.next_step(inv),
                    (index, _) => index,
                };
                if index > 0 {
                    writes.set(audit::STEP_INDEX, i64::from(index));
                }
                index
            }
            _ => 0,
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
                writes.set_absent(key, cost_usd);
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
