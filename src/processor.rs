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
use opentelemetry::trace::{SpanId, Status};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::budget::{Budget, BudgetExceeded};
use crate::config::{ContaminationPolicy, LeakPolicy};
use crate::engine::{
    id_of, Audit, Caller, Clock, EndedSpan, EngineBuilder, Kept, Sink, StartCopy, StartPlan,
    StartedSpan, Synthetic,
};
use crate::findings::FindingCode;
use crate::metrics::{AuditMetrics, CallRecord, MetricOptions};
use crate::pricing::call::CostAttributes;
use crate::pricing::{ModelPrice, Pricer};
use crate::recognition::{Classifier, Role, RoleRule};

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
    /// The engine; `None` when disabled: a pure pass-through.
    audit: Option<Audit<SpanData>>,
    /// The instruments the engine's events are recorded on (with a meter provider).
    metrics: Option<AuditMetrics>,
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
            engine: EngineBuilder::default(),
            meter_provider: None,
            clock: None,
            metric_options: MetricOptions {
                cardinality_limit: DEFAULT_CARDINALITY_LIMIT,
                token_usage: false,
            },
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

/// Configures a [`GenAiAuditProcessor`]: the engine's settings (the same as
/// [`EngineBuilder`]'s), and the processor's own (its meter provider and metric
/// options, its clock). Everything has a default; environment variables (listed in the
/// crate documentation) are read at [`build`](Self::build) for what code did not set.
pub struct GenAiAuditProcessorBuilder<P> {
    inner: P,
    engine: EngineBuilder,
    meter_provider: Option<Box<dyn MeterProvider + Send + Sync>>,
    clock: Option<Clock>,
    metric_options: MetricOptions,
}

/// The most distinct model, provider and agent names recorded in metric attributes,
/// by default.
pub const DEFAULT_CARDINALITY_LIMIT: usize = 1000;

impl<P: fmt::Debug> fmt::Debug for GenAiAuditProcessorBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenAiAuditProcessorBuilder")
            .field("inner", &self.inner)
            .field("engine", &self.engine)
            .field("meter_provider", &self.meter_provider.is_some())
            .field("clock", &self.clock.is_some())
            .field("metric_options", &self.metric_options)
            .finish()
    }
}

/// The engine's settings, on the processor's builder: each hands its arguments to the
/// [`EngineBuilder`] method of the same name, which documents it.
macro_rules! engine_settings {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $($arg: $ty),*) -> Self {
                self.engine = self.engine.$name($($arg),*);
                self
            }
        )*
    };
}

impl<P: SpanProcessor> GenAiAuditProcessorBuilder<P> {
    engine_settings! {
        /// What happens to recognised children still open when their parent ends: see
        /// [`EngineBuilder::leak_policy`].
        leak_policy(policy: LeakPolicy);
        /// What happens to spans contaminated by another invocation: see
        /// [`EngineBuilder::contamination_policy`].
        contamination_policy(policy: ContaminationPolicy);
        /// The most spans tracked at once: see [`EngineBuilder::with_max_tracked_spans`].
        with_max_tracked_spans(max: usize);
        /// The age after which an open span is evicted: see
        /// [`EngineBuilder::with_max_span_age`].
        with_max_span_age(age: Duration);
        /// Prices from a genai-prices JSON file: see [`EngineBuilder::with_prices_file`].
        with_prices_file(path: impl Into<PathBuf>);
        /// A price for a model: see [`EngineBuilder::with_model_price`].
        with_model_price(provider: Option<&str>, model: impl Into<String>, price: ModelPrice);
        /// Your own [`Pricer`](crate::Pricer): see [`EngineBuilder::with_pricer`].
        with_pricer(pricer: impl Pricer + 'static);
        /// Which cost keys a priced call gets: see [`EngineBuilder::with_cost_attributes`].
        with_cost_attributes(attributes: CostAttributes);
        /// A rule giving a role: see [`EngineBuilder::with_role_rule`].
        with_role_rule(rule: RoleRule);
        /// A custom classifier: see [`EngineBuilder::with_classifier`].
        with_classifier(classifier: impl Classifier + 'static);
        /// A budget per invocation: see [`EngineBuilder::with_budget`].
        with_budget(budget: Budget);
        /// Called once per invocation that passes its budget: see
        /// [`EngineBuilder::on_budget_exceeded`].
        on_budget_exceeded(callback: impl Fn(&BudgetExceeded) + Send + Sync + 'static);
        /// `true` makes the processor a pure pass-through (environment
        /// `GENAI_AUDIT_DISABLED`): see [`EngineBuilder::with_disabled`].
        with_disabled(disabled: bool);
    }

    /// Turns the metrics on: the instruments are created on this meter provider, and
    /// the engine's [events](crate::engine::AuditEvent) are recorded on them.
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

    /// Builds the processor, reading the environment for what code did not set.
    pub fn build(self) -> GenAiAuditProcessor<P> {
        let audit: Option<Audit<SpanData>> =
            self.engine.audit(self.meter_provider.is_some(), self.clock);
        let metrics = match (&audit, &self.meter_provider) {
            (Some(audit), Some(provider)) => Some(AuditMetrics::new(
                provider.as_ref(),
                audit.tracked_handle(),
                self.metric_options,
            )),
            _ => None,
        };
        GenAiAuditProcessor {
            inner: self.inner,
            audit,
            metrics,
        }
    }
}

/// The processor's metrics record the engine's events as they happen.
impl Sink for AuditMetrics {
    fn finding(&self, code: FindingCode, role: Role, repaired: bool) {
        self.count_finding(code.as_str(), role.as_str(), repaired);
    }

    fn call(&self, call: &CallRecord<'_>) {
        self.record_call(call);
    }

    fn wants_call_details(&self) -> bool {
        self.records_token_usage()
    }

    fn invocation(&self, agent: Option<&str>, cost_usd: Option<f64>, input: u64, output: u64) {
        self.record_invocation(agent, cost_usd, input, output);
    }

    fn budget_exceeded(&self, _exceeded: &BudgetExceeded) {}
}

/// The start copy the engine keeps under leak policy `close` is the SDK's span data.
impl StartCopy for SpanData {
    fn name(&self) -> &str {
        &self.name
    }
}

fn parent(span_id: SpanId) -> Option<u64> {
    (span_id != SpanId::INVALID).then(|| id_of(span_id))
}

impl<P: SpanProcessor> GenAiAuditProcessor<P> {
    /// What the engine gets with each call: no time (it reads the processor's clock),
    /// and the metrics as the sink of its events.
    #[inline]
    fn caller(&self) -> Caller<'_> {
        Caller {
            now: None,
            sink: self.metrics.as_ref().map(|m| m as &dyn Sink),
        }
    }

    /// Starts a span the audit may track (out of line: spans that are not gen-ai take
    /// the short path of `on_start`).
    #[inline(never)]
    fn start_tracked(&self, audit: &Audit<SpanData>, plan: StartPlan, data: &mut Option<SpanData>) {
        let (keep_snapshot, keep_name) = (plan.keep_snapshot(), plan.keep_name());
        let kept = || {
            if keep_snapshot {
                data.take()
                    .map_or(Kept::Nothing, |d| Kept::Snapshot(Box::new(d)))
            } else if keep_name {
                data.as_mut()
                    .map_or(Kept::Nothing, |d| Kept::Name(std::mem::take(&mut d.name)))
            } else {
                Kept::Nothing
            }
        };
        let synthetic = audit.start(plan, kept, self.caller());
        self.export(synthetic);
    }

    /// Audits the end of a span (out of line, like [`Self::start_tracked`]); `false`
    /// when the span must not be forwarded (the audit exported it closed before).
    #[inline(never)]
    fn end_audited(&self, audit: &Audit<SpanData>, span: &mut SpanData, role: Role) -> bool {
        let outcome = audit.on_end(
            EndedSpan {
                id: id_of(span.span_context.span_id()),
                trace_id: span.span_context.trace_id(),
                parent: parent(span.parent_span_id).filter(|_| !span.parent_span_is_remote),
                start_time: span.start_time,
                end_time: span.end_time,
                attributes: &span.attributes,
            },
            role,
            self.caller(),
        );
        outcome.writes.apply(&mut span.attributes);
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
                    id: id_of(data.span_context.span_id()),
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
            self.export(audit.shutdown(self.caller()));
        }
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
