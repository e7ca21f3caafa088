//! Shared harness for the integration tests: a real `SdkTracerProvider` whose only
//! processor is the audit processor wrapping a `SimpleSpanProcessor` over an
//! `InMemorySpanExporter`, and a real `SdkMeterProvider` over an
//! `InMemoryMetricExporter`.
#![allow(dead_code)]

pub mod lines;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use genai_audit::keys::{STALE_STATUS, UNCLOSED_STATUS};
use genai_audit::script::{Replay, TraceScript};
use genai_audit::{GenAiAuditProcessor, GenAiAuditProcessorBuilder, LeakPolicy};
use opentelemetry::trace::{Status, TracerProvider};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor, Span, SpanData, SpanProcessor,
};

pub type Builder = GenAiAuditProcessorBuilder<SimpleSpanProcessor<InMemorySpanExporter>>;

pub struct Harness {
    pub provider: SdkTracerProvider,
    pub exporter: InMemorySpanExporter,
    pub metrics: Metrics,
}

impl Harness {
    /// The default configuration (environment variables are not read in tests: every
    /// setting they cover is set in code by `configure` where it matters).
    pub fn new() -> Self {
        Self::with(|b| b)
    }

    pub fn with(configure: impl FnOnce(Builder) -> Builder) -> Self {
        let metrics = Metrics::new();
        let exporter = InMemorySpanExporter::default();
        let builder = metrics.audit(SimpleSpanProcessor::new(exporter.clone()));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(configure(builder).build())
            .build();
        Harness {
            provider,
            exporter,
            metrics,
        }
    }

    pub fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        self.provider.tracer("test")
    }

    /// Replays a script and returns what was exported so far, by label.
    pub fn replay(&self, script: &str) -> Replayed {
        let script = TraceScript::parse(script).unwrap_or_else(|e| panic!("bad script: {e}"));
        let replay = script.replay(&self.tracer());
        let spans = self.exporter.get_finished_spans().expect("exporter");
        let mut by_label = HashMap::new();
        for span in spans {
            let label = replay
                .label_of(span.span_context.span_id())
                .expect("every exported span comes from the script")
                .to_owned();
            by_label.insert(label, span);
        }
        Replayed {
            spans: by_label,
            _replay: replay,
        }
    }

    /// Every data point of a metric: (sorted attributes, value).
    pub fn metric(&self, name: &str) -> Vec<Point> {
        self.metrics.points(name)
    }
}

/// A metric data point: (sorted attributes, value).
pub type Point = (Vec<(String, String)>, f64);

/// One histogram data point.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPoint {
    pub attributes: Vec<(String, String)>,
    pub count: u64,
    pub sum: f64,
    pub bounds: Vec<f64>,
    pub bucket_counts: Vec<u64>,
}

/// A real `SdkMeterProvider` over an `InMemoryMetricExporter`, and what it read.
#[derive(Clone)]
pub struct Metrics {
    pub provider: SdkMeterProvider,
    pub exporter: InMemoryMetricExporter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        Metrics { provider, exporter }
    }

    /// An audit processor builder over `inner`, enabled, with these metrics.
    pub fn audit<P: SpanProcessor>(&self, inner: P) -> GenAiAuditProcessorBuilder<P> {
        GenAiAuditProcessor::builder(inner)
            .with_meter_provider(self.provider.clone())
            .with_disabled(false)
    }

    /// Every data point of a metric: (sorted attributes, value).
    pub fn points(&self, name: &str) -> Vec<Point> {
        self.provider.force_flush().expect("flush");
        let all = self.exporter.get_finished_metrics().expect("metrics");
        let mut points = Vec::new();
        if let Some(last) = all.last() {
            for scope in last.scope_metrics() {
                for metric in scope.metrics().filter(|m| m.name() == name) {
                    collect_points(metric.data(), &mut points);
                }
            }
        }
        points.sort_by(|a, b| a.0.cmp(&b.0));
        points
    }

    /// Every data point of a histogram, sorted by attributes.
    pub fn histogram(&self, name: &str) -> Vec<HistogramPoint> {
        self.provider.force_flush().expect("flush");
        let all = self.exporter.get_finished_metrics().expect("metrics");
        let mut points = Vec::new();
        if let Some(last) = all.last() {
            for scope in last.scope_metrics() {
                for metric in scope.metrics().filter(|m| m.name() == name) {
                    match metric.data() {
                        AggregatedMetrics::U64(MetricData::Histogram(h)) => {
                            histogram_points(h, |v| v as f64, &mut points)
                        }
                        AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                            histogram_points(h, |v| v, &mut points)
                        }
                        _ => {}
                    }
                }
            }
        }
        points.sort_by(|a, b| a.attributes.cmp(&b.attributes));
        points
    }

    /// `genai_audit.findings` as (code, role, repaired, count), sorted; points that
    /// count nothing are left out.
    pub fn finding_counts(&self) -> Vec<FindingCount> {
        finding_counts(&self.points("genai_audit.findings"))
    }

    /// `genai_audit.findings` as (code, role, repaired, count), sorted, every point.
    pub fn all_finding_counts(&self) -> Vec<FindingCount> {
        all_finding_counts(&self.points("genai_audit.findings"))
    }

    /// The current value of `genai_audit.spans.tracked`.
    pub fn tracked_spans(&self) -> i64 {
        single_value(&self.points("genai_audit.spans.tracked")) as i64
    }

    /// Asserts the finding counts (as [`Self::finding_counts`]) and the tracked spans.
    pub fn assert_counts(&self, counts: &[(&str, &str, bool, u64)], tracked: i64) {
        assert_eq!(
            self.finding_counts(),
            expect_counts(counts),
            "finding counts"
        );
        assert_eq!(self.tracked_spans(), tracked, "tracked spans");
    }
}

fn histogram_points<T: Copy>(
    histogram: &opentelemetry_sdk::metrics::data::Histogram<T>,
    to_f64: impl Fn(T) -> f64,
    out: &mut Vec<HistogramPoint>,
) {
    for p in histogram.data_points() {
        out.push(HistogramPoint {
            attributes: attrs_of(p.attributes()),
            count: p.count(),
            sum: to_f64(p.sum()),
            bounds: p.bounds().collect(),
            bucket_counts: p.bucket_counts().collect(),
        });
    }
}

fn attrs_of<'a>(it: impl Iterator<Item = &'a KeyValue>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = it
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect();
    v.sort();
    v
}

fn collect_points(data: &AggregatedMetrics, out: &mut Vec<Point>) {
    match data {
        AggregatedMetrics::U64(MetricData::Sum(s)) => {
            for p in s.data_points() {
                out.push((attrs_of(p.attributes()), p.value() as f64));
            }
        }
        AggregatedMetrics::I64(MetricData::Sum(s)) => {
            for p in s.data_points() {
                out.push((attrs_of(p.attributes()), p.value() as f64));
            }
        }
        AggregatedMetrics::F64(MetricData::Sum(s)) => {
            for p in s.data_points() {
                out.push((attrs_of(p.attributes()), p.value()));
            }
        }
        _ => {}
    }
}

pub struct Replayed {
    pub spans: HashMap<String, SpanData>,
    _replay: Replay,
}

impl Replayed {
    pub fn span(&self, label: &str) -> &SpanData {
        self.spans
            .get(label)
            .unwrap_or_else(|| panic!("span {label} was not exported"))
    }

    pub fn attr(&self, label: &str, key: &str) -> Option<Value> {
        value(self.span(label), key)
    }

    pub fn i64(&self, label: &str, key: &str) -> i64 {
        typed(self.attr(label, key), label, key, "an integer", as_i64)
    }

    pub fn f64(&self, label: &str, key: &str) -> f64 {
        typed(self.attr(label, key), label, key, "a double", as_f64)
    }

    pub fn bool(&self, label: &str, key: &str) -> bool {
        typed(self.attr(label, key), label, key, "a bool", as_bool)
    }

    pub fn string(&self, label: &str, key: &str) -> String {
        typed(self.attr(label, key), label, key, "a string", as_string)
    }

    /// How many times `key` appears on a span.
    pub fn occurrences(&self, label: &str, key: &str) -> usize {
        occurrences(self.span(label), key)
    }

    pub fn findings(&self, label: &str) -> Vec<String> {
        findings_of(self.span(label))
    }

    /// Asserts that no exported span carries a finding.
    pub fn assert_no_findings(&self) {
        for (label, span) in &self.spans {
            assert!(
                findings_of(span).is_empty(),
                "{label} has findings {:?}",
                findings_of(span)
            );
        }
    }

    /// Asserts that a key appears at most once on every span.
    pub fn assert_no_duplicate_keys(&self) {
        for (label, span) in &self.spans {
            let mut seen = std::collections::HashSet::new();
            for kv in &span.attributes {
                if kv.key.as_str().starts_with("genai_audit.") {
                    assert!(seen.insert(kv.key.as_str()), "{label}: {} twice", kv.key);
                }
            }
        }
    }
}

pub fn value(span: &SpanData, key: &str) -> Option<Value> {
    genai_audit::last_value(&span.attributes, key).cloned()
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::I64(v) => Some(*v),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::F64(v) => Some(*v),
        _ => None,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(v) => Some(*v),
        _ => None,
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(v) => Some(v.to_string()),
        _ => None,
    }
}

/// An attribute value of one type, or a panic naming `who`, the key and what it was.
fn typed<T>(
    v: Option<Value>,
    who: &str,
    key: &str,
    kind: &str,
    pick: fn(&Value) -> Option<T>,
) -> T {
    match v.as_ref().and_then(pick) {
        Some(t) => t,
        None => panic!("{who}: {key} is not {kind}: {v:?}"),
    }
}

/// An integer attribute of a span (panics, with the span's attributes, on another type).
pub fn i64_of(span: &SpanData, key: &str) -> i64 {
    typed(value(span, key), &dump(span), key, "an integer", as_i64)
}

/// A double attribute of a span (panics, with the span's attributes, on another type).
pub fn f64_of(span: &SpanData, key: &str) -> f64 {
    typed(value(span, key), &dump(span), key, "a double", as_f64)
}

/// A string attribute of a span (panics, with the span's attributes, on another type).
pub fn str_of(span: &SpanData, key: &str) -> String {
    typed(value(span, key), &dump(span), key, "a string", as_string)
}

/// A bool attribute of a span (panics, with the span's attributes, on another type).
pub fn bool_of(span: &SpanData, key: &str) -> bool {
    typed(value(span, key), &dump(span), key, "a bool", as_bool)
}

/// How many times `key` occurs on a span (the SDK does not deduplicate).
pub fn occurrences(span: &SpanData, key: &str) -> usize {
    span.attributes
        .iter()
        .filter(|kv| kv.key.as_str() == key)
        .count()
}

/// The `genai_audit.reported.*` attributes of a span, as (key, value).
pub fn reported_of(span: &SpanData) -> Vec<(String, Value)> {
    span.attributes
        .iter()
        .filter(|kv| kv.key.as_str().starts_with("genai_audit.reported."))
        .map(|kv| (kv.key.to_string(), kv.value.clone()))
        .collect()
}

/// The attributes of a span, one `key = value` a line, for failure messages.
pub fn dump(span: &SpanData) -> String {
    let mut out = format!("{} ({})\n", span.name, span.span_context.span_id());
    for KeyValue { key, value, .. } in &span.attributes {
        out.push_str(&format!("  {key} = {value:?}\n"));
    }
    out
}

pub fn findings_of(span: &SpanData) -> Vec<String> {
    match value(span, "genai_audit.findings") {
        Some(Value::Array(opentelemetry::Array::String(v))) => {
            v.iter().map(|s| s.to_string()).collect()
        }
        None => Vec::new(),
        other => panic!("findings is not a string array: {other:?}"),
    }
}

/// The price genai-prices gives one call with these usage counts, at `at`.
fn price(
    provider: Option<&str>,
    model: &str,
    usage: &[(genai_prices::UsageKey, u64)],
    at: SystemTime,
) -> f64 {
    use genai_prices::{PriceRequest, Usage};
    let usage = Usage::from_iter(usage.iter().map(|(k, n)| (k.clone(), *n as f64)));
    let mut request = PriceRequest::new(model, &usage).with_timestamp(at);
    if let Some(p) = provider {
        request = request.with_provider_id(p);
    }
    genai_prices::calculate(&request)
        .expect("the model is in the price data")
        .total_price
}

/// The price genai-prices gives one call, computed directly in the test.
pub fn direct_price(
    provider: Option<&str>,
    model: &str,
    input: u64,
    output: u64,
    start_ns: u64,
) -> f64 {
    use genai_prices::UsageKey;
    price(
        provider,
        model,
        &[
            (UsageKey::INPUT_TOKENS, input),
            (UsageKey::OUTPUT_TOKENS, output),
        ],
        std::time::UNIX_EPOCH + Duration::from_nanos(start_ns),
    )
}

/// The price genai-prices gives one call with cache reads, computed directly.
pub fn price_with_cache(
    provider: &str,
    model: &str,
    input: u64,
    cache_read: u64,
    output: u64,
    start: SystemTime,
) -> f64 {
    use genai_prices::UsageKey;
    price(
        Some(provider),
        model,
        &[
            (UsageKey::INPUT_TOKENS, input),
            (UsageKey::CACHE_READ_TOKENS, cache_read),
            (UsageKey::OUTPUT_TOKENS, output),
        ],
        start,
    )
}

impl Harness {
    /// (name, version) of every instrumentation scope that produced metrics.
    pub fn metric_scopes(&self) -> Vec<(String, Option<String>)> {
        self.metrics.provider.force_flush().expect("flush");
        let all = self
            .metrics
            .exporter
            .get_finished_metrics()
            .expect("metrics");
        let mut scopes: Vec<_> = all
            .last()
            .map(|rm| {
                rm.scope_metrics()
                    .map(|s| {
                        (
                            s.scope().name().to_string(),
                            s.scope().version().map(str::to_string),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        scopes.dedup();
        scopes
    }
}

/// The value of attribute `key` of a metric point (panics if it has none).
pub fn point_attr(attrs: &[(String, String)], key: &str) -> String {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("metric point without {key}: {attrs:?}"))
}

/// A finding count: (code, role, repaired, count).
pub type FindingCount = (String, String, bool, u64);

/// The points of `genai_audit.findings` as (code, role, repaired, count), sorted,
/// every point (also those that count nothing).
pub fn all_finding_counts(points: &[Point]) -> Vec<FindingCount> {
    let mut counts: Vec<FindingCount> = points
        .iter()
        .map(|(attrs, v)| {
            assert_eq!(attrs.len(), 3, "unexpected attributes: {attrs:?}");
            let repaired = match point_attr(attrs, "genai_audit.repaired").as_str() {
                "true" => true,
                "false" => false,
                other => panic!("genai_audit.repaired = {other}"),
            };
            (
                point_attr(attrs, "genai_audit.finding"),
                point_attr(attrs, "genai_audit.role"),
                repaired,
                *v as u64,
            )
        })
        .collect();
    counts.sort();
    counts
}

/// The points of `genai_audit.findings` as (code, role, repaired, count), sorted;
/// points that count nothing are left out.
pub fn finding_counts(points: &[Point]) -> Vec<FindingCount> {
    all_finding_counts(points)
        .into_iter()
        .filter(|(_, _, _, n)| *n != 0)
        .collect()
}

/// Expected finding counts, sorted like [`finding_counts`].
pub fn expect_counts(expected: &[(&str, &str, bool, u64)]) -> Vec<FindingCount> {
    let mut v: Vec<FindingCount> = expected
        .iter()
        .map(|(c, r, rep, n)| (c.to_string(), r.to_string(), *rep, *n))
        .collect();
    v.sort();
    v
}

/// Expected finding counts, as given to [`expect_counts`].
pub type Counts = &'static [(&'static str, &'static str, bool, u64)];

/// An invocation and its open step, both evicted as stale under `flag`.
pub const STALE_INVOCATION_AND_STEP: Counts = &[
    ("stale", "invocation", false, 1),
    ("stale", "step", false, 1),
];

/// An invocation evicted as stale under `close`, closed with its open step.
pub const CLOSED_WITH_OPEN_STEP: Counts = &[
    ("stale", "invocation", false, 1),
    ("closed_by_audit", "invocation", false, 1),
    ("unclosed_child", "invocation", false, 1),
    ("closed_by_audit", "step", false, 1),
];

/// The real ends, after the audit closed them, of an invocation and its step.
pub const LATE_ENDS_OF_INVOCATION_AND_STEP: Counts = &[
    ("late_end", "invocation", false, 1),
    ("late_end", "step", false, 1),
];

/// The value of a metric without attributes (e.g. `genai_audit.spans.tracked`).
pub fn single_value(points: &[Point]) -> f64 {
    match points {
        [(attrs, v)] if attrs.is_empty() => *v,
        other => panic!("expected one point without attributes: {other:?}"),
    }
}

impl Harness {
    /// `genai_audit.findings` as (code, role, repaired, count), sorted.
    pub fn finding_counts(&self) -> Vec<FindingCount> {
        self.metrics.finding_counts()
    }

    /// The current value of `genai_audit.spans.tracked`.
    pub fn tracked_spans(&self) -> i64 {
        self.metrics.tracked_spans()
    }

    /// Asserts the finding counts (as [`Self::finding_counts`]) and the tracked spans.
    pub fn assert_counts(&self, counts: &[(&str, &str, bool, u64)], tracked: i64) {
        self.metrics.assert_counts(counts, tracked)
    }

    /// Every exported span with this span id (a span must be exported at most once).
    pub fn exported_with_id(&self, id: opentelemetry::trace::SpanId) -> Vec<SpanData> {
        self.exporter
            .get_finished_spans()
            .expect("exporter")
            .into_iter()
            .filter(|s| s.span_context.span_id() == id)
            .collect()
    }
}

/// The names of the `genai_audit.*` keys on a span, sorted.
pub fn audit_keys(span: &SpanData) -> Vec<String> {
    let mut keys: Vec<String> = span
        .attributes
        .iter()
        .map(|kv| kv.key.to_string())
        .filter(|k| k.starts_with("genai_audit."))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// A string array attribute as a `Vec<String>` (panics on another type).
pub fn string_array(span: &SpanData, key: &str) -> Vec<String> {
    match value(span, key) {
        Some(Value::Array(opentelemetry::Array::String(v))) => {
            v.iter().map(|s| s.to_string()).collect()
        }
        other => panic!("{}: {key} is not a string array: {other:?}", span.name),
    }
}

/// Checks a parent the audit evicted as stale and closed under `close`, and the open
/// child (named `child_name`) it closed with it.
pub fn assert_closed_with_open_child(parent: &SpanData, child: &SpanData, child_name: &str) {
    assert_eq!(
        findings_of(parent),
        ["stale", "closed_by_audit", "unclosed_child"]
    );
    assert_eq!(parent.status, Status::error(STALE_STATUS));
    assert_eq!(
        string_array(parent, "genai_audit.leak.unclosed_names"),
        [child_name]
    );
    assert_eq!(findings_of(child), ["closed_by_audit"]);
    assert_eq!(child.status, Status::error(UNCLOSED_STATUS));
}

// ---------------------------------------------------------------------------------
// Pipelines built by hand.

/// Sequential span and trace ids, so that two runs of one case get the same ids.
#[derive(Debug, Default)]
pub struct SequentialIds(std::sync::atomic::AtomicU64);

impl opentelemetry_sdk::trace::IdGenerator for SequentialIds {
    fn new_trace_id(&self) -> opentelemetry::trace::TraceId {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        opentelemetry::trace::TraceId::from(u128::from(n) << 64 | 7)
    }
    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        opentelemetry::trace::SpanId::from(
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
        )
    }
}

/// What a [`Recorder`] was asked to do, in order.
#[derive(Debug, Clone)]
pub enum Call {
    End(Box<SpanData>),
    Shutdown,
}

/// An inner processor that logs every `on_end` and `shutdown` in a shared Vec, and
/// keeps it after shutdown (the SDK's in-memory exporter forgets its spans then).
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub log: Arc<Mutex<Vec<Call>>>,
}

impl SpanProcessor for Recorder {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        self.log.lock().unwrap().push(Call::End(Box::new(span)));
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.log.lock().unwrap().push(Call::Shutdown);
        Ok(())
    }
}

impl Recorder {
    pub fn calls(&self) -> Vec<Call> {
        self.log.lock().unwrap().clone()
    }

    /// The spans it received, in order.
    pub fn ended(&self) -> Vec<SpanData> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::End(s) => Some(*s),
                Call::Shutdown => None,
            })
            .collect()
    }

    /// The log as short strings: `end:<name>` and `shutdown`.
    pub fn sequence(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| match c {
                Call::End(s) => format!("end:{}", s.name),
                Call::Shutdown => "shutdown".to_owned(),
            })
            .collect()
    }
}

/// A clock for the processor: the real time plus an offset in seconds the test moves.
pub fn skewed_clock() -> (
    Arc<AtomicU64>,
    impl Fn() -> SystemTime + Send + Sync + 'static,
) {
    let offset = Arc::new(AtomicU64::new(0));
    let o = offset.clone();
    (offset, move || {
        SystemTime::now() + Duration::from_secs(o.load(Ordering::SeqCst))
    })
}

/// A harness under `policy` whose spans age out after 60 s of a [`skewed_clock`];
/// returns the clock's offset too.
pub fn skewed_harness(policy: LeakPolicy) -> (Harness, Arc<AtomicU64>) {
    let (offset, clock) = skewed_clock();
    let h = Harness::with(|b| {
        b.leak_policy(policy)
            .with_max_span_age(Duration::from_secs(60))
            .with_clock(clock)
    });
    (h, offset)
}

// ---------------------------------------------------------------------------------
// Example binaries.

/// An example binary, next to the test's own directory:
/// `target/<profile>/deps/<test>` → `target/<profile>/examples/<name>`.
///
/// A `cargo test --test <test>` run does not build examples, so this runs
/// `cargo build --example <name>` for the same profile first (once per test binary):
/// it builds the binary when it is missing and rebuilds it when the crate changed
/// since (a no-op when it is up to date), so a test never runs a stale example.
pub fn example_binary(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let test_exe = std::env::current_exe().expect("test executable path");
    let deps = test_exe.parent().expect("deps directory");
    let profile_dir = deps.parent().expect("profile directory");
    let binary = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));

    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--example", name]);
    match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            build.arg("--release");
        }
        Some(profile) => {
            build.args(["--profile", profile]);
        }
    }
    let output = build
        .output()
        .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
    assert!(
        output.status.success(),
        "cargo build --example {name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(binary.is_file(), "{} not found", binary.display());
    built.push((name.to_owned(), binary.clone()));
    binary
}

/// Runs example `name` with `args`, only the given `OTEL_*` / `GENAI_AUDIT_*`
/// variables set (the test's own are removed), and `stdin` (none: an empty stdin);
/// returns its status and output.
pub fn run_example(name: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    run_program(&example_binary(name), args, env, stdin)
}

/// Runs a program of the crate (an example, the command) with `args`, these
/// environment variables (none of the test's own `OTEL_*` or `GENAI_AUDIT_*`), and
/// `stdin`; returns what it printed.
pub fn run_program(
    program: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Output {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("OTEL_") || key.starts_with("GENAI_AUDIT_") {
            command.env_remove(key.as_ref());
        }
    }
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {}: {e}", program.display()))
}
