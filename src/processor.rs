//! [`GenAiAuditProcessor`], its builder, and its [`SpanProcessor`] implementation: the
//! seam with `opentelemetry_sdk`, and the only module of the processor that names the
//! SDK's span types (the `genai-audit` command's `otlp` module builds SDK spans too).
//!
//! The engine sees its own views of a span. In SDK 0.33 a live span's name and start
//! attributes can only be read in `on_start` through [`Span::exported_data`], which
//! clones the span; it is called at most once per span, and not at all when the
//! processor is disabled. Under leak policy `close` that clone is also what the engine
//! keeps (as an opaque start copy) to export a span the audit closes.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::metrics::MeterProvider;
use opentelemetry::otel_warn;
use opentelemetry::trace::{SpanId, Status};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::budget::{Budget, BudgetCallback, BudgetExceeded, Budgets};
use crate::config::{ContaminationPolicy, LeakPolicy, Settings};
use crate::cost::CostAttributes;
use crate::engine::{
    Audit, Clock, EndedSpan, ForeignResponses, Kept, Parts, StartCopy, StartPlan, StartedSpan,
    Synthetic,
};
use crate::metrics::MetricOptions;
use crate::pricing::{GenAiPrices, ModelPrice, Pricer};
use crate::recognition::{Classifier, Recogniser, Role, RoleRule};

/// An OpenTelemetry [`SpanProcessor`] that audits gen-ai agent spans and hands them,
/// enriched, to the processor it wraps.
///
/// The SDK gives each registered processor its own copy of every span, so edits made
/// by one never reach another: the audit processor therefore *wraps* the processor
/// that exports (a `BatchSpanProcessor`, usually) and is the only one registered. It
/// forwards `on_start`, `on_end` (with the enriched span), `force_flush`,
/// `shutdown_with_timeout` and `set_resource` to it, and never drops a span.
///
/// ```
/// use genai_audit::GenAiAuditProcessor;
/// use opentelemetry::trace::{Span, Tracer, TracerProvider};
/// use opentelemetry::KeyValue;
/// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
///
/// let exporter = InMemorySpanExporter::default();
/// let audit = GenAiAuditProcessor::builder(SimpleSpanProcessor::new(exporter.clone())).build();
/// let provider = SdkTracerProvider::builder().with_span_processor(audit).build();
/// let tracer = provider.tracer("my-agent");
///
/// tracer.in_span("invoke_agent coder", |_cx| {
///     let mut llm = tracer.start("chat gpt-4o");
///     llm.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
///     llm.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o"));
///     llm.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 1000));
///     llm.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", 100));
///     llm.end();
/// });
///
/// let spans = exporter.get_finished_spans().unwrap();
/// let get = |span: &str, key: &str| {
///     let span = spans.iter().find(|s| s.name == span).unwrap();
///     genai_audit::last_value(&span.attributes, key).cloned()
/// };
/// assert_eq!(get("chat gpt-4o", "genai_audit.role").unwrap().as_str(), "generation");
/// assert!(get("chat gpt-4o", "genai_audit.cost_usd").is_some());
/// assert_eq!(get("invoke_agent coder", "genai_audit.total.input_tokens").unwrap(), 1000i64.into());
/// ```
pub struct GenAiAuditProcessor<P> {
    inner: P,
    /// `None` when disabled: a pure pass-through.
    audit: Option<Audit<SpanData>>,
}

impl<P: fmt::Debug> fmt::Debug for GenAiAuditProcessor<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenAiAuditProcessor")
            .field("inner", &self.inner)
            .field("enabled", &self.audit.is_some())
            .finish()
    }
}

impl<P: SpanProcessor> GenAiAuditProcessor<P> {
    /// Starts configuring a processor that wraps `inner`, the processor that exports.
    pub fn builder(inner: P) -> GenAiAuditProcessorBuilder<P> {
        GenAiAuditProcessorBuilder {
            inner,
            settings: Settings::default(),
            pricer: None,
            model_prices: Vec::new(),
            cost_attributes: CostAttributes::default(),
            rules: Vec::new(),
            classifier: None,
            meter_provider: None,
            clock: None,
            budgets: Vec::new(),
            on_exceeded: None,
            metric_options: MetricOptions {
                cardinality_limit: DEFAULT_CARDINALITY_LIMIT,
                token_usage: false,
            },
            foreign_responses: None,
        }
    }

    /// The wrapped processor.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Whether the processor audits spans (false: a pure pass-through).
    pub fn is_enabled(&self) -> bool {
        self.audit.is_some()
    }

    /// The leak policy in force, after the environment was read (`None` when disabled).
    pub fn leak_policy(&self) -> Option<LeakPolicy> {
        self.audit.as_ref().map(|a| a.settings().leak_policy)
    }

    /// The contamination policy in force (`None` when disabled).
    pub fn contamination_policy(&self) -> Option<ContaminationPolicy> {
        self.audit
            .as_ref()
            .map(|a| a.settings().contamination_policy)
    }

    /// The most spans tracked at once (`None` when disabled).
    pub fn max_tracked_spans(&self) -> Option<usize> {
        self.audit.as_ref().map(|a| a.settings().max_tracked_spans)
    }

    /// The age after which an open span is evicted (`None` when disabled).
    pub fn max_span_age(&self) -> Option<Duration> {
        self.audit.as_ref().map(|a| a.settings().max_span_age)
    }
}

/// Configures a [`GenAiAuditProcessor`]. Everything has a default; environment variables
/// (listed in the crate documentation) are read at [`build`](Self::build) for what code
/// did not set.
pub struct GenAiAuditProcessorBuilder<P> {
    inner: P,
    settings: Settings,
    pricer: Option<Arc<dyn Pricer>>,
    model_prices: Vec<(Option<String>, String, ModelPrice)>,
    cost_attributes: CostAttributes,
    rules: Vec<RoleRule>,
    classifier: Option<Arc<dyn Classifier>>,
    meter_provider: Option<Box<dyn MeterProvider + Send + Sync>>,
    clock: Option<Clock>,
    budgets: Vec<Budget>,
    on_exceeded: Option<BudgetCallback>,
    metric_options: MetricOptions,
    foreign_responses: Option<Arc<dyn ForeignResponses>>,
}

/// The most distinct model, provider and agent names recorded in metric attributes,
/// by default.
pub const DEFAULT_CARDINALITY_LIMIT: usize = 1000;

impl<P: fmt::Debug> fmt::Debug for GenAiAuditProcessorBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenAiAuditProcessorBuilder")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .field("pricer", &self.pricer)
            .field("model_prices", &self.model_prices)
            .field("cost_attributes", &self.cost_attributes)
            .field("rules", &self.rules)
            .field("classifier", &self.classifier.is_some())
            .field("meter_provider", &self.meter_provider.is_some())
            .field("clock", &self.clock.is_some())
            .field("budgets", &self.budgets)
            .field("on_exceeded", &self.on_exceeded.is_some())
            .field("metric_options", &self.metric_options)
            .finish()
    }
}

impl<P: SpanProcessor> GenAiAuditProcessorBuilder<P> {
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
    pub fn with_pricer(mut self, pricer: impl Pricer + 'static) -> Self {
        self.pricer = Some(Arc::new(pricer));
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

    /// Turns the metrics on: the instruments are created on this meter provider.
    pub fn with_meter_provider(
        mut self,
        meter_provider: impl MeterProvider + Send + Sync + 'static,
    ) -> Self {
        self.meter_provider = Some(Box::new(meter_provider));
        self
    }

    /// The time source for span ages (default [`SystemTime::now`]). A span older than
    /// the maximum age is judged by the time it started being tracked against this
    /// clock; tests and simulations can advance it instead of waiting. A clock given
    /// here is read at the start of every span that may be tracked (a recognised span,
    /// or any span while some span is tracked), never while the processor holds a lock;
    /// the default one only when a span's own start time is more than 100 ms off its
    /// last reading (a live span's start time, read from the same clock by the SDK,
    /// stands for it otherwise).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use std::time::{Duration, SystemTime};
    /// use genai_audit::GenAiAuditProcessor;
    /// use opentelemetry_sdk::trace::{InMemorySpanExporter, SimpleSpanProcessor};
    ///
    /// let skew = Arc::new(AtomicU64::new(0)); // seconds to add to the real time
    /// let clock_skew = skew.clone();
    /// let audit = GenAiAuditProcessor::builder(SimpleSpanProcessor::new(InMemorySpanExporter::default()))
    ///     .with_max_span_age(Duration::from_secs(60))
    ///     .with_clock(move || SystemTime::now() + Duration::from_secs(clock_skew.load(Ordering::Relaxed)))
    ///     .build();
    /// skew.store(3600, Ordering::Relaxed); // an hour later, every open span is stale
    /// # drop(audit);
    /// ```
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// One pricer shared by several processors (the command's workers share its memo).
    #[cfg(feature = "cli")]
    pub(crate) fn with_shared_pricer(mut self, pricer: Arc<dyn Pricer>) -> Self {
        self.pricer = Some(pricer);
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
    /// and the callback of [`on_budget_exceeded`](Self::on_budget_exceeded) is called
    /// once per invocation. A later budget for the same agent replaces an earlier one.
    /// Without any, `GENAI_AUDIT_BUDGET_USD` and `GENAI_AUDIT_BUDGET_TOKENS` set the
    /// budget of every invocation. A budget that is not positive is reported through
    /// `otel_warn!` and ignored.
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
    /// the span that passed it and outside every lock of the processor: keep it fast
    /// (set a flag, cancel a token). A callback that panics is caught, reported once
    /// through `otel_warn!`, and the processor goes on.
    pub fn on_budget_exceeded(
        mut self,
        callback: impl Fn(&BudgetExceeded) + Send + Sync + 'static,
    ) -> Self {
        self.on_exceeded = Some(Arc::new(callback));
        self
    }

    /// Also records the OpenTelemetry GenAI conventions' `gen_ai.client.token.usage`
    /// histogram (off by default: most instrumentations that emit metrics record it
    /// themselves, and it would count twice).
    pub fn with_token_usage_metric(mut self, on: bool) -> Self {
        self.metric_options.token_usage = on;
        self
    }

    /// The most distinct values recorded per metric attribute that comes from spans
    /// (model, provider and agent names); past it, `_other` (default 1000).
    pub fn with_metric_cardinality_limit(mut self, limit: usize) -> Self {
        self.metric_options.cardinality_limit = limit.max(1);
        self
    }

    /// `true` makes the processor a pure pass-through (environment
    /// `GENAI_AUDIT_DISABLED`).
    pub fn with_disabled(mut self, disabled: bool) -> Self {
        self.settings.disabled = Some(disabled);
        self
    }

    /// Builds the processor, reading the environment for what code did not set.
    pub fn build(self) -> GenAiAuditProcessor<P> {
        let settings = self.settings.resolve(|name| std::env::var(name).ok());
        if settings.disabled {
            return GenAiAuditProcessor {
                inner: self.inner,
                audit: None,
            };
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
        GenAiAuditProcessor {
            inner: self.inner,
            audit: Some(Audit::new(Parts {
                settings,
                recogniser: Recogniser::new(self.rules, self.classifier),
                pricer,
                cost_attributes: self.cost_attributes,
                meter_provider: self
                    .meter_provider
                    .as_deref()
                    .map(|mp| mp as &dyn MeterProvider),
                metric_options: self.metric_options,
                clock: self.clock,
                budgets: Budgets::new(budgets),
                on_exceeded: self.on_exceeded,
                foreign_responses: self.foreign_responses,
            })),
        }
    }
}

/// The start copy the engine keeps under leak policy `close` is the SDK's span data.
impl StartCopy for SpanData {
    fn name(&self) -> &str {
        &self.name
    }
}

fn id(span_id: SpanId) -> u64 {
    u64::from_be_bytes(span_id.to_bytes())
}

fn parent(span_id: SpanId) -> Option<u64> {
    (span_id != SpanId::INVALID).then(|| id(span_id))
}

impl<P: SpanProcessor> GenAiAuditProcessor<P> {
    /// Starts a span the audit may track (out of line: spans that are not gen-ai take
    /// the short path of `on_start`).
    #[inline(never)]
    fn start_tracked(&self, audit: &Audit<SpanData>, plan: StartPlan, data: &mut Option<SpanData>) {
        let (keep_snapshot, keep_name) = (plan.keep_snapshot(), plan.keep_name());
        let synthetic = audit.start(plan, || {
            if keep_snapshot {
                data.take()
                    .map_or(Kept::Nothing, |d| Kept::Snapshot(Box::new(d)))
            } else if keep_name {
                data.as_mut()
                    .map_or(Kept::Nothing, |d| Kept::Name(std::mem::take(&mut d.name)))
            } else {
                Kept::Nothing
            }
        });
        self.export(synthetic);
    }

    /// Audits the end of a span (out of line, like [`Self::start_tracked`]); `false`
    /// when the span must not be forwarded (the audit exported it closed before).
    #[inline(never)]
    fn end_audited(&self, audit: &Audit<SpanData>, span: &mut SpanData, role: Role) -> bool {
        let outcome = audit.on_end(
            EndedSpan {
                id: id(span.span_context.span_id()),
                trace_id: span.span_context.trace_id(),
                parent: parent(span.parent_span_id).filter(|_| !span.parent_span_is_remote),
                start_time: span.start_time,
                end_time: span.end_time,
                attributes: &mut span.attributes,
            },
            role,
        );
        self.export(outcome.synthetic);
        outcome.forward
    }

    /// Exports spans the audit closed: the span as it started, ended at the given time
    /// with status error and the audit's attributes.
    #[inline]
    fn export(&self, synthetic: Vec<Synthetic<SpanData>>) {
        if synthetic.is_empty() {
            return;
        }
        self.export_all(synthetic);
    }

    /// [`Self::export`] when there is something to export (rare: leak policy `close`).
    #[cold]
    fn export_all(&self, synthetic: Vec<Synthetic<SpanData>>) {
        for s in synthetic {
            let mut data = *s.snapshot;
            data.end_time = s.end_time;
            data.status = Status::error(s.status);
            s.writes.apply(&mut data.attributes);
            self.inner.on_end(data);
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for GenAiAuditProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some(audit) = &self.audit {
            // The copy stays where `exported_data` returned it: a span on the fast path
            // is never moved or boxed, and one that keeps only its name gives up just
            // its name.
            let mut data = span.exported_data();
            let plan = data.as_ref().and_then(|data| {
                audit.plan_start(&StartedSpan {
                    id: id(data.span_context.span_id()),
                    trace_id: data.span_context.trace_id(),
                    parent: parent(data.parent_span_id),
                    start_time: data.start_time,
                    name: &data.name,
                    attributes: &data.attributes,
                })
            });
            if let Some(plan) = plan {
                self.start_tracked(audit, plan, &mut data);
            }
        }
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        if let Some(audit) = &self.audit {
            let role = audit.end_role(
                &span.name,
                &span.attributes,
                span.span_context.trace_id(),
                parent(span.parent_span_id).filter(|_| !span.parent_span_is_remote),
            );
            if audit.audits_end(role) && !self.end_audited(audit, &mut span, role) {
                return;
            }
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if let Some(audit) = &self.audit {
            // Spans still open are evicted (`stale`); under `close` they are exported
            // before the inner processor shuts down.
            self.export(audit.shutdown());
        }
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
