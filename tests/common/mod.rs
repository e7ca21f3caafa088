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
