//! What `serve` is told: where it listens, how long it holds a trace, where it sends
//! the audited spans; every value checked before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::otlp::{AuditOptions, SettingsError};

/// How audited spans are sent to `--forward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardProtocol {
    /// OTLP/HTTP with protobuf bodies (`POST {url}/v1/traces`), the default.
    #[default]
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
    /// OTLP/gRPC (`TraceService/Export`).
    Grpc,
}

impl FromStr for ForwardProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http/protobuf" | "http" => Ok(ForwardProtocol::HttpProtobuf),
            "http/json" => Ok(ForwardProtocol::HttpJson),
            "grpc" => Ok(ForwardProtocol::Grpc),
            other => Err(format!(
                "{other:?} is not a protocol: use grpc, http/protobuf or http/json"
            )),
        }
    }
}

/// What a request being received may take, for each byte of its body (decompressed):
/// the body itself, the decoded request, and its parts encoded again by trace. A
/// request's reservation is made before its body is read, and handed to the holding
/// (which then counts the parts) when its spans are held.
pub(crate) const REQUEST_EXPANSION: usize = 4;

/// How long a request's headers may take to arrive, at most.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything `serve` is told. [`ServeOptions::default`] gives the command's defaults,
/// with nothing to send to: set [`forward`](ServeOptions::forward) or
/// [`output`](ServeOptions::output).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// OTLP/HTTP address (default `0.0.0.0:4318`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// OTLP/gRPC address (default `0.0.0.0:4317`; `None`: no gRPC).
    pub grpc_listen: Option<SocketAddr>,
    /// A trace whose local root arrived is audited once no span of it arrived for this
    /// long (default 5 s).
    pub wait: Duration,
    /// A trace is audited when it is this old, complete or not (default 10 min).
    pub max_trace_age: Duration,
    /// The most memory held spans (and audited spans not yet sent) may take; past it,
    /// new data is refused with 503 / `UNAVAILABLE` (default 512 MiB).
    pub max_memory: usize,
    /// The largest request accepted, after decompression (default 20 MiB, as the
    /// Collector's HTTP receiver); larger gets 413 / `RESOURCE_EXHAUSTED`.
    pub max_request_bytes: usize,
    /// Where audited spans are sent (an `http://` base URL; for HTTP,
    /// `/v1/traces` is added unless the URL already ends with it).
    pub forward: Option<String>,
    /// How they are sent there.
    pub forward_protocol: ForwardProtocol,
    /// Headers sent with every forwarded request (e.g. authorization).
    pub forward_headers: Vec<(String, String)>,
    /// The first wait before a failed send is tried again (default 1 s; doubled each
    /// time up to 30 s, or the destination's `Retry-After`).
    pub retry_initial: Duration,
    /// How long a send is tried before its spans are counted as dropped (default 5 min).
    pub retry_max_elapsed: Duration,
    /// Audited spans are appended to this file as OTLP JSON lines.
    pub output: Option<PathBuf>,
    /// How each trace is audited.
    pub audit: AuditOptions,
    /// On shutdown, how long sending what was held may take (default 30 s).
    pub shutdown_timeout: Duration,
    /// How often metrics are pushed to the destination (default 10 s).
    pub metrics_interval: Duration,
    /// How long a request may take to arrive once its headers have: a body sent more
    /// slowly is answered 408 (gRPC `DEADLINE_EXCEEDED`) and its connection closed
    /// (default 60 s). Headers must arrive within 10 s of the request's first byte
    /// (or of the connection's opening), or within this, whichever is shorter.
    pub read_timeout: Duration,
    /// How long a kept-alive connection may stay with no request before it is closed
    /// (default 90 s).
    pub idle_timeout: Duration,
    /// The most connections open at once, OTLP/HTTP and gRPC together (default 1 024);
    /// further clients wait in the listen queue until one closes.
    pub max_connections: usize,
    /// How long one attempt to send to `--forward` may take before it counts as
    /// failed and is retried (default 30 s, as the Collector's exporters).
    pub forward_timeout: Duration,
    /// A PEM file of certificate authorities trusted for an `https://` destination,
    /// besides the system's.
    pub forward_ca: Option<PathBuf>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([0, 0, 0, 0], 4318)),
            grpc_listen: Some(SocketAddr::from(([0, 0, 0, 0], 4317))),
            wait: Duration::from_secs(5),
            max_trace_age: Duration::from_secs(600),
            max_memory: 512 << 20,
            max_request_bytes: 20 << 20,
            forward: None,
            forward_protocol: ForwardProtocol::default(),
            forward_headers: Vec::new(),
            retry_initial: Duration::from_secs(1),
            retry_max_elapsed: Duration::from_secs(300),
            output: None,
            audit: AuditOptions::default(),
            shutdown_timeout: Duration::from_secs(30),
            metrics_interval: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            max_connections: 1024,
            forward_timeout: Duration::from_secs(30),
            forward_ca: None,
        }
    }
}

impl ServeOptions {
    /// The largest request taken: `--max-request-bytes`, or what `--max-memory` can
    /// take at once (a request is counted at [`REQUEST_EXPANSION`] times its size while
    /// it is received), whichever is smaller. A larger request could never be taken: it
    /// gets 413 / `RESOURCE_EXHAUSTED` (not retried), never 503 for ever.
    pub(crate) fn request_limit(&self) -> usize {
        self.max_request_bytes
            .min(self.max_memory / REQUEST_EXPANSION)
    }

    /// How long a request's headers may take to arrive.
    pub(crate) fn header_timeout(&self) -> Duration {
        HEADER_TIMEOUT.min(self.read_timeout)
    }

    /// Checks the values that have no use at zero or together.
    pub(crate) fn check(&self) -> Result<(), SettingsError> {
        let error = |m: &str| Err(SettingsError(m.to_owned()));
        if self.forward.is_none() && self.output.is_none() {
            return error(
                "nothing to send the audited spans to: give --forward URL or --output FILE",
            );
        }
        if let Some(url) = &self.forward {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return error("--forward must be an http:// or https:// URL");
            }
        }
        if self.forward_ca.is_some()
            && !self
                .forward
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
        {
            return error("--forward-ca is for an https:// --forward destination");
        }
        if self.read_timeout.is_zero() || self.idle_timeout.is_zero() {
            return error("--read-timeout and --idle-timeout must be more than 0");
        }
        if self.forward_timeout.is_zero() {
            return error("--forward-timeout must be more than 0");
        }
        if self.max_connections == 0 {
            return error("--max-connections must be more than 0");
        }
        if self.max_trace_age.is_zero() {
            return error("--max-trace-age must be more than 0");
        }
        if self.max_memory == 0 || self.max_request_bytes == 0 {
            return error("--max-memory and --max-request-bytes must be more than 0");
        }
        if self.retry_initial.is_zero() {
            return error("--forward-retry-initial must be more than 0");
        }
        for (key, _) in &self.forward_headers {
            if key.is_empty() {
                return error("--forward-header needs a name: K=V");
            }
        }
        Ok(())
    }
}

/// A command-line value [`parse_duration`] or [`parse_size`] does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not a duration; `reason` is humantime's.
    #[error("{text:?} is not a duration like 2ms or 1h30m: {reason}")]
    NotADuration {
        /// The value, trimmed.
        text: String,
        /// Why.
        reason: String,
    },
    /// Not a size; `reason` is bytesize's.
    #[error("{text:?} is not a size like 512MiB: {reason}")]
    NotASize {
        /// The value, trimmed.
        text: String,
        /// Why.
        reason: String,
    },
    /// A size past what this machine can count.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// The number at the start of `text` (digits and points) and what follows it.
fn number_and_unit(text: &str) -> (&str, &str) {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    text.split_at(split)
}

/// Reads a duration as the command takes it (`--wait`, `--read-timeout`, `--skew`,
/// …), in [humantime](https://docs.rs/humantime)'s form: numbers with units (`ns`,
/// `us` or `µs`, `ms`, `s`, `m` or `min`, `h`, `d`, `w` and their longer names), with
/// fractions (`1.5s`) and sums (`1h30m`, `1h 30m`), and `0`.
///
/// Also taken, as the command took them before it read durations with humantime,
/// which refuses them: a zero without a unit (`0.0`), a number with nothing before or
/// after its point (`.5s`, `5.s`), and a fraction of a nanosecond (cut: `1.5ns` is
/// 1 ns).
///
/// ```
/// use std::time::Duration;
/// use genai_audit::serve::parse_duration;
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
/// assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
/// assert!(parse_duration("5").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let text = text.trim();
    let (number, rest) = number_and_unit(text);
    let unit = rest.trim_start();
    let mut normal = None;
    if number.parse::<f64>().is_ok() {
        if unit.is_empty() && number.parse::<f64>() == Ok(0.0) {
            return Ok(Duration::ZERO);
        }
        let mut whole = number.to_owned();
        if unit == "ns" {
            whole.truncate(whole.find('.').unwrap_or(whole.len()));
        }
        if whole.starts_with('.') {
            whole.insert(0, '0');
        }
        if whole.ends_with('.') {
            whole.pop();
        }
        if whole.is_empty() {
            whole.push('0');
        }
        if whole != number {
            normal = Some(format!("{whole}{rest}"));
        }
    }
    humantime::parse_duration(normal.as_deref().unwrap_or(text)).map_err(|e| {
        ValueError::NotADuration {
            text: text.to_owned(),
            reason: e.to_string(),
        }
    })
}

/// Reads a size in bytes as the command takes it (`--max-memory`,
/// `--max-request-bytes`), in [bytesize](https://docs.rs/bytesize)'s form: a number,
/// with or without a fraction, and a unit, binary (`KiB`, `MiB`, `GiB`, `TiB`, also
/// `Ki`, `Mi` …) or decimal (`KB` = 1 000, `MB`, `GB` …), in any case, or `B` or none.
///
/// A unit of one letter (`K`, `M`, `G`, `T`, `P`, `E`, in either case) is binary, as
/// the command read `K`, `M` and `G` before it read sizes with bytesize (which takes
/// them as decimal): `20M` is 20 MiB. A size past the machine's `usize` is refused.
///
/// ```
/// use genai_audit::serve::parse_size;
/// assert_eq!(parse_size("512MiB"), Ok(512 << 20));
/// assert_eq!(parse_size("20M"), Ok(20 << 20));
/// assert_eq!(parse_size("1MB"), Ok(1_000_000));
/// assert!(parse_size("12 parsecs").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<usize, ValueError> {
    let text = text.trim();
    let (number, rest) = number_and_unit(text);
    let unit = rest.trim_start();
    let binary =
        (unit.len() == 1 && "kmgtpeKMGTPE".contains(unit)).then(|| format!("{number}{unit}i"));
    let size: bytesize::ByteSize = binary
        .as_deref()
        .unwrap_or(text)
        .parse()
        .map_err(|reason| ValueError::NotASize {
            text: text.to_owned(),
            reason,
        })?;
    // bytesize saturates a product past u64::MAX.
    usize::try_from(size.as_u64())
        .ok()
        .filter(|_| size.as_u64() != u64::MAX)
        .ok_or_else(|| ValueError::TooLarge(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_of_before_and_of_humantime() {
        let ms = Duration::from_millis;
        // Every form the command read before humantime.
        for (text, read) in [
            ("2ms", ms(2)),
            ("500us", Duration::from_micros(500)),
            ("500µs", Duration::from_micros(500)),
            ("7ns", Duration::from_nanos(7)),
            ("5s", ms(5_000)),
            ("10m", ms(600_000)),
            ("10min", ms(600_000)),
            ("1h", ms(3_600_000)),
            ("1.5s", ms(1_500)),
            ("0.25ms", Duration::from_micros(250)),
            (" 5 s ", ms(5_000)),
            ("0", Duration::ZERO),
            ("0.0", Duration::ZERO),
            ("00", Duration::ZERO),
            ("0s", Duration::ZERO),
            (".5s", ms(500)),
            ("5.s", ms(5_000)),
            ("1.5ns", Duration::from_nanos(1)),
        ] {
            assert_eq!(parse_duration(text), Ok(read), "{text}");
        }
        // New with humantime: sums, days and weeks, longer unit names.
        for (text, read) in [
            ("1h30m", ms(5_400_000)),
            ("1h 30m 5s", ms(5_405_000)),
            ("2days", ms(172_800_000)),
            ("1w", ms(604_800_000)),
            ("3 seconds", ms(3_000)),
            ("250msec", ms(250)),
        ] {
            assert_eq!(parse_duration(text), Ok(read), "{text}");
        }
        for bad in [
            "", "5", "1.5", "s", ".", "5x", "-1s", "1e3ms", "1.2.3s", "soon",
        ] {
            let error = parse_duration(bad).expect_err(bad).to_string();
            assert!(error.contains("is not a duration like 2ms"), "{error}");
        }
    }

    #[test]
    fn sizes_of_before_and_of_bytesize() {
        // Every form the command read before bytesize: K, M and G are binary.
        for (text, read) in [
            ("512MiB", 512usize << 20),
            ("20MiB", 20 << 20),
            ("1GiB", 1 << 30),
            ("64KiB", 64 << 10),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("20M", 20 << 20),
            ("2G", 2 << 30),
            ("100B", 100),
            ("100", 100),
            (" 20 MiB ", 20 << 20),
            ("0", 0),
        ] {
            assert_eq!(parse_size(text), Ok(read), "{text}");
        }
        // New with bytesize: fractions, decimal units, units in any case, and the
        // other one-letter units (binary too).
        for (text, read) in [
            ("1.5KiB", 1_536usize),
            ("1MB", 1_000_000),
            ("2kb", 2_000),
            ("20mib", 20 << 20),
            ("20Mi", 20 << 20),
            ("20m", 20 << 20),
            ("1g", 1 << 30),
        ] {
            assert_eq!(parse_size(text), Ok(read), "{text}");
        }
        for bad in ["", "MiB", "12 parsecs", "-1", "1.5", "x"] {
            let error = parse_size(bad).expect_err(bad).to_string();
            assert!(error.contains("is not a size like 512MiB"), "{error}");
        }
        assert_eq!(
            parse_size("99999999999GiB"),
            Err(ValueError::TooLarge("99999999999GiB".to_owned()))
        );
    }
}
