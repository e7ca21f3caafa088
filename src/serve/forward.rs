//! Sending audited spans on: OTLP/HTTP (protobuf or JSON) or OTLP/gRPC, retrying
//! with backoff as the Collector's exporters do, and counting what could not be sent.

use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::Channel;
use tonic::Code;

use super::options::{ForwardProtocol, ServeOptions};

/// The longest wait between two tries.
const MAX_INTERVAL: Duration = Duration::from_secs(30);
/// How long one try may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

enum Target {
    Http {
        client: Box<Client<HttpConnector, Full<Bytes>>>,
        uri: Uri,
        json: bool,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    Grpc {
        client: TraceServiceClient<Channel>,
        headers: Vec<(
            MetadataKey<tonic::metadata::Ascii>,
            MetadataValue<tonic::metadata::Ascii>,
        )>,
    },
}

/// What one try gave.
enum Attempt {
    Sent,
    /// Worth another try, after the destination's `Retry-After` if it gave one.
    Retry(String, Option<Duration>),
    /// Refused for good.
    Failed(String),
}

/// The destination, with the retry settings.
pub(crate) struct Forwarder {
    target: Target,
    initial: Duration,
    max_elapsed: Duration,
}

impl Forwarder {
    /// A forwarder to `options.forward` (`None` when there is none); an unusable URL
    /// or header is an error.
    pub(crate) fn new(options: &ServeOptions) -> Result<Option<Forwarder>, String> {
        let Some(url) = &options.forward else {
            return Ok(None);
        };
        let target = match options.forward_protocol {
            ForwardProtocol::Grpc => {
                let channel = Channel::from_shared(url.clone())
                    .map_err(|e| format!("--forward {url}: {e}"))?
                    .connect_timeout(ATTEMPT_TIMEOUT)
                    .connect_lazy();
                let mut headers = Vec::new();
                for (k, v) in &options.forward_headers {
                    let key = MetadataKey::from_str(&k.to_ascii_lowercase())
                        .map_err(|e| format!("--forward-header {k}: {e}"))?;
                    let value = MetadataValue::from_str(v)
                        .map_err(|e| format!("--forward-header {k}: {e}"))?;
                    headers.push((key, value));
                }
                Target::Grpc {
                    client: TraceServiceClient::new(channel).max_decoding_message_size(usize::MAX),
                    headers,
                }
            }
            protocol => {
                let full = if url.trim_end_matches('/').ends_with("/v1/traces") {
                    url.trim_end_matches('/').to_owned()
                } else {
                    format!("{}/v1/traces", url.trim_end_matches('/'))
                };
                let uri = Uri::from_str(&full).map_err(|e| format!("--forward {url}: {e}"))?;
                let mut headers = Vec::new();
                for (k, v) in &options.forward_headers {
                    let key = HeaderName::from_str(k)
                        .map_err(|e| format!("--forward-header {k}: {e}"))?;
                    let value = HeaderValue::from_str(v)
                        .map_err(|e| format!("--forward-header {k}: {e}"))?;
                    headers.push((key, value));
                }
                Target::Http {
                    client: Box::new(Client::builder(TokioExecutor::new()).build_http()),
                    uri,
                    json: protocol == ForwardProtocol::HttpJson,
                    headers,
                }
            }
        };
        Ok(Some(Forwarder {
            target,
            initial: options.retry_initial,
            max_elapsed: options.retry_max_elapsed,
        }))
    }

    /// Sends `request`, trying again on a retryable failure with exponential backoff
    /// until the retry time is spent or `give_up()` says so; the error says why the
    /// spans could not be sent.
    pub(crate) async fn send(
        &self,
        request: &ExportTraceServiceRequest,
        give_up: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut interval = self.initial;
        let body = match &self.target {
            Target::Http { json: true, .. } => match serde_json::to_vec(request) {
                Ok(body) => Bytes::from(body),
                Err(e) => return Err(format!("cannot write OTLP JSON: {e}")),
            },
            Target::Http { json: false, .. } => Bytes::from(request.encode_to_vec()),
            Target::Grpc { .. } => Bytes::new(),
        };
        loop {
            let attempt =
                match tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(request, &body)).await {
                    Ok(attempt) => attempt,
                    Err(_) => Attempt::Retry("no answer in 10 s".to_owned(), None),
                };
            match attempt {
                Attempt::Sent => return Ok(()),
                Attempt::Failed(why) => return Err(why),
                Attempt::Retry(why, after) => {
                    let wait = after.unwrap_or(interval).min(MAX_INTERVAL);
                    if started.elapsed() + wait > self.max_elapsed || give_up() {
                        return Err(format!("{why} (gave up after {:.1?})", started.elapsed()));
                    }
                    // Slept in short steps, so that a shutdown's deadline is kept.
                    let until = Instant::now() + wait;
                    while let Some(left) = until.checked_duration_since(Instant::now()) {
                        if left.is_zero() {
                            break;
                        }
                        if give_up() {
                            return Err(format!("{why} (gave up at shutdown)"));
                        }
                        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
                    }
                    interval = (interval * 2).min(MAX_INTERVAL);
                }
            }
        }
    }

    async fn attempt(&self, request: &ExportTraceServiceRequest, body: &Bytes) -> Attempt {
        match &self.target {
            Target::Http {
                client,
                uri,
                json,
                headers,
            } => {
                let content_type = if *json {
                    "application/json"
                } else {
                    "application/x-protobuf"
                };
                let mut builder = Request::builder()
                    .method(Method::POST)
                    .uri(uri.clone())
                    .header(CONTENT_TYPE, content_type);
                for (k, v) in headers {
                    builder = builder.header(k, v);
                }
                let http = match builder.body(Full::new(body.clone())) {
                    Ok(http) => http,
                    Err(e) => return Attempt::Failed(e.to_string()),
                };
                let response = match client.request(http).await {
                    Ok(response) => response,
                    Err(e) => return Attempt::Retry(format!("{uri}: {e}"), None),
                };
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                if status.is_success() {
                    report_partial(decode_response(&body, *json));
                    return Attempt::Sent;
                }
                let why = format!(
                    "{uri} answered {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                );
                match status {
                    StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT => Attempt::Retry(why, retry_after),
                    _ => Attempt::Failed(why),
                }
            }
            Target::Grpc { client, headers } => {
                let mut grpc = tonic::Request::new(request.clone());
                for (k, v) in headers {
                    grpc.metadata_mut().insert(k.clone(), v.clone());
                }
                match client.clone().export(grpc).await {
                    Ok(response) => {
                        report_partial(Some(response.into_inner()));
                        Attempt::Sent
                    }
                    Err(status) => {
                        let why = format!("gRPC {:?}: {}", status.code(), status.message());
                        match status.code() {
                            Code::Unavailable
                            | Code::ResourceExhausted
                            | Code::DeadlineExceeded
                            | Code::Aborted
                            | Code::Cancelled
                            | Code::OutOfRange
                            | Code::DataLoss => Attempt::Retry(why, None),
                            _ => Attempt::Failed(why),
                        }
                    }
                }
            }
        }
    }
}

fn decode_response(body: &[u8], json: bool) -> Option<ExportTraceServiceResponse> {
    if json {
        serde_json::from_slice(body).ok()
    } else {
        ExportTraceServiceResponse::decode(body).ok()
    }
}

/// The destination took the request but refused some spans: it says so, and so do we.
fn report_partial(response: Option<ExportTraceServiceResponse>) {
    if let Some(partial) = response.and_then(|r| r.partial_success) {
        if partial.rejected_spans > 0 {
            eprintln!(
                "genai-audit serve: the destination rejected {} spans: {}",
                partial.rejected_spans, partial.error_message
            );
        }
    }
}
