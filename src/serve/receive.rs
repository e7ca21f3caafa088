//! The receivers: OTLP/HTTP (`POST /v1/traces`, protobuf or JSON, gzip or not) and
//! OTLP/gRPC (`TraceService/Export`), answering as the OTLP specification and a
//! Collector's `otlp` receiver do; and `GET /metrics`, `GET /healthz`.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Frame;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::forms::json_request;
use super::state::{Refused, Reservation, Shared, Taken, REQUEST_EXPANSION};

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

/// Reads the body of `request`, counting each byte against `reservation` (when the
/// length was not announced) and refusing past `limit` bytes (`None`).
async fn read_body(
    shared: &Shared,
    body: Body,
    limit: usize,
    reservation: &mut Reservation,
    announced: bool,
) -> Result<Option<Bytes>, Refusal> {
    let mut body = body;
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Refusal::Unreadable(format!("cannot read the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if read.len() + data.len() > limit {
            return Ok(None);
        }
        if !announced {
            shared
                .grow(reservation, data.len().saturating_mul(REQUEST_EXPANSION))
                .map_err(Refusal::Refused)?;
        }
        read.extend_from_slice(&data);
    }
    Ok(Some(read.freeze()))
}

/// Decompresses `body`, counting what it becomes against `reservation`, refusing past
/// `limit` bytes (`None`).
fn gunzip(
    shared: &Shared,
    body: &[u8],
    limit: usize,
    reservation: &mut Reservation,
) -> Result<Option<Vec<u8>>, Refusal> {
    const STEP: usize = 64 << 10;
    let mut out = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(body);
    let mut chunk = vec![0u8; STEP];
    loop {
        let n = decoder
            .read(&mut chunk)
            .map_err(|e| Refusal::Unreadable(format!("cannot decompress the gzip body: {e}")))?;
        if n == 0 {
            return Ok(Some(out));
        }
        if out.len() + n > limit {
            return Ok(None);
        }
        shared
            .grow(reservation, n.saturating_mul(REQUEST_EXPANSION))
            .map_err(Refusal::Refused)?;
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Why a body was not taken.
enum Refusal {
    Refused(Refused),
    Unreadable(String),
}

async fn traces(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    // A refusal before the body is read whole closes the connection after the answer
    // (what is left of the body is not read to keep it).
    let close = |mut answer: Response| {
        answer
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        answer
    };
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
            return close(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
                format!(
                    "{content_type:?} is not supported: send application/x-protobuf or application/json"
                ),
                Encoding::Json,
           ));
        }
    };
    let limit = shared.options.request_limit();
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::ResourceExhausted,
            format!("the request is over {limit} bytes (--max-request-bytes, or a quarter of --max-memory)"),
            encoding,
        )
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
            return close(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
                format!("content encoding {e:?} is not supported: send gzip or none"),
                encoding,
            ));
        }
    };
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if announced.is_some_and(|length| length > limit) {
        return close(too_large());
    }
    // Room for the whole request is set aside before its body is read.
    let mut reservation = match shared
        .check_room()
        .and_then(|()| shared.reserve(announced.unwrap_or(0).saturating_mul(REQUEST_EXPANSION)))
    {
        Ok(reservation) => reservation,
        Err(refusal) => {
            return close(refused(refusal, encoding));
        }
    };
    let raw = match read_body(&shared, body, limit, &mut reservation, announced.is_some()).await {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            return close(too_large());
        }
        Err(Refusal::Refused(refusal)) => {
            return close(refused(refusal, encoding));
        }
        Err(Refusal::Unreadable(message)) => {
            return close(error(
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
                message,
                encoding,
            ));
        }
    };
    let worker = Arc::clone(&shared);
    // Decompressing, decoding, splitting and encoding is CPU work: off the reactor's
    // threads.
    let taken = tokio::task::spawn_blocking(move || {
        let bytes: Bytes = if gzip {
            match gunzip(&worker, &raw, limit, &mut reservation) {
                Ok(Some(bytes)) => Bytes::from(bytes),
                Ok(None) => return Err(Answer::TooLarge),
                Err(Refusal::Refused(refusal)) => return Err(Answer::Refused(refusal)),
                Err(Refusal::Unreadable(message)) => return Err(Answer::Unreadable(message)),
            }
        } else {
            raw
        };
        let request = match encoding {
            Encoding::Protobuf => ExportTraceServiceRequest::decode(&bytes[..])
                .map_err(|e| format!("cannot decode the protobuf body: {e}")),
            Encoding::Json => {
                json_request(&bytes).map_err(|e| format!("cannot decode the JSON body: {e}"))
            }
        }
        .map_err(Answer::Unreadable)?;
        drop(bytes);
        worker
            .receive(request, reservation)
            .map_err(Answer::Refused)
    })
    .await;
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
        Ok(Err(Answer::Refused(refusal))) => refused(refusal, encoding),
        Ok(Err(Answer::TooLarge)) => too_large(),
        Ok(Err(Answer::Unreadable(message))) => error(
            StatusCode::BAD_REQUEST,
            tonic::Code::InvalidArgument,
            message,
            encoding,
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            tonic::Code::Unavailable,
            "the request could not be handled: retry".to_owned(),
            encoding,
        ),
    }
}

/// How a body read whole was answered, when it was not taken.
enum Answer {
    Refused(Refused),
    TooLarge,
    Unreadable(String),
}

/// The answer to an OTLP/HTTP request that did not arrive within `--read-timeout`.
pub(crate) fn http_timed_out() -> Response {
    error(
        StatusCode::REQUEST_TIMEOUT,
        tonic::Code::DeadlineExceeded,
        "the request did not arrive within --read-timeout".to_owned(),
        Encoding::Json,
    )
}

/// The answer to a gRPC request that did not arrive within `--read-timeout`.
pub(crate) fn grpc_timed_out() -> Response {
    tonic::Status::deadline_exceeded("the request did not arrive within --read-timeout").into_http()
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

/// The gRPC frame header: a compression flag and the message's length.
const GRPC_HEADER: usize = 5;
/// What a compressed gRPC message is taken to grow to when decompressed, for the room
/// set aside before it is read (its real size is counted once it is decoded).
const GRPC_COMPRESSION: usize = 8;

/// The memory set aside for a gRPC request, handed from the gate to the receiver.
#[derive(Clone)]
struct Admission(Arc<parking_lot::Mutex<Option<Reservation>>>);

/// What stands before tonic: reads a gRPC message's header, answers
/// `RESOURCE_EXHAUSTED` when the message is over `--max-request-bytes` (at any size,
/// before it is read) and `UNAVAILABLE` when there is no room for it, and sets the room
/// aside otherwise.
#[derive(Clone)]
pub(crate) struct GrpcGate<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S, B> tower_service::Service<Request> for GrpcGate<S>
where
    S: tower_service::Service<
            Request,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (shared, mut inner) = (Arc::clone(&self.shared), self.inner.clone());
        Box::pin(async move {
            let (mut parts, mut body) = request.into_parts();
            let mut head = BytesMut::new();
            while head.len() < GRPC_HEADER {
                match body.frame().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => head.extend_from_slice(&data),
                        Err(_) => break,
                    },
                    _ => break,
                }
            }
            if head.len() >= GRPC_HEADER {
                let compressed = head[0] == 1;
                let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                let limit = shared.options.request_limit();
                if length > limit {
                    return Ok(tonic::Status::resource_exhausted(format!(
                        "the request is over {limit} bytes (--max-request-bytes, or a quarter of --max-memory)"
                    ))
                    .into_http());
                }
                let expected = if compressed {
                    length.saturating_mul(GRPC_COMPRESSION).min(limit)
                } else {
                    length
                };
                match shared
                    .check_room()
                    .and_then(|()| shared.reserve(expected.saturating_mul(REQUEST_EXPANSION)))
                {
                    Ok(reservation) => {
                        parts
                            .extensions
                            .insert(Admission(Arc::new(parking_lot::Mutex::new(Some(
                                reservation,
                            )))));
                    }
                    Err(refusal) => {
                        return Ok(unavailable(refusal).into_http());
                    }
                }
            }
            let body = Body::new(Prefixed {
                head: (!head.is_empty()).then(|| head.freeze()),
                rest: body,
            });
            let answer = inner.call(Request::from_parts(parts, body)).await;
            answer.map(|response| response.map(Body::new))
        })
    }
}

/// A body whose first bytes were read already.
struct Prefixed {
    head: Option<Bytes>,
    rest: Body,
}

impl HttpBody for Prefixed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Some(head) = self.head.take() {
            return std::task::Poll::Ready(Some(Ok(Frame::data(head))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.rest.is_end_stream()
    }
}

fn unavailable(refusal: Refused) -> tonic::Status {
    match refusal {
        Refused::Memory => {
            tonic::Status::unavailable("over the memory bound (--max-memory): retry later")
        }
        Refused::Stopping => tonic::Status::unavailable("shutting down"),
    }
}

/// The OTLP/gRPC receiver (behind [`GrpcGate`]).
pub(crate) struct GrpcReceiver(pub(crate) Arc<Shared>);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let admitted = request
            .extensions()
            .get::<Admission>()
            .and_then(|a| a.0.lock().take());
        let request = request.into_inner();
        let size = request.encoded_len();
        let limit = self.0.options.request_limit();
        if size > limit {
            return Err(tonic::Status::resource_exhausted(format!(
                "the request is over {limit} bytes (--max-request-bytes, or a quarter of --max-memory)"
            )));
        }
        // The room set aside at the gate, made right now that the size is known.
        let shared = Arc::clone(&self.0);
        let reservation = match admitted {
            Some(mut reservation) => {
                let need = size.saturating_mul(REQUEST_EXPANSION);
                let more = need.saturating_sub(reservation.bytes());
                shared.grow(&mut reservation, more).map_err(unavailable)?;
                reservation
            }
            None => shared
                .reserve(size.saturating_mul(REQUEST_EXPANSION))
                .map_err(unavailable)?,
        };
        match tokio::task::spawn_blocking(move || shared.receive(request, reservation)).await {
            Ok(Ok(taken)) => Ok(tonic::Response::new(partial_success(taken))),
            Ok(Err(refusal)) => Err(unavailable(refusal)),
            Err(_) => Err(tonic::Status::unavailable(
                "the request could not be handled: retry",
            )),
        }
    }
}
