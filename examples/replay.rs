//! Replays a trace script (see `docs/trace-script-format.md`) through an SDK
//! tracer provider whose only span processor is the audit processor, and prints
//! what it exported as JSON Lines.
//!
//! ```text
//! cargo run --example replay -- tests/recordings/traces/hermes-concurrent-fixed.jsonl
//! cargo run --example replay -- - < script.jsonl    # or no argument: stdin
//! ```
//!
//! The audit processor wraps a `SimpleSpanProcessor` over an exporter that keeps
//! every exported span, and records its metrics into an in-memory metric exporter;
//! its configuration comes from the environment, as in an application. After the
//! script the tracer provider is shut down (spans still open are handled as at an
//! application exit), then the program prints one line per exported span, in export
//! order:
//!
//! ```text
//! {"span":"llm0","name":"chat gpt-4o","parent":"step1","kind":"client","start_ns":...,"end_ns":...,"status":"unset","status_message":"","attributes":{...}}
//! ```
//!
//! `span` and `parent` are script labels (`parent` is `null` for a root, or the hex
//! span id when the parent is not a span of the script). Attributes print in span
//! order; a key set more than once prints once, at its first position, with its
//! last value. The last line holds the processor's metrics (sums, gauges and histograms of the
//! last collection, data points sorted by their attributes):
//!
//! ```text
//! {"metrics":{"<instrument name>":[{"attributes":{...},"value":<number>}]}}
//! ```
//!
//! A histogram's point has `count`, `sum`, `bounds` and `bucket_counts` instead of
//! `value`.
//!
//! Exit status: 0 on success, 2 when the script is invalid (`error: line N: reason`
//! on stderr, nothing on stdout) or the command line is wrong, 1 when the input
//! cannot be read.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use genai_audit::script::{Replay, TraceScript};
use genai_audit::GenAiAuditProcessor;
use opentelemetry::trace::{SpanId, SpanKind, Status, TracerProvider as _};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor, SpanData, SpanExporter};

const USAGE: &str = "usage: replay [PATH|-]   (reads stdin when PATH is `-` or absent)";

/// A span exporter that keeps every span it is given, through shutdown.
#[derive(Debug, Clone, Default)]
struct CollectingExporter {
    spans: Arc<Mutex<Vec<SpanData>>>,
}

impl SpanExporter for CollectingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch);
        Ok(())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [] => None,
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [path] if path == "-" => None,
        [path] => Some(path.as_str()),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    let text = match read_input(path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!(
                "error: cannot read {}: {error}",
                path.unwrap_or("standard input")
            );
            return ExitCode::from(1);
        }
    };
    let script = match TraceScript::parse(&text) {
        Ok(script) => script,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };

    let metric_exporter = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metric_exporter.clone()).build())
        .build();

    let exporter = CollectingExporter::default();
    let exported = Arc::clone(&exporter.spans);
    let audit = GenAiAuditProcessor::builder(SimpleSpanProcessor::new(exporter))
        .with_meter_provider(meter_provider.clone())
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(audit)
        .build();
    let tracer = tracer_provider.tracer("genai-audit-replay");

    let replay = script.replay(&tracer);
    if let Err(error) = tracer_provider.shutdown() {
        eprintln!("warning: tracer provider shutdown: {error}");
    }
    // Everything exported up to and including the shutdown.
    let spans = std::mem::take(&mut *exported.lock().unwrap_or_else(PoisonError::into_inner));
    let mut out = String::new();
    for span in &spans {
        out.push_str(&span_line(span, &replay));
        out.push('\n');
    }
    drop(replay);

    if let Err(error) = meter_provider.force_flush() {
        eprintln!("warning: meter provider flush: {error}");
    }
    let metrics = match metric_exporter.get_finished_metrics() {
        Ok(metrics) => metrics,
        Err(error) => {
            eprintln!("warning: cannot read metrics: {error}");
            Vec::new()
        }
    };
    out.push_str(&metrics_line(metrics.last()));
    out.push('\n');

    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("error: cannot write output: {error}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn read_input(path: Option<&str>) -> std::io::Result<String> {
    match path {
        Some(path) => std::fs::read_to_string(path),
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            Ok(text)
        }
    }
}

/// A JSON string literal.
fn json_str(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// The script label of a span id, or its hex form when the replay does not know it.
fn label(replay: &Replay, span_id: SpanId) -> String {
    match replay.label_of(span_id) {
        Some(label) => json_str(label),
        None => json_str(&span_id.to_string()),
    }
}

fn nanos(time: SystemTime) -> String {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos().to_string(),
        Err(before) => format!("-{}", before.duration().as_nanos()),
    }
}

fn span_line(span: &SpanData, replay: &Replay) -> String {
    let parent = if span.parent_span_id == SpanId::INVALID {
        "null".to_string()
    } else {
        label(replay, span.parent_span_id)
    };
    let kind = match span.span_kind {
        SpanKind::Client => "client",
        SpanKind::Server => "server",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    };
    let (status, message) = match &span.status {
        Status::Unset => ("unset", ""),
        Status::Ok => ("ok", ""),
        Status::Error { description } => ("error", description.as_ref()),
    };
    format!(
        "{{\"span\":{},\"name\":{},\"parent\":{},\"kind\":{},\"start_ns\":{},\"end_ns\":{},\"status\":{},\"status_message\":{},\"attributes\":{}}}",
        label(replay, span.span_context.span_id()),
        json_str(&span.name),
        parent,
        json_str(kind),
        nanos(span.start_time),
        nanos(span.end_time),
        json_str(status),
        json_str(message),
        attributes_object(&span.attributes),
    )
}

/// Attributes as a JSON object in span order; a repeated key keeps its first
/// position and takes its last value.
fn attributes_object(attributes: &[KeyValue]) -> String {
    let mut members: Vec<(&str, String)> = Vec::new();
    let mut positions: HashMap<&str, usize> = HashMap::new();
    for kv in attributes {
        let value = value_json(&kv.value);
        match positions.get(kv.key.as_str()) {
            Some(&index) => members[index].1 = value,
            None => {
                positions.insert(kv.key.as_str(), members.len());
                members.push((kv.key.as_str(), value));
            }
        }
    }
    let members: Vec<String> = members
        .into_iter()
        .map(|(key, value)| format!("{}:{value}", json_str(key)))
        .collect();
    format!("{{{}}}", members.join(","))
}

fn value_json(value: &Value) -> String {
    let json = match value {
        Value::Bool(flag) => serde_json::Value::from(*flag),
        Value::I64(number) => serde_json::Value::from(*number),
        Value::F64(number) => serde_json::Value::from(*number),
        Value::String(text) => serde_json::Value::from(text.as_str()),
        Value::Array(Array::Bool(items)) => serde_json::Value::from(items.clone()),
        Value::Array(Array::I64(items)) => serde_json::Value::from(items.clone()),
        Value::Array(Array::F64(items)) => serde_json::Value::from(items.clone()),
        Value::Array(Array::String(items)) => {
            serde_json::Value::from_iter(items.iter().map(|item| item.as_str()))
        }
        // Variants added to the API later print as their display form.
        other => serde_json::Value::from(other.to_string()),
    };
    json.to_string()
}

/// One data point: its attributes as a JSON object sorted by key, then `fields`
/// (`"value":<number>` for a sum or a gauge).
fn data_point<'a>(attributes: impl Iterator<Item = &'a KeyValue>, fields: String) -> String {
    let sorted: BTreeMap<&str, String> = attributes
        .map(|kv| (kv.key.as_str(), value_json(&kv.value)))
        .collect();
    let members: Vec<String> = sorted
        .into_iter()
        .map(|(key, value)| format!("{}:{value}", json_str(key)))
        .collect();
    format!("{{\"attributes\":{{{}}},{fields}}}", members.join(","))
}

/// The data points of a sum, a gauge or a histogram; `None` for exponential
/// histograms, which are not printed.
fn data_points<T: Copy>(
    data: &MetricData<T>,
    number: impl Fn(T) -> serde_json::Value,
) -> Option<Vec<String>> {
    match data {
        MetricData::Sum(sum) => Some(
            sum.data_points()
                .map(|point| data_point(point.attributes(), value_field(number(point.value()))))
                .collect(),
        ),
        MetricData::Gauge(gauge) => Some(
            gauge
                .data_points()
                .map(|point| data_point(point.attributes(), value_field(number(point.value()))))
                .collect(),
        ),
        MetricData::Histogram(histogram) => Some(
            histogram
                .data_points()
                .map(|point| {
                    let fields = format!(
                        "\"count\":{},\"sum\":{},\"bounds\":{},\"bucket_counts\":{}",
                        point.count(),
                        number(point.sum()),
                        serde_json::Value::from(point.bounds().collect::<Vec<f64>>()),
                        serde_json::Value::from(point.bucket_counts().collect::<Vec<u64>>()),
                    );
                    data_point(point.attributes(), fields)
                })
                .collect(),
        ),
        MetricData::ExponentialHistogram(_) => None,
    }
}

/// The `value` member of a sum's or a gauge's point.
fn value_field(value: serde_json::Value) -> String {
    format!("\"value\":{value}")
}

/// The metrics line for every metric of every scope of `metrics`.
fn metrics_line(metrics: Option<&ResourceMetrics>) -> String {
    let mut instruments: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for scope in metrics.into_iter().flat_map(ResourceMetrics::scope_metrics) {
        for metric in scope.metrics() {
            let points = match metric.data() {
                AggregatedMetrics::U64(data) => data_points(data, serde_json::Value::from),
                AggregatedMetrics::I64(data) => data_points(data, serde_json::Value::from),
                AggregatedMetrics::F64(data) => data_points(data, serde_json::Value::from),
            };
            if let Some(points) = points {
                instruments.entry(metric.name()).or_default().extend(points);
            }
        }
    }
    let members: Vec<String> = instruments
        .into_iter()
        .map(|(name, mut points)| {
            // Every point starts with its attributes object: this sorts by it.
            points.sort();
            format!("{}:[{}]", json_str(name), points.join(","))
        })
        .collect();
    format!("{{\"metrics\":{{{}}}}}", members.join(","))
}
