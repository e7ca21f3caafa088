//! The receivers: OTLP/HTTP (`POST /v1/traces`, protobuf or JSON, gzip or not) and
//! OTLP/gRPC (`TraceService/Export`), answering as the OTLP specification and a
//! Collector's `otlp` receiver do; and `GET /metrics`, `GET /healthz`.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::forms::json_request;
use super::state::{Refused, Shared, Taken};

/// The seconds a refused client is told to wait (`Retry-After`).
const RETRY_AFTER_SECS: &str = "1";

/// `google.rpc.Status`, the body of an OTLP/HTTP error.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The HTTP routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(shared)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

fn partial_success(taken: Taken) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (taken.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: taken.rejected as i64,
            error_message: format!(
                "{} spans rejected: a trace id must be 16 bytes and a span id 8, not all zero",
                taken.rejected
            ),
        }),
    }
}

/// An OTLP/HTTP error: `status` with a `google.rpc.Status` body in the request's
/// encoding (gRPC `code`).
fn error(status: StatusCode, code: tonic::Code, message: String, encoding: Encoding) -> Response {
    let rpc = RpcStatus {
        code: code as i32,
        message,
    };
    let mut response = match encoding {
        Encoding::Protobuf => (
            status,
            [(CONTENT_TYPE, "application/x-protobuf")],
            rpc.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            status,
            [(CONTENT_TYPE, "application/json")],
            serde_json::json!({"code": rpc.code, "message": rpc.message}).to_string(),
        )
            .into_response(),
    };
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    response
}

fn refused(refusal: Refused, encoding: Encoding) -> Response {
    let message = match refusal {
        Refused::Memory => "over the memory bound (--max-memory): retry later",
        Refused::Stopping => "shutting down",
    };
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        tonic::Code::Unavailable,
        message.to_owned(),
        encoding,
    )
}

/// Reads at most `limit` bytes of gzip-compressed `body`: `None` past the limit.
fn gunzip(body: &[u8], limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)?;
    Ok((out.len() <= limit).then_some(out))
}

async fn traces(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let encoding = match content_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        _ => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
                format!(
                    "{content_type:?} is not supported: send application/x-protobuf or application/json"
                ),
                Encoding::Json,
            )
        }
    };
    let limit = shared.options.max_request_bytes;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::ResourceExhausted,
            format!("the request is over {limit} bytes (--max-request-bytes)"),
            encoding,
        )
    };
    if let Err(refusal) = shared.check_room(0) {
        return refused(refusal, encoding);
    }
    let Ok(raw) = to_bytes(body, limit).await else {
        return too_large();
    };
    let gzip = match headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e.is_empty() || e == "identity" => false,
        Some(e) if e == "gzip" => true,
        Some(e) => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
                format!("content encoding {e:?} is not supported: send gzip or none"),
                encoding,
            )
        }
    };
    let bytes = if gzip {
        match gunzip(&raw, limit) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return too_large(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    tonic::Code::InvalidArgument,
                    format!("cannot decompress the gzip body: {e}"),
                    encoding,
                )
            }
        }
    } else {
        raw.to_vec()
    };
    let request = match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(&bytes[..])
            .map_err(|e| format!("cannot decode the protobuf body: {e}")),
        Encoding::Json => {
            json_request(&bytes).map_err(|e| format!("cannot decode the JSON body: {e}"))
        }
    };
    let request = match request {
        Ok(request) => request,
        Err(message) => {
            return error(
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
                message,
                encoding,
            )
        }
    };
    let size = bytes.len();
    let worker = Arc::clone(&shared);
    // Splitting and encoding is CPU work: off the reactor's threads.
    let taken = tokio::task::spawn_blocking(move || worker.receive(request, size)).await;
    match taken {
        Ok(Ok(taken)) => {
            let response = partial_success(taken);
            match encoding {
                Encoding::Protobuf => (
                    StatusCode::OK,
                    [(CONTENT_TYPE, "application/x-protobuf")],
                    response.encode_to_vec(),
                )
                    .into_response(),
                Encoding::Json => (
                    StatusCode::OK,
                    [(CONTENT_TYPE, "application/json")],
                    // `{}` when everything was taken, as the Collector answers.
                    match &response.partial_success {
                        None => "{}".to_owned(),
                        Some(_) => {
                            serde_json::to_string(&response).unwrap_or_else(|_| "{}".to_owned())
                        }
                    },
                )
                    .into_response(),
            }
        }
        Ok(Err(refusal)) => refused(refusal, encoding),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            tonic::Code::Unavailable,
            "the request could not be handled: retry".to_owned(),
            encoding,
        ),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        shared.telemetry.prometheus_text(),
    )
        .into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.accepting.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response()
    }
}

/// The OTLP/gRPC receiver.
pub(crate) struct GrpcReceiver(pub(crate) Arc<Shared>);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let size = request.encoded_len();
        let limit = self.0.options.max_request_bytes;
        if size > limit {
            return Err(tonic::Status::resource_exhausted(format!(
                "the request is over {limit} bytes (--max-request-bytes)"
            )));
        }
        let shared = Arc::clone(&self.0);
        match tokio::task::spawn_blocking(move || shared.receive(request, size)).await {
            Ok(Ok(taken)) => Ok(tonic::Response::new(partial_success(taken))),
            Ok(Err(Refused::Memory)) => Err(tonic::Status::unavailable(
                "over the memory bound (--max-memory): retry later",
            )),
            Ok(Err(Refused::Stopping)) => Err(tonic::Status::unavailable("shutting down")),
            Err(_) => Err(tonic::Status::unavailable(
                "the request could not be handled: retry",
            )),
        }
    }
}
