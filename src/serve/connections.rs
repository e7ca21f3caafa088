//! The connections: accepted up to `--max-connections`, each served by hyper (HTTP/1.1
//! for OTLP/HTTP, HTTP/2 for gRPC) under a watchdog that closes a connection whose
//! headers come too slowly, that sends nothing, or that stays idle too long; all of
//! them closed at shutdown, a stalled one included.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

/// How long a connection still serving a request is given to finish at shutdown.
const STOP_GRACE: Duration = Duration::from_millis(500);
/// How long the accept loop pauses when accepting fails (out of file descriptors).
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// The protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1: OTLP/HTTP.
    Http1,
    /// HTTP/2 (prior knowledge): OTLP/gRPC.
    Http2,
}

/// The time limits of a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// A request's headers, from its first byte (or the connection's opening).
    pub(crate) header: Duration,
    /// A request, from its headers to its answer.
    pub(crate) read: Duration,
    /// A connection with no request, after its last answer.
    pub(crate) idle: Duration,
}

/// What a connection is doing, as its watchdog sees it.
#[derive(Debug)]
struct Watch {
    opened: Instant,
    protocol: Protocol,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened`: when it last had no request (its opening first).
    idle_since: AtomicU64,
    /// Milliseconds after `opened` of the first byte of a request whose headers are
    /// still coming (HTTP/1.1 only); `u64::MAX`: none.
    reading_since: AtomicU64,
    served: AtomicBool,
    changed: Notify,
}

impl Watch {
    fn new(protocol: Protocol) -> Watch {
        Watch {
            opened: Instant::now(),
            protocol,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            reading_since: AtomicU64::new(u64::MAX),
            served: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, millis: u64) -> Instant {
        self.opened + Duration::from_millis(millis)
    }

    /// Bytes came in.
    fn read_some(&self) {
        if self.protocol == Protocol::Http1
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.reading_since.load(Ordering::Acquire) == u64::MAX
        {
            self.reading_since.store(self.now(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// A request's headers came: it is handled until the guard is dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Release);
        self.reading_since.store(u64::MAX, Ordering::Release);
        self.changed.notify_one();
        InFlight(Arc::clone(self))
    }

    /// When the connection is to be closed if nothing changes; `None` while a request
    /// is handled (each request has its own time limit).
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let reading = self.reading_since.load(Ordering::Acquire);
        if reading != u64::MAX {
            return Some(self.at(reading) + limits.header);
        }
        let idle = self.at(self.idle_since.load(Ordering::Acquire));
        Some(if self.served.load(Ordering::Acquire) {
            idle + limits.idle
        } else {
            idle + limits.header
        })
    }
}

/// A request being handled on a connection.
struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let watch = &self.0;
        if watch.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            watch.idle_since.store(watch.now(), Ordering::Release);
        }
        watch.changed.notify_one();
    }
}

/// The connection's stream, telling its watchdog when bytes come in.
struct WatchedIo {
    stream: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read_some();
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The answer to a request that did not arrive within the read timeout.
pub(crate) type TimedOut = fn() -> Response<Body>;

/// A service (an axum router, tonic's routes) served on one connection: each request
/// is counted as in flight while it is handled, and answered by `timed_out` when it
/// takes longer than the read timeout.
struct Watched<S> {
    inner: S,
    watch: Arc<Watch>,
    read: Duration,
    timed_out: TimedOut,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Watched<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.watch.begin();
        let mut inner = self.inner.clone();
        let (read, timed_out) = (self.read, self.timed_out);
        let http1 = self.watch.protocol == Protocol::Http1;
        let request = request.map(Body::new);
        Box::pin(async move {
            let answer = match tokio::time::timeout(read, inner.call(request)).await {
                Ok(Ok(response)) => response.map(Body::new),
                Ok(Err(never)) => match never {},
                Err(_) => {
                    let mut answer = timed_out();
                    if http1 {
                        // The body was not read whole: the connection cannot be kept.
                        answer
                            .headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    answer
                }
            };
            drop(in_flight);
            Ok(answer)
        })
    }
}

/// Every connection of the server: their number is bounded, and they are all closed
/// at shutdown.
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    permits: Arc<Semaphore>,
    max: usize,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

impl Connections {
    pub(crate) fn new(max: usize, limits: Limits, stop: watch::Receiver<bool>) -> Connections {
        let max = max.min(Semaphore::MAX_PERMITS);
        Connections {
            permits: Arc::new(Semaphore::new(max)),
            max,
            limits,
            stop,
        }
    }

    /// Accepts connections on `listener` until the stop, serving each with `service`.
    pub(crate) async fn accept<S, B>(
        self,
        listener: TcpListener,
        protocol: Protocol,
        service: S,
        timed_out: TimedOut,
    ) where
        S: Service<Request<Body>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut stop = self.stop.clone();
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&self.permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                _ = stop.wait_for(|stop| *stop) => return,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was
                    // taken: the next one may work.
                    drop(permit);
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) {
                        super::log::warn(format_args!("cannot accept a connection: {e}"));
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                    }
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let watch = Arc::new(Watch::new(protocol));
            let service = Watched {
                inner: service.clone(),
                watch: Arc::clone(&watch),
                read: self.limits.read,
                timed_out,
            };
            let io = TokioIo::new(WatchedIo {
                stream,
                watch: Arc::clone(&watch),
            });
            let (limits, stop) = (self.limits, self.stop.clone());
            match protocol {
                Protocol::Http1 => {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(io, service);
                    tokio::spawn(run(connection, watch, limits, stop, permit));
                }
                Protocol::Http2 => {
                    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service);
                    tokio::spawn(run(connection, watch, limits, stop, permit));
                }
            }
        }
    }

    /// Waits until every connection is closed (they close within a short grace after
    /// the stop), or `timeout` passed.
    pub(crate) async fn closed(&self, timeout: Duration) {
        let max = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(timeout, self.permits.acquire_many(max)).await;
    }
}

/// Serves one connection until it ends, its watchdog closes it, or the stop (a
/// request being handled then gets [`STOP_GRACE`] to be answered).
async fn run<C, E>(
    connection: C,
    watch: Arc<Watch>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) where
    C: hyper_util::server::graceful::GracefulConnection<Error = E>,
{
    let mut connection = std::pin::pin!(connection);
    let mut grace: Option<Instant> = None;
    loop {
        let changed = watch.changed.notified();
        let deadline = match (watch.deadline(&limits), grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = connection.as_mut() => break,
            _ = changed => {}
            _ = sleep => {
                if grace.is_some_and(|g| Instant::now() >= g)
                    || watch.deadline(&limits).is_some_and(|d| Instant::now() >= d)
                {
                    break;
                }
            }
            _ = stop.wait_for(|stop| *stop), if grace.is_none() => {
                if watch.in_flight.load(Ordering::Acquire) == 0 {
                    break;
                }
                connection.as_mut().graceful_shutdown();
                grace = Some(Instant::now() + STOP_GRACE);
            }
        }
    }
    drop(permit);
}
