//! What the engine tells besides attribute writes: findings, priced calls, ended
//! invocations and passed budgets, as values an edge records on its own meter (§7).
//!
//! Inside the engine each is handed to a [`Sink`] as it happens, borrowed from the span
//! it is about: the Rust SDK processor's sink records it on its instruments at once;
//! the event API's collects owned [`AuditEvent`]s into the verdict.

use std::cell::RefCell;

use crate::budget::BudgetExceeded;
use crate::findings::FindingCode;
use crate::metrics::CallRecord;
use crate::recognition::Role;

/// Where the engine hands the events of one call.
pub(crate) trait Sink {
    /// One finding about a span of `role`; `repaired` when the policy `repair`
    /// corrected the span.
    fn finding(&self, code: FindingCode, role: Role, repaired: bool);
    /// One priced (or unpriced) generation or embedding.
    fn call(&self, call: &CallRecord<'_>);
    /// Whether a call's operation name and response model are wanted.
    fn wants_call_details(&self) -> bool;
    /// One ended invocation.
    fn invocation(&self, agent: Option<&str>, cost_usd: Option<f64>, input: u64, output: u64);
    /// An invocation passed its budget (once per invocation).
    fn budget_exceeded(&self, exceeded: &BudgetExceeded);
}

/// Something the engine tells an edge to record (a metric or a budget event), as a
/// value: the event API returns them in each [`Verdict`](super::Verdict), and an edge
/// records them on its own meter (the Rust SDK processor records the same ones on the
/// instruments named in [`keys::metric`](crate::keys::metric)).
#[derive(Debug, Clone, PartialEq)]
pub enum AuditEvent {
    /// One finding (`genai_audit.findings`, counted by code, role and repair).
    Finding {
        /// The finding.
        code: FindingCode,
        /// The role of the span it is about.
        role: Role,
        /// Whether the policy `repair` corrected the span.
        repaired: bool,
    },
    /// One generation or embedding ended (`genai_audit.cost`, and
    /// `gen_ai.client.token.usage` when an edge records it).
    Call(CallEvent),
    /// One invocation ended (`genai_audit.invocation.cost`, `.tokens`).
    Invocation(InvocationEvent),
    /// An invocation passed its budget: what the SDK processor's budget callback gets.
    BudgetExceeded(BudgetExceeded),
}

/// A generation or embedding as the metrics see it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEvent {
    /// `gen_ai.operation.name`.
    pub operation: Option<String>,
    /// The provider it was priced for (or named).
    pub provider: Option<String>,
    /// The requested model.
    pub model: Option<String>,
    /// `gen_ai.response.model`.
    pub response_model: Option<String>,
    /// Its own agent name, else its invocation's.
    pub agent: Option<String>,
    /// Its cost, when priced.
    pub cost_usd: Option<f64>,
    /// Where the cost came from (`genai_audit.cost.source`).
    pub cost_source: &'static str,
    /// Input tokens, when reported.
    pub input_tokens: Option<u64>,
    /// Output tokens, when reported.
    pub output_tokens: Option<u64>,
}

/// An ended invocation as the metrics see it.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationEvent {
    /// Its agent name.
    pub agent: Option<String>,
    /// Its total cost, when some call below it was priced.
    pub cost_usd: Option<f64>,
    /// Its input tokens.
    pub input_tokens: u64,
    /// Its output tokens.
    pub output_tokens: u64,
}

/// The event API's sink: the events of one call, collected.
#[derive(Debug, Default)]
pub(crate) struct Collected(RefCell<Vec<AuditEvent>>);

impl Collected {
    pub(crate) fn into_events(self) -> Vec<AuditEvent> {
        self.0.into_inner()
    }

    fn push(&self, event: AuditEvent) {
        // Never borrowed twice: the engine hands one event at a time.
        if let Ok(mut events) = self.0.try_borrow_mut() {
            events.push(event);
        }
    }
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

impl Sink for Collected {
    fn finding(&self, code: FindingCode, role: Role, repaired: bool) {
        self.push(AuditEvent::Finding {
            code,
            role,
            repaired,
        });
    }

    fn call(&self, call: &CallRecord<'_>) {
        self.push(AuditEvent::Call(CallEvent {
            operation: owned(call.operation),
            provider: owned(call.provider),
            model: owned(call.model),
            response_model: owned(call.response_model),
            agent: owned(call.agent),
            cost_usd: call.cost_usd,
            cost_source: call.source,
            input_tokens: call.input_tokens,
            output_tokens: call.output_tokens,
        }));
    }

    fn wants_call_details(&self) -> bool {
        true
    }

    fn invocation(&self, agent: Option<&str>, cost_usd: Option<f64>, input: u64, output: u64) {
        self.push(AuditEvent::Invocation(InvocationEvent {
            agent: owned(agent),
            cost_usd,
            input_tokens: input,
            output_tokens: output,
        }));
    }

    fn budget_exceeded(&self, exceeded: &BudgetExceeded) {
        self.push(AuditEvent::BudgetExceeded(exceeded.clone()));
    }
}
