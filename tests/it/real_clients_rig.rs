//! A real agent framework end to end: rig 0.44 (`rig-agent` over `rig-core`), whose
//! `tracing` spans reach the audit processor through `tracing-opentelemetry` 0.34 and
//! the real `SdkTracerProvider`. No network: the model is rig's scripted mock
//! (`rig_core::test_utils`) or a transport of the test's own.
//!
//! What rig emits (checked below): per run a new root span `invoke_agent`
//! (`gen_ai.operation.name = invoke_agent`, `gen_ai.agent.name`; the run's usage is
//! recorded on it at the end), one `chat` span per model turn and one `execute_tool`
//! span per tool call, both children of `invoke_agent`. `chat` starts with only
//! `gen_ai.operation.name` (and the agent name): provider and model are recorded when
//! the request goes out, response id and usage after the reply, so the processor sees
//! them only at the end. `tracing-opentelemetry` writes the `u64` token counts as strings
//! (`"1200"`), and `chat` carries `gen_ai.operation.name` twice.

use crate::common;
use crate::rig_support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use common::{dump, f64_of, findings_of, i64_of, occurrences, value, Harness};
use opentelemetry::trace::SpanId;
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use rig_agent::AgentBuilder;
use rig_core::completion::Usage;
use rig_core::test_utils::{MockCompletionModel, MockTurn};
use rig_support::{
    ns, otel_dispatch, price_with_cache, prompt, response_ids, run_usage, string, wire, Add, ByRun,
    MODEL,
};
use tracing::instrument::WithSubscriber;

fn role(span: &SpanData) -> Option<Value> {
    value(span, "genai_audit.role")
}

/// Spans by start time.
fn by_start(mut spans: Vec<SpanData>) -> Vec<SpanData> {
    spans.sort_by_key(|s| s.start_time);
    spans
}

#[test]
fn tool_using_agent_is_recognised_priced_and_rolled_up() {
    let h = Harness::new();
    let dispatch = otel_dispatch(&h.provider);
    // Turn 1 calls the tool, turn 2 answers; turn 2 read 1024 of its input tokens
    // from the provider's cache.
    let mock = MockCompletionModel::from_turns([
        MockTurn::tool_call("call_1", "add", serde_json::json!({"x": 2, "y": 3}))
            .with_usage(Usage::new().input_tokens(1200).output_tokens(45))
            .with_response_id("resp_1"),
        MockTurn::text("5")
            .with_usage(
                Usage::new()
                    .input_tokens(1300)
                    .output_tokens(12)
                    .cached_input_tokens(1024),
            )
            .with_response_id("resp_2"),
    ]);
    let agent = AgentBuilder::new(rig_core::Model::new(wire(), mock.transport.clone()))
        .name("calculator")
        .preamble("Use the add tool.")
        .tool(Add)
        .default_max_turns(4)
        .build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let response = tracing::dispatcher::with_default(&dispatch, || {
        runtime
            .block_on(agent.prompt("What is 2 + 3?").run())
            .expect("the run succeeds")
    });
    assert_eq!(response.output(), "5");
    assert_eq!(response.usage.input_tokens, Some(2500));
    assert_eq!(response.usage.output_tokens, Some(57));
    assert_eq!(response.usage.cached_input_tokens, Some(1024));

    let spans = by_start(h.exporter.get_finished_spans().expect("spans"));
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names, ["invoke_agent", "chat", "execute_tool", "chat"]);
    let (invocation, chat1, tool, chat2) = (&spans[0], &spans[1], &spans[2], &spans[3]);

    // One trace; the invocation is a root, the chats and the tool call its children.
    assert_eq!(invocation.parent_span_id, SpanId::INVALID);
    for child in [chat1, tool, chat2] {
        assert_eq!(child.parent_span_id, invocation.span_context.span_id());
        assert_eq!(
            child.span_context.trace_id(),
            invocation.span_context.trace_id()
        );
    }

    // Roles.
    assert_eq!(role(invocation), Some(string("invocation")));
    assert_eq!(role(chat1), Some(string("generation")));
    assert_eq!(role(tool), Some(string("tool")));
    assert_eq!(role(chat2), Some(string("generation")));

    // What rig wrote, as the processor received it.
    assert_eq!(
        value(invocation, "gen_ai.agent.name"),
        Some(string("calculator"))
    );
    assert_eq!(value(tool, "gen_ai.tool.name"), Some(string("add")));
    assert_eq!(value(tool, "gen_ai.tool.call.id"), Some(string("call_1")));
    for (chat, id, input, output) in [
        (chat1, "resp_1", "1200", "45"),
        (chat2, "resp_2", "1300", "12"),
    ] {
        assert_eq!(value(chat, "gen_ai.provider.name"), Some(string("openai")));
        assert_eq!(value(chat, "gen_ai.request.model"), Some(string(MODEL)));
        assert_eq!(value(chat, "gen_ai.response.model"), None);
        assert_eq!(value(chat, "gen_ai.response.id"), Some(string(id)));
        // u64 counts arrive as decimal strings.
        assert_eq!(
            value(chat, "gen_ai.usage.input_tokens"),
            Some(string(input))
        );
        assert_eq!(
            value(chat, "gen_ai.usage.output_tokens"),
            Some(string(output))
        );
        // rig records the operation name at creation and again on adoption.
        assert_eq!(
            occurrences(chat, "gen_ai.operation.name"),
            2,
            "{}",
            dump(chat)
        );
    }
    assert_eq!(
        value(chat2, "gen_ai.usage.cache_read.input_tokens"),
        Some(string("1024"))
    );

    // Each generation priced on its own, at its start time.
    let cost1 = price_with_cache(1200, 0, 45, chat1.start_time);
    let cost2 = price_with_cache(1300, 1024, 12, chat2.start_time);
    assert!(cost1 > 0.0 && cost2 > 0.0);
    for (chat, cost) in [(chat1, cost1), (chat2, cost2)] {
        assert_eq!(f64_of(chat, "genai_audit.cost_usd"), cost, "{}", dump(chat));
        assert_eq!(f64_of(chat, "gen_ai.usage.cost"), cost);
        assert_eq!(
            value(chat, "genai_audit.cost.source"),
            Some(string("computed"))
        );
        assert_eq!(
            value(chat, "genai_audit.cost.model"),
            Some(string("openai/gpt-4o"))
        );
    }
    // Running totals of the invocation, in end order.
    assert_eq!(i64_of(chat1, "genai_audit.cumulative.input_tokens"), 1200);
    assert_eq!(i64_of(chat1, "genai_audit.cumulative.generations"), 1);
    assert_eq!(i64_of(chat2, "genai_audit.cumulative.input_tokens"), 2500);
    assert_eq!(i64_of(chat2, "genai_audit.cumulative.output_tokens"), 57);
    assert_eq!(
        i64_of(chat2, "genai_audit.cumulative.cache_read_tokens"),
        1024
    );
    assert_eq!(i64_of(chat2, "genai_audit.cumulative.generations"), 2);
    assert_eq!(
        f64_of(chat2, "genai_audit.cumulative.cost_usd"),
        cost1 + cost2
    );

    // Invocation totals: the sum of its chats, and what rig itself reported on it.
    assert_eq!(i64_of(invocation, "genai_audit.total.input_tokens"), 2500);
    assert_eq!(i64_of(invocation, "genai_audit.total.output_tokens"), 57);
    assert_eq!(
        i64_of(invocation, "genai_audit.total.cache_read_tokens"),
        1024
    );
    assert_eq!(
        i64_of(invocation, "genai_audit.total.cache_write_tokens"),
        0
    );
    assert_eq!(i64_of(invocation, "genai_audit.total.reasoning_tokens"), 0);
    assert_eq!(i64_of(invocation, "genai_audit.total.generations"), 2);
    assert_eq!(i64_of(invocation, "genai_audit.total.tool_calls"), 1);
    assert_eq!(
        f64_of(invocation, "genai_audit.total.cost_usd"),
        cost1 + cost2
    );
    assert_eq!(value(invocation, "genai_audit.total.partial"), None);
    assert_eq!(
        value(invocation, "gen_ai.usage.input_tokens"),
        Some(string("2500"))
    );
    assert_eq!(
        value(invocation, "gen_ai.usage.output_tokens"),
        Some(string("57"))
    );
    assert_eq!(
        value(invocation, "gen_ai.usage.cache_read.input_tokens"),
        Some(string("1024"))
    );
    // rig prices runs with its own catalog (`Usage::cost`, not written to spans): the
    // same figure, to rounding.
    let rig_cost = response.usage.cost.expect("rig's own cost").total;
    assert!(
        (rig_cost - (cost1 + cost2)).abs() < 1e-12,
        "rig {rig_cost} vs genai-prices {}",
        cost1 + cost2
    );
    // A tool call with nothing below it gets no totals.
    assert_eq!(value(tool, "genai_audit.total.tool_calls"), None);

    // A clean run: no finding on any span, none counted.
    for span in &spans {
        assert_eq!(findings_of(span), Vec::<String>::new(), "{}", dump(span));
    }
    assert_eq!(h.metric("genai_audit.findings"), vec![]);
}

/// 50 concurrent runs of one shared `Arc<Agent>` on a 2-thread runtime. The
/// transport answers each run by its run number, and holds every first model turn
/// until all 50 have been sent, so all 50 invocations are open at once.
#[test]
fn fifty_concurrent_runs_of_one_agent_keep_exact_totals() {
    const RUNS: u64 = 50;
    let h = Harness::new();
    let dispatch = otel_dispatch(&h.provider);
    let transport = ByRun {
        barrier: Some(Arc::new(tokio::sync::Barrier::new(RUNS as usize))),
    };
    let agent = Arc::new(
        AgentBuilder::new(rig_core::Model::new(wire(), transport))
            .name("calculator")
            .tool(Add)
            .default_max_turns(4)
            .build(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let outputs: Vec<(u64, String, Usage)> = runtime.block_on(async {
        let tasks: Vec<_> = (0..RUNS)
            .map(|n| {
                let agent = agent.clone();
                let run = async move { agent.prompt(prompt(n)).run().await };
                (n, runtime.spawn(run.with_subscriber(dispatch.clone())))
            })
            .collect();
        let mut outputs = Vec::new();
        for (n, task) in tasks {
            let response = task.await.expect("task").expect("run");
            outputs.push((n, response.output(), response.usage));
        }
        outputs
    });
    for (n, output, usage) in &outputs {
        let [first, second] = run_usage(*n);
        assert_eq!(output, &format!("run {n}: {}", n + 1));
        assert_eq!(usage.input_tokens, Some(first.0 + second.0));
        assert_eq!(usage.output_tokens, Some(first.1 + second.1));
    }

    let spans = h.exporter.get_finished_spans().expect("spans");
    assert_eq!(spans.len(), 4 * RUNS as usize);
    let mut traces: HashMap<_, Vec<SpanData>> = HashMap::new();
    for span in spans {
        traces
            .entry(span.span_context.trace_id())
            .or_default()
            .push(span);
    }
    assert_eq!(traces.len(), RUNS as usize, "one trace per run");

    let mut seen_runs = BTreeSet::new();
    let mut invocations = Vec::new();
    for spans in traces.into_values() {
        let spans = by_start(spans);
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["invoke_agent", "chat", "execute_tool", "chat"]);
        let (invocation, chat1, tool, chat2) = (&spans[0], &spans[1], &spans[2], &spans[3]);
        for child in [chat1, tool, chat2] {
            assert_eq!(child.parent_span_id, invocation.span_context.span_id());
        }
        // The run, from the response id the transport gave its first turn.
        let Some(Value::String(id)) = value(chat1, "gen_ai.response.id") else {
            panic!("no response id\n{}", dump(chat1));
        };
        let n: u64 = id
            .as_str()
            .strip_prefix("resp-")
            .and_then(|rest| rest.strip_suffix("-1"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected response id {id}"));
        assert!(seen_runs.insert(n), "run {n} twice");
        let [first, second] = run_usage(n);
        let ids = response_ids(n);
        assert_eq!(value(chat2, "gen_ai.response.id"), Some(string(&ids[1])));
        assert_eq!(
            value(tool, "gen_ai.tool.call.id"),
            Some(string(&format!("call-{n}")))
        );

        assert_eq!(role(invocation), Some(string("invocation")));
        assert_eq!(role(chat1), Some(string("generation")));
        assert_eq!(role(tool), Some(string("tool")));
        assert_eq!(role(chat2), Some(string("generation")));

        let cost1 = price_with_cache(first.0, 0, first.1, chat1.start_time);
        let cost2 = price_with_cache(second.0, 0, second.1, chat2.start_time);
        assert_eq!(f64_of(chat1, "genai_audit.cost_usd"), cost1);
        assert_eq!(f64_of(chat2, "genai_audit.cost_usd"), cost2);
        assert_eq!(
            i64_of(chat1, "genai_audit.cumulative.input_tokens"),
            first.0 as i64
        );
        assert_eq!(
            i64_of(chat2, "genai_audit.cumulative.input_tokens"),
            (first.0 + second.0) as i64
        );

        let input = first.0 + second.0;
        let output = first.1 + second.1;
        assert_eq!(
            i64_of(invocation, "genai_audit.total.input_tokens"),
            input as i64,
            "run {n}\n{}",
            dump(invocation)
        );
        assert_eq!(
            i64_of(invocation, "genai_audit.total.output_tokens"),
            output as i64
        );
        assert_eq!(i64_of(invocation, "genai_audit.total.generations"), 2);
        assert_eq!(i64_of(invocation, "genai_audit.total.tool_calls"), 1);
        assert_eq!(
            f64_of(invocation, "genai_audit.total.cost_usd"),
            cost1 + cost2
        );
        // rig's own report on the invocation agrees.
        assert_eq!(
            value(invocation, "gen_ai.usage.input_tokens"),
            Some(string(&input.to_string()))
        );
        assert_eq!(
            value(invocation, "gen_ai.usage.output_tokens"),
            Some(string(&output.to_string()))
        );
        for span in &spans {
            assert_eq!(findings_of(span), Vec::<String>::new(), "{}", dump(span));
        }
        invocations.push(invocation.clone());
    }
    assert_eq!(seen_runs, (0..RUNS).collect::<BTreeSet<_>>());
    // The runs overlapped: every invocation started before any of them ended.
    let last_start = invocations.iter().map(|s| ns(s.start_time)).max();
    let first_end = invocations.iter().map(|s| ns(s.end_time)).min();
    assert!(last_start < first_end, "{last_start:?} < {first_end:?}");
    assert_eq!(h.metric("genai_audit.findings"), vec![]);
}

/// rig opens `invoke_agent` only when a run starts outside any span. Started inside
/// a span of the caller's (a request handler's, say), it adopts that span as the
/// agent span: no `invoke_agent`, the chats become children of the caller's span, and
/// rig records no usage on it. The chats are still priced; the rollups need the
/// caller's span to be an invocation — the one rule for rig users.
#[test]
fn a_run_inside_a_caller_span_adopts_it() {
    use tracing::Instrument;
    let h = Harness::new();
    let dispatch = otel_dispatch(&h.provider);
    let mock = MockCompletionModel::from_turns([
        MockTurn::text("a").with_usage(Usage::new().input_tokens(100).output_tokens(20)),
        MockTurn::text("b").with_usage(Usage::new().input_tokens(110).output_tokens(30)),
    ]);
    let agent = AgentBuilder::new(rig_core::Model::new(wire(), mock.transport.clone()))
        .name("support")
        .build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    tracing::dispatcher::with_default(&dispatch, || {
        runtime.block_on(async {
            // `run()` captures the current span when it is called, so the span must be
            // entered around the call, not only around the returned future.
            async { agent.prompt("first").run().await.expect("run") }
                .instrument(tracing::info_span!("handle_request"))
                .await;
            async { agent.prompt("second").run().await.expect("run") }
                .instrument(tracing::info_span!(
                    "invoke_agent support",
                    gen_ai.operation.name = "invoke_agent"
                ))
                .await;
        })
    });

    let spans = by_start(h.exporter.get_finished_spans().expect("spans"));
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        ["handle_request", "chat", "invoke_agent support", "chat"]
    );
    let (plain, chat1, invocation, chat2) = (&spans[0], &spans[1], &spans[2], &spans[3]);
    assert_eq!(chat1.parent_span_id, plain.span_context.span_id());
    assert_eq!(chat2.parent_span_id, invocation.span_context.span_id());

    // Under a plain span: the chat is priced, but there is no invocation to roll up
    // into, and rig wrote no usage on the adopted span.
    let cost1 = price_with_cache(100, 0, 20, chat1.start_time);
    assert_eq!(role(chat1), Some(string("generation")));
    assert_eq!(f64_of(chat1, "genai_audit.cost_usd"), cost1);
    assert_eq!(value(chat1, "genai_audit.cumulative.input_tokens"), None);
    assert_eq!(role(plain), None);
    assert_eq!(value(plain, "genai_audit.total.input_tokens"), None);
    assert_eq!(value(plain, "gen_ai.usage.input_tokens"), None);

    // Under a span that is an invocation: the usual rollups.
    let cost2 = price_with_cache(110, 0, 30, chat2.start_time);
    assert_eq!(role(invocation), Some(string("invocation")));
    assert_eq!(f64_of(chat2, "genai_audit.cost_usd"), cost2);
    assert_eq!(i64_of(chat2, "genai_audit.cumulative.input_tokens"), 110);
    assert_eq!(i64_of(invocation, "genai_audit.total.input_tokens"), 110);
    assert_eq!(i64_of(invocation, "genai_audit.total.output_tokens"), 30);
    assert_eq!(i64_of(invocation, "genai_audit.total.generations"), 1);
    assert_eq!(f64_of(invocation, "genai_audit.total.cost_usd"), cost2);
    assert_eq!(value(invocation, "gen_ai.usage.input_tokens"), None);

    for span in &spans {
        assert_eq!(findings_of(span), Vec::<String>::new(), "{}", dump(span));
    }
    assert_eq!(h.metric("genai_audit.findings"), vec![]);
}
