//! The engine: what happens at a span's start and end.
//!
//! It works on [`StartedSpan`] and [`EndedSpan`], views the processor builds from the
//! SDK's types, so that the SDK's signatures can change without touching this logic.
//! The only SDK value it holds is the start copy kept under leak policy `close`, and it
//! holds it as an opaque [`StartCopy`].

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::{otel_warn, KeyValue};

use super::clock::{nanos, AuditClock, Clock};
pub(crate) use super::contamination::ForeignResponses;
use super::contamination::{self, ResponseOwners};
use super::findings::{Finding, SpanFindings};
use super::ledger::{
    Call, Contribution, Ended, Ending, Forward, Identity, Kept, Ledger, NewSpan, OwnUsage, Start,
    StartCopy, TraceKey, Wrapped,
};
use crate::attributes::{first_string, AttributeWrites};
use crate::budget::{BudgetCallback, BudgetExceeded, Budgets};
use crate::config::{ContaminationPolicy, LeakPolicy, Resolved};
use crate::cost::{self, CallCost, CostAttributes};
use crate::findings::FindingCode;
use crate::keys::{self, read::gen_ai};
use crate::metrics::{AuditMetrics, CallRecord, MetricOptions};
use crate::pricing::Pricer;
use crate::recognition::{Recogniser, Role};
use crate::usage::{Totals, Usage};

/// A span as seen at its start.
#[derive(Debug)]
pub(crate) struct StartedSpan<'a> {
    pub(crate) id: u64,
    pub(crate) trace_id: TraceId,
    pub(crate) parent: Option<u64>,
    /// Its own start time.
    pub(crate) start_time: SystemTime,
    pub(crate) name: &'a str,
    pub(crate) attributes: &'a [KeyValue],
}

/// A span as seen at its end; the engine edits its attributes in place.
#[derive(Debug)]
pub(crate) struct EndedSpan<'a> {
    pub(crate) id: u64,
    pub(crate) trace_id: TraceId,
    /// The parent the span names, unless it is remote (in another process).
    pub(crate) parent: Option<u64>,
    pub(crate) start_time: SystemTime,
    pub(crate) end_time: SystemTime,
    pub(crate) attributes: &'a mut Vec<KeyValue>,
}

/// What [`Audit::plan_start`] decided about a starting span, before the adapter hands
/// over what to keep of it.
#[derive(Debug)]
pub(crate) struct StartPlan {
    id: u64,
    trace: TraceKey,
    parent: Option<u64>,
    start_time: SystemTime,
    role: Role,
    identity: Identity,
    agent_name: Option<Arc<str>>,
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
pub(crate) struct Synthetic<S> {
    pub(crate) snapshot: Box<S>,
    pub(crate) end_time: SystemTime,
    pub(crate) status: &'static str,
    pub(crate) writes: AttributeWrites,
}

/// What to do with an ended span.
#[derive(Debug)]
pub(crate) struct EndOutcome<S> {
    /// False when the audit already exported it closed (leak policy `close`).
    pub(crate) forward: bool,
    /// Spans the audit closed because this one ended with them open.
    pub(crate) synthetic: Vec<Synthetic<S>>,
}

/// The engine's state and collaborators.
pub(crate) struct Audit<S> {
    recogniser: Recogniser,
    pricer: Arc<dyn Pricer>,
    ledger: Ledger<S>,
    responses: ResponseOwners,
    metrics: Option<AuditMetrics>,
    cost_attributes: CostAttributes,
    clock: AuditClock,
    /// Policies and bounds, as resolved at build.
    settings: Resolved,
    budgets: Budgets,
    on_exceeded: Option<BudgetCallback>,
    /// Set once a budget callback panicked (warned once).
    callback_panicked: AtomicBool,
}

/// What the engine is made of, as the builder assembled it.
pub(crate) struct Parts<'a> {
    pub(crate) settings: Resolved,
    pub(crate) recogniser: Recogniser,
    pub(crate) pricer: Arc<dyn Pricer>,
    pub(crate) cost_attributes: CostAttributes,
    /// Turns the metrics on.
    pub(crate) meter_provider: Option<&'a dyn opentelemetry::metrics::MeterProvider>,
    pub(crate) metric_options: MetricOptions,
    pub(crate) clock: Option<Clock>,
    pub(crate) budgets: Budgets,
    pub(crate) on_exceeded: Option<BudgetCallback>,
    /// The command's index of response ids in other traces (scopes the response
    /// memory to each trace); `None` in process.
    pub(crate) foreign_responses: Option<Arc<dyn ForeignResponses>>,
}

impl<S: StartCopy> std::fmt::Debug for Audit<S> {
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

impl<S: StartCopy> Audit<S> {
    /// An engine made of these parts.
    pub(crate) fn new(parts: Parts<'_>) -> Self {
        let settings = parts.settings;
        let ledger = Ledger::new(
            settings.max_tracked_spans,
            settings.max_span_age,
            settings.leak_policy == LeakPolicy::Close,
        );
        let metrics = parts
            .meter_provider
            .map(|mp| AuditMetrics::new(mp, ledger.len_handle(), parts.metric_options));
        Audit {
            recogniser: parts.recogniser,
            pricer: parts.pricer,
            responses: ResponseOwners::new(settings.max_tracked_spans, parts.foreign_responses),
            ledger,
            metrics,
            cost_attributes: parts.cost_attributes,
            clock: AuditClock::new(parts.clock),
            settings,
            budgets: parts.budgets,
            on_exceeded: parts.on_exceeded,
            callback_panicked: AtomicBool::new(false),
        }
    }

    /// Calls the budget callback, outside every lock; a callback that panics is caught
    /// (and reported once).
    fn notify(&self, exceeded: &BudgetExceeded) {
        let Some(callback) = &self.on_exceeded else {
            return;
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(exceeded)));
        if result.is_err() && !self.callback_panicked.swap(true, Ordering::Relaxed) {
            otel_warn!(name: "GenAiAudit.BudgetCallbackPanicked", reason = "the budget callback panicked; the processor goes on");
        }
    }

    /// "Now" by the processor's clock, read at most once, and only when asked for.
    fn lazy_now(&self) -> impl Fn() -> SystemTime + '_ {
        let now = Cell::new(None);
        move || {
            let found = now.get().unwrap_or_else(|| self.clock.now());
            now.set(Some(found));
            found
        }
    }

    /// "Now" at the start of a span that started at `span_start`, found at most once
    /// and only when asked for (see [`AuditClock::at_start`]).
    fn lazy_start_now(&self, span_start: SystemTime) -> impl Fn() -> (SystemTime, u64) + '_ {
        let now = Cell::new(None);
        move || {
            let found = now.get().unwrap_or_else(|| self.clock.at_start(span_start));
            now.set(Some(found));
            found
        }
    }

    /// The policies and bounds in force.
    pub(crate) fn settings(&self) -> &Resolved {
        &self.settings
    }

    pub(super) fn ledger(&self) -> &Ledger<S> {
        &self.ledger
    }

    pub(super) fn metrics(&self) -> Option<&AuditMetrics> {
        self.metrics.as_ref()
    }

    pub(crate) fn close_policy(&self) -> bool {
        self.settings.leak_policy == LeakPolicy::Close
    }

    fn repair(&self) -> bool {
        self.settings.contamination_policy == ContaminationPolicy::Repair
    }

    /// Classifies a starting span.
    ///
    /// `None` when the span cannot be tracked: it is not recognised and nothing is
    /// tracked, so neither is its parent (the fast path of spans that are not gen-ai).
    #[inline]
    pub(crate) fn plan_start(&self, span: &StartedSpan<'_>) -> Option<StartPlan> {
        let role = self.recogniser.classify_in_context(
            span.name,
            span.attributes,
            span.parent.is_none(),
            || {
                let trace = TraceKey::of(span.trace_id);
                span.parent.and_then(|p| self.ledger.role_of(trace, p))
            },
        );
        if !role.is_recognised() && self.ledger.len() == 0 {
            return None;
        }
        Some(self.plan(span, role))
    }

    /// The plan of a span that may be tracked.
    #[inline(never)]
    fn plan(&self, span: &StartedSpan<'_>, role: Role) -> StartPlan {
        let (identity, agent_name) = if role == Role::Invocation {
            let agent_name = (self.metrics.is_some() || !self.budgets.is_empty())
                .then(|| agent_name(span.attributes))
                .flatten()
                .map(Arc::from);
            (contamination::identity_of(span.attributes), agent_name)
        } else {
            (Identity::default(), None)
        };
        StartPlan {
            id: span.id,
            trace: TraceKey::of(span.trace_id),
            parent: span.parent,
            start_time: span.start_time,
            role,
            identity,
            agent_name,
            close_policy: self.close_policy(),
        }
    }

    /// Tracks a starting span if it is recognised or its parent is tracked, after
    /// evicting what is due (returned, closed, under leak policy `close`).
    ///
    /// `kept` makes what the span keeps from its start; it is called only when the span
    /// is tracked, so the fast path never copies or boxes anything.
    pub(crate) fn start(
        &self,
        plan: StartPlan,
        kept: impl FnOnce() -> Kept<S>,
    ) -> Vec<Synthetic<S>> {
        let mut synthetic = Vec::new();
        let mut kept = Some(kept);
        let span = NewSpan {
            id: plan.id,
            parent: plan.parent,
            role: plan.role,
            identity: plan.identity,
            agent_name: plan.agent_name,
        };
        let recognised = plan.role.is_recognised();
        // "Now" is found at most once per start, and only for a tracked span.
        let now = self.lazy_start_now(plan.start_time);
        match self
            .ledger
            .start(plan.trace, span, recognised, || now().1, &mut kept)
        {
            Start::Untracked => {}
            Start::Tracked { due: false } => {}
            Start::Tracked { due: true } => self.evict_due(false, || now().0, &mut synthetic),
            Start::Full(span) => {
                // Make room (the oldest spans go first), then try once more.
                self.evict_due(true, || now().0, &mut synthetic);
                self.ledger
                    .start(plan.trace, span, recognised, || now().1, &mut kept);
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
        synthetic: &mut Vec<Synthetic<S>>,
    ) {
        self.ledger.evict_due(
            || nanos(now()),
            make_room,
            |ended| self.evicted(ended, now(), synthetic),
        );
    }

    /// Evicts every span still open (at shutdown); returns those to export closed.
    pub(crate) fn shutdown(&self) -> Vec<Synthetic<S>> {
        let mut synthetic = Vec::new();
        let now = self.clock.now();
        self.ledger
            .evict_all(|ended| self.evicted(ended, now, &mut synthetic));
        synthetic
    }

    /// The role of an ending span, classified again from its final attributes, where
    /// it sits (`parent`: its parent in this process, looked up only for the names
    /// that need it).
    pub(crate) fn end_role(
        &self,
        name: &str,
        attributes: &[KeyValue],
        trace_id: TraceId,
        parent: Option<u64>,
    ) -> Role {
        self.recogniser
            .classify_in_context(name, attributes, parent.is_none(), || {
                parent.and_then(|p| self.ledger.role_of(TraceKey::of(trace_id), p))
            })
    }

    /// Whether the end of a span of this role (from [`end_role`](Self::end_role)) needs
    /// [`on_end`](Self::on_end): not when it is not recognised and nothing is tracked
    /// or was closed or evicted by the audit (the fast path of spans that are not
    /// gen-ai).
    pub(crate) fn audits_end(&self, role: Role) -> bool {
        role.is_recognised() || !self.ledger.is_quiet()
    }

    /// Writes what the processor knows about an ending span of role `role` (from
    /// [`end_role`](Self::end_role)).
    pub(crate) fn on_end(&self, span: EndedSpan<'_>, role: Role) -> EndOutcome<S> {
        let mut outcome = EndOutcome {
            forward: true,
            synthetic: Vec::new(),
        };
        let mut evicted_as = None;
        let trace = TraceKey::of(span.trace_id);
        let mut writes = AttributeWrites::for_span(span.attributes.len());
        let mut findings = SpanFindings::default();
        if role.is_recognised() {
            writes.set(keys::ROLE, role.as_str());
        }
        // One model call seen twice (a framework's generation around the client
        // library's) is counted once: the other span is the wrapper.
        let (wrapping, wrapped_below) = if role == Role::Generation {
            self.wrapping(trace, &span, &mut writes, &mut findings)
        } else {
            (Wrapping::No, Wrapped::default())
        };
        // A call's usage and cost come from its own attributes: they are read before the
        // ledger is asked, so that the ledger hands the call to the span's tracked
        // ancestors as it ends the span.
        let priced = (matches!(role, Role::Generation | Role::Embedding)
            && wrapping != Wrapping::Wrapper)
            .then(|| self.price(&span, role, &mut writes, &mut findings));
        let mut response = None;
        let mut call = match (role, &priced) {
            (Role::Generation, Some((usage, cost))) => {
                let (mut call, hash) = self.generation_call(span.attributes, usage, cost.cost_usd);
                if wrapping == Wrapping::UsageOnly {
                    // The call is counted on the generation below, which ended first.
                    call.totals.generations = 0;
                    call.wrapped = Wrapped::default();
                }
                response = hash;
                Call::Pending(call)
            }
            (Role::Tool, _) => Call::Pending(Contribution {
                totals: Totals::of_tool_call(),
                ..Contribution::default()
            }),
            // A wrapper hands up nothing but what it wraps: for a generation around it,
            // the call is directly below that one too.
            (Role::Generation, None) if wrapping == Wrapping::Wrapper => {
                Call::Pending(Contribution {
                    wrapped: wrapped_below,
                    ..Contribution::default()
                })
            }
            _ => Call::None,
        };
        // Matched by reference: the ledger's record of the span is large, and is not moved
        // again.
        let ending = self.ledger.end(trace, span.id, span.parent, &mut call);
        let node = match &ending {
            Ending::Tracked(t) => Some(t),
            &Ending::Closed(role) => {
                // Already exported, closed by the audit: its real end is only counted.
                Finding::new(FindingCode::LateEnd, role).count_only(self.metrics());
                outcome.forward = false;
                return outcome;
            }
            &Ending::Evicted(role) => {
                evicted_as = Some(role);
                None
            }
            Ending::Untracked => None,
        };
        if node.is_none() && evicted_as.is_none() && !role.is_recognised() {
            return outcome;
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
            findings.add(Finding::new(FindingCode::Stale, role).counted_before());
        }

        // What this span and its descendants hand to its parent, when it is not tracked
        // since its start (or is a tracked root).
        let mut up = Contribution::default();
        if let Some(n) = node {
            up.totals = n.totals();
            if role != Role::Invocation {
                up.own = n.own();
                up.steps = if n.tracked_at_start { 0 } else { n.steps() };
                up.own_responses.extend_from_slice(n.own_responses());
            }
            if !role.is_recognised() {
                // Generations below a span that plays no role are directly below its
                // parent, for a parent that is a generation.
                up.wrapped = n.wrapped();
            }
        }
        let invocation = tracked.and_then(|t| t.invocation);
        if let Some((usage, cost)) = &priced {
            self.record_call(&span, trace, invocation, usage, cost);
        }
        if let Some(hash) = response {
            // The owner of its response id: its invocation when tracked, else unknown (0)
            // and the id travels up with the totals.
            self.responses
                .remember(span.trace_id, hash, invocation.unwrap_or(0));
            if let (None, Call::Pending(call)) = (invocation, &mut call) {
                call.own_responses.push(hash);
            }
        }
        let mut exceeded = None;
        if let (Call::Taken(Some(c)), Role::Generation, false) =
            (&call, role, wrapping == Wrapping::Wrapper)
        {
            write_cumulative(&mut writes, c);
            if let Some(inv) = invocation {
                exceeded = self.budget_passed(&span, trace, inv, c);
                if exceeded.is_some() {
                    findings.add(Finding::new(FindingCode::BudgetExceeded, role));
                }
            }
        }
        // A call the ledger did not hand to tracked ancestors goes up with the rest.
        if let Call::Pending(mut call) = call {
            up.totals.add(&call.totals);
            up.own.add(&call.own);
            up.response = call.response.take();
            up.own_responses.append(&mut call.own_responses);
            up.wrapped.add(call.wrapped);
        }

        let late = match tracked {
            Some(t) => t.parent_ended,
            None => end_only && span.parent.is_some_and(|p| self.ledger.has_ended(trace, p)),
        };
        if let Some(t) = tracked {
            for code in t.pending.iter() {
                findings.add(Finding::new(code, role));
            }
        }
        if late {
            findings.add(Finding::new(FindingCode::LateEnd, role));
        }
        let open_children = tracked.is_some_and(|t| !t.open_children.is_empty());
        let at_end = end_only.then_some(span.parent);
        let step_index = self.write_structure(trace, role, node, at_end, &mut writes);
        if let Some(n) = node {
            let attrs: &[KeyValue] = span.attributes;
            let mut check = contamination::Check {
                attributes: attrs,
                role,
                repair: self.repair(),
                writes: &mut writes,
                findings: &mut findings,
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
        if let Some(t) = tracked {
            if open_children {
                self.open_children_at_end(
                    trace,
                    &t.open_children,
                    span.end_time,
                    (&mut writes, &mut findings, role),
                    &mut outcome.synthetic,
                );
                // Every tracked ancestor misses what the open children will add.
                let partial = Totals {
                    partial: true,
                    ..Totals::default()
                };
                up.totals.add(&partial);
                let contribution = Contribution {
                    totals: partial,
                    ..Contribution::default()
                };
                self.ledger
                    .contribute(trace, span.id, t.parent, None, contribution);
            }
        } else if node.is_none() && end_only && role.is_recognised() {
            // Remembered so that a child ending after it is known to end late.
            self.ledger.remember_end(span.id, span.parent, role);
        }
        if role == Role::Invocation {
            up.response = None;
            exceeded = self.invocation_ended(&span, node, &mut findings);
        }
        let hands_up = end_only || tracked.is_some_and(|t| t.parent.is_none());
        if hands_up && !up.is_empty() {
            self.hand_up(trace, span.id, span.parent, up, &mut outcome.synthetic);
        }
        if role.is_recognised() {
            findings.emit(&mut writes, self.metrics());
            writes.apply(span.attributes);
        } else {
            // A span that is not gen-ai passes through untouched; findings about it
            // are only counted.
            findings.count_only(self.metrics());
        }
        if let Some(exceeded) = exceeded {
            self.notify(&exceeded);
        }
        outcome
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
    fn wrapping(
        &self,
        trace: TraceKey,
        span: &EndedSpan<'_>,
        writes: &mut AttributeWrites,
        findings: &mut SpanFindings,
    ) -> (Wrapping, Wrapped) {
        if self.ledger.len() == 0 {
            return (Wrapping::No, Wrapped::default());
        }
        let usage = Usage::from_attributes(span.attributes);
        let carries_usage = usage.input.is_some() || usage.output.is_some();
        let wrapped = self.ledger.wrapped(trace, span.id);
        let wrapping = if wrapped.generations > 0 {
            if wrapped.with_usage > 0 || !carries_usage {
                Wrapping::Wrapper
            } else {
                Wrapping::UsageOnly
            }
        } else {
            match self.ledger.nearest_recognised(trace, span.parent) {
                Some((Role::Generation, _)) if !carries_usage => Wrapping::Wrapper,
                // The outer one ended first and was counted.
                Some((Role::Generation, false)) => Wrapping::UsageOnly,
                _ => Wrapping::No,
            }
        };
        if wrapping == Wrapping::Wrapper {
            writes.set(keys::WRAPPER, true);
            if usage.invalid {
                findings.add(Finding::new(FindingCode::InvalidUsage, Role::Generation));
            }
        }
        (wrapping, wrapped)
    }

    /// Whether a generation's cumulative totals just passed its invocation's budget
    /// (the first time for that invocation): what to tell the callback.
    fn budget_passed(
        &self,
        span: &EndedSpan<'_>,
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
            span.trace_id,
            invocation,
            cumulative,
            budget,
        ))
    }

    /// At an invocation's end: its metrics, and `budget_exceeded` when it passed its
    /// budget (what to tell the callback when no generation told it yet).
    fn invocation_ended(
        &self,
        span: &EndedSpan<'_>,
        node: Option<&Ended<S>>,
        findings: &mut SpanFindings,
    ) -> Option<BudgetExceeded> {
        if self.metrics.is_none() && self.budgets.is_empty() {
            return None;
        }
        let totals = node.map(Ended::totals).unwrap_or_default();
        let agent: Option<Arc<str>> = agent_name(span.attributes)
            .map(Arc::from)
            .or_else(|| node.and_then(|n| n.agent_name().cloned()));
        if let Some(metrics) = self.metrics() {
            let cost = (totals.priced > 0).then_some(totals.cost_usd);
            metrics.record_invocation(agent.as_deref(), cost, totals.input, totals.output);
        }
        let budget = self.budgets.for_agent(agent.as_deref())?;
        let already = node.is_some_and(Ended::budget_exceeded);
        if !already && !budget.exceeded_by(&totals) {
            return None;
        }
        findings.add(Finding::new(FindingCode::BudgetExceeded, Role::Invocation));
        let invocation = SpanId::from(span.id);
        (!already).then(|| BudgetExceeded::new(agent, span.trace_id, invocation, &totals, budget))
    }

    /// Hands what a span gathered to the parent its end names, making room in a full
    /// ledger first (the oldest spans go, as for a start).
    fn hand_up(
        &self,
        trace: TraceKey,
        child: u64,
        parent: Option<u64>,
        up: Contribution,
        synthetic: &mut Vec<Synthetic<S>>,
    ) {
        let now = self.lazy_now();
        if let Forward::Full(parent, up) = self
            .ledger
            .forward(trace, child, parent, up, || nanos(now()))
        {
            self.evict_due(true, &now, synthetic);
            self.ledger
                .forward(trace, child, Some(parent), up, || nanos(now()));
        }
    }

    /// Usage and cost of a generation or embedding, from its own attributes, with the
    /// keys and findings they give.
    fn price<'a>(
        &self,
        span: &'a EndedSpan<'_>,
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
        attributes: &[KeyValue],
        usage: &Usage,
        cost: Option<f64>,
    ) -> (Contribution, Option<u64>) {
        let (hash, response) = match ResponseOwners::response_of(attributes, self.repair()) {
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

    /// A call's metrics, with its own agent name, else its invocation's.
    fn record_call(
        &self,
        span: &EndedSpan<'_>,
        trace: TraceKey,
        invocation: Option<u64>,
        usage: &Usage,
        priced: &CallCost<'_>,
    ) {
        let Some(metrics) = self.metrics() else {
            return;
        };
        let attrs: &[KeyValue] = span.attributes;
        // Looked up only when it has none of its own.
        let own = agent_name(attrs);
        let inherited = own
            .is_none()
            .then_some(invocation)
            .flatten()
            .and_then(|inv| self.ledger.agent_name(trace, inv));
        let token_usage = metrics.records_token_usage();
        metrics.record_call(&CallRecord {
            operation: token_usage
                .then(|| first_string(attrs, &[gen_ai::OPERATION_NAME]))
                .flatten(),
            provider: priced.provider,
            model: first_string(attrs, &cost::REQUEST_MODEL_KEYS),
            response_model: token_usage
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
                        let now = || nanos(self.clock.now());
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

/// A span's own `gen_ai.agent.name`.
fn agent_name(attributes: &[KeyValue]) -> Option<&str> {
    first_string(attributes, &[gen_ai::AGENT_NAME])
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
