//! The live audit (feature `cli`): `genai-audit serve`, a hop in an OTLP pipeline.
//!
//! It receives OTLP traces as a Collector's `otlp` receiver does (HTTP and gRPC),
//! holds each trace until it is complete, audits it as the `check` and `enrich`
//! commands do, and sends the enriched spans on (OTLP to a destination, and/or OTLP
//! JSON lines to a file), with the audit's metrics pushed as OTLP and shown in
//! Prometheus text at `GET /metrics`.
//!
//! - [`ServeOptions`]: what to listen on, how long to hold, where to send (with
//!   [`parse_duration`] and [`parse_size`], the command line's forms of its values);
//! - [`Server`]: a running server, started on a Tokio runtime and stopped with
//!   [`Server::shutdown`], which audits and sends everything held first.

mod batch;
mod connections;
mod forms;
mod forward;
mod hold;
mod log;
mod options;
mod pipeline;
mod receive;
mod server;
mod state;
mod telemetry;

pub use options::{parse_duration, parse_size, ForwardProtocol, ServeOptions, ValueError};
pub use server::Server;
