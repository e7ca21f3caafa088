//! A real LLM client end to end: `genai` 0.7 (feature `otel`) talking to a loopback
//! OpenAI-compatible server written here, its `tracing` spans bridged to the real
//! `SdkTracerProvider` by `tracing-opentelemetry` 0.34.
//!
//! What genai emits (checked below): a client span named `chat {model}` (the
//! `tracing` name is `genai.chat`, renamed through `otel.name`), with
//! `gen_ai.operation.name = chat`, provider, request and response model, and the
//! token counts as integers. genai never enters this span, so
//! `tracing-opentelemetry` starts it only when it closes: the processor sees every
//! attribute already at start. genai 0.7.2's OpenAI adapter does not record
//! `gen_ai.response.id`. Agent and tool spans are opt-in helpers
//! (`genai::otel::agent`) for applications that build agents on genai.

use crate::common;
use crate::http_support;

use common::{direct_price, findings_of, value, Harness};
use genai::chat::{ChatMessage, ChatRequest};
use genai::otel::agent::{AgentSpan, ExecuteToolSpan};
use genai::resolver::{AuthData, Endpoint, ServiceTargetResolver};
use genai::{Client, ServiceTarget};
use http_support::{Response, Server};
use opentelemetry::trace::{SpanId, SpanKind, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

const RESPONSE_MODEL: &str = "gpt-4o-2024-08-06";

/// The OpenAI chat-completions replies, in request order: a plain one, then one with
/// 1024 of its prompt tokens read from the cache.
const REPLIES: [&str; 2] = [
    r#"{"id":"chatcmpl-1","object":"chat.completion","created":1760000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Let me look that up."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1234,"completion_tokens":56,"total_tokens":1290}}"#,
    r#"{"id":"chatcmpl-2","object":"chat.completion","created":1760000001,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"It is sunny."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1400,"completion_tokens":80,"total_tokens":1480,"prompt_tokens_details":{"cached_tokens":1024}}}"#,
];

fn openai_server() -> Server {
    Server::start(|index, _request| Response::json(REPLIES[index.min(1)]))
}

/// A genai client whose every model goes to `base_url` with a fixed key.
fn client(base_url: String) -> Client {
    let resolver = ServiceTargetResolver::from_resolver_fn(
        move |target: ServiceTarget| -> Result<ServiceTarget, genai::resolver::Error> {
            Ok(ServiceTarget {
                endpoint: Endpoint::from_owned(base_url.clone()),
                auth: AuthData::from_single("test-key"),
                model: target.model,
            })
        },
    );
    Client::builder()
        .with_service_target_resolver(resolver)
        .build()
        .expect("genai client")
}

/// Runs the future `work` makes on a current-thread runtime, with a `tracing`
/// dispatcher that bridges to `h`'s tracer provider (spans are created under it).
fn run<F: std::future::Future>(h: &Harness, work: impl FnOnce() -> F) -> F::Output {
    let layer = tracing_opentelemetry::layer().with_tracer(h.provider.tracer("genai"));
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tracing::dispatcher::with_default(&dispatch, || runtime.block_on(work()))
}

fn string(s: &str) -> Option<Value> {
    Some(Value::String(s.to_string().into()))
}

fn int(v: i64) -> Option<Value> {
    Some(Value::I64(v))
}

fn double(v: f64) -> Option<Value> {
    Some(Value::F64(v))
}

fn start_ns(span: &SpanData) -> u64 {
    span.start_time
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_nanos() as u64
}

/// The price of a call with cache reads, computed directly with genai-prices.
fn price_with_cache(input: u64, cache_read: u64, output: u64, start: SystemTime) -> f64 {
    common::price_with_cache("openai", RESPONSE_MODEL, input, cache_read, output, start)
}

#[test]
fn a_chat_call_is_a_priced_generation_with_integer_usage() {
    let h = Harness::new();
    let server = openai_server();
    let client = client(format!("{}/v1/", server.url()));
    let request = ChatRequest::new(vec![ChatMessage::user("Where is my order?")]);
    let response = run(&h, || client.exec_chat("gpt-4o", request, None)).expect("chat");
    assert_eq!(response.usage.prompt_tokens, Some(1234));

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].path, "/v1/chat/completions");
    assert_eq!(received[0].header("authorization"), Some("Bearer test-key"));
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).expect("json body");
    assert_eq!(body["model"], "gpt-4o");

    let spans = h.exporter.get_finished_spans().expect("spans");
    assert_eq!(spans.len(), 1);
    let chat = &spans[0];
    assert_eq!(chat.name, "chat gpt-4o");
    assert_eq!(chat.span_kind, SpanKind::Client);
    assert_eq!(chat.parent_span_id, SpanId::INVALID);
    assert_eq!(value(chat, "gen_ai.operation.name"), string("chat"));
    assert_eq!(value(chat, "gen_ai.provider.name"), string("openai"));
    assert_eq!(value(chat, "gen_ai.request.model"), string("gpt-4o"));
    assert_eq!(value(chat, "gen_ai.response.model"), string(RESPONSE_MODEL));
    assert_eq!(value(chat, "gen_ai.response.id"), None);
    // Integer usage.
    assert_eq!(value(chat, "gen_ai.usage.input_tokens"), int(1234));
    assert_eq!(value(chat, "gen_ai.usage.output_tokens"), int(56));

    assert_eq!(value(chat, "genai_audit.role"), string("generation"));
    let cost = direct_price(Some("openai"), RESPONSE_MODEL, 1234, 56, start_ns(chat));
    assert!(cost > 0.0);
    assert_eq!(value(chat, "genai_audit.cost_usd"), double(cost));
    assert_eq!(value(chat, "gen_ai.usage.cost"), double(cost));
    assert_eq!(value(chat, "genai_audit.cost.source"), string("computed"));
    assert_eq!(
        value(chat, "genai_audit.cost.model"),
        string("openai/gpt-4o")
    );
    // No invocation above it: no running totals.
    assert_eq!(value(chat, "genai_audit.cumulative.input_tokens"), None);
    assert_eq!(findings_of(chat), Vec::<String>::new());
    assert_eq!(h.metric("genai_audit.findings"), vec![]);
}

/// An application's own agent on genai: genai's `invoke_agent` and `execute_tool`
/// helpers around two chat calls.
#[test]
fn an_agent_built_on_genai_rolls_up_its_chat_calls() {
    let h = Harness::new();
    let server = openai_server();
    let client = client(format!("{}/v1/", server.url()));
    let (first, second) = run(&h, || {
        let agent = AgentSpan::invoke_agent()
            .internal()
            .with_name("weather-bot")
            .start();
        async {
            let mut request = ChatRequest::new(vec![ChatMessage::user("Weather in Paris?")]);
            let first = client
                .exec_chat("gpt-4o", request.clone(), None)
                .await
                .expect("first chat");
            {
                let tool = ExecuteToolSpan::new("get_weather")
                    .with_call_id("call_1")
                    .with_tool_type("function")
                    .start();
                let _entered = tool.enter();
            }
            request = request
                .append_message(ChatMessage::assistant("Let me look that up."))
                .append_message(ChatMessage::user("Sunny, 24C"));
            let second = client
                .exec_chat("gpt-4o", request, None)
                .await
                .expect("second chat");
            (first, second)
        }
        .instrument(agent)
    });
    assert_eq!(first.usage.prompt_tokens, Some(1234));
    assert_eq!(second.usage.prompt_tokens, Some(1400));
    assert_eq!(server.received().len(), 2);

    let mut spans = h.exporter.get_finished_spans().expect("spans");
    spans.sort_by_key(|s| s.start_time);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "invoke_agent weather-bot",
            "chat gpt-4o",
            "execute_tool get_weather",
            "chat gpt-4o"
        ]
    );
    let (invocation, chat1, tool, chat2) = (&spans[0], &spans[1], &spans[2], &spans[3]);
    for child in [chat1, tool, chat2] {
        assert_eq!(child.parent_span_id, invocation.span_context.span_id());
    }
    assert_eq!(value(invocation, "genai_audit.role"), string("invocation"));
    assert_eq!(value(chat1, "genai_audit.role"), string("generation"));
    assert_eq!(value(tool, "genai_audit.role"), string("tool"));
    assert_eq!(value(chat2, "genai_audit.role"), string("generation"));
    assert_eq!(
        value(chat2, "gen_ai.usage.cache_read.input_tokens"),
        int(1024)
    );

    let cost1 = price_with_cache(1234, 0, 56, chat1.start_time);
    let cost2 = price_with_cache(1400, 1024, 80, chat2.start_time);
    assert_eq!(value(chat1, "genai_audit.cost_usd"), double(cost1));
    assert_eq!(value(chat2, "genai_audit.cost_usd"), double(cost2));
    assert_eq!(
        value(chat2, "genai_audit.cumulative.input_tokens"),
        int(2634)
    );
    assert_eq!(
        value(chat2, "genai_audit.cumulative.cost_usd"),
        double(cost1 + cost2)
    );

    assert_eq!(
        value(invocation, "genai_audit.total.input_tokens"),
        int(2634)
    );
    assert_eq!(
        value(invocation, "genai_audit.total.output_tokens"),
        int(136)
    );
    assert_eq!(
        value(invocation, "genai_audit.total.cache_read_tokens"),
        int(1024)
    );
    assert_eq!(value(invocation, "genai_audit.total.generations"), int(2));
    assert_eq!(value(invocation, "genai_audit.total.tool_calls"), int(1));
    assert_eq!(
        value(invocation, "genai_audit.total.cost_usd"),
        double(cost1 + cost2)
    );
    assert_eq!(value(invocation, "genai_audit.total.partial"), None);
    for span in &spans {
        assert_eq!(findings_of(span), Vec::<String>::new(), "{}", span.name);
    }
    assert_eq!(h.metric("genai_audit.findings"), vec![]);
}
