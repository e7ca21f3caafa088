//! Quickstart: the audit processor in a real OpenTelemetry pipeline, watching a small
//! coding agent.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! No network, services, arguments or environment are needed. The example
//!
//! 1. builds an `SdkTracerProvider` whose only span processor is
//!    [`GenAiAuditProcessor`], wrapping the processor that exports (here a
//!    `SimpleSpanProcessor` over an in-memory exporter) and recording its metrics on an
//!    `SdkMeterProvider`;
//! 2. runs ONE shared `coder` agent (`Arc<Agent>`) for TWO invocations at the same
//!    time on two threads — one on `openai/gpt-4o`, one on
//!    `anthropic/claude-sonnet-4-5` with a prompt-cache hit — each a few ReAct steps
//!    of one LLM call and usually one tool call, with fixed token counts;
//! 3. prints the exported trace as a tree with what the processor added to each span
//!    (`genai_audit.*` attributes: role, per-call cost, running totals, rolled-up
//!    invocation totals, findings), and the number of findings its
//!    `genai_audit.findings` metric counted.
//!
//! The agent keeps each invocation's telemetry state (its span contexts) in the call,
//! not on the shared instance, and parents every span explicitly, so the two
//! concurrent invocations do not contaminate each other and the audit finds nothing.
//! The trace is printed sorted, so the output is the same on every run however the two
//! threads interleave.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use genai_audit::GenAiAuditProcessor;
use opentelemetry::trace::{
    Span as _, SpanId, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Array, Context, KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracer, SdkTracerProvider, SimpleSpanProcessor, SpanData,
};

fn main() {
    // --- The pipeline -------------------------------------------------------------
    // Metrics: the processor counts findings on this meter provider.
    let metric_exporter = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metric_exporter.clone()).build())
        .build();

    // Traces: the audit processor wraps the processor that exports and is the only one
    // registered. In an application the inner processor is the `BatchSpanProcessor` in
    // front of your real exporter (OTLP, ...); here it is a `SimpleSpanProcessor` over
    // an in-memory exporter so that we can print what was exported.
    let exporter = InMemorySpanExporter::default();
    let audit = GenAiAuditProcessor::builder(SimpleSpanProcessor::new(exporter.clone()))
        .with_meter_provider(meter_provider.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(audit)
        .build();

    // --- The agent: one instance, two concurrent invocations ------------------------
    let agent = Arc::new(Agent {
        name: "coder",
        tracer: provider.tracer("quickstart-coding-agent"),
    });
    let tasks = [&FIX_TEST, &SUMMARISE_DOCS];
    let handles: Vec<_> = tasks
        .into_iter()
        .map(|task| {
            let agent = Arc::clone(&agent);
            thread::spawn(move || agent.invoke(task))
        })
        .collect();
    for handle in handles {
        handle.join().expect("an agent thread panicked");
    }

    // --- What was exported ----------------------------------------------------------
    provider
        .force_flush()
        .expect("flushing the tracer provider failed");
    let spans = exporter
        .get_finished_spans()
        .expect("reading the exported spans failed");
    print_report(&spans);

    meter_provider
        .force_flush()
        .expect("flushing the meter provider failed");
    let findings = findings_counted(&metric_exporter);
    let total_cost: f64 = spans
        .iter()
        .filter(|s| s.parent_span_id == SpanId::INVALID)
        .filter_map(|s| float(s, "genai_audit.total.cost_usd"))
        .fold(0.0, |sum, cost| sum + cost);
    println!("Both invocations: ${total_cost:.6} in total; findings counted (genai_audit.findings metric): {findings}.");
    println!("Every genai_audit.* attribute shown travels with its span to your exporter: chart cost and");
    println!("tokens per invocation from genai_audit.total.*, and alert on the genai_audit.findings metric.");

    provider
        .shutdown()
        .expect("shutting down the tracer provider failed");
    meter_provider
        .shutdown()
        .expect("shutting down the meter provider failed");
}

// === A toy coding agent =============================================================

/// What one invocation is asked to do: a fixed script standing in for a real model.
struct Task {
    conversation_id: &'static str,
    provider: &'static str,
    model: &'static str,
    steps: &'static [Step],
}

/// One ReAct round: an LLM call, then (usually) the tool it chose.
struct Step {
    input_tokens: i64,
    output_tokens: i64,
    /// Prompt tokens served from the provider's cache (included in `input_tokens`).
    cache_read_tokens: i64,
    tool: Option<&'static str>,
}

/// A step: `input`→`output` tokens (`cached` of the input read from the provider's
/// prompt cache), then `tool`, if any.
const fn step(input: i64, output: i64, cached: i64, tool: Option<&'static str>) -> Step {
    Step {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cached,
        tool,
    }
}

/// Invocation 1: find and fix a failing test, on OpenAI's gpt-4o.
const FIX_TEST: Task = Task {
    conversation_id: "conversation-1",
    provider: "openai",
    model: "gpt-4o",
    steps: &[
        step(1850, 120, 0, Some("read")),
        step(2640, 310, 0, Some("bash")),
        step(3120, 205, 0, None), // the final answer
    ],
};

/// Invocation 2: summarise a docs page, on Anthropic's Claude Sonnet 4.5; its second
/// call hits the prompt cache.
const SUMMARISE_DOCS: Task = Task {
    conversation_id: "conversation-2",
    provider: "anthropic",
    model: "claude-sonnet-4-5",
    steps: &[
        step(2400, 150, 0, Some("webfetch")),
        step(5200, 420, 2048, Some("read")),
        step(5900, 380, 0, None), // the final answer
    ],
};

/// The agent. One instance serves every invocation, so it holds only what they all
/// share. Everything belonging to one invocation — its span, the current step — lives
/// in `invoke`'s locals. (Keeping "the current invocation span" in a field of a shared
/// agent is exactly the bug that makes concurrent invocations overwrite each other's
/// telemetry; the audit processor would flag it.)
struct Agent {
    name: &'static str,
    tracer: SdkTracer,
}

impl Agent {
    fn invoke(&self, task: &Task) {
        let invocation = self
            .tracer
            .span_builder(format!("invoke_agent {}", self.name))
            .with_kind(SpanKind::Internal)
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                KeyValue::new("gen_ai.agent.name", self.name),
                KeyValue::new("gen_ai.conversation.id", task.conversation_id),
            ])
            // An explicit, empty parent: a new trace, whatever this thread's context.
            .start_with_context(&self.tracer, &Context::new());
        let invocation_cx = Context::new().with_span(invocation);

        for (round, step) in (1..).zip(task.steps) {
            let step_span = self
                .tracer
                .span_builder("react step")
                .with_attributes([
                    KeyValue::new("gen_ai.operation.name", "react"),
                    KeyValue::new("gen_ai.react.round", round),
                ])
                .start_with_context(&self.tracer, &invocation_cx);
            let step_cx = invocation_cx.with_span(step_span);

            self.call_model(&step_cx, task, step, round);
            if let Some(tool) = step.tool {
                self.run_tool(&step_cx, tool);
            }
            step_cx.span().end();
        }
        invocation_cx.span().end();
    }

    fn call_model(&self, parent: &Context, task: &Task, step: &Step, round: i64) {
        let mut span = self
            .tracer
            .span_builder(format!("chat {}", task.model))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.provider.name", task.provider),
                KeyValue::new("gen_ai.request.model", task.model),
            ])
            .start_with_context(&self.tracer, parent);
        // "Waiting for the model": long enough for the two invocations to interleave.
        thread::sleep(Duration::from_millis(2));
        span.set_attribute(KeyValue::new(
            "gen_ai.usage.input_tokens",
            step.input_tokens,
        ));
        span.set_attribute(KeyValue::new(
            "gen_ai.usage.output_tokens",
            step.output_tokens,
        ));
        if step.cache_read_tokens > 0 {
            span.set_attribute(KeyValue::new(
                "gen_ai.usage.cache_read.input_tokens",
                step.cache_read_tokens,
            ));
        }
        span.set_attribute(KeyValue::new(
            "gen_ai.response.id",
            format!("{}-response-{round}", task.conversation_id),
        ));
        span.end();
    }

    fn run_tool(&self, parent: &Context, tool: &'static str) {
        let mut span = self
            .tracer
            .span_builder(format!("execute_tool {tool}"))
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "execute_tool"),
                KeyValue::new("gen_ai.tool.name", tool),
            ])
            .start_with_context(&self.tracer, parent);
        thread::sleep(Duration::from_millis(1));
        span.end();
    }
}

// === Printing the enriched trace ====================================================

fn print_report(spans: &[SpanData]) {
    println!("genai-audit quickstart: one shared `coder` agent ran two invocations at once, on two threads.");
    println!("The exported trace, with what the audit processor added (genai_audit.*): each span's role;");
    println!("per LLM call, tokens in→out, its cost and the invocation's running total; findings.");

    let mut children: HashMap<SpanId, Vec<&SpanData>> = HashMap::new();
    let mut roots = Vec::new();
    for span in spans {
        if span.parent_span_id == SpanId::INVALID {
            roots.push(span);
        } else {
            children.entry(span.parent_span_id).or_default().push(span);
        }
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| a.start_time.cmp(&b.start_time).then(a.name.cmp(&b.name)));
    }
    roots.sort_by_key(|s| string(s, "gen_ai.conversation.id"));

    for root in roots {
        println!();
        print_span(root, &children, 0);
        println!(
            "  = invocation total: {} in ({} cache read), {} out, {} LLM calls, {} tool calls, {} steps, {}",
            int(root, "genai_audit.total.input_tokens").unwrap_or(0),
            int(root, "genai_audit.total.cache_read_tokens").unwrap_or(0),
            int(root, "genai_audit.total.output_tokens").unwrap_or(0),
            int(root, "genai_audit.total.generations").unwrap_or(0),
            int(root, "genai_audit.total.tool_calls").unwrap_or(0),
            int(root, "genai_audit.steps").unwrap_or(0),
            usd(float(root, "genai_audit.total.cost_usd")),
        );
    }
    println!();
}

fn print_span(span: &SpanData, children: &HashMap<SpanId, Vec<&SpanData>>, depth: usize) {
    let role = string(span, "genai_audit.role").unwrap_or_else(|| "other".into());
    let name = format!("{:indent$}{}", "", span.name, indent = depth * 2);
    let findings = findings(span);
    let findings = if findings.is_empty() {
        "no findings".to_owned()
    } else {
        format!("FINDINGS: {}", findings.join(","))
    };
    let mut line = format!("{name:<26}  {role:<10}  {findings:<11}");
    match role.as_str() {
        "invocation" => {
            if let Some(id) = string(span, "gen_ai.conversation.id") {
                line += &format!("  {id}");
            }
        }
        "step" => {
            if let Some(index) = int(span, "genai_audit.step.index") {
                line += &format!("  #{index}");
            }
        }
        "generation" => {
            line += &format!(
                "  {}→{}",
                int(span, "gen_ai.usage.input_tokens").unwrap_or(0),
                int(span, "gen_ai.usage.output_tokens").unwrap_or(0),
            );
            if let Some(cached) = int(span, "gen_ai.usage.cache_read.input_tokens") {
                line += &format!(" ({cached} cached)");
            }
            line += &format!("  {}", usd(float(span, "genai_audit.cost_usd")));
            if let Some(model) = string(span, "genai_audit.cost.model") {
                line += &format!(" {model}");
            }
            line += &format!(
                "  so far {}→{} {}",
                int(span, "genai_audit.cumulative.input_tokens").unwrap_or(0),
                int(span, "genai_audit.cumulative.output_tokens").unwrap_or(0),
                usd(float(span, "genai_audit.cumulative.cost_usd")),
            );
        }
        _ => {}
    }
    println!("{}", line.trim_end());

    let id = span.span_context.span_id();
    for child in children.get(&id).into_iter().flatten() {
        print_span(child, children, depth + 1);
    }
}

/// The number of findings the processor counted (0 when it never counted any).
fn findings_counted(metric_exporter: &InMemoryMetricExporter) -> u64 {
    let collections = metric_exporter
        .get_finished_metrics()
        .expect("reading the exported metrics failed");
    // Cumulative temporality: the last collection holds the totals.
    let Some(last) = collections.last() else {
        return 0;
    };
    last.scope_metrics()
        .flat_map(|scope| scope.metrics())
        .filter(|metric| metric.name() == "genai_audit.findings")
        .map(|metric| match metric.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                sum.data_points().map(|point| point.value()).sum()
            }
            _ => 0,
        })
        .sum()
}

// --- Attribute helpers (a key set twice: the last value wins, as the processor reads it)

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    genai_audit::last_value(&span.attributes, key)
}

fn int(span: &SpanData, key: &str) -> Option<i64> {
    match attr(span, key)? {
        Value::I64(v) => Some(*v),
        _ => None,
    }
}

fn float(span: &SpanData, key: &str) -> Option<f64> {
    match attr(span, key)? {
        Value::F64(v) => Some(*v),
        _ => None,
    }
}

fn string(span: &SpanData, key: &str) -> Option<String> {
    match attr(span, key)? {
        Value::String(v) => Some(v.to_string()),
        _ => None,
    }
}

fn findings(span: &SpanData) -> Vec<String> {
    match attr(span, "genai_audit.findings") {
        Some(Value::Array(Array::String(codes))) => codes.iter().map(|c| c.to_string()).collect(),
        Some(other) => vec![other.to_string()],
        None => Vec::new(),
    }
}

fn usd(cost: Option<f64>) -> String {
    cost.map_or_else(|| "(no cost)".to_owned(), |c| format!("${c:.6}"))
}
