//! Shared harness for the integration tests: a real `SdkTracerProvider` whose only
//! processor is the audit processor wrapping a `SimpleSpanProcessor` over an
//! `InMemorySpanExporter`, and a real `SdkMeterProvider` over an
//! `InMemoryMetricExporter`.
#![allow(dead_code)]

use std::collections::HashMap;

use genai_audit::script::{Replay, TraceScript};
use genai_audit::{GenAiAuditProcessor, GenAiAuditProcessorBuilder};
use opentelemetry::trace::TracerProvider;
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor, SpanData,
};

pub type Builder = GenAiAuditProcessorBuilder<SimpleSpanProcessor<InMemorySpanExporter>>;

pub struct Harness {
    pub provider: SdkTracerProvider,
    pub exporter: InMemorySpanExporter,
    pub meter_provider: SdkMeterProvider,
    pub metric_exporter: InMemoryMetricExporter,
}

impl Harness {
    /// The default configuration (environment variables are not read in tests: every
    /// setting they cover is set in code by `configure` where it matters).
    pub fn new() -> Self {
        Self::with(|b| b)
    }

    pub fn with(configure: impl FnOnce(Builder) -> Builder) -> Self {
        let metric_exporter = InMemoryMetricExporter::default();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metric_exporter.clone()).build())
            .build();
        let exporter = InMemorySpanExporter::default();
        let builder = GenAiAuditProcessor::builder(SimpleSpanProcessor::new(exporter.clone()))
            .with_meter_provider(meter_provider.clone())
            .with_disabled(false);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(configure(builder).build())
            .build();
        Harness {
            provider,
            exporter,
            meter_provider,
            metric_exporter,
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
    pub fn metric(&self, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        self.meter_provider.force_flush().expect("flush");
        let all = self
            .metric_exporter
            .get_finished_metrics()
            .expect("metrics");
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
}

fn attrs_of<'a>(it: impl Iterator<Item = &'a KeyValue>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = it
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect();
    v.sort();
    v
}

fn collect_points(data: &AggregatedMetrics, out: &mut Vec<(Vec<(String, String)>, f64)>) {
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
        match self.attr(label, key) {
            Some(Value::I64(v)) => v,
            other => panic!("{label}: {key} is not an integer: {other:?}"),
        }
    }

    pub fn f64(&self, label: &str, key: &str) -> f64 {
        match self.attr(label, key) {
            Some(Value::F64(v)) => v,
            other => panic!("{label}: {key} is not a double: {other:?}"),
        }
    }

    pub fn bool(&self, label: &str, key: &str) -> bool {
        match self.attr(label, key) {
            Some(Value::Bool(v)) => v,
            other => panic!("{label}: {key} is not a bool: {other:?}"),
        }
    }

    pub fn string(&self, label: &str, key: &str) -> String {
        match self.attr(label, key) {
            Some(Value::String(v)) => v.to_string(),
            other => panic!("{label}: {key} is not a string: {other:?}"),
        }
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

pub fn findings_of(span: &SpanData) -> Vec<String> {
    match value(span, "genai_audit.findings") {
        Some(Value::Array(opentelemetry::Array::String(v))) => {
            v.iter().map(|s| s.to_string()).collect()
        }
        None => Vec::new(),
        other => panic!("findings is not a string array: {other:?}"),
    }
}

/// The price genai-prices gives one call, computed directly in the test.
pub fn direct_price(
    provider: Option<&str>,
    model: &str,
    input: u64,
    output: u64,
    start_ns: u64,
) -> f64 {
    use genai_prices::{PriceRequest, Usage, UsageKey};
    let usage = Usage::from([
        (UsageKey::INPUT_TOKENS, input as f64),
        (UsageKey::OUTPUT_TOKENS, output as f64),
    ]);
    let mut request = PriceRequest::new(model, &usage)
        .with_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(start_ns));
    if let Some(p) = provider {
        request = request.with_provider_id(p);
    }
    genai_prices::calculate(&request)
        .expect("the model is in the price data")
        .total_price
}

impl Harness {
    /// (name, version) of every instrumentation scope that produced metrics.
    pub fn metric_scopes(&self) -> Vec<(String, Option<String>)> {
        self.meter_provider.force_flush().expect("flush");
        let all = self
            .metric_exporter
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

/// Every data point of a metric read from any meter provider and in-memory exporter
/// (for pipelines built by hand), as [`Harness::metric`] does.
pub fn metric_points(
    meter_provider: &SdkMeterProvider,
    exporter: &InMemoryMetricExporter,
    name: &str,
) -> Vec<(Vec<(String, String)>, f64)> {
    meter_provider.force_flush().expect("flush");
    let all = exporter.get_finished_metrics().expect("metrics");
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

/// A finding count: (code, role, repaired, count).
pub type FindingCount = (String, String, bool, u64);

/// The points of `genai_audit.findings` as (code, role, repaired, count), sorted;
/// points that count nothing are left out.
pub fn finding_counts(points: &[(Vec<(String, String)>, f64)]) -> Vec<FindingCount> {
    let mut counts: Vec<FindingCount> = points
        .iter()
        .filter(|(_, v)| *v != 0.0)
        .map(|(attrs, v)| {
            let get = |key: &str| {
                attrs
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("finding point without {key}: {attrs:?}"))
            };
            assert_eq!(attrs.len(), 3, "unexpected attributes: {attrs:?}");
            (
                get("genai_audit.finding"),
                get("genai_audit.role"),
                get("genai_audit.repaired") == "true",
                *v as u64,
            )
        })
        .collect();
    counts.sort();
    counts
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

/// The value of a metric without attributes (e.g. `genai_audit.spans.tracked`).
pub fn single_value(points: &[(Vec<(String, String)>, f64)]) -> f64 {
    match points {
        [(attrs, v)] if attrs.is_empty() => *v,
        other => panic!("expected one point without attributes: {other:?}"),
    }
}

impl Harness {
    /// `genai_audit.findings` as (code, role, repaired, count), sorted.
    pub fn finding_counts(&self) -> Vec<FindingCount> {
        finding_counts(&self.metric("genai_audit.findings"))
    }

    /// The current value of `genai_audit.spans.tracked`.
    pub fn tracked_spans(&self) -> i64 {
        single_value(&self.metric("genai_audit.spans.tracked")) as i64
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
