//! Sending audited spans on: OTLP/HTTP (protobuf or JSON) or OTLP/gRPC, retrying
//! with backoff as the Collector's exporters do, and counting what could not be sent.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::watch;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::Code;

use super::options::{ForwardProtocol, ServeOptions};

/// The longest wait between two tries.
const MAX_INTERVAL: Duration = Duration::from_secs(30);
/// How far a wait between tries is spread around its value (±50 %, as the Collector's
/// exporter helper does), so that many senders do not retry in step.
const JITTER: f64 = 0.5;

/// The HTTP client: plain or TLS, by the URL.
type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

enum Target {
    Http {
        client: Box<HttpClient>,
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
    timeout: Duration,
}

/// Why a destination cannot be used (found at start).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    /// `--forward-ca` cannot be read or holds no usable certificate.
    #[error("--forward-ca {path}: {reason}")]
    Ca {
        /// The file, as shown.
        path: String,
        /// Why.
        reason: String,
    },
    /// Neither the system nor `--forward-ca` gives a certificate authority.
    #[error("no certificate authority to check an https:// destination with: the system has none; give --forward-ca FILE")]
    NoAuthority,
    /// `--forward` is not a usable URL.
    #[error("--forward {url}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// A `--forward-header` is not a usable header.
    #[error("--forward-header {name}: {reason}")]
    Header {
        /// The header's name.
        name: String,
        /// Why.
        reason: String,
    },
}

impl SetupError {
    fn ca(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        SetupError::Ca {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn url(url: &str, reason: impl std::fmt::Display) -> Self {
        SetupError::Url {
            url: url.to_owned(),
            reason: reason.to_string(),
        }
    }

    fn header(name: &str, reason: impl std::fmt::Display) -> Self {
        SetupError::Header {
            name: name.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The certificate authorities an `https://` destination is checked against: the
/// system's, and those of `--forward-ca`.
fn roots(options: &ServeOptions) -> Result<RootCertStore, SetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    let mut any = added > 0;
    if let Some(path) = &options.forward_ca {
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| SetupError::ca(path, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SetupError::ca(path, e))?;
        if certificates.is_empty() {
            return Err(SetupError::ca(path, "no PEM certificate in it"));
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|e| SetupError::ca(path, e))?;
        }
        any = true;
    }
    if !any {
        return Err(SetupError::NoAuthority);
    }
    Ok(roots)
}

/// The TLS settings of a gRPC client for an `https://` destination (`None` for
/// `http://`): the system's roots and `--forward-ca`.
pub(crate) fn grpc_tls(options: &ServeOptions) -> Result<Option<ClientTlsConfig>, SetupError> {
    if !options
        .forward
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
    {
        return Ok(None);
    }
    // Checked here as the HTTP client checks them, so that a file with no
    // certificate is an error at start.
    roots(options)?;
    let mut config = ClientTlsConfig::new().with_native_roots();
    if let Some(path) = &options.forward_ca {
        let pem = std::fs::read(path).map_err(|e| SetupError::ca(path, e))?;
        config = config.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(Some(config))
}

/// A wait of `interval`, spread by [`JITTER`].
fn jittered(interval: Duration) -> Duration {
    // A random number from the standard library's randomly keyed hasher.
    let random = RandomState::new().build_hasher().finish();
    let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit)
}

impl Forwarder {
    /// A forwarder to `options.forward` (`None` when there is none); an unusable URL
    /// or header is an error.
    pub(crate) fn new(options: &ServeOptions) -> Result<Option<Forwarder>, SetupError> {
        let Some(url) = &options.forward else {
            return Ok(None);
        };
        let tls = url.starts_with("https://");
        let target = match options.forward_protocol {
            ForwardProtocol::Grpc => {
                let mut endpoint = Channel::from_shared(url.clone())
                    .map_err(|e| SetupError::url(url, e))?
                    .connect_timeout(options.forward_timeout);
                if let Some(config) = grpc_tls(options)? {
                    endpoint = endpoint
                        .tls_config(config)
                        .map_err(|e| SetupError::url(url, e))?;
                }
                let channel = endpoint.connect_lazy();
                let mut headers = Vec::new();
                for (k, v) in &options.forward_headers {
                    let key = MetadataKey::from_str(&k.to_ascii_lowercase())
                        .map_err(|e| SetupError::header(k, e))?;
                    let value = MetadataValue::from_str(v).map_err(|e| SetupError::header(k, e))?;
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
                let uri = Uri::from_str(&full).map_err(|e| SetupError::url(url, e))?;
                let mut headers = Vec::new();
                for (k, v) in &options.forward_headers {
                    let key = HeaderName::from_str(k).map_err(|e| SetupError::header(k, e))?;
                    let value = HeaderValue::from_str(v).map_err(|e| SetupError::header(k, e))?;
                    headers.push((key, value));
                }
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_connect_timeout(Some(options.forward_timeout));
                let roots = if tls {
                    roots(options)?
                } else {
                    RootCertStore::empty()
                };
                let config = ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| SetupError::url(url, e))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                let connector = HttpsConnectorBuilder::new().with_tls_config(config);
                // An https:// destination is never spoken to in clear text.
                let connector = if tls {
                    connector.https_only()
                } else {
                    connector.https_or_http()
                };
                let connector = connector.enable_http1().wrap_connector(http);
                Target::Http {
                    client: Box::new(Client::builder(TokioExecutor::new()).build(connector)),
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
            timeout: options.forward_timeout,
        }))
    }

    /// Sends `request`, trying again on a retryable failure with jittered exponential
    /// backoff until the retry time is spent or `give_up` turns true (the shutdown's
    /// deadline), which also cancels an attempt in progress; the error says why the
    /// spans could not be sent.
    pub(crate) async fn send(
        &self,
        request: &ExportTraceServiceRequest,
        mut give_up: watch::Receiver<bool>,
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
        let timeout = self.timeout;
        loop {
            if *give_up.borrow() {
                return Err("not sent by the shutdown's deadline".to_owned());
            }
            let attempt = tokio::select! {
                attempt = tokio::time::timeout(timeout, self.attempt(request, &body)) => match attempt {
                    Ok(attempt) => attempt,
                    Err(_) => Attempt::Retry(format!("no answer in {timeout:?} (--forward-timeout)"), None),
                },
                _ = give_up.wait_for(|g| *g) => {
                    return Err("the send in progress was cancelled at the shutdown's deadline".to_owned());
                }
            };
            match attempt {
                Attempt::Sent => return Ok(()),
                Attempt::Failed(why) => return Err(why),
                Attempt::Retry(why, after) => {
                    let wait = after
                        .unwrap_or_else(|| jittered(interval))
                        .min(MAX_INTERVAL);
                    if started.elapsed() + wait > self.max_elapsed {
                        return Err(format!("{why} (gave up after {:.1?})", started.elapsed()));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = give_up.wait_for(|g| *g) => {
                            return Err(format!("{why} (gave up at the shutdown's deadline)"));
                        }
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
                    Err(e) => {
                        let why = format!("{uri}: {}", chain(&e));
                        // A refused TLS handshake (a certificate not trusted, a name
                        // that does not match) does not mend itself: not retried.
                        return if tls_refused(&e) {
                            Attempt::Failed(why)
                        } else {
                            Attempt::Retry(why, None)
                        };
                    }
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

/// An error with every cause it names, for the log.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// Whether `error` comes from a TLS handshake the destination or this side refused.
fn tls_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(next) = cause {
        if next.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        cause = next.source();
    }
    false
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
            super::log::warn(format_args!(
                "the destination rejected {} spans: {}",
                partial.rejected_spans, partial.error_message
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_spread_by_half_either_way() {
        let interval = Duration::from_secs(4);
        let waits: Vec<Duration> = (0..200).map(|_| jittered(interval)).collect();
        assert!(waits
            .iter()
            .all(|w| *w >= Duration::from_secs(2) && *w <= Duration::from_secs(6)));
        // Not all the same: spread.
        assert!(waits.iter().any(|w| *w != waits[0]));
    }

    #[test]
    fn a_tls_refusal_is_told_apart_from_a_network_error() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(tls_refused(&refused));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!tls_refused(&reset));
    }
}
