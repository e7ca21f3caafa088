//! The event API: [`Engine`], the span events it takes ([`SpanStart`], [`SpanEnd`])
//! and the [`Verdict`] it answers with.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{otel_warn, KeyValue};

use super::audit::{Audit, Caller, EndedSpan, ForeignResponses, Parts, StartedSpan, Synthetic};
use super::clock::Clock;
use super::events::{AuditEvent, Collected, Sink};
use super::ledger::{Kept, StartCopy};
use crate::attributes::AttributeWrites;
use crate::budget::{Budget, BudgetCallback, BudgetExceeded, Budgets};
use crate::config::{ContaminationPolicy, LeakPolicy, Settings};
use crate::pricing::call::CostAttributes;
use crate::pricing::{GenAiPrices, ModelPrice, Pricer};
use crate::recognition::{Classifier, Recogniser, RoleRule};

/// The audit engine, fed span events by an edge: the Rust SDK processor
/// ([`GenAiAuditProcessor`](crate::GenAiAuditProcessor)) is one, the `genai-audit`
/// command and the Python and Node bindings are others, and your own can be too.
///
/// Call [`start`](Self::start) when a span starts and [`end`](Self::end) when it ends,
/// with the time *now* (the engine never reads a clock behind your back, so a replay
/// is exact). Each answers a [`Verdict`]: what to write on the span, whether to
/// forward it, the spans the audit closed (leak policy `close`) and the events to
/// record on a meter. [`shutdown`](Self::shutdown) closes what is still open.
///
/// An agent turn of three spans, with no SDK:
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use genai_audit::engine::{Engine, Parent, SpanEnd, SpanStart};
/// use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
/// use opentelemetry::KeyValue;
///
/// let engine = Engine::builder().build();
/// let trace_id = TraceId::from(1);
/// let t = |ms: u64| UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms);
/// // (span, parent, name, attributes, start, end)
/// let spans = [
///     (1, None, "invoke_agent coder", vec![KeyValue::new("gen_ai.operation.name", "invoke_agent")], 0, 900),
///     (2, Some(1), "react step", vec![KeyValue::new("gen_ai.operation.name", "react_step")], 10, 800),
///     (3, Some(2), "chat gpt-4o", vec![
///         KeyValue::new("gen_ai.operation.name", "chat"),
///         KeyValue::new("gen_ai.request.model", "gpt-4o"),
///         KeyValue::new("gen_ai.usage.input_tokens", 1000),
///         KeyValue::new("gen_ai.usage.output_tokens", 100),
///     ], 20, 700),
/// ];
/// let parent = |p: Option<u64>| p.map_or(Parent::Root, |p| Parent::Local(SpanId::from(p)));
/// for (id, p, name, attributes, start, _) in &spans {
///     engine.start(&SpanStart {
///         trace_id, span_id: SpanId::from(*id), parent: parent(*p), name, kind: SpanKind::Internal,
///         start_time: t(*start), attributes, now: t(*start),
///     });
/// }
/// let mut ended = Vec::new();
/// for (id, p, name, attributes, start, end) in spans.iter().rev() {
///     let verdict = engine.end(&SpanEnd {
///         trace_id, span_id: SpanId::from(*id), parent: parent(*p), name, kind: SpanKind::Internal,
///         start_time: t(*start), end_time: t(*end), status: &Status::Unset, attributes, now: t(*end),
///     });
///     assert!(verdict.forward);
///     let mut attributes = attributes.clone();
///     verdict.writes.apply(&mut attributes);
///     ended.push((*name, attributes));
/// }
/// let get = |span: &str, key: &str| {
///     let (_, attributes) = ended.iter().find(|(name, _)| *name == span).unwrap();
///     genai_audit::last_value(attributes, key).cloned()
/// };
/// assert_eq!(get("chat gpt-4o", "genai_audit.role").unwrap().as_str(), "generation");
/// assert!(get("chat gpt-4o", "genai_audit.cost_usd").is_some());
/// assert_eq!(get("react step", "genai_audit.step.index"), Some(1i64.into()));
/// assert_eq!(get("invoke_agent coder", "genai_audit.total.input_tokens"), Some(1000i64.into()));
/// assert_eq!(get("invoke_agent coder", "genai_audit.steps"), Some(1i64.into()));
/// ```
///
/// An engine is shared by reference across threads: spans of one trace may start and
/// end on any of them.
pub struct Engine {
    /// `None` when disabled (`GENAI_AUDIT_DISABLED`): every verdict forwards untouched.
    audit: Option<Audit<Started>>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("enabled", &self.audit.is_some())
            .finish_non_exhaustive()
    }
}

/// The parent a span names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// None: a root.
    Root,
    /// A span of this process (or of the same export).
    Local(SpanId),
    /// A span of another process (its context came in a request).
    Remote(SpanId),
}

impl Parent {
    /// The parent as the engine tracks it at a start: any parent named.
    fn named(self) -> Option<u64> {
        match self {
            Parent::Root => None,
            Parent::Local(id) | Parent::Remote(id) => Some(id_of(id)),
        }
    }

    /// The parent as the engine tracks it at an end: one in this process.
    fn local(self) -> Option<u64> {
        match self {
            Parent::Local(id) => Some(id_of(id)),
            Parent::Root | Parent::Remote(_) => None,
        }
    }
}

/// A span's start, as [`Engine::start`] takes it.
#[derive(Debug, Clone)]
pub struct SpanStart<'a> {
    /// Its trace.
    pub trace_id: TraceId,
    /// Its id.
    pub span_id: SpanId,
    /// The parent it names.
    pub parent: Parent,
    /// Its name at start.
    pub name: &'a str,
    /// Its kind (recognition does not use it today).
    pub kind: SpanKind,
    /// Its start time.
    pub start_time: SystemTime,
    /// Its attributes at start.
    pub attributes: &'a [KeyValue],
    /// Now, by the edge's clock: how long the engine has been tracking a span is
    /// measured by these, never by a clock of its own.
    pub now: SystemTime,
}

/// A span's end, as [`Engine::end`] takes it.
#[derive(Debug, Clone)]
pub struct SpanEnd<'a> {
    /// Its trace.
    pub trace_id: TraceId,
    /// Its id.
    pub span_id: SpanId,
    /// The parent it names.
    pub parent: Parent,
    /// Its final name.
    pub name: &'a str,
    /// Its kind (recognition does not use it today).
    pub kind: SpanKind,
    /// Its start time.
    pub start_time: SystemTime,
    /// Its end time.
    pub end_time: SystemTime,
    /// Its status (the engine does not read it today).
    pub status: &'a Status,
    /// Its final attributes.
    pub attributes: &'a [KeyValue],
    /// Now, by the edge's clock.
    pub now: SystemTime,
}

/// What to write on a span: each write sets its key, replacing every value the span
/// had for it. A value the policy `repair` replaced comes back as one more write,
/// under `genai_audit.reported.<key>`.
pub struct Writes(AttributeWrites);

impl fmt::Debug for Writes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Writes {
    /// No write.
    pub fn is_empty(&self) -> bool {
        self.0.written().is_empty()
    }

    /// The writes, in the order they are applied.
    pub fn iter(&self) -> impl Iterator<Item = &KeyValue> {
        self.0.written().iter()
    }

    /// Applies the writes to a span's attributes: every value of a written key is
    /// removed, then the writes are appended in order; the other attributes keep
    /// their order.
    pub fn apply(self, attributes: &mut Vec<KeyValue>) {
        self.0.apply(attributes);
    }
}

/// A span the audit closed (leak policy `close`): export it as it started, ended at
/// `end_time` with `status`, with the writes applied. Its real end, if it comes, gets
/// a verdict that does not forward it.
#[derive(Debug)]
pub struct ClosedSpan {
    /// Its trace.
    pub trace_id: TraceId,
    /// Its id.
    pub span_id: SpanId,
    /// Its name at start.
    pub name: String,
    /// When the audit closed it (its parent's end, or the eviction).
    pub end_time: SystemTime,
    /// An error status that says why.
    pub status: Status,
    /// What to write on it.
    pub writes: Writes,
}

/// What the engine answers to an event.
#[derive(Debug)]
pub struct Verdict {
    /// What to write on the span (none at a start or shutdown, none on a span that is
    /// not gen-ai).
    pub writes: Writes,
    /// Whether to forward the span (false for the real end of a span the audit
    /// already closed and exported).
    pub forward: bool,
    /// Spans the audit closed on this event, to export now.
    pub closed: Vec<ClosedSpan>,
    /// Metric and budget events, to record on the edge's meter.
    pub events: Vec<AuditEvent>,
}

impl Verdict {
    /// Forward untouched.
    fn pass() -> Verdict {
        Verdict {
            writes: Writes(AttributeWrites::default()),
            forward: true,
            closed: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// What the engine keeps of a span it may have to close (leak policy `close`).
#[derive(Debug)]
pub(crate) struct Started {
    trace_id: TraceId,
    span_id: SpanId,
    name: String,
}

impl StartCopy for Started {
    fn name(&self) -> &str {
        &self.name
    }
}

/// The engine's key of a span id (its eight bytes, big-endian), for every edge.
pub(crate) fn id_of(span_id: SpanId) -> u64 {
    u64::from_be_bytes(span_id.to_bytes())
}

impl Engine {
    /// Starts configuring an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Whether the engine audits (false: disabled by `GENAI_AUDIT_DISABLED`, every
    /// verdict forwards untouched).
    pub fn is_enabled(&self) -> bool {
        self.audit.is_some()
    }

    /// The count of spans tracked, for a gauge that reads it (`None` when disabled).
    #[cfg(feature = "cli")]
    pub(crate) fn tracked_handle(
        &self,
    ) -> Option<Arc<crossbeam_utils::CachePadded<std::sync::atomic::AtomicUsize>>> {
        self.audit.as_ref().map(Audit::tracked_handle)
    }

    /// Whether the engine may read attribute `key` (a custom classifier may read any).
    /// An edge that hands the engine only the attributes it reads gets the same
    /// verdicts, writes included, and saves carrying the rest (prompts, completions)
    /// across: only these cross from Python or Node into the engine.
    ///
    /// ```
    /// let engine = genai_audit::engine::Engine::builder().build();
    /// assert!(engine.reads("gen_ai.usage.input_tokens"));
    /// assert!(engine.reads("ai.operationId"));
    /// assert!(!engine.reads("gen_ai.input.messages"));
    /// assert!(!engine.reads("ai.prompt"));
    /// ```
    pub fn reads(&self, key: &str) -> bool {
        self.audit.as_ref().is_some_and(|a| a.reads(key))
    }

    /// How many spans the engine keeps state for now.
    pub fn tracked_spans(&self) -> usize {
        self.audit.as_ref().map_or(0, Audit::tracked)
    }

    /// A span started.
    pub fn start(&self, span: &SpanStart<'_>) -> Verdict {
        let events = Collected::default();
        let mut verdict = self.start_into(span, Some(&events));
        verdict.events = events.into_events();
        verdict
    }

    /// A span ended: what to write on it, whether to forward it, and what else to
    /// export.
    pub fn end(&self, span: &SpanEnd<'_>) -> Verdict {
        let events = Collected::default();
        let mut verdict = self.end_into(span, Some(&events));
        verdict.events = events.into_events();
        verdict
    }

    /// The edge shuts down: every span still open is evicted (`stale`), and under leak
    /// policy `close` comes back closed at `now`.
    pub fn shutdown(&self, now: SystemTime) -> Verdict {
        let events = Collected::default();
        let mut verdict = self.shutdown_into(now, Some(&events));
        verdict.events = events.into_events();
        verdict
    }

    /// [`start`](Self::start), its events handed to `sink` (`None`: nowhere, and agent
    /// names are not looked up for them).
    pub(crate) fn start_into(&self, span: &SpanStart<'_>, sink: Option<&dyn Sink>) -> Verdict {
        let mut verdict = Verdict::pass();
        let Some(audit) = &self.audit else {
            return verdict;
        };
        let caller = Caller {
            now: Some(span.now),
            sink,
        };
        let plan = audit.plan_start(&StartedSpan {
            id: id_of(span.span_id),
            trace_id: span.trace_id,
            parent: span.parent.named(),
            start_time: span.start_time,
            name: span.name,
            attributes: span.attributes,
        });
        if let Some(plan) = plan {
            let (keep_snapshot, keep_name) = (plan.keep_snapshot(), plan.keep_name());
            let synthetic = audit.start(
                plan,
                || {
                    if keep_snapshot {
                        Kept::Snapshot(Box::new(Started {
                            trace_id: span.trace_id,
                            span_id: span.span_id,
                            name: span.name.to_owned(),
                        }))
                    } else if keep_name {
                        Kept::Name(span.name.to_owned().into())
                    } else {
                        Kept::Nothing
                    }
                },
                caller,
            );
            verdict.closed = closed(synthetic);
        }
        verdict
    }

    /// [`end`](Self::end), its events handed to `sink`.
    pub(crate) fn end_into(&self, span: &SpanEnd<'_>, sink: Option<&dyn Sink>) -> Verdict {
        let mut verdict = Verdict::pass();
        let Some(audit) = &self.audit else {
            return verdict;
        };
        let parent = span.parent.local();
        let role = audit.end_role(span.name, span.attributes, span.trace_id, parent);
        if !audit.audits_end(role) {
            return verdict;
        }
        let caller = Caller {
            now: Some(span.now),
            sink,
        };
        let outcome = audit.on_end(
            EndedSpan {
                id: id_of(span.span_id),
                trace_id: span.trace_id,
                parent,
                start_time: span.start_time,
                end_time: span.end_time,
                attributes: span.attributes,
            },
            role,
            caller,
        );
        verdict.writes = Writes(outcome.writes);
        verdict.forward = outcome.forward;
        verdict.closed = closed(outcome.synthetic);
        verdict
    }

    /// [`shutdown`](Self::shutdown), its events handed to `sink`.
    pub(crate) fn shutdown_into(&self, now: SystemTime, sink: Option<&dyn Sink>) -> Verdict {
        let mut verdict = Verdict::pass();
        if let Some(audit) = &self.audit {
            let caller = Caller {
                now: Some(now),
                sink,
            };
            verdict.closed = closed(audit.shutdown(caller));
        }
        verdict
    }
}

fn closed(synthetic: Vec<Synthetic<Started>>) -> Vec<ClosedSpan> {
    synthetic
        .into_iter()
        .map(|s| {
            let Started {
                trace_id,
                span_id,
                name,
            } = *s.snapshot;
            ClosedSpan {
                trace_id,
                span_id,
                name,
                end_time: s.end_time,
                status: Status::error(s.status),
                writes: Writes(s.writes),
            }
        })
        .collect()
}

/// Configures an [`Engine`] (and, through
/// [`GenAiAuditProcessorBuilder`](crate::GenAiAuditProcessorBuilder), the SDK
/// processor). Everything has a default; the environment variables listed in the
/// crate documentation are read at `build` for what code did not set.
#[derive(Default)]
pub struct EngineBuilder {
    settings: Settings,
    pricer: Option<Arc<dyn Pricer>>,
    model_prices: Vec<(Option<String>, String, ModelPrice)>,
    cost_attributes: CostAttributes,
    rules: Vec<RoleRule>,
    classifier: Option<Arc<dyn Classifier>>,
    budgets: Vec<Budget>,
    on_exceeded: Option<BudgetCallback>,
    foreign_responses: Option<Arc<dyn ForeignResponses>>,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("settings", &self.settings)
            .field("pricer", &self.pricer)
            .field("model_prices", &self.model_prices)
            .field("cost_attributes", &self.cost_attributes)
            .field("rules", &self.rules)
            .field("classifier", &self.classifier.is_some())
            .field("budgets", &self.budgets)
            .field("on_exceeded", &self.on_exceeded.is_some())
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// What happens to recognised children still open when their parent ends
    /// (default [`LeakPolicy::Flag`]; environment `GENAI_AUDIT_LEAK_POLICY`).
    pub fn leak_policy(mut self, policy: LeakPolicy) -> Self {
        self.settings.leak_policy = Some(policy);
        self
    }

    /// What happens to spans contaminated by another invocation (default
    /// [`ContaminationPolicy::Flag`]; environment `GENAI_AUDIT_CONTAMINATION_POLICY`).
    pub fn contamination_policy(mut self, policy: ContaminationPolicy) -> Self {
        self.settings.contamination_policy = Some(policy);
        self
    }

    /// The most spans tracked at once (at least 1; default 65536; environment
    /// `GENAI_AUDIT_MAX_TRACKED_SPANS`).
    pub fn with_max_tracked_spans(mut self, max: usize) -> Self {
        self.settings.max_tracked_spans = Some(max);
        self
    }

    /// The age after which an open span is evicted (at least 1 s; default one hour;
    /// environment `GENAI_AUDIT_MAX_SPAN_AGE_SECS`).
    pub fn with_max_span_age(mut self, age: Duration) -> Self {
        self.settings.max_span_age = Some(age);
        self
    }

    /// Prices from a file in the genai-prices JSON format instead of the bundled data
    /// (environment `GENAI_AUDIT_PRICES_FILE`). A file that cannot be read or parsed is
    /// reported through `otel_warn!` and the bundled prices are used.
    pub fn with_prices_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.prices_file = Some(path.into());
        self
    }

    /// A price for a model the price data does not know (or to override it), for one
    /// provider or, with `None`, for any. Applies to the genai-prices pricer (bundled or
    /// from a file), not to a custom [`Pricer`].
    pub fn with_model_price(
        mut self,
        provider: Option<&str>,
        model: impl Into<String>,
        price: ModelPrice,
    ) -> Self {
        self.model_prices
            .push((provider.map(str::to_owned), model.into(), price));
        self
    }

    /// Your own [`Pricer`], replacing the genai-prices one.
    pub fn with_pricer(self, pricer: impl Pricer + 'static) -> Self {
        self.with_shared_pricer(Arc::new(pricer))
    }

    /// One pricer shared by several engines (the command's workers share its memo).
    pub(crate) fn with_shared_pricer(mut self, pricer: Arc<dyn Pricer>) -> Self {
        self.pricer = Some(pricer);
        self
    }

    /// Which cost keys a priced call gets besides `genai_audit.cost_usd`
    /// (default: `gen_ai.usage.cost`).
    pub fn with_cost_attributes(mut self, attributes: CostAttributes) -> Self {
        self.cost_attributes = attributes;
        self
    }

    /// A rule giving a role by name prefix or attribute value; user rules are tried
    /// first, in the order added.
    pub fn with_role_rule(mut self, rule: RoleRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// A custom classifier, tried after the rules and before the built-in recognition.
    pub fn with_classifier(mut self, classifier: impl Classifier + 'static) -> Self {
        self.classifier = Some(Arc::new(classifier));
        self
    }

    /// The command's index of response ids of generations in other traces: the
    /// response memory becomes one per trace, and the index answers for the others.
    #[cfg(feature = "cli")]
    pub(crate) fn with_foreign_responses(mut self, index: Arc<dyn ForeignResponses>) -> Self {
        self.foreign_responses = Some(index);
        self
    }

    /// A budget per invocation (cost in USD and/or tokens, for every invocation or, with
    /// [`Budget::for_agent`], for one agent's): the generation whose cumulative totals
    /// first pass it, and the invocation at its end, get the finding `budget_exceeded`,
    /// an [`AuditEvent::BudgetExceeded`] is in the verdict, and the callback of
    /// [`on_budget_exceeded`](Self::on_budget_exceeded) is called, once per invocation.
    /// A later budget for the same agent replaces an earlier one. Without any,
    /// `GENAI_AUDIT_BUDGET_USD` and `GENAI_AUDIT_BUDGET_TOKENS` set the budget of every
    /// invocation. A budget that is not positive is reported through `otel_warn!` and
    /// ignored.
    ///
    /// The cumulative totals need the invocation recognised at its start (and a
    /// per-agent budget its `gen_ai.agent.name` then); an invocation recognised only at
    /// its end is checked when it ends.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        if budget.is_valid() {
            self.settings.budget_in_code = true;
            self.budgets.push(budget);
        } else {
            otel_warn!(name: "GenAiAudit.InvalidBudget", reason = "a budget must be a finite cost above 0 or at least 1 token; ignored");
        }
        self
    }

    /// Called once per invocation that passes its budget, with the agent name, the
    /// invocation's span and trace ids and its totals so far, on the thread that ended
    /// the span that passed it and outside every lock of the engine: keep it fast (set
    /// a flag, cancel a token). A callback that panics is caught, reported once
    /// through `otel_warn!`, and the engine goes on.
    pub fn on_budget_exceeded(
        mut self,
        callback: impl Fn(&BudgetExceeded) + Send + Sync + 'static,
    ) -> Self {
        self.on_exceeded = Some(Arc::new(callback));
        self
    }

    /// `true` makes the engine a pure pass-through (environment
    /// `GENAI_AUDIT_DISABLED`).
    pub fn with_disabled(mut self, disabled: bool) -> Self {
        self.settings.disabled = Some(disabled);
        self
    }

    /// Builds the engine, reading the environment for what code did not set.
    pub fn build(self) -> Engine {
        self.build_recording(true)
    }

    /// [`build`](Self::build); `events`: some sink will record the events (else agent
    /// names are not kept for them).
    pub(crate) fn build_recording(self, events: bool) -> Engine {
        Engine {
            audit: self.audit(events, None),
        }
    }

    /// The engine's state for an edge whose start copies are `S`; `events`: the edge
    /// records events (agent names are kept for them); `clock`: the edge's clock, read
    /// when a call gives no time. `None` when disabled.
    pub(crate) fn audit<S: StartCopy>(
        self,
        events: bool,
        clock: Option<Clock>,
    ) -> Option<Audit<S>> {
        let settings = self.settings.resolve(|name| std::env::var(name).ok());
        if settings.disabled {
            return None;
        }
        let pricer: Arc<dyn Pricer> = match self.pricer {
            Some(pricer) => pricer,
            None => {
                let mut prices = match &settings.prices_file {
                    Some(path) => GenAiPrices::from_file(path).unwrap_or_else(|e| {
                        otel_warn!(name: "GenAiAudit.PriceFileUnusable", error = e.to_string(), reason = "using the bundled prices");
                        GenAiPrices::bundled()
                    }),
                    None => GenAiPrices::bundled(),
                };
                for (provider, model, price) in &self.model_prices {
                    prices = prices.with_model_price(provider.as_deref(), model, *price);
                }
                Arc::new(prices)
            }
        };
        let mut budgets = self.budgets;
        if let Some(budget) = settings.env_budget.clone() {
            budgets.push(budget);
        }
        Some(Audit::new(Parts {
            settings,
            recogniser: Recogniser::new(self.rules, self.classifier),
            pricer,
            cost_attributes: self.cost_attributes,
            events,
            clock,
            budgets: Budgets::new(budgets),
            on_exceeded: self.on_exceeded,
            foreign_responses: self.foreign_responses,
        }))
    }
}
