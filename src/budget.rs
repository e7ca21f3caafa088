//! Budgets per invocation: the cost in USD and/or the tokens (input + output) an agent
//! run may use before the processor reports it, and tells your code so that it can stop
//! the run.
//!
//! ```
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use genai_audit::{Budget, GenAiAuditProcessor};
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SimpleSpanProcessor};
//!
//! let stop = Arc::new(AtomicBool::new(false));
//! let flag = stop.clone();
//! let audit = GenAiAuditProcessor::builder(SimpleSpanProcessor::new(InMemorySpanExporter::default()))
//!     // Every invocation: at most $0.50 or 200 000 tokens; the planner gets $2.
//!     .with_budget(Budget::usd(0.50).with_tokens(200_000))
//!     .with_budget(Budget::usd(2.0).for_agent("planner"))
//!     .on_budget_exceeded(move |exceeded| {
//!         eprintln!("{:?} ran over budget at ${:.4}", exceeded.agent_name(), exceeded.cost_usd());
//!         flag.store(true, Ordering::Relaxed);
//!     })
//!     .build();
//! # drop(audit);
//! ```

use std::sync::Arc;

use opentelemetry::trace::{SpanId, TraceId};

use crate::usage::Totals;

/// A budget per invocation: a cost in USD, a number of tokens (input + output), or
/// both (whichever is passed first), for every invocation or for one agent's.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    usd: Option<f64>,
    tokens: Option<u64>,
    agent: Option<String>,
}

impl Budget {
    /// At most `usd` US dollars per invocation.
    pub fn usd(usd: f64) -> Self {
        Budget {
            usd: Some(usd),
            tokens: None,
            agent: None,
        }
    }

    /// At most `tokens` tokens (input + output) per invocation.
    pub fn tokens(tokens: u64) -> Self {
        Budget {
            usd: None,
            tokens: Some(tokens),
            agent: None,
        }
    }

    /// This budget with a cost limit too.
    pub fn with_usd(mut self, usd: f64) -> Self {
        self.usd = Some(usd);
        self
    }

    /// This budget with a token limit too.
    pub fn with_tokens(mut self, tokens: u64) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// This budget only for the invocations of the agent named `agent`
    /// (`gen_ai.agent.name`); it replaces the budget for every invocation there.
    pub fn for_agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// The cost limit in USD, if any.
    pub fn usd_limit(&self) -> Option<f64> {
        self.usd
    }

    /// The token limit, if any.
    pub fn token_limit(&self) -> Option<u64> {
        self.tokens
    }

    /// The agent this budget is for (`None`: every invocation).
    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// Whether the limits can be used: a cost limit is a finite number above 0, a token
    /// limit at least 1, and at least one is set.
    pub(crate) fn is_valid(&self) -> bool {
        let usd_ok = self.usd.is_none_or(|u| u.is_finite() && u > 0.0);
        let tokens_ok = self.tokens.is_none_or(|t| t >= 1);
        usd_ok && tokens_ok && (self.usd.is_some() || self.tokens.is_some())
    }

    /// Whether an invocation's sums pass the budget (tokens: input + output).
    pub(crate) fn exceeded_by(&self, totals: &Totals) -> bool {
        let tokens = totals.input.saturating_add(totals.output);
        self.usd.is_some_and(|limit| totals.cost_usd > limit)
            || self.tokens.is_some_and(|limit| tokens > limit)
    }
}

/// The budgets in force: one per agent, and one for every other invocation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Budgets {
    every: Option<Budget>,
    by_agent: Vec<Budget>,
}

impl Budgets {
    pub(crate) fn new(budgets: impl IntoIterator<Item = Budget>) -> Self {
        let mut out = Budgets::default();
        for budget in budgets {
            if budget.agent.is_some() {
                out.by_agent.retain(|b| b.agent != budget.agent);
                out.by_agent.push(budget);
            } else {
                out.every = Some(budget);
            }
        }
        out
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.every.is_none() && self.by_agent.is_empty()
    }

    /// The budget of an invocation of `agent`.
    pub(crate) fn for_agent(&self, agent: Option<&str>) -> Option<&Budget> {
        agent
            .and_then(|name| {
                self.by_agent
                    .iter()
                    .find(|b| b.agent.as_deref() == Some(name))
            })
            .or(self.every.as_ref())
    }
}

/// An invocation that passed its budget: given once per invocation to the callback set
/// with the builder's `on_budget_exceeded`, on the thread that ended the span that
/// passed it, outside every lock of the processor.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetExceeded {
    pub(crate) agent_name: Option<Arc<str>>,
    pub(crate) trace_id: TraceId,
    pub(crate) invocation: SpanId,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cost_usd: f64,
    pub(crate) generations: u64,
    pub(crate) budget: Budget,
}

impl BudgetExceeded {
    /// The report of an invocation whose sums passed `budget`.
    pub(crate) fn new(
        agent_name: Option<Arc<str>>,
        trace_id: TraceId,
        invocation: SpanId,
        totals: &Totals,
        budget: &Budget,
    ) -> Self {
        BudgetExceeded {
            agent_name,
            trace_id,
            invocation,
            input_tokens: totals.input,
            output_tokens: totals.output,
            cost_usd: totals.cost_usd,
            generations: totals.generations,
            budget: budget.clone(),
        }
    }

    /// The invocation's `gen_ai.agent.name`, when known.
    pub fn agent_name(&self) -> Option<&str> {
        self.agent_name.as_deref()
    }

    /// The trace of the invocation.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The invocation's span id.
    pub fn invocation_span_id(&self) -> SpanId {
        self.invocation
    }

    /// Input tokens of the invocation so far.
    pub fn input_tokens(&self) -> u64 {
        self.input_tokens
    }

    /// Output tokens of the invocation so far.
    pub fn output_tokens(&self) -> u64 {
        self.output_tokens
    }

    /// The invocation's cost so far, in USD (priced calls only).
    pub fn cost_usd(&self) -> f64 {
        self.cost_usd
    }

    /// Generations of the invocation so far.
    pub fn generations(&self) -> u64 {
        self.generations
    }

    /// The budget it passed.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }
}

/// The callback of `on_budget_exceeded`.
pub(crate) type BudgetCallback = Arc<dyn Fn(&BudgetExceeded) + Send + Sync>;
