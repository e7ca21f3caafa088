//! `genai-audit serve`: the live audit, driven by real clients on loopback ports (the
//! Rust OTLP exporters over HTTP and gRPC, raw bodies), with the shared recordings;
//! what it sends on must equal what `enrich` writes for the same spans.

use std::io::Write;
use std::time::Duration;

use flate2::write::GzEncoder;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use prost::Message;

use crate::cli_support::{attr, enrich, findings, parse_lines, read, recording, spans_of};
use crate::http_support::{Response, Server as Sink};
use crate::serve_support::{
    by_id, eventually, post, post_json_lines, request, spawn_serve, start, terminate,
};

/// The recordings of third-party instrumentations, as OTLP JSON lines.
const RECORDINGS: [&str; 5] = [
    "otlp/langchain-invoke-concurrent.otlp.json",
    "otlp/mastra-generate-concurrent.otlp.json",
    "otlp/openai-agents-concurrent.otlp.json",
    "otlp/strands-concurrent-2agents.otlp.json",
    "otlp/vercel-ai7-stream-error-fixed.collector-style.otlp.json",
];

/// A small agent turn with the Rust SDK: an invocation, two generations, a tool.
fn agent_turn(provider: &SdkTracerProvider, agent: &str) {
    let tracer = provider.tracer("agent");
    let root = tracer
        .span_builder(format!("invoke_agent {agent}"))
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", agent.to_owned()),
        ])
        .start(&tracer);
    let cx = Context::current_with_span(root);
    for (i, (input, output)) in [(1200i64, 80i64), (1500, 120)].into_iter().enumerate() {
        let mut chat = tracer
            .span_builder("chat gpt-4o-mini")
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.provider.name", "openai"),
                KeyValue::new("gen_ai.request.model", "gpt-4o-mini"),
                KeyValue::new("gen_ai.usage.input_tokens", input),
                KeyValue::new("gen_ai.usage.output_tokens", output),
                KeyValue::new("gen_ai.response.id", format!("{agent}-{i}")),
            ])
            .start_with_context(&tracer, &cx);
        chat.end();
        if i == 0 {
            let mut tool = tracer
                .span_builder("execute_tool get_weather")
                .with_attributes([
                    KeyValue::new("gen_ai.operation.name", "execute_tool"),
                    KeyValue::new("gen_ai.tool.name", "get_weather"),
                ])
                .start_with_context(&tracer, &cx);
            tool.end();
        }
    }
    cx.span().end();
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_attribute(KeyValue::new("service.name", "weather"))
        .build()
}

/// The invocation of `agent` in what was sent: checked against the figures above.
fn assert_turn(requests: &[ExportTraceServiceRequest], agent: &str) {
    let spans = spans_of(requests);
    let name = format!("invoke_agent {agent}");
    let root = spans
        .iter()
        .find(|s| s.name == name)
        .expect("the invocation");
    let trace: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    assert_eq!(trace.len(), 4);
    assert_eq!(
        attr(root, "genai_audit.role").as_deref(),
        Some("invocation")
    );
    assert_eq!(
        attr(root, "genai_audit.total.input_tokens").as_deref(),
        Some("2700")
    );
    assert_eq!(
        attr(root, "genai_audit.total.output_tokens").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(root, "genai_audit.total.generations").as_deref(),
        Some("2")
    );
    assert_eq!(
        attr(root, "genai_audit.total.tool_calls").as_deref(),
        Some("1")
    );
    for span in &trace {
        assert!(
            findings(span).is_empty(),
            "{}: {:?}",
            span.name,
            findings(span)
        );
    }
    let costs: Vec<f64> = trace
        .iter()
        .filter(|s| s.name.starts_with("chat"))
        .map(|s| {
            attr(s, "genai_audit.cost_usd")
                .and_then(|c| c.parse().ok())
                .expect("a priced generation")
        })
        .collect();
    assert_eq!(costs.len(), 2);
    // gpt-4o-mini: $0.15 and $0.60 per million input and output tokens.
    assert!((costs[0] - (1200.0 * 0.15 + 80.0 * 0.6) / 1e6).abs() < 1e-12);
    assert!((costs[1] - (1500.0 * 0.15 + 120.0 * 0.6) / 1e6).abs() < 1e-12);
}

#[test]
fn the_rust_otlp_exporters_over_http_and_grpc_are_audited() {
    let live = start(|_| {});
    let (http, grpc) = (live.http(), live.grpc());
    std::thread::spawn(move || {
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("http://{http}/v1/traces"))
            .build()
            .expect("HTTP exporter");
        let provider = SdkTracerProvider::builder()
            .with_resource(resource())
            .with_simple_exporter(exporter)
            .build();
        agent_turn(&provider, "weather-http");
        provider.shutdown().expect("flushed");
    })
    .join()
    .expect("the HTTP client");
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    client.block_on(async move {
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{grpc}"))
            .build()
            .expect("gRPC exporter");
        let provider = SdkTracerProvider::builder()
            .with_resource(resource())
            .with_batch_exporter(exporter)
            .build();
        agent_turn(&provider, "weather-grpc");
        tokio::task::spawn_blocking(move || provider.shutdown().expect("flushed"))
            .await
            .expect("shutdown");
    });
    let sent = live.stop();
    assert_turn(&sent, "weather-http");
    assert_turn(&sent, "weather-grpc");
    // The live audit's enrichment is the command's: enriching it again changes nothing.
    let out = crate::cli_support::temp_file("sent.json", &crate::cli_support::json_lines(&sent));
    assert_eq!(by_id(&enrich(&[&out], &[])), by_id(&sent));
}

#[test]
fn answers_as_an_otlp_receiver_does() {
    let live = start(|o| o.max_request_bytes = 64 << 10);
    let addr = live.http();
    let line = read(&recording(RECORDINGS[0]));
    let line = line.lines().next().expect("a request");
    // JSON: 200 with a JSON ExportTraceServiceResponse, no partial success.
    let answer = post(addr, "application/json", None, line.as_bytes());
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.body, b"{}");
    let response: ExportTraceServiceResponse =
        serde_json::from_slice(&answer.body).expect("a JSON response");
    assert_eq!(response.partial_success, None);
    // Protobuf, gzip-compressed: 200 with a protobuf response.
    let first: ExportTraceServiceRequest = parse_lines(line).remove(0);
    let mut gzip = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&first.encode_to_vec()).expect("gzip");
    let body = gzip.finish().expect("gzip");
    let answer = post(addr, "application/x-protobuf", Some("gzip"), &body);
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("application/x-protobuf")
    );
    let response = ExportTraceServiceResponse::decode(&answer.body[..]).expect("protobuf");
    assert_eq!(response.partial_success, None);
    // A span with no valid trace id: partial success, the rest taken.
    let mut partly = first.clone();
    partly.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![0; 16];
    let answer = post(
        addr,
        "application/x-protobuf",
        None,
        &partly.encode_to_vec(),
    );
    assert_eq!(answer.status, 200);
    let partial = ExportTraceServiceResponse::decode(&answer.body[..])
        .expect("protobuf")
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("trace id"));
    // Garbage: 400 with a google.rpc.Status (code 3, INVALID_ARGUMENT).
    let answer = post(
        addr,
        "application/x-protobuf",
        None,
        b"\xff\xff\xff garbage",
    );
    assert_eq!(answer.status, 400);
    assert!(!answer.body.is_empty());
    let answer = post(addr, "application/json", None, b"{\"resourceSpans\": 7}");
    assert_eq!(answer.status, 400);
    let status: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON status");
    assert_eq!(status["code"], 3);
    let answer = post(addr, "application/x-protobuf", Some("gzip"), b"not gzip");
    assert_eq!(answer.status, 400);
    // Another content type, or encoding: 415.
    assert_eq!(post(addr, "text/plain", None, b"x").status, 415);
    assert_eq!(
        post(addr, "application/json", Some("br"), line.as_bytes()).status,
        415
    );
    // Over --max-request-bytes, as sent or once decompressed: 413.
    let big = vec![b' '; 65 << 10];
    assert_eq!(post(addr, "application/json", None, &big).status, 413);
    let mut gzip = GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(&big).expect("gzip");
    let bomb = gzip.finish().expect("gzip");
    assert!(bomb.len() < 1024);
    assert_eq!(
        post(addr, "application/json", Some("gzip"), &bomb).status,
        413
    );
    // Health and metrics.
    let health = request(addr, "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200);
    let metrics = request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let spans = request_spans(line) * 3 - 1;
    assert!(
        text.contains(&format!("genai_audit_serve_spans_total{{outcome=\"received\",otel_scope_name=\"genai-audit\",otel_scope_version=\"{}\"}} {spans}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("outcome=\"rejected\""), "{text}");
    assert_eq!(request(addr, "GET", "/v1/traces", &[], b"").status, 405);
    assert_eq!(request(addr, "GET", "/nothing", &[], b"").status, 404);
    live.stop();
}

fn request_spans(line: &str) -> usize {
    spans_of(&parse_lines(line)).len()
}

#[test]
fn the_recordings_posted_live_equal_enrich_of_the_same_file() {
    for name in &RECORDINGS {
        let path = recording(name);
        let expected = by_id(&enrich(&[&path], &[]));
        // As JSON bodies, one request a line.
        let live = start(|_| {});
        post_json_lines(live.http(), &read(&path));
        assert_eq!(by_id(&live.stop()), expected, "{name} as JSON");
        // As protobuf bodies.
        let live = start(|_| {});
        for request in parse_lines(&read(&path)) {
            let answer = post(
                live.http(),
                "application/x-protobuf",
                None,
                &request.encode_to_vec(),
            );
            assert_eq!(answer.status, 200);
        }
        assert_eq!(by_id(&live.stop()), expected, "{name} as protobuf");
    }
    // The Python exporter's own body, and its ground truth: no findings.
    let live = start(|_| {});
    let body = std::fs::read(recording("otlp/strands-concurrent-2agents.otlp.pb")).expect("body");
    assert_eq!(
        post(live.http(), "application/x-protobuf", None, &body).status,
        200
    );
    let sent = live.stop();
    assert_eq!(
        by_id(&sent),
        by_id(&enrich(
            &[&recording("otlp/strands-concurrent-2agents.otlp.pb")],
            &[]
        ))
    );
    assert!(spans_of(&sent).iter().all(|s| findings(s).is_empty()));
}

#[test]
fn two_instances_given_half_the_traces_each_send_what_one_sends() {
    for name in &RECORDINGS {
        let requests = parse_lines(&read(&recording(name)));
        let one = start(|_| {});
        let halves = [start(|_| {}), start(|_| {})];
        for request in &requests {
            assert_eq!(
                post(
                    one.http(),
                    "application/x-protobuf",
                    None,
                    &request.encode_to_vec()
                )
                .status,
                200
            );
            for (h, half) in halves.iter().enumerate() {
                let mut part = request.clone();
                for rs in &mut part.resource_spans {
                    for ss in &mut rs.scope_spans {
                        ss.spans
                            .retain(|s| s.trace_id.last().copied().unwrap_or(0) as usize % 2 == h);
                    }
                }
                assert_eq!(
                    post(
                        half.http(),
                        "application/x-protobuf",
                        None,
                        &part.encode_to_vec()
                    )
                    .status,
                    200
                );
            }
        }
        let [a, b] = halves;
        let mut both = by_id(&a.stop());
        both.extend(by_id(&b.stop()));
        assert_eq!(both, by_id(&one.stop()), "{name}");
    }
}

#[test]
fn over_the_memory_bound_it_answers_503_and_takes_the_retry() {
    let path = recording(RECORDINGS[0]);
    // One request per trace, so that each is complete when it is taken.
    let bodies: Vec<Vec<u8>> = per_trace(&parse_lines(&read(&path)))
        .iter()
        .map(|r| r.encode_to_vec())
        .collect();
    assert!(bodies.len() >= 2);
    let largest = bodies.iter().map(Vec::len).max().expect("requests");
    // Room for one request being received (four times its size) and one trace held,
    // not for a second request while the first trace is held.
    let live = start(|o| {
        o.max_memory = largest * 9 / 2;
        o.wait = Duration::from_millis(200);
        o.grpc_listen = None;
    });
    let addr = live.http();
    let mut refused = 0;
    for body in &bodies {
        let answer = post(addr, "application/x-protobuf", None, body);
        if answer.status == 503 {
            refused += 1;
            assert_eq!(answer.header("retry-after"), Some("1"));
            // As a client does: try again until it is taken.
            eventually("the retry is taken", || {
                post(addr, "application/x-protobuf", None, body).status == 200
            });
        } else {
            assert_eq!(answer.status, 200);
        }
    }
    assert!(refused > 0, "the bound was never reached");
    let sent = live.stop();
    assert_eq!(by_id(&sent), by_id(&enrich(&[&path], &[])));
}

/// The same spans, one request per trace (resource and scope kept).
fn per_trace(requests: &[ExportTraceServiceRequest]) -> Vec<ExportTraceServiceRequest> {
    let mut traces: Vec<Vec<u8>> = spans_of(requests)
        .iter()
        .map(|s| s.trace_id.clone())
        .collect();
    traces.dedup();
    traces.sort();
    traces.dedup();
    traces
        .iter()
        .map(|trace| {
            let mut all = requests.to_vec();
            for rs in all.iter_mut().flat_map(|r| &mut r.resource_spans) {
                for ss in &mut rs.scope_spans {
                    ss.spans.retain(|s| &s.trace_id == trace);
                }
            }
            ExportTraceServiceRequest {
                resource_spans: all.into_iter().flat_map(|r| r.resource_spans).collect(),
            }
        })
        .collect()
}

#[test]
fn a_destination_that_fails_then_recovers_gets_every_span_once() {
    // The first three sends are refused (503), then everything is taken.
    let sink = Sink::start(|index, _| Response {
        status: if index < 3 { 503 } else { 200 },
        content_type: "application/x-protobuf",
        body: Vec::new(),
    });
    let path = recording(RECORDINGS[1]);
    let live = start(|o| {
        o.forward = Some(sink.url());
        o.output = None;
        o.wait = Duration::from_millis(500);
        o.retry_initial = Duration::from_millis(10);
        o.grpc_listen = None;
    });
    post_json_lines(live.http(), &read(&path));
    let addr = live.http();
    let expected = by_id(&enrich(&[&path], &[]));
    let mut received = Vec::new();
    eventually("every span reaches the destination", || {
        received.extend(sink.received());
        let taken: usize = received
            .iter()
            .skip(3)
            .map(|r| {
                spans_of(&[ExportTraceServiceRequest::decode(&r.body[..]).expect("protobuf")]).len()
            })
            .sum();
        taken == expected.len()
    });
    let metrics =
        String::from_utf8_lossy(&request(addr, "GET", "/metrics", &[], b"").body).into_owned();
    assert!(
        metrics.contains(&format!(
            "outcome=\"forwarded\",otel_scope_name=\"genai-audit\",otel_scope_version=\"{}\"}} {}",
            env!("CARGO_PKG_VERSION"),
            expected.len()
        )),
        "{metrics}"
    );
    assert!(!metrics.contains("outcome=\"dropped\""), "{metrics}");
    live.stop();
    received.extend(sink.received());
    // The metrics are pushed as OTLP to the same destination (at the latest, on
    // shutdown).
    let (traces, metrics): (Vec<_>, Vec<_>) =
        received.into_iter().partition(|r| r.path == "/v1/traces");
    assert!(
        metrics.iter().any(|r| r.path == "/v1/metrics"),
        "{metrics:?}"
    );
    assert!(traces
        .iter()
        .all(|r| r.header("content-type") == Some("application/x-protobuf")));
    let taken: Vec<ExportTraceServiceRequest> = traces[3..]
        .iter()
        .map(|r| ExportTraceServiceRequest::decode(&r.body[..]).expect("protobuf"))
        .collect();
    assert_eq!(by_id(&taken), expected);
}

#[test]
fn sigterm_with_traces_held_sends_them_all_and_exits_0() {
    let output = crate::cli_support::temp_path("sigterm.jsonl");
    let output_arg = output.to_string_lossy().into_owned();
    let (mut child, addr, _, mut stderr) =
        spawn_serve(&["--wait", "1h", "--output", &output_arg], false);
    let path = recording(RECORDINGS[2]);
    post_json_lines(addr, &read(&path));
    // Held (the wait is an hour): nothing written yet.
    assert_eq!(std::fs::read_to_string(&output).unwrap_or_default(), "");
    terminate(&child);
    let status = child.wait().expect("serve ends");
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("stderr");
    assert!(rest.contains("stopped"), "{rest}");
    let sent = parse_lines(&std::fs::read_to_string(&output).expect("output"));
    assert_eq!(by_id(&sent), by_id(&enrich(&[&path], &[])));
}

#[test]
fn a_late_span_is_sent_alone_without_a_false_missing_parent() {
    let path = recording(RECORDINGS[0]);
    let requests = parse_lines(&read(&path));
    let mut spans = spans_of(&requests);
    // Hold back one span whose parent is in the input (not a root).
    let late_at = spans
        .iter()
        .position(|s| !s.parent_span_id.is_empty() && s.name.contains("Chat"))
        .unwrap_or_else(|| {
            spans
                .iter()
                .position(|s| !s.parent_span_id.is_empty())
                .expect("a child")
        });
    let late = spans.remove(late_at);
    let live = start(|o| {
        o.grpc_listen = None;
        o.wait = Duration::from_millis(100);
    });
    let mut early = requests.clone();
    for rs in early.iter_mut().flat_map(|r| &mut r.resource_spans) {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| s.span_id != late.span_id);
        }
    }
    for request in &early {
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
    }
    // Everything else is sent on before the late span comes.
    let output = live.output.clone();
    eventually("the trace is sent", || {
        // Only whole lines: the file may be read while a line is being written.
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        spans_of(&parse_lines(whole)).len() == spans.len()
    });
    let mut alone = requests[0].clone();
    alone.resource_spans.truncate(1);
    alone.resource_spans[0].scope_spans.truncate(1);
    alone.resource_spans[0].scope_spans[0].spans = vec![late.clone()];
    assert_eq!(
        post(
            live.http(),
            "application/x-protobuf",
            None,
            &alone.encode_to_vec()
        )
        .status,
        200
    );
    let sent = spans_of(&live.stop());
    assert_eq!(sent.len(), spans.len() + 1);
    let late_sent = sent
        .iter()
        .find(|s| s.span_id == late.span_id)
        .expect("the late span");
    assert!(
        !findings(late_sent).contains(&"missing_parent".to_owned()),
        "{:?}",
        findings(late_sent)
    );
}

#[test]
fn grpc_answers_as_an_otlp_receiver_does() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let requests = parse_lines(&read(&recording(RECORDINGS[0])));
    let largest = requests
        .iter()
        .map(|r| r.encode_to_vec().len())
        .max()
        .expect("requests");
    let live = start(|o| {
        o.max_request_bytes = largest + 16;
        // Room for a request being received (counted at four times its size) and a few
        // held (the wait is an hour), not for ten.
        o.max_memory = largest * 6;
    });
    let grpc = live.grpc();
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut big = requests[0].clone();
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(largest + 64);
    let answers = client.block_on(async move {
        let mut client = TraceServiceClient::connect(format!("http://{grpc}"))
            .await
            .expect("connect");
        let mut answers = Vec::new();
        for _ in 0..10 {
            answers.push(client.export(requests[0].clone()).await.map(|_| ()));
        }
        answers.push(client.export(big).await.map(|_| ()));
        answers
    });
    // Taken until the memory bound, then UNAVAILABLE (retryable), never anything else.
    assert!(answers[0].is_ok(), "{:?}", answers[0]);
    let refused = answers[..10]
        .iter()
        .position(Result::is_err)
        .expect("the bound is reached");
    for answer in &answers[refused..10] {
        let status = answer.as_ref().expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
    // Over --max-request-bytes: RESOURCE_EXHAUSTED, which clients do not retry.
    let code = answers[10].as_ref().expect_err("refused").code();
    assert_eq!(code, tonic::Code::ResourceExhausted);
    live.stop();
}

#[test]
fn forwards_over_grpc_and_http_json_with_headers() {
    let path = recording(RECORDINGS[3]);
    let expected = by_id(&enrich(&[&path], &[]));
    // Over gRPC to a second instance, which writes what it gets (its own audit of
    // audited spans changes nothing: an earlier audit's keys are read back first).
    let last = start(|_| {});
    let grpc = last.grpc();
    let first = start(|o| {
        o.forward = Some(format!("http://{grpc}"));
        o.forward_protocol = genai_audit::serve::ForwardProtocol::Grpc;
        o.output = None;
    });
    post_json_lines(first.http(), &read(&path));
    first.stop();
    assert_eq!(by_id(&last.stop()), expected);
    // As OTLP/HTTP JSON, with a header.
    let sink = Sink::start(|_, _| Response::json("{}"));
    let live = start(|o| {
        o.forward = Some(format!("{}/v1/traces", sink.url()));
        o.forward_protocol = genai_audit::serve::ForwardProtocol::HttpJson;
        o.forward_headers = vec![("Authorization".to_owned(), "Bearer s3cret".to_owned())];
        o.output = None;
    });
    post_json_lines(live.http(), &read(&path));
    live.stop();
    let received = sink.received();
    let traces: Vec<_> = received.iter().filter(|r| r.path == "/v1/traces").collect();
    assert!(!traces.is_empty());
    for request in &traces {
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
    }
    let sent: Vec<ExportTraceServiceRequest> = traces
        .iter()
        .map(|r| parse_lines(&String::from_utf8_lossy(&r.body)).remove(0))
        .collect();
    assert_eq!(by_id(&sent), expected);
    // The metrics pushed at shutdown carry the header too.
    let metrics: Vec<_> = received
        .iter()
        .filter(|r| r.path == "/v1/metrics")
        .collect();
    assert!(!metrics.is_empty(), "no metrics pushed");
    for request in &metrics {
        assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
    }
}

/// A small deterministic generator (xorshift), so that the cases are reproducible.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The spans of `requests` in order, cut at random into requests of 1 to 7 spans
/// (each span keeping its resource and scope).
fn recut(requests: &[ExportTraceServiceRequest], rng: &mut Rng) -> Vec<ExportTraceServiceRequest> {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    let mut placed = Vec::new();
    for rs in requests.iter().flat_map(|r| &r.resource_spans) {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                placed.push((rs, ss, span.clone()));
            }
        }
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < placed.len() {
        let n = (1 + rng.below(7)).min(placed.len() - at);
        let mut request = ExportTraceServiceRequest::default();
        for (rs, ss, span) in &placed[at..at + n] {
            let same = request.resource_spans.last().is_some_and(|last| {
                last.resource == rs.resource
                    && last.scope_spans.last().is_some_and(|l| l.scope == ss.scope)
            });
            if !same {
                request.resource_spans.push(ResourceSpans {
                    resource: rs.resource.clone(),
                    scope_spans: vec![ScopeSpans {
                        scope: ss.scope.clone(),
                        spans: Vec::new(),
                        schema_url: ss.schema_url.clone(),
                    }],
                    schema_url: rs.schema_url.clone(),
                });
            }
            if let Some(last) = request
                .resource_spans
                .last_mut()
                .and_then(|r| r.scope_spans.last_mut())
            {
                last.spans.push(span.clone());
            }
        }
        out.push(request);
        at += n;
    }
    out
}

#[test]
fn any_cut_of_the_recordings_into_requests_is_sent_as_enrich_writes_it() {
    // Seeded: 5 recordings × 4 cuts, each posted in order, as protobuf or JSON at
    // random, and compared with `enrich` of the same requests written as a file.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for name in &RECORDINGS {
        let requests = parse_lines(&read(&recording(name)));
        for case in 0..4 {
            let cut = recut(&requests, &mut rng);
            let file =
                crate::cli_support::temp_file("cut.json", &crate::cli_support::json_lines(&cut));
            let expected = by_id(&enrich(&[&file], &[]));
            let live = start(|_| {});
            for request in &cut {
                let answer = if rng.below(2) == 0 {
                    post(
                        live.http(),
                        "application/x-protobuf",
                        None,
                        &request.encode_to_vec(),
                    )
                } else {
                    let json = serde_json::to_vec(request).expect("JSON");
                    post(live.http(), "application/json", None, &json)
                };
                assert_eq!(answer.status, 200);
            }
            assert_eq!(by_id(&live.stop()), expected, "{name}, cut {case}");
        }
    }
}

#[test]
fn doubles_with_no_json_number_form_are_kept_by_enrich_and_serve() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as OtlpKeyValue};
    let mut request = parse_lines(&read(&recording(RECORDINGS[0]))).remove(0);
    let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
    for (key, d) in [
        ("nan", f64::NAN),
        ("inf", f64::INFINITY),
        ("ninf", f64::NEG_INFINITY),
    ] {
        span.attributes.push(OtlpKeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(Kind::DoubleValue(d)),
            }),
            ..OtlpKeyValue::default()
        });
    }
    let expected = [
        r#"{"key":"nan","value":{"doubleValue":"NaN"}}"#,
        r#"{"key":"inf","value":{"doubleValue":"Infinity"}}"#,
        r#"{"key":"ninf","value":{"doubleValue":"-Infinity"}}"#,
    ];
    // The command, from the protobuf body.
    let pb = crate::cli_support::temp_path("specials.pb");
    std::fs::write(&pb, request.encode_to_vec()).expect("write");
    let out = crate::cli_support::temp_path("specials.json");
    let run = crate::cli_support::run(&[
        "enrich",
        &pb.to_string_lossy(),
        "-o",
        &out.to_string_lossy(),
    ]);
    assert_eq!(run.status.code(), Some(0));
    let text = std::fs::read_to_string(&out).expect("output");
    for kv in expected {
        assert!(text.contains(kv), "{kv} in {text}");
    }
    // serve, from a JSON body in those forms.
    let live = start(|o| o.grpc_listen = None);
    assert_eq!(
        post(
            live.http(),
            "application/json",
            None,
            text.trim().as_bytes()
        )
        .status,
        200
    );
    let text = live.stop_text();
    for kv in expected {
        assert!(text.contains(kv), "{kv} in {text}");
    }
}

#[test]
fn spans_that_cannot_be_written_are_counted_as_dropped() {
    // `/dev/full` takes the file open and refuses every write (no space left).
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full on this system");
        return;
    }
    let path = recording(RECORDINGS[3]);
    let spans = spans_of(&parse_lines(&read(&path))).len();
    let live = start(|o| {
        o.output = Some("/dev/full".into());
        o.wait = Duration::from_millis(50);
        o.grpc_listen = None;
    });
    post_json_lines(live.http(), &read(&path));
    let addr = live.http();
    let dropped = format!(
        "genai_audit_serve_spans_total{{outcome=\"dropped\",otel_scope_name=\"genai-audit\",otel_scope_version=\"{}\"}} {spans}",
        env!("CARGO_PKG_VERSION")
    );
    eventually("every span counted as dropped", || {
        let metrics = request(addr, "GET", "/metrics", &[], b"");
        String::from_utf8_lossy(&metrics.body).contains(&dropped)
    });
    let metrics =
        String::from_utf8_lossy(&request(addr, "GET", "/metrics", &[], b"").body).into_owned();
    assert!(!metrics.contains("outcome=\"forwarded\""), "{metrics}");
    live.stop_text();
}

#[test]
fn a_trace_whose_root_never_comes_is_sent_at_its_age_with_missing_parent() {
    // The recording without its roots: every trace waits for a root that never comes.
    let mut requests = parse_lines(&read(&recording(RECORDINGS[0])));
    for rs in requests.iter_mut().flat_map(|r| &mut r.resource_spans) {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| !s.parent_span_id.is_empty());
        }
    }
    let spans = spans_of(&requests).len();
    let live = start(|o| {
        o.grpc_listen = None;
        o.max_trace_age = Duration::from_millis(300);
    });
    for request in &requests {
        let answer = post(
            live.http(),
            "application/x-protobuf",
            None,
            &request.encode_to_vec(),
        );
        assert_eq!(answer.status, 200);
    }
    // Sent at its age, long before the hour's wait and before shutdown.
    let output = live.output.clone();
    eventually("the rootless traces are sent", || {
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        spans_of(&parse_lines(whole)).len() == spans
    });
    let sent = spans_of(&live.stop());
    let ids: std::collections::HashSet<&Vec<u8>> = sent.iter().map(|s| &s.span_id).collect();
    for span in &sent {
        let orphan = !ids.contains(&span.parent_span_id);
        let recognised = attr(span, "genai_audit.role").is_some();
        let flagged = findings(span).contains(&"missing_parent".to_owned());
        assert_eq!(flagged, orphan && recognised, "{}", span.name);
    }
    assert!(sent
        .iter()
        .any(|s| findings(s).contains(&"missing_parent".to_owned())));
}
