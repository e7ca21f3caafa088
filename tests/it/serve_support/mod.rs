//! Support for the tests of `genai-audit serve`: a server started in process on
//! loopback ports, a plain HTTP/1.1 client for raw bodies, and spans keyed by id.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use genai_audit::serve::{ServeOptions, Server};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;

use crate::cli_support::{parse_lines, temp_path};

/// A server running in this process, with its runtime.
pub struct Live {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    pub output: PathBuf,
}

/// Starts a server on loopback ports (HTTP and gRPC), writing to a fresh output file;
/// `configure` changes anything else. The wait is an hour: unless a test sets a short
/// one, every trace is audited at shutdown, all together, so that what is sent does
/// not depend on the machine's speed.
pub fn start(configure: impl FnOnce(&mut ServeOptions)) -> Live {
    let output = temp_path("served.jsonl");
    let mut options = ServeOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        grpc_listen: Some("127.0.0.1:0".parse().expect("address")),
        wait: Duration::from_secs(3600),
        output: Some(output.clone()),
        metrics_interval: Duration::from_secs(3600),
        ..ServeOptions::default()
    };
    configure(&mut options);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime
        .block_on(Server::start(options))
        .expect("the server starts");
    Live {
        runtime,
        server: Some(server),
        output,
    }
}

impl Live {
    pub fn http(&self) -> SocketAddr {
        self.server.as_ref().expect("running").http_addr()
    }

    pub fn grpc(&self) -> SocketAddr {
        self.server
            .as_ref()
            .and_then(|s| s.grpc_addr())
            .expect("gRPC on")
    }

    /// Shuts down (everything held is audited and sent) and returns what the output
    /// file holds.
    pub fn stop(self) -> Vec<ExportTraceServiceRequest> {
        parse_lines(&self.stop_text())
    }

    /// Shuts down and returns the output file's text.
    pub fn stop_text(mut self) -> String {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
        let Live {
            runtime, output, ..
        } = self;
        // As the command does: nothing left running (a blocked metrics push) holds it.
        runtime.shutdown_timeout(Duration::from_millis(100));
        std::fs::read_to_string(&output).unwrap_or_default()
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    // A server may answer (413) before it read the body: a failed write is fine.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = unchunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn unchunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 4 + size..];
    }
    out
}

/// `POST /v1/traces` with this content type (and encoding).
pub fn post(addr: SocketAddr, content_type: &str, encoding: Option<&str>, body: &[u8]) -> Answer {
    let mut headers = vec![("Content-Type", content_type)];
    if let Some(encoding) = encoding {
        headers.push(("Content-Encoding", encoding));
    }
    request(addr, "POST", "/v1/traces", &headers, body)
}

/// Every line of an OTLP JSON file, each posted as a JSON body (200 expected).
pub fn post_json_lines(addr: SocketAddr, text: &str) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let answer = post(addr, "application/json", None, line.as_bytes());
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    }
}

/// A span as the tests compare it: its resource's and scope's attributes and name,
/// and the span itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub resource: Vec<KeyValue>,
    pub scope: String,
    pub span: OtlpSpan,
}

/// Every span of `requests` by (trace id, span id), each placed; a span twice is a
/// test failure (nothing may be duplicated).
pub fn by_id(requests: &[ExportTraceServiceRequest]) -> BTreeMap<(Vec<u8>, Vec<u8>), Placed> {
    let mut out = BTreeMap::new();
    for rs in requests.iter().flat_map(|r| &r.resource_spans) {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.clone())
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for span in &ss.spans {
                let placed = Placed {
                    resource: resource.clone(),
                    scope: scope.clone(),
                    span: span.clone(),
                };
                let key = (span.trace_id.clone(), span.span_id.clone());
                assert!(
                    out.insert(key, placed).is_none(),
                    "a span twice: {}",
                    span.name
                );
            }
        }
    }
    out
}

/// Polls `condition` every 20 ms for up to 30 s (no timing is asserted: only that it
/// happens).
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("never happened: {what}");
}

/// The command started as `serve` with `args` on loopback ports (gRPC too when
/// `grpc`); returns it, its addresses and its standard error.
pub fn spawn_serve(
    args: &[&str],
    grpc: bool,
) -> (
    Child,
    SocketAddr,
    Option<SocketAddr>,
    BufReader<ChildStderr>,
) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_genai-audit"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--grpc-listen"]);
    command.arg(if grpc { "127.0.0.1:0" } else { "off" });
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("the address line");
    let http = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let grpc = line
        .split("OTLP/gRPC on ")
        .nth(1)
        .and_then(|a| a.trim().parse().ok());
    (child, http, grpc, stderr)
}

pub fn terminate(child: &Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
}

/// Waits for `child` to exit, for at most `limit` (then kills it and fails).
pub fn exits_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when the test ends, passed or not.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
