//! Quickstart: the audit processor in a real OpenTelemetry pipeline, watching a small
//! coding agent — instrumented wrong, then right.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! No network, services, arguments or environment are needed. The example runs ONE
//! shared `coder` agent (`Arc<Agent>`) for TWO invocations at the same time, on two
//! threads — one on `openai/gpt-4o`, one on `anthropic/claude-sonnet-4-5` — twice:
//!
//! 1. through an instrumentation with the per-instance state bug this crate exists
//!    for (as in LoongSuite's Hermes instrumentation 0.5): it keeps "the current step"
//!    and the token counters on the shared agent, so the second invocation overwrites
//!    the first one's. The two threads take turns in a fixed order, so the output is
//!    the same on every run. The audit processor runs with the `repair` contamination
//!    policy: the report shows the findings (`usage_mismatch`, `foreign_response`, an
//!    unclosed, leaked step) and the values it repaired;
//! 2. through an instrumentation that keeps each invocation's state in the call: the
//!    report shows no findings.
//!
//! Each pipeline is an `SdkTracerProvider` whose only span processor is
//! [`GenAiAuditProcessor`], wrapping the processor that exports (here a
//! `SimpleSpanProcessor` over an in-memory exporter), with its metrics on an
//! `SdkMeterProvider`. The reports are printed by `genai_audit::report`, the printer
//! of the `genai-audit` command.

use std::io::IsTerminal;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use genai_audit::report::{write_report, ReportOptions, ReportSpan, Summary};
use genai_audit::{ContaminationPolicy, GenAiAuditProcessor};
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracer, SdkTracerProvider, SimpleSpanProcessor,
};

fn main() {
    println!(
        "genai-audit quickstart: one shared `coder` agent, two invocations at once on two threads."
    );
    println!();
    println!("1. Instrumented with per-instance state (the bug): each invocation overwrites the");
    println!("   other's current step and token counters. Contamination policy `repair`.");
    println!();
    let buggy = run(ContaminationPolicy::Repair, |agent, task, turns, me| {
        agent.invoke_buggy(task, turns, me)
    });
    println!();
    println!("2. Instrumented right: each invocation's state lives in the call.");
    println!();
    let clean = run(ContaminationPolicy::Flag, |agent, task, _, _| {
        agent.invoke(task)
    });
    println!();
    println!(
        "Findings counted by the genai_audit.findings metric: {buggy} with the bug (the steps it"
    );
    println!("abandoned never ended: evicted as `stale` at shutdown), {clean} done right.");
    println!("Every genai_audit.* attribute shown travels with its span to your exporter; the");
    println!("genai-audit command prints the same report from exported OTLP JSON.");
}

/// Runs the two invocations through a fresh pipeline, prints the report and returns
/// the number of findings the processor's metric counted.
fn run(policy: ContaminationPolicy, invoke: fn(&Agent, &Task, &Turns, usize)) -> u64 {
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
        .contamination_policy(policy)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(audit)
        .build();

    let agent = Arc::new(Agent {
        name: "coder",
        tracer: provider.tracer("quickstart-coding-agent"),
        state: Mutex::new(SharedState::default()),
    });
    let turns = Arc::new(Turns::default());
    let handles: Vec<_> = [&FIX_TEST, &SUMMARISE_DOCS]
        .into_iter()
        .enumerate()
        .map(|(me, task)| {
            let (agent, turns) = (Arc::clone(&agent), Arc::clone(&turns));
            thread::spawn(move || invoke(&agent, task, &turns, me))
        })
        .collect();
    for handle in handles {
        handle.join().expect("an agent thread panicked");
    }

    provider
        .force_flush()
        .expect("flushing the tracer provider failed");
    let spans = exporter
        .get_finished_spans()
        .expect("reading the exported spans failed");
    let report: Vec<ReportSpan> = spans.iter().map(ReportSpan::from).collect();
    let options = ReportOptions {
        color: std::io::stdout().is_terminal(),
        ..ReportOptions::default()
    };
    let mut stdout = std::io::stdout().lock();
    let summary = write_report(&mut stdout, &report, &options).expect("writing to stdout failed");
    drop(stdout);
    let _: Summary = summary;

    // Steps the buggy instrumentation abandoned are still open: the shutdown evicts
    // them (`stale`), as at an application's exit.
    provider
        .shutdown()
        .expect("shutting down the tracer provider failed");
    drop(agent);
    meter_provider
        .force_flush()
        .expect("flushing the meter provider failed");
    let findings = findings_counted(&metric_exporter);
    meter_provider
        .shutdown()
        .expect("shutting down the meter provider failed");
    findings
}

/// Makes two threads take turns (0, 1, 0, 1, ...), so that the buggy run interleaves
/// the same way on every run.
#[derive(Default)]
struct Turns {
    next: Mutex<usize>,
    changed: Condvar,
}

impl Turns {
    /// Runs `action` on thread `me`'s next turn.
    fn take<T>(&self, me: usize, action: impl FnOnce() -> T) -> T {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        while *next % 2 != me {
            next = self
                .changed
                .wait(next)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let result = action();
        *next += 1;
        self.changed.notify_all();
        result
    }
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
    /// Used only by the buggy instrumentation (`invoke_buggy`).
    state: Mutex<SharedState>,
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

    /// Calls the model; returns the response id.
    fn call_model(&self, parent: &Context, task: &Task, step: &Step, round: i64) -> String {
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
        let response_id = format!("{}-response-{round}", task.conversation_id);
        span.set_attribute(KeyValue::new("gen_ai.response.id", response_id.clone()));
        span.end();
        response_id
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

// === The same agent, instrumented with per-instance state (the bug) ===================

/// What the buggy instrumentation keeps on the shared agent instance instead of in
/// each call: the current step, the token counters and the last response id.
#[derive(Default)]
struct SharedState {
    step: Option<Context>,
    input_tokens: i64,
    output_tokens: i64,
    last_response_id: Option<String>,
    /// Steps overwritten before they ended: never ended (kept alive, as a leaked span
    /// is in a garbage-collected language, until the program exits).
    abandoned: Vec<Context>,
}

impl Agent {
    fn state(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One invocation through the buggy instrumentation; every step of it is one turn.
    fn invoke_buggy(&self, task: &Task, turns: &Turns, me: usize) {
        let invocation_cx = turns.take(me, || {
            let mut state = self.state();
            // A new invocation resets "its" counters: the other one's too.
            state.input_tokens = 0;
            state.output_tokens = 0;
            let span = self
                .tracer
                .span_builder(format!("invoke_agent {}", self.name))
                .with_attributes([
                    KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                    KeyValue::new("gen_ai.agent.name", self.name),
                    KeyValue::new("gen_ai.conversation.id", task.conversation_id),
                ])
                .start_with_context(&self.tracer, &Context::new());
            Context::new().with_span(span)
        });
        for (round, step) in (1..).zip(task.steps) {
            let step_cx = turns.take(me, || {
                let span = self
                    .tracer
                    .span_builder("react step")
                    .with_attributes([
                        KeyValue::new("gen_ai.operation.name", "react"),
                        KeyValue::new("gen_ai.react.round", round),
                    ])
                    .start_with_context(&self.tracer, &invocation_cx);
                let cx = invocation_cx.with_span(span);
                let mut state = self.state();
                // The bug: "the current step" is a field of the shared instance.
                if let Some(overwritten) = state.step.replace(cx.clone()) {
                    state.abandoned.push(overwritten);
                }
                cx
            });
            turns.take(me, || {
                let response_id = self.call_model(&step_cx, task, step, round);
                if let Some(tool) = step.tool {
                    self.run_tool(&step_cx, tool);
                }
                let mut state = self.state();
                state.input_tokens += step.input_tokens;
                state.output_tokens += step.output_tokens;
                state.last_response_id = Some(response_id);
            });
            turns.take(me, || {
                // Ends "the current step": whichever invocation set it last.
                if let Some(current) = self.state().step.take() {
                    current.span().end();
                }
            });
        }
        turns.take(me, || {
            let state = self.state();
            let span = invocation_cx.span();
            span.set_attribute(KeyValue::new(
                "gen_ai.usage.input_tokens",
                state.input_tokens,
            ));
            span.set_attribute(KeyValue::new(
                "gen_ai.usage.output_tokens",
                state.output_tokens,
            ));
            if let Some(id) = &state.last_response_id {
                span.set_attribute(KeyValue::new("gen_ai.response.id", id.clone()));
            }
            drop(state);
            span.end();
        });
    }
}

/// One line per point of a histogram: its count and sum.
fn histogram_lines<T: Copy>(
    name: &str,
    histogram: &opentelemetry_sdk::metrics::data::Histogram<T>,
    labels: &dyn Fn(&mut dyn Iterator<Item = &opentelemetry::KeyValue>) -> String,
    sum: impl Fn(T) -> String,
    lines: &mut Vec<String>,
) {
    for point in histogram.data_points() {
        lines.push(format!(
            "  {name}{{{}}} count {} sum {}",
            labels(&mut point.attributes()),
            point.count(),
            sum(point.sum())
        ));
    }
}

/// Prints what the processor's metrics recorded, one line per series, and returns the
/// number of findings it counted (0 when it never counted any).
fn findings_counted(metric_exporter: &InMemoryMetricExporter) -> u64 {
    let collections = metric_exporter
        .get_finished_metrics()
        .expect("reading the exported metrics failed");
    // Cumulative temporality: the last collection holds the totals.
    let Some(last) = collections.last() else {
        return 0;
    };
    let labels = |attributes: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
        let mut pairs: Vec<String> = attributes
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect();
        pairs.sort();
        pairs.join(",")
    };
    let mut findings = 0;
    let mut lines = Vec::new();
    for metric in last.scope_metrics().flat_map(|scope| scope.metrics()) {
        let name = metric.name();
        match metric.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                for point in sum.data_points() {
                    if name == "genai_audit.findings" {
                        findings += point.value();
                    }
                    lines.push(format!(
                        "  {name}{{{}}} {}",
                        labels(&mut point.attributes()),
                        point.value()
                    ));
                }
            }
            AggregatedMetrics::F64(MetricData::Sum(sum)) => {
                for point in sum.data_points() {
                    lines.push(format!(
                        "  {name}{{{}}} {:.6}",
                        labels(&mut point.attributes()),
                        point.value()
                    ));
                }
            }
            AggregatedMetrics::F64(MetricData::Histogram(histogram)) => histogram_lines(
                name,
                histogram,
                &labels,
                |sum| format!("{sum:.6}"),
                &mut lines,
            ),
            AggregatedMetrics::U64(MetricData::Histogram(histogram)) => {
                histogram_lines(name, histogram, &labels, |sum| sum.to_string(), &mut lines)
            }
            _ => {}
        }
    }
    lines.sort();
    println!("Metrics recorded (what a Prometheus or OTLP metrics exporter would receive):");
    for line in lines {
        println!("{line}");
    }
    findings
}
