//! A running live audit: the receivers, the audit thread and the sender, started
//! together and stopped in order.

use std::fs::OpenOptions;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;

use super::batch::Batch;
use super::connections::{Connections, Limits, Protocol};
use super::forward::Forwarder;
use super::options::ServeOptions;
use super::pipeline::report_unaudited;
use super::pipeline::{Pipeline, RecentResponses};
use super::receive::{grpc_timed_out, http_timed_out, router, GrpcGate, GrpcReceiver};
use super::state::Shared;
use super::telemetry::{Levels, Outcome, Telemetry};
use crate::otlp::{Auditor, SettingsError};

/// Requests sent to the destination at once.
const SENDS_AT_ONCE: usize = 4;

/// A running live audit: OTLP in on [`http_addr`](Server::http_addr) (and
/// [`grpc_addr`](Server::grpc_addr)), audited spans out to the destination and/or the
/// output file.
///
/// ```no_run
/// use genai_audit::serve::{ServeOptions, Server};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::start(ServeOptions {
///     listen: "127.0.0.1:4318".parse()?,
///     grpc_listen: None,
///     output: Some("audited.json".into()),
///     ..ServeOptions::default()
/// })
/// .await?;
/// println!("OTLP/HTTP on {}", server.http_addr());
/// tokio::signal::ctrl_c().await?;
/// server.shutdown().await; // audits and sends everything held first
/// # Ok(())
/// # }
/// ```
pub struct Server {
    http_addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    connections: Connections,
    receivers: Vec<JoinHandle<()>>,
    pipeline: std::thread::JoinHandle<()>,
    draining: Arc<AtomicBool>,
    sender: Option<JoinHandle<()>>,
    give_up: watch::Sender<bool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("http_addr", &self.http_addr)
            .field("grpc_addr", &self.grpc_addr)
            .finish()
    }
}

impl Server {
    /// Checks `options` (a setting that cannot be used, or an address that cannot be
    /// bound, is a [`SettingsError`]), binds the listeners and starts serving, on the current Tokio
    /// runtime (multi-threaded). The audit runs on threads of its own.
    pub async fn start(options: ServeOptions) -> Result<Server, SettingsError> {
        options.check()?;
        let error = |m: String| SettingsError(m);
        let levels = Arc::new(Levels::default());
        let telemetry =
            Telemetry::new(&options, Arc::clone(&levels)).map_err(|e| error(e.to_string()))?;
        let auditor = Auditor::new(&options.audit, true, Some(telemetry.provider.clone()))
            .map_err(|e| error(e.to_string()))?
            .with_lists();
        let forwarder = Forwarder::new(&options).map_err(|e| error(e.to_string()))?;
        let output = match &options.output {
            Some(path) => Some(BufWriter::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| error(format!("cannot open {}: {e}", path.display())))?,
            )),
            None => None,
        };
        let http = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| error(format!("cannot listen on {}: {e}", options.listen)))?;
        let grpc = match options.grpc_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| error(format!("cannot listen on {addr}: {e}")))?,
            ),
            None => None,
        };
        let http_addr = http
            .local_addr()
            .map_err(|e| error(format!("cannot listen: {e}")))?;
        let grpc_addr = match &grpc {
            Some(listener) => Some(
                listener
                    .local_addr()
                    .map_err(|e| error(format!("cannot listen: {e}")))?,
            ),
            None => None,
        };
        let max_request_bytes = options.request_limit();
        let limits = Limits {
            header: options.header_timeout(),
            read: options.read_timeout,
            idle: options.idle_timeout,
        };
        let max_connections = options.max_connections;
        let shared = Arc::new(Shared::new(options, levels, telemetry));
        let (stop, stopped) = watch::channel(false);
        let connections = Connections::new(max_connections, limits, stopped);
        let mut receivers = Vec::new();
        receivers.push(tokio::spawn(connections.clone().accept(
            http,
            Protocol::Http1,
            router(Arc::clone(&shared)),
            http_timed_out,
        )));
        if let Some(listener) = grpc {
            let service = TraceServiceServer::new(GrpcReceiver(Arc::clone(&shared)))
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_request_bytes);
            let gate = GrpcGate {
                inner: tonic::service::Routes::new(service).prepare(),
                shared: Arc::clone(&shared),
            };
            receivers.push(tokio::spawn(connections.clone().accept(
                listener,
                Protocol::Http2,
                gate,
                grpc_timed_out,
            )));
        }
        let (give_up, given_up) = watch::channel(false);
        let (forward, sender) = match forwarder {
            Some(forwarder) => {
                let (send, receive) = mpsc::unbounded_channel();
                let task = tokio::spawn(send_all(
                    Arc::clone(&shared),
                    Arc::new(forwarder),
                    receive,
                    given_up,
                ));
                (Some(send), Some(task))
            }
            None => (None, None),
        };
        let draining = Arc::new(AtomicBool::new(false));
        let pipeline = Pipeline {
            shared: Arc::clone(&shared),
            auditor,
            recent: Arc::new(RecentResponses::default()),
            forward,
            output,
            draining: Arc::clone(&draining),
        };
        let pipeline = std::thread::Builder::new()
            .name("genai-audit-serve".to_owned())
            .spawn(move || pipeline.run())
            .map_err(|e| error(format!("cannot start the audit thread: {e}")))?;
        Ok(Server {
            http_addr,
            grpc_addr,
            shared,
            stop,
            connections,
            receivers,
            pipeline,
            draining,
            sender,
            give_up,
        })
    }

    /// The OTLP/HTTP address it listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The OTLP/gRPC address it listens on, if any.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// Stops accepting, closes every connection (a request being handled gets a short
    /// grace to be answered), audits everything held and sends it, pushes the last
    /// metrics, and returns — within the shutdown timeout: a send still in progress at
    /// the deadline is cancelled and its spans counted dropped.
    pub async fn shutdown(self) {
        let deadline = tokio::time::Instant::now() + self.shared.options.shutdown_timeout;
        self.shared.accepting.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        for receiver in self.receivers {
            let _ = receiver.await;
        }
        self.connections.closed(CLOSE_WAIT).await;
        self.draining.store(true, Ordering::Release);
        let pipeline = self.pipeline;
        // The pipeline ends with everything held audited; it then drops its sender.
        let _ = tokio::task::spawn_blocking(move || pipeline.join()).await;
        if let Some(sender) = self.sender {
            let give_up = self.give_up;
            let mut sender = sender;
            tokio::select! {
                _ = &mut sender => {}
                _ = tokio::time::sleep_until(deadline) => {
                    // Cancels every send in progress; each counts its spans dropped.
                    let _ = give_up.send(true);
                    let _ = sender.await;
                }
            }
        }
        let provider = self.shared.telemetry.provider.clone();
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(LAST_PUSH);
        let pushed = tokio::task::spawn_blocking(move || {
            let _ = provider.force_flush();
            let _ = provider.shutdown_with_timeout(left);
        });
        if tokio::time::timeout(left, pushed).await.is_err() {
            super::log::warn(format_args!(
                "the last metrics were not pushed within the shutdown timeout"
            ));
        }
    }
}

/// How long the shutdown waits for the connections to close (they close within a
/// short grace of the stop).
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The least time given to the last metrics push.
const LAST_PUSH: Duration = Duration::from_millis(200);

/// Sends batches as they come, a few at a time, until the pipeline is done.
async fn send_all(
    shared: Arc<Shared>,
    forwarder: Arc<Forwarder>,
    mut batches: mpsc::UnboundedReceiver<Batch>,
    give_up: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(SENDS_AT_ONCE));
    while let Some(batch) = batches.recv().await {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (shared, forwarder, give_up) =
            (Arc::clone(&shared), Arc::clone(&forwarder), give_up.clone());
        tokio::spawn(async move {
            let (spans, bytes) = (batch.spans, batch.bytes);
            // Assembling is CPU work: off the reactor's threads.
            let sent = match tokio::task::spawn_blocking(move || batch.assemble()).await {
                Ok((request, unaudited)) => {
                    report_unaudited(unaudited);
                    forwarder.send(&request, give_up).await
                }
                Err(e) => Err(format!("the request could not be assembled: {e}")),
            };
            match sent {
                Ok(()) => shared.telemetry.count(Outcome::Forwarded, spans),
                Err(why) => {
                    shared.telemetry.count(Outcome::Dropped, spans);
                    super::log::warn(format_args!("{spans} spans dropped, not sent: {why}"));
                }
            }
            shared.pending.fetch_sub(bytes, Ordering::Relaxed);
            drop(permit);
        });
    }
    let _ = permits.acquire_many(SENDS_AT_ONCE as u32).await;
}
