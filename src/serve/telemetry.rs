//! The live audit's metrics: the audit's own (created by the audit processor on the
//! meter provider made here) and `serve`'s, pushed as OTLP to the destination and
//! gathered in Prometheus text for `GET /metrics`.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use opentelemetry::metrics::{Counter, MeterProvider as _, ObservableGauge};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::Resource;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

use super::forward::{grpc_tls, SetupError};
use super::options::{ForwardProtocol, ServeOptions};

/// The metric of spans by outcome.
pub(crate) const SPANS: &str = "genai_audit.serve.spans";
/// The metrics of what is held.
pub(crate) const TRACES_HELD: &str = "genai_audit.serve.traces.held";
pub(crate) const BYTES_HELD: &str = "genai_audit.serve.bytes.held";

/// What happened to spans: received (acknowledged), forwarded (accepted by the
/// destination or written to the output), rejected (refused at receipt: no valid
/// id), dropped (acknowledged but not sent after every retry).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Received,
    Forwarded,
    Rejected,
    Dropped,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Received => "received",
            Outcome::Forwarded => "forwarded",
            Outcome::Rejected => "rejected",
            Outcome::Dropped => "dropped",
        }
    }
}

/// The gauges' sources, updated by the holding.
#[derive(Debug, Default)]
pub(crate) struct Levels {
    pub(crate) traces: AtomicUsize,
    pub(crate) bytes: AtomicUsize,
}

/// The meter provider and `serve`'s instruments.
pub(crate) struct Telemetry {
    pub(crate) provider: SdkMeterProvider,
    registry: prometheus::Registry,
    spans: Counter<u64>,
    _traces: ObservableGauge<u64>,
    _bytes: ObservableGauge<u64>,
}

/// Why the metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TelemetryError {
    /// The Prometheus exporter.
    #[error("cannot set up the Prometheus metrics: {0}")]
    Prometheus(String),
    /// The OTLP exporter that pushes them to `--forward`.
    #[error("cannot set up the metrics exporter: {0}")]
    Exporter(String),
    /// The destination's TLS settings.
    #[error(transparent)]
    Destination(#[from] SetupError),
}

impl Telemetry {
    /// Metrics shown in Prometheus text, and pushed as OTLP to `--forward` (every
    /// `metrics_interval`) when there is one.
    pub(crate) fn new(
        options: &ServeOptions,
        levels: Arc<Levels>,
    ) -> Result<Telemetry, TelemetryError> {
        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .build()
            .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
        let mut builder = SdkMeterProvider::builder()
            .with_resource(
                Resource::builder_empty()
                    .with_attribute(KeyValue::new("service.name", "genai-audit"))
                    .build(),
            )
            .with_reader(prometheus);
        if let Some(url) = &options.forward {
            let base = url.trim_end_matches('/').trim_end_matches("/v1/traces");
            let tls = url.starts_with("https://");
            let exporter = match options.forward_protocol {
                ForwardProtocol::Grpc => {
                    let mut metadata = MetadataMap::new();
                    for (k, v) in &options.forward_headers {
                        if let (Ok(k), Ok(v)) = (
                            MetadataKey::from_str(&k.to_ascii_lowercase()),
                            MetadataValue::from_str(v),
                        ) {
                            metadata.insert(k, v);
                        }
                    }
                    let mut exporter = MetricExporter::builder()
                        .with_tonic()
                        .with_endpoint(base)
                        .with_timeout(options.forward_timeout)
                        .with_metadata(metadata);
                    if let Some(config) = grpc_tls(options)? {
                        exporter = exporter.with_tls_config(config);
                    }
                    Some(exporter.build())
                }
                ForwardProtocol::HttpProtobuf | ForwardProtocol::HttpJson if tls => {
                    super::log::warn(format_args!(
                        "metrics are not pushed to an https:// OTLP/HTTP destination (they are at GET /metrics); --forward-protocol grpc pushes them over TLS"
                    ));
                    None
                }
                ForwardProtocol::HttpProtobuf | ForwardProtocol::HttpJson => Some(
                    MetricExporter::builder()
                        .with_http()
                        .with_endpoint(format!("{base}/v1/metrics"))
                        .with_timeout(options.forward_timeout)
                        .with_headers(options.forward_headers.iter().cloned().collect())
                        .build(),
                ),
            };
            if let Some(exporter) = exporter {
                let exporter = exporter.map_err(|e| TelemetryError::Exporter(e.to_string()))?;
                builder = builder.with_reader(
                    PeriodicReader::builder(exporter)
                        .with_interval(options.metrics_interval)
                        .build(),
                );
            }
        }
        let provider = builder.build();
        let meter = provider.meter_with_scope(
            opentelemetry::InstrumentationScope::builder("genai-audit")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        let spans = meter
            .u64_counter(SPANS)
            .with_unit("{span}")
            .with_description("Spans received, forwarded, rejected or dropped by the live audit")
            .build();
        let held = Arc::clone(&levels);
        let traces = meter
            .u64_observable_gauge(TRACES_HELD)
            .with_unit("{trace}")
            .with_description("Traces held until they are complete")
            .with_callback(move |o| o.observe(held.traces.load(Ordering::Relaxed) as u64, &[]))
            .build();
        let bytes = meter
            .u64_observable_gauge(BYTES_HELD)
            .with_unit("By")
            .with_description("Memory taken by held spans and spans not yet sent")
            .with_callback(move |o| o.observe(levels.bytes.load(Ordering::Relaxed) as u64, &[]))
            .build();
        Ok(Telemetry {
            provider,
            registry,
            spans,
            _traces: traces,
            _bytes: bytes,
        })
    }

    /// Counts `n` spans with `outcome`.
    pub(crate) fn count(&self, outcome: Outcome, n: usize) {
        if n > 0 {
            self.spans
                .add(n as u64, &[KeyValue::new("outcome", outcome.name())]);
        }
    }

    /// Every metric in the Prometheus text format.
    pub(crate) fn prometheus_text(&self) -> String {
        let mut text = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut text) {
            text = format!("# cannot encode the metrics: {e}\n");
        }
        text
    }
}
