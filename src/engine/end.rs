//! What happens at a span's end, in phases over one context ([`End`]): the call's
//! price, the ledger's record of the span, the rollup of what it hands up, lateness,
//! structure (totals, steps), contamination, leaks (open children), the budget, the
//! hand-up to its parent, and the writes.

use std::sync::Arc;

use opentelemetry::trace::SpanId;

use super::audit::{agent_name, Audit, Caller, EndOutcome, EndedSpan, Room, Synthetic};
use super::clock::nanos;
use super::contamination::{self, ResponseOwners};
use super::ledger::{
    Call, Contribution, Ended, Ending, Forward, OwnUsage, StartCopy, TraceKey, Wrapped,
};
use super::span_findings::{Finding, SpanFindings};
use crate::attributes::{first_string, AttributeWrites};
use crate::budget::BudgetExceeded;
use crate::findings::FindingCode;
use crate::keys::{self, read::gen_ai};
use crate::metrics::CallRecord;
use crate::pricing::call::{self as cost, CallCost};
use crate::recognition::Role;
use crate::usage::{Totals, Usage};

/// Whether a generation is one model call seen twice (see [`Audit::wrapping`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrapping {
    /// An ordinary generation.
    No,
    /// The span not counted: no cost, in no count or total.
    Wrapper,
    /// The outer span of a call counted below without usage: its usage and cost count,
    /// not a second call.
    UsageOnly,
}

/// One span's end as it goes through the phases.
struct End<'e, S> {
    span: &'e EndedSpan<'e>,
    role: Role,
    trace: TraceKey,
    caller: Caller<'e>,
    writes: AttributeWrites,
    findings: SpanFindings,
    synthetic: Vec<Synthetic<S>>,
    wrapping: Wrapping,
    /// Its usage and cost, for a generation or embedding that is not a wrapper.
    priced: Option<(Usage, CallCost<'e>)>,
    /// The hash of its response id (a generation).
    response: Option<u64>,
    /// What it is as a call, handed to the ledger with its end.
    call: Call,
    /// What it and its descendants hand to its parent, when it is not tracked since its
    /// start (or is a tracked root).
    up: Contribution,
    exceeded: Option<BudgetExceeded>,
}

/// Where the ledger placed an ending span.
struct Place<'n, S> {
    /// Its entry, when it had one.
    node: Option<&'n Ended<S>>,
    /// Its entry, when tracked since its start.
    tracked: Option<&'n Ended<S>>,
    /// Known only at its end: it hands its totals up itself.
    end_only: bool,
}

impl<S: StartCopy> Audit<S> {
    /// Writes what the engine knows about an ending span of role `role` (from
    /// [`end_role`](Self::end_role)); the writes come back in the outcome.
    pub(crate) fn on_end(
        &self,
        span: EndedSpan<'_>,
        role: Role,
        caller: Caller<'_>,
    ) -> EndOutcome<S> {
        let mut end = End {
            span: &span,
            role,
            trace: TraceKey::of(span.trace_id),
            caller,
            writes: AttributeWrites::for_span(span.attributes.len()),
            findings: SpanFindings::default(),
            synthetic: Vec::new(),
            wrapping: Wrapping::No,
            priced: None,
            response: None,
            call: Call::None,
            up: Contribution::default(),
            exceeded: None,
        };
        self.price_phase(&mut end);
        // Matched by reference: the ledger's record of the span is large, and is not moved
        // again.
        let ending = self
            .ledger
            .end(end.trace, span.id, span.parent, &mut end.call);
        let Some(place) = self.ledger_phase(&mut end, &ending) else {
            let forward = !matches!(ending, Ending::Closed(_));
            return EndOutcome {
                writes: AttributeWrites::default(),
                forward,
                synthetic: end.synthetic,
            };
        };
        self.rollup_phase(&mut end, &place);
        self.lateness_phase(&mut end, &place);
        let step_index = self.write_structure(
            end.trace,
            role,
            place.node,
            place.end_only.then_some(span.parent),
            &mut end.writes,
            caller,
        );
        self.contamination_phase(&mut end, &place, step_index);
        self.leaks_phase(&mut end, &place);
        if role == Role::Invocation {
            end.up.response = None;
            end.exceeded = self.invocation_ended(&mut end, place.node);
        }
        let hands_up = place.end_only || place.tracked.is_some_and(|t| t.parent.is_none());
        if hands_up && !end.up.is_empty() {
            let up = std::mem::take(&mut end.up);
            self.hand_up(&mut end, up);
        }
        self.writes_phase(&mut end)
    }

    /// The call: a wrapper or not, its usage and cost, and what it contributes.
    fn price_phase<'e>(&self, end: &mut End<'e, S>) {
        let (role, span) = (end.role, end.span);
        if role.is_recognised() {
            end.writes.set(keys::ROLE, role.as_str());
        }
        // One model call seen twice (a framework's generation around the client
        // library's) is counted once: the other span is the wrapper.
        let wrapped_below = if role == Role::Generation {
            let (wrapping, below) = self.wrapping(end);
            end.wrapping = wrapping;
            below
        } else {
            Wrapped::default()
        };
        // A call's usage and cost come from its own attributes: they are read before the
        // ledger is asked, so that the ledger hands the call to the span's tracked
        // ancestors as it ends the span.
        if matches!(role, Role::Generation | Role::Embedding) && end.wrapping != Wrapping::Wrapper {
            end.priced = Some(self.price(span, role, &mut end.writes, &mut end.findings));
        }
        end.call = match (role, &end.priced) {
            (Role::Generation, Some((usage, cost))) => {
                let (mut call, hash) = self.generation_call(span, usage, cost.cost_usd);
                if end.wrapping == Wrapping::UsageOnly {
                    // The call is counted on the generation below, which ended first.
                    call.totals.generations = 0;
                    call.wrapped = Wrapped::default();
                }
                end.response = hash;
                Call::Pending(call)
            }
            (Role::Tool, _) => Call::Pending(Contribution {
                totals: Totals::of_tool_call(),
                ..Contribution::default()
            }),
            // A wrapper hands up nothing but what it wraps: for a generation around it,
            // the call is directly below that one too.
            (Role::Generation, None) if end.wrapping == Wrapping::Wrapper => {
                Call::Pending(Contribution {
                    wrapped: wrapped_below,
                    ..Contribution::default()
                })
            }
            _ => Call::None,
        };
    }

    /// What the ledger knew of the span; `None` when the end stops here (a span the
    /// audit already closed, or one that is not gen-ai and was never tracked).
    fn ledger_phase<'n>(
        &self,
        end: &mut End<'_, S>,
        ending: &'n Ending<S>,
    ) -> Option<Place<'n, S>> {
        let (role, trace, span) = (end.role, end.trace, end.span);
        let mut evicted_as = None;
        let node = match ending {
            Ending::Tracked(t) => Some(t),
            &Ending::Closed(role) => {
                // Already exported, closed by the audit: its real end is only counted.
                Finding::new(FindingCode::LateEnd, role).count_only(end.caller.sink);
                return None;
            }
            &Ending::Evicted(role) => {
                evicted_as = Some(role);
                None
            }
            Ending::Untracked => None,
        };
        if node.is_none() && evicted_as.is_none() && !role.is_recognised() {
            return None;
        }
        // Tracked since its start (else: known only through what its children handed
        // up, or not at all).
        let tracked = node.filter(|t| t.tracked_at_start);
        // Known only at its end: it hands its totals up itself. Not a span evicted while
        // open (its state is gone), nor one handed to `on_end` a second time.
        let end_only = tracked.is_none()
            && evicted_as.is_none()
            && (node.is_some() || !self.ledger.has_ended(trace, span.id));
        if evicted_as == Some(role) {
            // Counted when it was evicted, under the role it had then; the span learns it
            // now, only when that is still its role (a finding is written and counted
            // once, under one role: counted as `other`, it is written nowhere).
            end.findings
                .add(Finding::new(FindingCode::Stale, role).counted_before());
        }
        Some(Place {
            node,
            tracked,
            end_only,
        })
    }

    /// What the span hands up, the call's metrics and response, and a generation's
    /// cumulative totals (with the budget they may pass).
    fn rollup_phase(&self, end: &mut End<'_, S>, place: &Place<'_, S>) {
        let (role, trace, span) = (end.role, end.trace, end.span);
        if let Some(n) = place.node {
            end.up.totals = n.totals();
            if role != Role::Invocation {
                end.up.own = n.own();
                end.up.steps = if n.tracked_at_start { 0 } else { n.steps() };
                end.up.own_responses.extend_from_slice(n.own_responses());
            }
            if !role.is_recognised() {
                // Generations below a span that plays no role are directly below its
                // parent, for a parent that is a generation.
                end.up.wrapped = n.wrapped();
            }
        }
        let invocation = place.tracked.and_then(|t| t.invocation);
        if let Some((usage, cost)) = &end.priced {
            self.record_call(end, invocation, usage, cost);
        }
        if let Some(hash) = end.response {
            // The owner of its response id: its invocation when tracked, else unknown (0)
            // and the id travels up with the totals.
            self.responses
                .remember(span.trace_id, hash, invocation.unwrap_or(0));
            if let (None, Call::Pending(call)) = (invocation, &mut end.call) {
                call.own_responses.push(hash);
            }
        }
        if let (Call::Taken(Some(c)), Role::Generation, false) =
            (&end.call, role, end.wrapping == Wrapping::Wrapper)
        {
            write_cumulative(&mut end.writes, c);
            if let Some(inv) = invocation {
                end.exceeded = self.budget_passed(end, trace, inv, c);
                if end.exceeded.is_some() {
                    end.findings
                        .add(Finding::new(FindingCode::BudgetExceeded, role));
                }
            }
        }
        // A call the ledger did not hand to tracked ancestors goes up with the rest.
        if let Call::Pending(mut call) = std::mem::take(&mut end.call) {
            end.up.totals.add(&call.totals);
            end.up.own.add(&call.own);
            end.up.response = call.response.take();
            end.up.own_responses.append(&mut call.own_responses);
            end.up.wrapped.add(call.wrapped);
        }
    }

    /// Findings made while the span was open, and `late_end` when its parent ended
    /// first.
    fn lateness_phase(&self, end: &mut End<'_, S>, place: &Place<'_, S>) {
        let (role, span) = (end.role, end.span);
        let late = match place.tracked {
            Some(t) => t.parent_ended,
            None => {
                place.end_only
                    && span
                        .parent
                        .is_some_and(|p| self.ledger.has_ended(end.trace, p))
            }
        };
        if let Some(t) = place.tracked {
            for code in t.pending.iter() {
                end.findings.add(Finding::new(code, role));
            }
        }
        if late {
            end.findings.add(Finding::new(FindingCode::LateEnd, role));
        }
    }

    /// Usage that disagrees with the calls below, a response or identity from another
    /// invocation, a step that overlaps the round before it.
    fn contamination_phase(&self, end: &mut End<'_, S>, place: &Place<'_, S>, step_index: u32) {
        let Some(n) = place.node else {
            return;
        };
        let (role, trace, span) = (end.role, end.trace, end.span);
        let mut check = contamination::Check {
            attributes: span.attributes,
            role,
            repair: self.repair(),
            writes: &mut end.writes,
            findings: &mut end.findings,
        };
        if matches!(role, Role::Invocation | Role::Step) {
            check.usage(&n.own(), &n.totals());
        }
        if role == Role::Invocation {
            check.response(
                span.trace_id,
                span.id,
                &self.responses,
                n.last_response(),
                n.own_responses(),
            );
        }
        if role == Role::Step && step_index > 0 {
            check.round(step_index);
        }
        if role.is_recognised() && role != Role::Invocation {
            if let Some(inv) = n.invocation {
                check.identity(|| self.ledger.identity(trace, inv));
            }
        }
    }

    /// Children still open: reported (and closed under `close`), and every tracked
    /// ancestor's totals marked partial. A span known only at its end is remembered,
    /// so that a child ending after it is known to end late.
    fn leaks_phase(&self, end: &mut End<'_, S>, place: &Place<'_, S>) {
        let (role, trace, span) = (end.role, end.trace, end.span);
        let Some(t) = place.tracked else {
            if place.node.is_none() && place.end_only && role.is_recognised() {
                self.ledger.remember_end(span.id, span.parent, role);
            }
            return;
        };
        if t.open_children.is_empty() {
            return;
        }
        self.open_children_at_end(
            (trace, &t.open_children, span.end_time),
            (&mut end.writes, &mut end.findings, role),
            end.caller,
            &mut end.synthetic,
        );
        // Every tracked ancestor misses what the open children will add.
        let partial = Totals {
            partial: true,
            ..Totals::default()
        };
        end.up.totals.add(&partial);
        let contribution = Contribution {
            totals: partial,
            ..Contribution::default()
        };
        self.ledger
            .contribute(trace, span.id, t.parent, None, contribution);
    }

    /// The findings written and counted (only counted on a span that is not gen-ai,
    /// which passes through untouched), and the budget callback told.
    fn writes_phase(&self, end: &mut End<'_, S>) -> EndOutcome<S> {
        let (role, caller) = (end.role, end.caller);
        let mut writes = std::mem::take(&mut end.writes);
        let findings = std::mem::take(&mut end.findings);
        let synthetic = std::mem::take(&mut end.synthetic);
        let exceeded = end.exceeded.take();
        if role.is_recognised() {
            findings.emit(&mut writes, caller.sink);
        } else {
            findings.count_only(caller.sink);
            writes = AttributeWrites::default();
        }
        if let Some(exceeded) = exceeded {
            self.notify(&exceeded, caller);
        }
        EndOutcome {
            writes,
            forward: true,
            synthetic,
        }
    }

    /// Whether an ending generation is one model call seen twice (`DESIGN.md` §2): a
    /// generation whose nearest recognised ancestor is a generation. Children end
    /// before their parents, so the choice is made as each ends:
    ///
    /// - the inner one, ending first, counts when it carries usage (input or output
    ///   tokens); without usage, under a tracked generation, it is the wrapper (the
    ///   outer one may still get usage at its end);
    /// - the outer one, at its end, is the wrapper when a generation directly below it
    ///   (no recognised span between them; a wrapper in between passes on what it
    ///   wraps) was counted with usage, or when it carries none itself; when only it
    ///   carries usage and the generation below, counted without usage, was not known
    ///   to be wrapped (the outer one was recognised only at its end), its usage and
    ///   cost are counted but not a second call;
    /// - an inner one that ends after the outer one (`late_end`) finds the call counted
    ///   already: with usage, its usage and cost are counted but not a second call;
    ///   without, it is the wrapper.
    ///
    /// So the span with usage counts, and the inner one when both carry usage; when
    /// neither does, the outer one counts if it was recognised at its start (the inner
    /// one had to be written before the outer one's usage could be known), else the
    /// inner one. A wrapper gets `genai_audit.wrapper = true`; its usage is not read
    /// (but an unusable value is still `invalid_usage`).
    fn wrapping(&self, end: &mut End<'_, S>) -> (Wrapping, Wrapped) {
        if self.ledger.len() == 0 {
            return (Wrapping::No, Wrapped::default());
        }
        let span = end.span;
        let usage = Usage::from_attributes(span.attributes);
        let carries_usage = usage.input.is_some() || usage.output.is_some();
        let wrapped = self.ledger.wrapped(end.trace, span.id);
        let wrapping = if wrapped.generations > 0 {
            if wrapped.with_usage > 0 || !carries_usage {
                Wrapping::Wrapper
            } else {
                Wrapping::UsageOnly
            }
        } else {
            match self.ledger.nearest_recognised(end.trace, span.parent) {
                Some((Role::Generation, _)) if !carries_usage => Wrapping::Wrapper,
                // The outer one ended first and was counted.
                Some((Role::Generation, false)) => Wrapping::UsageOnly,
                _ => Wrapping::No,
            }
        };
        if wrapping == Wrapping::Wrapper {
            end.writes.set(keys::WRAPPER, true);
            if usage.invalid {
                end.findings
                    .add(Finding::new(FindingCode::InvalidUsage, Role::Generation));
            }
        }
        (wrapping, wrapped)
    }

    /// Whether a generation's cumulative totals just passed its invocation's budget
    /// (the first time for that invocation): what to tell the callback.
    fn budget_passed(
        &self,
        end: &End<'_, S>,
        trace: TraceKey,
        invocation: u64,
        cumulative: &Totals,
    ) -> Option<BudgetExceeded> {
        if self.budgets.is_empty() {
            return None;
        }
        let agent = self.ledger.agent_name(trace, invocation);
        let budget = self.budgets.for_agent(agent.as_deref())?;
        if !budget.exceeded_by(cumulative) || !self.ledger.mark_budget_exceeded(trace, invocation) {
            return None;
        }
        let invocation = SpanId::from(invocation);
        Some(BudgetExceeded::new(
            agent,
            end.span.trace_id,
            invocation,
            cumulative,
            budget,
        ))
    }

    /// At an invocation's end: its event, and `budget_exceeded` when it passed its
    /// budget (what to tell the callback when no generation told it yet).
    fn invocation_ended(
        &self,
        end: &mut End<'_, S>,
        node: Option<&Ended<S>>,
    ) -> Option<BudgetExceeded> {
        let sink = end.caller.sink;
        if sink.is_none() && self.budgets.is_empty() {
            return None;
        }
        let span = end.span;
        let totals = node.map(Ended::totals).unwrap_or_default();
        let agent: Option<Arc<str>> = agent_name(span.attributes)
            .map(Arc::from)
            .or_else(|| node.and_then(|n| n.agent_name().cloned()));
        if let Some(sink) = sink {
            let cost = (totals.priced > 0).then_some(totals.cost_usd);
            sink.invocation(agent.as_deref(), cost, totals.input, totals.output);
        }
        let budget = self.budgets.for_agent(agent.as_deref())?;
        let already = node.is_some_and(Ended::budget_exceeded);
        if !already && !budget.exceeded_by(&totals) {
            return None;
        }
        end.findings
            .add(Finding::new(FindingCode::BudgetExceeded, Role::Invocation));
        let invocation = SpanId::from(span.id);
        (!already).then(|| BudgetExceeded::new(agent, span.trace_id, invocation, &totals, budget))
    }

    /// Hands what a span gathered to the parent its end names, making room in a full
    /// ledger first (the oldest spans go, as for a start).
    fn hand_up(&self, end: &mut End<'_, S>, up: Contribution) {
        let (trace, span, caller) = (end.trace, end.span, end.caller);
        let now = self.lazy_now(caller);
        if let Forward::Full(parent, up) =
            self.ledger
                .forward(trace, span.id, span.parent, up, || nanos(now()))
        {
            self.evict_due(Room::Make, &now, caller, &mut end.synthetic);
            self.ledger
                .forward(trace, span.id, Some(parent), up, || nanos(now()));
        }
    }

    /// Usage and cost of a generation or embedding, from its own attributes, with the
    /// keys and findings they give.
    fn price<'a>(
        &self,
        span: &'a EndedSpan<'a>,
        role: Role,
        writes: &mut AttributeWrites,
        findings: &mut SpanFindings,
    ) -> (Usage, CallCost<'a>) {
        let usage = Usage::from_attributes(span.attributes);
        if usage.invalid {
            findings.add(Finding::new(FindingCode::InvalidUsage, role));
        }
        if usage.cache_exclusive {
            writes.set(keys::USAGE_CACHE_EXCLUSIVE, true);
        }
        if usage.reasoning_exclusive {
            writes.set(keys::USAGE_REASONING_EXCLUSIVE, true);
        }
        let priced = cost::price_call(
            self.pricer.as_ref(),
            self.cost_attributes,
            span.attributes,
            &usage,
            span.start_time,
            writes,
        );
        if priced.invalid_reported && !usage.invalid {
            findings.add(Finding::new(FindingCode::InvalidUsage, role));
        }
        (usage, priced)
    }

    /// What a generation contributes (under `repair`, with its response, to become its
    /// invocation's last), and the hash of its response id.
    fn generation_call(
        &self,
        span: &EndedSpan<'_>,
        usage: &Usage,
        cost: Option<f64>,
    ) -> (Contribution, Option<u64>) {
        let (hash, response) = match ResponseOwners::response_of(span.attributes, self.repair()) {
            Some((hash, response)) => (Some(hash), response),
            None => (None, None),
        };
        let call = Contribution {
            totals: Totals::of_generation(usage, cost),
            own: OwnUsage {
                input: usage.input.unwrap_or(0),
                output: usage.output.unwrap_or(0),
                reporting: u32::from(usage.input.is_some() || usage.output.is_some()),
            },
            response,
            wrapped: Wrapped {
                generations: 1,
                with_usage: u32::from(usage.input.is_some() || usage.output.is_some()),
            },
            ..Contribution::default()
        };
        (call, hash)
    }

    /// A call's event, with its own agent name, else its invocation's.
    fn record_call(
        &self,
        end: &End<'_, S>,
        invocation: Option<u64>,
        usage: &Usage,
        priced: &CallCost<'_>,
    ) {
        let Some(sink) = end.caller.sink else {
            return;
        };
        let attrs = end.span.attributes;
        // Looked up only when it has none of its own.
        let own = agent_name(attrs);
        let inherited = own
            .is_none()
            .then_some(invocation)
            .flatten()
            .and_then(|inv| self.ledger.agent_name(end.trace, inv));
        let details = sink.wants_call_details();
        sink.call(&CallRecord {
            operation: details
                .then(|| first_string(attrs, &[gen_ai::OPERATION_NAME]))
                .flatten(),
            provider: priced.provider,
            model: first_string(attrs, &cost::REQUEST_MODEL_KEYS),
            response_model: details
                .then(|| first_string(attrs, &[gen_ai::RESPONSE_MODEL]))
                .flatten(),
            agent: own.or(inherited.as_deref()),
            cost_usd: priced.cost_usd,
            source: priced.source,
            input_tokens: usage.input,
            output_tokens: usage.output,
        });
    }

    /// Totals, step counts and step positions; returns the step's index (0: none).
    /// `end_only` is `Some(the parent its end names)` for a span known only at its end:
    /// a step is then counted under that parent, and an invocation without a node has
    /// no step. A span whose state is gone (evicted, or ended a second time) gets no
    /// step count.
    pub(crate) fn write_structure(
        &self,
        trace: TraceKey,
        role: Role,
        node: Option<&Ended<S>>,
        end_only: Option<Option<u64>>,
        writes: &mut AttributeWrites,
        caller: Caller<'_>,
    ) -> u32 {
        if let Some(t) = node {
            let open_children = !t.open_children.is_empty();
            let totals = t.totals();
            if role.carries_totals() && totals.has_calls() {
                write_totals(writes, &totals);
            }
            if role.carries_totals() && (totals.partial || open_children) {
                writes.set(keys::total::PARTIAL, true);
            }
        }
        match role {
            Role::Invocation => {
                if node.is_some() || end_only.is_some() {
                    writes.set(keys::STEPS, i64::from(node.map_or(0, Ended::steps)));
                }
                0
            }
            Role::Step => {
                let index = match node.filter(|t| t.tracked_at_start) {
                    Some(t) if t.step_index > 0 => t.step_index,
                    // Recognised only at its end: its position then.
                    Some(t) => t
                        .invocation
                        .map_or(0, |inv| self.ledger.next_step(trace, inv)),
                    None => {
                        let now = || nanos(self.now(caller));
                        end_only
                            .flatten()
                            .map_or(0, |p| self.ledger.count_step_under(trace, p, now))
                    }
                };
                if index > 0 {
                    writes.set(keys::STEP_INDEX, i64::from(index));
                }
                index
            }
            _ => 0,
        }
    }
}

/// The keys of one family of sums (`genai_audit.total.*` or `genai_audit.cumulative.*`).
struct SumKeys {
    input: &'static str,
    output: &'static str,
    cache_read: &'static str,
    cache_write: &'static str,
    reasoning: &'static str,
    cost_usd: &'static str,
    generations: &'static str,
}

const CUMULATIVE: SumKeys = SumKeys {
    input: keys::cumulative::INPUT_TOKENS,
    output: keys::cumulative::OUTPUT_TOKENS,
    cache_read: keys::cumulative::CACHE_READ_TOKENS,
    cache_write: keys::cumulative::CACHE_WRITE_TOKENS,
    reasoning: keys::cumulative::REASONING_TOKENS,
    cost_usd: keys::cumulative::COST_USD,
    generations: keys::cumulative::GENERATIONS,
};

const TOTAL: SumKeys = SumKeys {
    input: keys::total::INPUT_TOKENS,
    output: keys::total::OUTPUT_TOKENS,
    cache_read: keys::total::CACHE_READ_TOKENS,
    cache_write: keys::total::CACHE_WRITE_TOKENS,
    reasoning: keys::total::REASONING_TOKENS,
    cost_usd: keys::total::COST_USD,
    generations: keys::total::GENERATIONS,
};

/// Writes the sums every family has; the cost only when some call was priced.
fn write_sums(writes: &mut AttributeWrites, k: &SumKeys, t: &Totals) {
    writes.set_counts([
        (k.input, t.input),
        (k.output, t.output),
        (k.cache_read, t.cache_read),
        (k.cache_write, t.cache_write),
        (k.reasoning, t.reasoning),
    ]);
    if t.priced > 0 {
        writes.set(k.cost_usd, t.cost_usd);
    }
    writes.set_counts([(k.generations, t.generations)]);
}

fn write_cumulative(writes: &mut AttributeWrites, c: &Totals) {
    write_sums(writes, &CUMULATIVE, c);
}

fn write_totals(writes: &mut AttributeWrites, t: &Totals) {
    write_sums(writes, &TOTAL, t);
    writes.set_counts([(keys::total::TOOL_CALLS, t.tool_calls)]);
}
