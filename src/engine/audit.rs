//! The engine's state, and what happens at a span's start and at shutdown (the end is
//! in `end`).
//!
//! It works on [`StartedSpan`] and [`EndedSpan`], views each edge builds from its own
//! form of a span, so that no SDK's signatures reach this logic. The only edge value it
//! holds is the start copy kept under leak policy `close`, as an opaque [`StartCopy`].
//! Each call comes with a [`Caller`]: the time, when the edge gives it, and where the
//! call's events go.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crossbeam_utils::CachePadded;
use opentelemetry::trace::TraceId;
use opentelemetry::{otel_warn, KeyValue};

use super::clock::{nanos, AuditClock, Clock};
pub(crate) use super::contamination::ForeignResponses;
use super::contamination::{self, ResponseOwners};
use super::events::Sink;
use super::ledger::{Identity, Kept, Ledger, NewSpan, Start, StartCopy, TraceKey};
use crate::attributes::{first_string, AttributeWrites};
use crate::budget::{BudgetCallback, BudgetExceeded, Budgets};
use crate::config::{ContaminationPolicy, LeakPolicy, Resolved};
use crate::keys::read::gen_ai;
use crate::pricing::call::CostAttributes;
use crate::pricing::Pricer;
use crate::recognition::{Recogniser, Role};

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
    /// Its final attributes; the writes come back in the [`EndOutcome`].
    pub(crate) attributes: &'a [KeyValue],
}

/// What an edge gives with each call besides the span: the time, and where the call's
/// events go.
#[derive(Clone, Copy, Default)]
pub(crate) struct Caller<'a> {
    /// "Now", given by the edge (a replay, the event API); `None`: the engine's clock
    /// is read when needed.
    pub(crate) now: Option<SystemTime>,
    /// Where findings, calls, invocations and budget events go (`None`: nowhere).
    pub(crate) sink: Option<&'a dyn Sink>,
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
    leak_policy: LeakPolicy,
}

impl StartPlan {
    /// Keep the whole span (leak policy `close`: it may have to be exported closed).
    pub(crate) fn keep_snapshot(&self) -> bool {
        self.leak_policy == LeakPolicy::Close
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
    /// What to write on it (nothing on a span that is not gen-ai).
    pub(crate) writes: AttributeWrites,
    /// False when the audit already exported it closed (leak policy `close`).
    pub(crate) forward: bool,
    /// Spans the audit closed because this one ended with them open.
    pub(crate) synthetic: Vec<Synthetic<S>>,
}

/// The engine's state and collaborators.
pub(crate) struct Audit<S> {
    recogniser: Recogniser,
    pub(super) pricer: Arc<dyn Pricer>,
    pub(super) ledger: Ledger<S>,
    pub(super) responses: ResponseOwners,
    /// Some edge records events (metrics, the event API): agent names are kept.
    events: bool,
    pub(super) cost_attributes: CostAttributes,
    clock: AuditClock,
    /// Policies and bounds, as resolved at build.
    settings: Resolved,
    pub(super) budgets: Budgets,
    on_exceeded: Option<BudgetCallback>,
    /// Set once a budget callback panicked (warned once).
    callback_panicked: AtomicBool,
}

/// What the engine is made of, as the builder assembled it.
pub(crate) struct Parts {
    pub(crate) settings: Resolved,
    pub(crate) recogniser: Recogniser,
    pub(crate) pricer: Arc<dyn Pricer>,
    pub(crate) cost_attributes: CostAttributes,
    /// Some edge records the events (metrics, the event API).
    pub(crate) events: bool,
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
            .field("events", &self.events)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<S: StartCopy> Audit<S> {
    /// An engine made of these parts.
    pub(crate) fn new(parts: Parts) -> Self {
        let settings = parts.settings;
        let ledger = Ledger::new(
            settings.max_tracked_spans,
            settings.max_span_age,
            settings.leak_policy,
        );
        Audit {
            recogniser: parts.recogniser,
            pricer: parts.pricer,
            responses: ResponseOwners::new(settings.max_tracked_spans, parts.foreign_responses),
            ledger,
            events: parts.events,
            cost_attributes: parts.cost_attributes,
            clock: AuditClock::new(parts.clock),
            settings,
            budgets: parts.budgets,
            on_exceeded: parts.on_exceeded,
            callback_panicked: AtomicBool::new(false),
        }
    }

    /// How many spans are tracked now (the `genai_audit.spans.tracked` gauge reads it).
    pub(crate) fn tracked_handle(&self) -> Arc<CachePadded<AtomicUsize>> {
        self.ledger.len_handle()
    }

    /// Whether the engine may read attribute `key`.
    pub(crate) fn reads(&self, key: &str) -> bool {
        crate::keys::read_by_engine(key) || self.recogniser.reads(key)
    }

    /// How many spans are tracked now.
    pub(crate) fn tracked(&self) -> usize {
        self.ledger.len()
    }

    /// Tells the sink, then calls the budget callback, outside every lock; a callback
    /// that panics is caught (and reported once).
    pub(super) fn notify(&self, exceeded: &BudgetExceeded, caller: Caller<'_>) {
        if let Some(sink) = caller.sink {
            sink.budget_exceeded(exceeded);
        }
        let Some(callback) = &self.on_exceeded else {
            return;
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(exceeded)));
        if result.is_err() && !self.callback_panicked.swap(true, Ordering::Relaxed) {
            otel_warn!(name: "GenAiAudit.BudgetCallbackPanicked", reason = "the budget callback panicked; the processor goes on");
        }
    }

    /// "Now": the caller's, else the engine's clock read now.
    pub(super) fn now(&self, caller: Caller<'_>) -> SystemTime {
        caller.now.unwrap_or_else(|| self.clock.now())
    }

    /// "Now" (the caller's, else by the engine's clock), read at most once, and only
    /// when asked for.
    pub(super) fn lazy_now<'s>(&'s self, caller: Caller<'s>) -> impl Fn() -> SystemTime + 's {
        let now = Cell::new(None);
        move || {
            let found = now.get().unwrap_or_else(|| self.now(caller));
            now.set(Some(found));
            found
        }
    }

    /// "Now" at the start of a span that started at `span_start`, found at most once
    /// and only when asked for: the caller's, else see [`AuditClock::at_start`].
    fn lazy_start_now<'s>(
        &'s self,
        span_start: SystemTime,
        caller: Caller<'s>,
    ) -> impl Fn() -> (SystemTime, u64) + 's {
        let now = Cell::new(None);
        move || {
            let found = now.get().unwrap_or_else(|| match caller.now {
                Some(given) => (given, nanos(given)),
                None => self.clock.at_start(span_start),
            });
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

    pub(crate) fn close_policy(&self) -> bool {
        self.settings.leak_policy == LeakPolicy::Close
    }

    pub(super) fn repair(&self) -> bool {
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
            let agent_name = (self.events || !self.budgets.is_empty())
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
            leak_policy: self.settings.leak_policy,
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
        caller: Caller<'_>,
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
        let now = self.lazy_start_now(plan.start_time, caller);
        match self
            .ledger
            .start(plan.trace, span, recognised, || now().1, &mut kept)
        {
            Start::Untracked => {}
            Start::Tracked { due: false } => {}
            Start::Tracked { due: true } => {
                self.evict_due(Room::AsIs, || now().0, caller, &mut synthetic);
            }
            Start::Full(span) => {
                // Make room (the oldest spans go first), then try once more.
                self.evict_due(Room::Make, || now().0, caller, &mut synthetic);
                self.ledger
                    .start(plan.trace, span, recognised, || now().1, &mut kept);
            }
        }
        synthetic
    }

    /// Evicts, a bounded number per call, the spans tracked for longer than the maximum
    /// age and, when the ledger is over capacity (or full, with `make_room`), the
    /// oldest.
    pub(super) fn evict_due(
        &self,
        room: Room,
        now: impl Fn() -> SystemTime,
        caller: Caller<'_>,
        synthetic: &mut Vec<Synthetic<S>>,
    ) {
        self.ledger.evict_due(
            || nanos(now()),
            room == Room::Make,
            |ended| self.evicted(ended, now(), caller, synthetic),
        );
    }

    /// Evicts every span still open (at shutdown); returns those to export closed.
    pub(crate) fn shutdown(&self, caller: Caller<'_>) -> Vec<Synthetic<S>> {
        let mut synthetic = Vec::new();
        let now = self.now(caller);
        self.ledger
            .evict_all(|ended| self.evicted(ended, now, caller, &mut synthetic));
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
    /// `on_end`: not when it is not recognised and nothing is tracked
    /// or was closed or evicted by the audit (the fast path of spans that are not
    /// gen-ai).
    pub(crate) fn audits_end(&self, role: Role) -> bool {
        role.is_recognised() || !self.ledger.is_quiet()
    }
}

/// Whether an eviction may go past what is due to make room in a full ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Room {
    /// Only spans too old, or past the capacity.
    AsIs,
    /// Also the oldest spans, until one more fits.
    Make,
}

/// A span's own `gen_ai.agent.name`.
pub(super) fn agent_name(attributes: &[KeyValue]) -> Option<&str> {
    first_string(attributes, &[gen_ai::AGENT_NAME])
}
