//! A runaway agent stopped by its budget.
//!
//! The agent below loops: each round it calls a (simulated, offline) model whose
//! prompts grow as the conversation grows, and it would go on for 50 rounds. The audit
//! processor prices every call and keeps the invocation's running cost; the budget of
//! $0.05 per invocation makes it call `on_budget_exceeded` as the call that passes it
//! ends, and the callback sets a flag the loop checks before its next round.
//!
//! Run with `cargo run --example budget`. Instead of `with_budget`, the budget can come
//! from the environment: `GENAI_AUDIT_BUDGET_USD=0.05 cargo run --example budget`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use genai_audit::{Budget, GenAiAuditProcessor};
use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};

/// The most rounds the agent would run on its own.
const MAX_ROUNDS: i64 = 50;

fn main() {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped_at = Arc::new(Mutex::new(None));
    let (flag, at) = (stop.clone(), stopped_at.clone());

    let exporter = InMemorySpanExporter::default();
    let audit = GenAiAuditProcessor::builder(SimpleSpanProcessor::new(exporter.clone()))
        .with_budget(Budget::usd(0.05))
        .on_budget_exceeded(move |exceeded| {
            // Runs on the thread that ended the call, outside the processor's locks:
            // keep it short. Here: remember the figures and ask the loop to stop.
            if let Ok(mut at) = at.lock() {
                *at = Some((
                    exceeded.cost_usd(),
                    exceeded.generations(),
                    exceeded.input_tokens() + exceeded.output_tokens(),
                ));
            }
            flag.store(true, Ordering::Relaxed);
        })
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(audit)
        .build();
    let tracer = provider.tracer("budget-example");

    let invocation = tracer
        .span_builder("invoke_agent researcher")
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "researcher"),
        ])
        .start(&tracer);
    let cx = Context::current_with_span(invocation);
    let mut rounds = 0;
    for round in 1..=MAX_ROUNDS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        rounds = round;
        // The simulated model: the prompt carries the whole conversation so far.
        let (input, output) = (2_000 + 1_500 * round, 300);
        let mut call = tracer
            .span_builder("chat gpt-4o")
            .with_attributes(vec![
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.provider.name", "openai"),
                KeyValue::new("gen_ai.request.model", "gpt-4o"),
            ])
            .start_with_context(&tracer, &cx);
        call.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", input));
        call.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", output));
        call.end();
    }
    cx.span().end();
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().unwrap_or_default();
    let total = spans
        .iter()
        .find(|s| s.name == "invoke_agent researcher")
        .and_then(|s| genai_audit::last_value(&s.attributes, "genai_audit.total.cost_usd"))
        .map(|v| v.to_string())
        .unwrap_or_default();
    match stopped_at.lock().ok().and_then(|at| *at) {
        Some((cost, generations, tokens)) => println!(
            "budget $0.05 passed at ${cost:.4} after {generations} calls ({tokens} tokens): \
             the agent stopped after round {rounds} of {MAX_ROUNDS}; invocation total ${total}"
        ),
        None => println!("the agent ran all {rounds} rounds within its budget (${total})"),
    }
    let _ = provider.shutdown();
}
