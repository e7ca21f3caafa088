//! Shared setup for the rig integration tests (`real_clients_rig*.rs`): a
//! `tracing` dispatcher bridged to the test's tracer provider by
//! `tracing-opentelemetry`, a tool, and model transports that need no network.
//!
//! rig 0.44 splits the runtime in two crates: `rig-core` (models, transports,
//! telemetry helpers, `test_utils`) and `rig-agent` (the `Agent` that emits the
//! `invoke_agent`, `chat` and `execute_tool` spans).
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Value;
use opentelemetry_sdk::trace::SdkTracerProvider;
use rig_core::completion::{CompletionRequest, Usage};
use rig_core::driver::{Exchange, Opening, Transport};
use rig_core::message::{Message, ToolResultContent, UserContent};
use rig_core::test_utils::{MockCompletionModel, MockFrame, MockScript, MockTurn};
use tracing_subscriber::layer::SubscriberExt;

/// The provider and model every test agent talks to: a pair the bundled
/// genai-prices data knows, so generations get a computed cost.
pub const PROVIDER: &str = "openai";
pub const MODEL: &str = "gpt-4o";

/// A `tracing` dispatcher whose only layer is `tracing-opentelemetry` over a tracer
/// of `provider`. Installed per test (`tracing::dispatcher::with_default`) or per
/// task (`WithSubscriber::with_subscriber`), never globally.
pub fn otel_dispatch(provider: &SdkTracerProvider) -> tracing::Dispatch {
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("rig"));
    tracing::Dispatch::new(tracing_subscriber::registry().with(layer))
}

/// The scripted wire named like the provider: rig writes the wire's name to
/// `gen_ai.provider.name` and its model id to `gen_ai.request.model`.
pub fn wire() -> MockScript {
    MockScript::new(PROVIDER).with_id(MODEL)
}

/// A tool that adds two integers.
pub struct Add;

impl rig_agent::tool::Tool for Add {
    const NAME: &'static str = "add";
    type Args = serde_json::Value;
    type Output = i64;
    type Error = std::io::Error;

    fn description(&self) -> String {
        "Adds x and y".to_string()
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
            "required": ["x", "y"],
        })
    }

    async fn call(
        &self,
        _context: &mut rig_agent::tool::ToolContext,
        args: serde_json::Value,
    ) -> Result<i64, std::io::Error> {
        let arg = |k: &str| {
            args[k]
                .as_i64()
                .ok_or_else(|| std::io::Error::other(format!("{k} is not an integer")))
        };
        Ok(arg("x")? + arg("y")?)
    }
}

/// The prompt of run `n`; [`ByRun`] reads the run number back from it.
pub fn prompt(n: u64) -> String {
    format!("run {n}: add {n} and 1")
}

/// The usage [`ByRun`] reports for run `n`: (input, output) of its first turn (the
/// tool call) and of its second (the answer).
pub fn run_usage(n: u64) -> [(u64, u64); 2] {
    [(1000 + n, 10 + n), (2000 + 2 * n, 20 + n)]
}

/// The response ids [`ByRun`] gives run `n`'s two turns.
pub fn response_ids(n: u64) -> [String; 2] {
    [format!("resp-{n}-1"), format!("resp-{n}-2")]
}

/// A model transport whose reply depends on the request, so that any number of
/// concurrent runs of one agent each get their own answers and token counts:
/// the first turn of run `n` (no tool result yet) calls `add(n, 1)`, the second
/// answers with the tool's result. A prompt containing `forget` opens a reply
/// that never arrives. With a barrier, every first turn waits until all runs
/// have sent theirs: the runs are then provably concurrent.
#[derive(Clone, Default)]
pub struct ByRun {
    pub barrier: Option<Arc<tokio::sync::Barrier>>,
}

/// What the transport read from a request.
struct Request {
    run: u64,
    forget: bool,
    tool_result: Option<String>,
}

fn read_request(request: &CompletionRequest) -> Result<Request, String> {
    let mut run = None;
    let mut forget = false;
    let mut tool_result = None;
    for message in &request.chat_history {
        let Message::User { content } = message else {
            continue;
        };
        for part in content {
            match part {
                UserContent::Text(text) => {
                    if let Some(rest) = text.text.strip_prefix("run ") {
                        let digits: String =
                            rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                        run = digits.parse::<u64>().ok();
                        forget = rest.contains("forget");
                    }
                }
                UserContent::ToolResult(result) => {
                    for item in &result.content {
                        match item {
                            ToolResultContent::Text(text) => tool_result = Some(text.text.clone()),
                            ToolResultContent::Json { value } => {
                                tool_result = Some(value.to_string())
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let run = run.ok_or_else(|| format!("no `run N` prompt in {:?}", request.chat_history))?;
    Ok(Request {
        run,
        forget,
        tool_result,
    })
}

impl Transport<MockScript> for ByRun {
    fn send(&self, request: CompletionRequest, exchange: Exchange) -> Opening<MockFrame> {
        let read = match read_request(&request) {
            Ok(read) => read,
            Err(e) => {
                return Opening::failed(rig_core::error::ProviderError::Provider(e));
            }
        };
        if read.forget {
            return Opening::new(std::future::pending());
        }
        let n = read.run;
        let [first, second] = run_usage(n);
        let [first_id, second_id] = response_ids(n);
        let (turn, barrier) = match read.tool_result {
            None => (
                MockTurn::tool_call(
                    format!("call-{n}"),
                    "add",
                    serde_json::json!({"x": n, "y": 1}),
                )
                .with_usage(Usage::new().input_tokens(first.0).output_tokens(first.1))
                .with_response_id(first_id),
                self.barrier.clone(),
            ),
            Some(result) => (
                MockTurn::text(format!("run {n}: {result}"))
                    .with_usage(Usage::new().input_tokens(second.0).output_tokens(second.1))
                    .with_response_id(second_id),
                None,
            ),
        };
        // A one-turn scripted runtime builds the reply frames, as rig's own mock does.
        let reply = MockCompletionModel::from_turns([turn]).transport;
        Opening::new(async move {
            if let Some(barrier) = barrier {
                barrier.wait().await;
            }
            // Yield once, so that concurrent runs interleave on each worker thread.
            YieldOnce(false).await;
            Transport::<MockScript>::send(&reply, request, exchange).await
        })
    }
}

/// A future that is pending once (waking itself) and then ready.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Nanoseconds since the epoch.
pub fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_nanos() as u64
}

/// The price genai-prices gives one call of [`MODEL`] by [`PROVIDER`] with cache
/// reads, computed directly.
pub fn price_with_cache(input: u64, cache_read: u64, output: u64, start: SystemTime) -> f64 {
    crate::common::price_with_cache(PROVIDER, MODEL, input, cache_read, output, start)
}

pub fn string(s: &str) -> Value {
    Value::String(s.to_string().into())
}
