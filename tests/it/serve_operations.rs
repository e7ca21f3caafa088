//! `genai-audit serve` as an operator leaves it running: a stalled client at SIGTERM,
//! slow and silent connections, the memory bound under bursts and floods, parts of a
//! trace in any order, oversized gRPC messages, hanging and slow destinations, and
//! HTTPS forwarding. Every test talks to real sockets on loopback and is bounded in
//! time; the bounds asserted are the contract's (DESIGN.md §10–§11), with
//! room for a loaded machine.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::cli_support::{enrich, findings, json_lines, parse_lines, read, recording, temp_path};
use crate::http_support::{Response as SinkResponse, Server as Sink};
use crate::serve_support::{
    by_id, exits_within, post, request, spawn_serve, start, terminate, Running,
};

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Kind::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Kind::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// Trace `trace`: an invocation with `calls` generations under it, each carrying a
/// prompt of `prompt` bytes; the generations end before the invocation.
fn agent_trace(trace: u64, calls: usize, prompt: usize) -> Vec<Span> {
    let trace_id = [trace.to_be_bytes(), 7u64.to_be_bytes()].concat();
    let t0 = 1_700_000_000_000_000_000u64;
    let root = Span {
        trace_id: trace_id.clone(),
        span_id: 1u64.to_be_bytes().to_vec(),
        name: "invoke_agent planner".to_owned(),
        start_time_unix_nano: t0,
        end_time_unix_nano: t0 + 1_000_000 * (calls as u64 + 2),
        attributes: vec![
            text("gen_ai.operation.name", "invoke_agent"),
            text("gen_ai.agent.name", "planner"),
        ],
        ..Span::default()
    };
    let body = "x".repeat(prompt);
    let mut spans: Vec<Span> = (0..calls as u64)
        .map(|i| Span {
            trace_id: trace_id.clone(),
            span_id: (2 + i).to_be_bytes().to_vec(),
            parent_span_id: 1u64.to_be_bytes().to_vec(),
            name: "chat gpt-4o-mini".to_owned(),
            start_time_unix_nano: t0 + 1_000_000 * i + 10,
            end_time_unix_nano: t0 + 1_000_000 * (i + 1),
            attributes: vec![
                text("gen_ai.operation.name", "chat"),
                text("gen_ai.provider.name", "openai"),
                text("gen_ai.request.model", "gpt-4o-mini"),
                int("gen_ai.usage.input_tokens", 1000),
                int("gen_ai.usage.output_tokens", 100),
                text("gen_ai.prompt", &body),
            ],
            ..Span::default()
        })
        .collect();
    spans.push(root);
    spans
}

fn request_of(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", "agents")],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// Peak resident memory of process `pid` (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

/// HTTP/2 frames of a gRPC `Export` call whose message says 1 000 bytes and sends 10:
/// the connection preface, SETTINGS, HEADERS (HPACK literals), and a DATA frame.
fn half_sent_grpc() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let frame = |out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let len = payload.len() as u32;
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
    };
    frame(&mut out, 0x4, 0, 0, &[]);
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (
            ":path",
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        ),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    frame(&mut out, 0x1, 0x4, 1, &block);
    let mut data = vec![0u8];
    data.extend_from_slice(&1000u32.to_be_bytes());
    data.extend_from_slice(&[0u8; 10]);
    frame(&mut out, 0x0, 0, 1, &data);
    out
}

#[test]
fn sigterm_with_stalled_clients_exits_0_on_time_and_writes_what_it_held() {
    let output = temp_path("stalled.jsonl");
    let output_arg = output.to_string_lossy().into_owned();
    let (mut child, http, grpc, mut stderr) = spawn_serve(
        &[
            "--wait",
            "60s",
            "--shutdown-timeout",
            "5s",
            "--output",
            &output_arg,
        ],
        true,
    );
    let grpc = grpc.expect("gRPC address");
    let held = request_of(agent_trace(1, 2, 10));
    assert_eq!(
        post(http, "application/x-protobuf", None, &held.encode_to_vec()).status,
        200
    );
    // A client that sends its headers and one byte of a 1 000-byte body, then nothing;
    // and a gRPC call whose message never finishes.
    let mut stalled = TcpStream::connect(http).expect("connect");
    stalled
        .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\nX")
        .expect("write");
    let mut half = TcpStream::connect(grpc).expect("connect");
    half.write_all(&half_sent_grpc()).expect("write");
    // Both are being served (the server answers the HTTP/2 preface with its SETTINGS).
    half.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut settings = [0u8; 9];
    half.read_exact(&mut settings)
        .expect("the server's SETTINGS");
    assert_eq!(settings[3], 0x4);
    terminate(&child);
    let status = exits_within(&mut child, Duration::from_secs(5 + 10));
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("stderr");
    assert!(rest.contains("stopped"), "{rest}");
    let file = output.to_string_lossy().into_owned();
    let sent = parse_lines(&std::fs::read_to_string(&output).expect("output"));
    std::fs::write(&file, json_lines(&[held])).expect("write");
    assert_eq!(by_id(&sent), by_id(&enrich(&[&file], &[])));
    // The stalled connections were closed.
    let mut byte = [0u8; 1];
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert!(matches!(stalled.read(&mut byte), Ok(0) | Err(_)));
}

/// Whether the server closed `stream` (end of file or reset) within `limit`; what it
/// sent before is returned.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut got = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(got),
        }
    }
}

#[test]
fn slow_silent_and_idle_connections_are_closed_and_the_connection_bound_holds() {
    let live = start(|o| {
        o.read_timeout = Duration::from_secs(2);
        o.idle_timeout = Duration::from_secs(3);
        o.max_connections = 4;
    });
    let http = live.http();
    // Headers within min(10 s, --read-timeout) = 2 s; the request within 2 s more;
    // idle within 3 s. Each must be closed well within 10 s.
    let limit = Duration::from_secs(10);
    let silent = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(http).expect("connect");
        closed_within(&mut stream, limit).is_some()
    });
    let slowloris = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(http).expect("connect");
        let mut writer = stream.try_clone().expect("clone");
        std::thread::spawn(move || {
            let _ = writer.write_all(b"POST /v1/traces HTTP/1.1\r\nX-Slow: ");
            for _ in 0..100 {
                if writer.write_all(b"a").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        closed_within(&mut stream, limit).is_some()
    });
    let endless_body = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(http).expect("connect");
        stream
            .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n0123456789")
            .expect("write");
        closed_within(&mut stream, limit)
    });
    let idle = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(http).expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        closed_within(&mut stream, limit)
    });
    assert!(
        silent.join().expect("silent"),
        "a silent connection stayed open"
    );
    assert!(slowloris.join().expect("slow"), "a slow header stayed open");
    let answer = endless_body
        .join()
        .expect("body")
        .expect("a slow body stayed open");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let answer = idle
        .join()
        .expect("idle")
        .expect("an idle connection stayed open");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    // Four silent connections take every place; a fifth client waits until the
    // header timeout frees them, and is answered.
    let holders: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(http).expect("connect"))
        .collect();
    let health = request(http, "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200);
    drop(holders);
    live.stop();
}

/// Posts `body` as protobuf on a connection of its own, reading the answer while the
/// body is written; `None` when the server closed the connection before answering.
fn post_raw(addr: SocketAddr, body: Arc<Vec<u8>>) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut writer = stream.try_clone().ok()?;
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&body);
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .ok()?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let _ = sending.join();
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
}

/// A protobuf request of about `mib` MiB: one trace (number `trace`) of large calls.
fn large_request(trace: u64, mib: usize) -> Vec<u8> {
    let prompt = 64 << 10;
    request_of(agent_trace(trace, (mib << 20) / prompt, prompt)).encode_to_vec()
}

#[test]
fn resident_memory_stays_under_the_bound_for_a_burst_and_a_flood() {
    let output = temp_path("memory.jsonl");
    let output_arg = output.to_string_lossy().into_owned();
    let (child, http, _, _stderr) = spawn_serve(
        &[
            "--max-memory",
            "64MiB",
            "--wait",
            "200ms",
            "--output",
            &output_arg,
        ],
        false,
    );
    let mut child = Running(child);
    let child = &mut child.0;
    let bound = 2 * (64 << 20) + (64 << 20);
    // A request that 64 MiB could never take (17 MiB, counted at four times its size
    // while received) is refused for good, not with a 503 to retry for ever.
    assert_eq!(post_raw(http, Arc::new(large_request(99, 17))), Some(413));
    // A burst: 32 requests of 15 MiB at once (a request is counted at four times its
    // size while it is received: 16 MiB would be over what 64 MiB can take, 413).
    let burst: Vec<_> = (0..32u64)
        .map(|i| {
            let body = Arc::new(large_request(100 + i, 15));
            std::thread::spawn(move || post_raw(http, body))
        })
        .collect();
    let answers: Vec<Option<u16>> = burst.into_iter().map(|t| t.join().expect("post")).collect();
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, None | Some(200) | Some(503))),
        "{answers:?}"
    );
    assert!(answers.contains(&Some(200)), "{answers:?}");
    let after_burst = peak_rss(child.id());
    assert!(after_burst < bound, "burst: peak {after_burst} B");
    // A flood: 16 clients posting 8 MiB requests, 2 each, retrying on 503.
    let flood: Vec<_> = (0..16u64)
        .map(|client| {
            std::thread::spawn(move || {
                let mut taken = 0;
                for n in 0..2u64 {
                    let body = Arc::new(large_request(1000 + client * 10 + n, 8));
                    for _ in 0..2400 {
                        if post_raw(http, Arc::clone(&body)) == Some(200) {
                            taken += 1;
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                taken
            })
        })
        .collect();
    let taken: usize = flood.into_iter().map(|t| t.join().expect("client")).sum();
    assert_eq!(taken, 32);
    let after_flood = peak_rss(child.id());
    eprintln!(
        "peak resident memory: {} MiB after the burst, {} MiB after the flood (bound {} MiB)",
        after_burst >> 20,
        after_flood >> 20,
        bound >> 20
    );
    assert!(after_flood < bound, "flood: peak {after_flood} B");
    terminate(child);
    assert_eq!(exits_within(child, Duration::from_secs(60)).code(), Some(0));
}

#[test]
fn parts_of_a_trace_in_any_order_of_requests_give_what_the_whole_file_gives() {
    // A child ends 2 ms after t0, its parent 10 ms after: posted as [parent] then
    // [child], or the other way, within the wait.
    let spans = agent_trace(42, 1, 10);
    let (child, parent) = (spans[0].clone(), spans[1].clone());
    let whole = temp_path("whole.json");
    let whole = whole.to_string_lossy().into_owned();
    std::fs::write(
        &whole,
        json_lines(&[request_of(vec![child.clone(), parent.clone()])]),
    )
    .expect("write");
    let expected = by_id(&enrich(&[&whole], &[]));
    assert!(expected.values().all(|p| findings(&p.span).is_empty()));
    for order in [[&parent, &child], [&child, &parent]] {
        let live = start(|_| {});
        for span in order {
            let body = request_of(vec![span.clone()]).encode_to_vec();
            assert_eq!(
                post(live.http(), "application/x-protobuf", None, &body).status,
                200
            );
        }
        assert_eq!(by_id(&live.stop()), expected);
    }
    // `check` of the two as lines in either order: no finding.
    for order in [[&parent, &child], [&child, &parent]] {
        let file = temp_path("lines.json");
        let requests: Vec<_> = order
            .iter()
            .map(|s| request_of(vec![(*s).clone()]))
            .collect();
        std::fs::write(&file, json_lines(&requests)).expect("write");
        let file = file.to_string_lossy().into_owned();
        let (code, summary) = crate::cli_support::check_json(&[&file], &[]);
        assert_eq!(code, 0, "{summary}");
    }
}

#[test]
fn the_recordings_posted_concurrently_in_any_order_are_sent_as_enrich_writes_them() {
    // Seeded: each recording cut into requests of 1 to 7 spans, posted by 8 clients at
    // once, each client in its own order (a Collector exporter with several senders).
    const RECORDINGS: [&str; 5] = [
        "otlp/langchain-invoke-concurrent.otlp.json",
        "otlp/mastra-generate-concurrent.otlp.json",
        "otlp/openai-agents-concurrent.otlp.json",
        "otlp/strands-concurrent-2agents.otlp.json",
        "otlp/vercel-ai7-stream-error-fixed.collector-style.otlp.json",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for name in RECORDINGS {
        let requests = parse_lines(&read(&recording(name)));
        let mut cut = Vec::new();
        for request in &requests {
            for rs in &request.resource_spans {
                for ss in &rs.scope_spans {
                    let mut at = 0;
                    while at < ss.spans.len() {
                        let n = (1 + next(7)).min(ss.spans.len() - at);
                        cut.push(ExportTraceServiceRequest {
                            resource_spans: vec![ResourceSpans {
                                resource: rs.resource.clone(),
                                scope_spans: vec![ScopeSpans {
                                    scope: ss.scope.clone(),
                                    spans: ss.spans[at..at + n].to_vec(),
                                    schema_url: ss.schema_url.clone(),
                                }],
                                schema_url: rs.schema_url.clone(),
                            }],
                        });
                        at += n;
                    }
                }
            }
        }
        let file = crate::cli_support::temp_file("concurrent-cut.json", &json_lines(&cut));
        let expected = by_id(&enrich(&[&file], &[]));
        let live = start(|_| {});
        let http = live.http();
        let mut lanes: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 8];
        for request in &cut {
            lanes[next(8)].push(request.encode_to_vec());
        }
        for lane in &mut lanes {
            if next(2) == 0 {
                lane.reverse();
            }
        }
        let clients: Vec<_> = lanes
            .into_iter()
            .map(|lane| {
                std::thread::spawn(move || {
                    for body in lane {
                        assert_eq!(
                            post(http, "application/x-protobuf", None, &body).status,
                            200
                        );
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("client");
        }
        assert_eq!(by_id(&live.stop()), expected, "{name}");
    }
}

/// A gRPC `Export` of `request` to `addr`: the status code of the answer.
fn grpc_export(addr: SocketAddr, request: ExportTraceServiceRequest) -> tonic::Code {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut client = TraceServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let call = tokio::time::timeout(Duration::from_secs(60), client.export(request));
        match call.await.expect("an answer within 60 s") {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        }
    })
}

#[test]
fn a_grpc_message_over_the_limit_gets_resource_exhausted_at_any_size() {
    let live = start(|o| o.max_request_bytes = 1 << 20);
    let grpc = live.grpc();
    // 2 MiB, and 5 MiB (more than four times the limit).
    for mib in [2, 5] {
        let request = request_of(agent_trace(7, mib * 16, 64 << 10));
        assert_eq!(grpc_export(grpc, request), tonic::Code::ResourceExhausted);
    }
    assert_eq!(
        grpc_export(grpc, request_of(agent_trace(8, 2, 10))),
        tonic::Code::Ok
    );
    live.stop();
    // An 81 MiB message to a server with the default limit (20 MiB).
    let live = start(|_| {});
    let request = request_of(agent_trace(9, 81 * 16, 64 << 10));
    assert_eq!(
        grpc_export(live.grpc(), request),
        tonic::Code::ResourceExhausted
    );
    live.stop();
}

#[test]
fn a_hanging_destination_does_not_hold_the_shutdown_past_its_deadline() {
    // A destination that takes connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().expect("lock").push(stream);
        }
    });
    let live = start(|o| {
        o.output = None;
        o.forward = Some(format!("http://{addr}"));
        o.shutdown_timeout = Duration::from_secs(3);
    });
    let body = request_of(agent_trace(11, 2, 10)).encode_to_vec();
    assert_eq!(
        post(live.http(), "application/x-protobuf", None, &body).status,
        200
    );
    let started = Instant::now();
    live.stop();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3 + 4),
        "the shutdown took {took:?}"
    );
    assert!(!held.lock().expect("lock").is_empty(), "no send was tried");
}

#[test]
fn a_slow_destination_is_sent_each_span_once_within_the_forward_timeout() {
    // Answers each request after 1.5 s; the attempt timeout is 5 s.
    let sink = Sink::start(|_, _| {
        std::thread::sleep(Duration::from_millis(1500));
        SinkResponse {
            status: 200,
            content_type: "application/x-protobuf",
            body: Vec::new(),
        }
    });
    let live = start(|o| {
        o.output = None;
        o.forward = Some(sink.url());
        o.forward_timeout = Duration::from_secs(5);
    });
    let request = request_of(agent_trace(12, 3, 10));
    let body = request.encode_to_vec();
    assert_eq!(
        post(live.http(), "application/x-protobuf", None, &body).status,
        200
    );
    live.stop();
    let received: Vec<_> = sink
        .received()
        .into_iter()
        .filter(|r| r.path == "/v1/traces")
        .collect();
    assert_eq!(received.len(), 1);
    let sent = ExportTraceServiceRequest::decode(received[0].body.as_slice()).expect("protobuf");
    assert_eq!(crate::cli_support::spans_of(&[sent]).len(), 4);
}

/// A certificate authority and a certificate for 127.0.0.1 signed by it, made with the
/// `openssl` command in a fresh folder: (CA PEM, certificate chain, key).
fn make_certificates() -> Option<(std::path::PathBuf, Vec<u8>, Vec<u8>)> {
    let dir = temp_path("tls");
    std::fs::create_dir_all(&dir).ok()?;
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=genai-audit test CA",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    if !ok {
        return None;
    }
    Some((
        dir.join("ca.pem"),
        std::fs::read(dir.join("leaf.pem")).ok()?,
        std::fs::read(dir.join("leaf.key")).ok()?,
    ))
}

/// An HTTPS destination: answers every request 200 and hands its body to the test.
fn tls_sink(chain: &[u8], key: &[u8]) -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<_, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_slice(key).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let Ok(connection) = rustls::ServerConnection::new(Arc::clone(&config)) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let mut raw = Vec::new();
            let mut buffer = [0u8; 65536];
            let body = loop {
                match tls.read(&mut buffer) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => raw.extend_from_slice(&buffer[..n]),
                }
                if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if raw.len() >= end + 4 + length {
                        break Some(raw[end + 4..end + 4 + length].to_vec());
                    }
                }
            };
            if let Some(body) = body {
                let _ = send.send(body);
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    (addr, receive)
}

#[test]
fn https_destinations_are_verified_with_the_given_ca_and_never_spoken_to_in_clear() {
    let Some((ca, chain, key)) = make_certificates() else {
        eprintln!("skipped: the openssl command could not make the test certificates");
        return;
    };
    let (addr, received) = tls_sink(&chain, &key);
    let request = request_of(agent_trace(13, 2, 10));
    let body = request.encode_to_vec();
    // With the CA: sent, over TLS.
    let live = start(|o| {
        o.output = None;
        o.forward = Some(format!("https://{addr}"));
        o.forward_ca = Some(ca.clone());
    });
    assert_eq!(
        post(live.http(), "application/x-protobuf", None, &body).status,
        200
    );
    live.stop();
    let sent = ExportTraceServiceRequest::decode(
        received
            .recv_timeout(Duration::from_secs(30))
            .expect("a request over TLS")
            .as_slice(),
    )
    .expect("protobuf");
    assert_eq!(crate::cli_support::spans_of(&[sent]).len(), 3);
    // Without it: the handshake is refused, nothing is sent in clear text, and the
    // spans are dropped (not retried for ever: the shutdown is on time).
    let live = start(|o| {
        o.output = None;
        o.forward = Some(format!("https://{addr}"));
        o.shutdown_timeout = Duration::from_secs(5);
    });
    assert_eq!(
        post(live.http(), "application/x-protobuf", None, &body).status,
        200
    );
    let started = Instant::now();
    live.stop();
    assert!(started.elapsed() < Duration::from_secs(5 + 4));
    assert!(
        received.try_recv().is_err(),
        "sent without a trusted certificate"
    );
    // A CA file with no certificate is refused at start.
    let empty = temp_path("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let options = genai_audit::serve::ServeOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        grpc_listen: None,
        forward: Some(format!("https://{addr}")),
        forward_ca: Some(empty),
        ..genai_audit::serve::ServeOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let error = runtime
        .block_on(genai_audit::serve::Server::start(options))
        .expect_err("refused");
    assert!(error.to_string().contains("--forward-ca"), "{error}");
}

/// An OTLP/gRPC destination over TLS: hands each request to the test.
fn tls_grpc_sink(
    runtime: &tokio::runtime::Runtime,
    chain: &[u8],
    key: &[u8],
) -> (SocketAddr, mpsc::Receiver<ExportTraceServiceRequest>) {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use tonic::transport::{Identity, ServerTlsConfig};

    struct Take(Mutex<mpsc::Sender<ExportTraceServiceRequest>>);

    #[tonic::async_trait]
    impl TraceService for Take {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let _ = self.0.lock().expect("lock").send(request.into_inner());
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    let (send, receive) = mpsc::channel();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let identity = Identity::from_pem(chain, key);
    runtime.spawn(async move {
        let server = tonic::transport::Server::builder()
            .tls_config(ServerTlsConfig::new().identity(identity))
            .expect("TLS")
            .add_service(TraceServiceServer::new(Take(Mutex::new(send))));
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let _ = server.serve_with_incoming(incoming).await;
    });
    (addr, receive)
}

#[test]
fn grpc_over_tls_is_verified_with_the_given_ca() {
    let Some((ca, chain, key)) = make_certificates() else {
        eprintln!("skipped: the openssl command could not make the test certificates");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (addr, received) = tls_grpc_sink(&runtime, &chain, &key);
    let request = request_of(agent_trace(14, 2, 10));
    let live = start(|o| {
        o.output = None;
        o.forward = Some(format!("https://{addr}"));
        o.forward_protocol = genai_audit::serve::ForwardProtocol::Grpc;
        o.forward_ca = Some(ca.clone());
    });
    assert_eq!(
        post(
            live.http(),
            "application/x-protobuf",
            None,
            &request.encode_to_vec()
        )
        .status,
        200
    );
    live.stop();
    let sent = received
        .recv_timeout(Duration::from_secs(30))
        .expect("a gRPC request over TLS");
    assert_eq!(crate::cli_support::spans_of(&[sent]).len(), 3);
}
