//! Cost and token metrics, their cardinality bound, and budgets that report (and can
//! stop) a runaway agent, with exact values from a real `SdkMeterProvider` over an
//! `InMemoryMetricExporter`.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::lines::{self, at, chat, start};
use common::{direct_price, expect_counts, Harness};
use genai_audit::{Budget, BudgetExceeded};
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};

/// An `end` line.
fn end(span: &str, ms: u64) -> String {
    lines::end(span, "", ms)
}

fn agent(name: &str) -> String {
    format!(r#""gen_ai.operation.name":"invoke_agent","gen_ai.agent.name":"{name}""#)
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

/// Two agents, three invocations: coder (gpt-4o 1000/100, gpt-4o 2000/200), coder
/// (gpt-4o-mini 500/50), reviewer (gpt-4o 300/30).
fn two_agents_three_invocations() -> String {
    [
        start("c1", None, "invoke_agent coder", &agent("coder"), 0),
        start(
            "c1g1",
            Some("c1"),
            "chat gpt-4o",
            &chat("gpt-4o", 1000, 100),
            1,
        ),
        end("c1g1", 2),
        start(
            "c1g2",
            Some("c1"),
            "chat gpt-4o",
            &chat("gpt-4o", 2000, 200),
            3,
        ),
        end("c1g2", 4),
        end("c1", 5),
        start("c2", None, "invoke_agent coder", &agent("coder"), 6),
        start(
            "c2g1",
            Some("c2"),
            "chat gpt-4o-mini",
            &chat("gpt-4o-mini", 500, 50),
            7,
        ),
        end("c2g1", 8),
        end("c2", 9),
        start("r1", None, "invoke_agent reviewer", &agent("reviewer"), 10),
        start(
            "r1g1",
            Some("r1"),
            "chat gpt-4o",
            &chat("gpt-4o", 300, 30),
            11,
        ),
        end("r1g1", 12),
        end("r1", 13),
    ]
    .join("\n")
}

#[test]
fn every_instrument_after_a_flush() {
    let h = Harness::with(|b| b.with_token_usage_metric(true));
    let r = h.replay(&two_agents_three_invocations());
    r.assert_no_findings();
    let price =
        |model, input, output, ms| direct_price(Some("openai"), model, input, output, at(ms));
    let (c1g1, c1g2) = (price("gpt-4o", 1000, 100, 1), price("gpt-4o", 2000, 200, 3));
    let c2g1 = price("gpt-4o-mini", 500, 50, 7);
    let r1g1 = price("gpt-4o", 300, 30, 11);

    // genai_audit.cost: one series per provider, model, agent and source.
    let cost = h.metrics.points("genai_audit.cost");
    let expected = [
        (
            attrs(&[
                ("gen_ai.agent.name", "coder"),
                ("gen_ai.provider.name", "openai"),
                ("gen_ai.request.model", "gpt-4o"),
                ("genai_audit.cost.source", "computed"),
            ]),
            c1g1 + c1g2,
        ),
        (
            attrs(&[
                ("gen_ai.agent.name", "coder"),
                ("gen_ai.provider.name", "openai"),
                ("gen_ai.request.model", "gpt-4o-mini"),
                ("genai_audit.cost.source", "computed"),
            ]),
            c2g1,
        ),
        (
            attrs(&[
                ("gen_ai.agent.name", "reviewer"),
                ("gen_ai.provider.name", "openai"),
                ("gen_ai.request.model", "gpt-4o"),
                ("genai_audit.cost.source", "computed"),
            ]),
            r1g1,
        ),
    ];
    assert_eq!(cost.len(), 3, "{cost:?}");
    for ((got_attrs, got), (want_attrs, want)) in cost.iter().zip(expected.iter()) {
        assert_eq!(got_attrs, want_attrs);
        assert!((got - want).abs() < 1e-15, "{got} vs {want}");
    }

    // genai_audit.invocation.cost: two coder invocations, one reviewer.
    let inv_cost = h.metrics.histogram("genai_audit.invocation.cost");
    assert_eq!(inv_cost.len(), 2);
    assert_eq!(
        inv_cost[0].attributes,
        attrs(&[("gen_ai.agent.name", "coder")])
    );
    assert_eq!(inv_cost[0].count, 2);
    assert!((inv_cost[0].sum - (c1g1 + c1g2 + c2g1)).abs() < 1e-15);
    assert_eq!(
        inv_cost[1].attributes,
        attrs(&[("gen_ai.agent.name", "reviewer")])
    );
    assert_eq!(inv_cost[1].count, 1);
    assert!((inv_cost[1].sum - r1g1).abs() < 1e-15);
    assert_eq!(inv_cost[0].bucket_counts.iter().sum::<u64>(), 2);

    // genai_audit.invocation.tokens: per agent and token type.
    let tokens = h.metrics.histogram("genai_audit.invocation.tokens");
    type Summary = (Vec<(String, String)>, u64, f64);
    let summary: Vec<Summary> = tokens
        .iter()
        .map(|p| (p.attributes.clone(), p.count, p.sum))
        .collect();
    assert_eq!(
        summary,
        [
            (
                attrs(&[
                    ("gen_ai.agent.name", "coder"),
                    ("gen_ai.token.type", "input")
                ]),
                2,
                3500.0
            ),
            (
                attrs(&[
                    ("gen_ai.agent.name", "coder"),
                    ("gen_ai.token.type", "output")
                ]),
                2,
                350.0
            ),
            (
                attrs(&[
                    ("gen_ai.agent.name", "reviewer"),
                    ("gen_ai.token.type", "input")
                ]),
                1,
                300.0
            ),
            (
                attrs(&[
                    ("gen_ai.agent.name", "reviewer"),
                    ("gen_ai.token.type", "output")
                ]),
                1,
                30.0
            ),
        ]
    );
    // The GenAI conventions' buckets: 3000 and 500 input tokens of the coder fall in
    // (1024, 4096] and (256, 1024].
    let coder_input = &tokens[0];
    assert_eq!(
        coder_input.bounds,
        [
            1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
            4194304.0, 16777216.0, 67108864.0
        ]
    );
    assert_eq!(coder_input.bucket_counts[5], 1);
    assert_eq!(coder_input.bucket_counts[6], 1);

    // gen_ai.client.token.usage (opt-in): per call.
    let usage = h.metrics.histogram("gen_ai.client.token.usage");
    let gpt4o_input = usage
        .iter()
        .find(|p| {
            p.attributes
                == attrs(&[
                    ("gen_ai.operation.name", "chat"),
                    ("gen_ai.provider.name", "openai"),
                    ("gen_ai.request.model", "gpt-4o"),
                    ("gen_ai.token.type", "input"),
                ])
        })
        .expect("gpt-4o input tokens");
    assert_eq!((gpt4o_input.count, gpt4o_input.sum), (3, 3300.0));
    assert_eq!(usage.len(), 4, "{usage:?}");
}

#[test]
fn no_token_usage_histogram_unless_asked() {
    let h = Harness::new();
    h.replay(&two_agents_three_invocations());
    assert!(h.metrics.histogram("gen_ai.client.token.usage").is_empty());
    assert_eq!(h.metrics.histogram("genai_audit.invocation.cost").len(), 2);
}

#[test]
fn model_names_are_bounded() {
    let h = Harness::new();
    let tracer = h.tracer();
    for i in 0..1500 {
        let mut span = tracer
            .span_builder(format!("chat model-{i}"))
            .with_attributes(vec![
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.request.model", format!("model-{i}")),
                KeyValue::new("gen_ai.usage.input_tokens", 10),
                KeyValue::new("gen_ai.usage.cost", 0.001),
            ])
            .start(&tracer);
        span.end();
    }
    let cost = h.metrics.points("genai_audit.cost");
    assert_eq!(cost.len(), 1001);
    let model = |p: &common::Point| {
        p.0.iter()
            .find(|(k, _)| k == "gen_ai.request.model")
            .map(|(_, v)| v.clone())
    };
    let other: Vec<_> = cost
        .iter()
        .filter(|p| model(p).as_deref() == Some("_other"))
        .collect();
    assert_eq!(other.len(), 1);
    assert!((other[0].1 - 0.5).abs() < 1e-9, "{}", other[0].1);
    // A smaller bound, set in the builder.
    let h = Harness::with(|b| b.with_metric_cardinality_limit(3));
    let tracer = h.tracer();
    for i in 0..10 {
        let mut span = tracer
            .span_builder("chat")
            .with_attributes(vec![
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.request.model", format!("model-{i}")),
                KeyValue::new("gen_ai.usage.cost", 0.001),
            ])
            .start(&tracer);
        span.end();
    }
    assert_eq!(h.metrics.points("genai_audit.cost").len(), 4);
}

fn recorder() -> (
    Arc<Mutex<Vec<BudgetExceeded>>>,
    impl Fn(&BudgetExceeded) + Send + Sync,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |e: &BudgetExceeded| {
        sink.lock().expect("lock").push(e.clone())
    })
}

#[test]
fn budget_passed_on_the_third_generation_of_five() {
    // Five calls of 100/10 tokens: 110, 220, 330, 440, 550 cumulative; budget 300.
    let mut lines = vec![start("inv", None, "invoke_agent coder", &agent("coder"), 0)];
    for i in 1..=5 {
        let g = format!("g{i}");
        lines.push(start(
            &g,
            Some("inv"),
            "chat gpt-4o",
            &chat("gpt-4o", 100, 10),
            10 * i,
        ));
        lines.push(end(&g, 10 * i + 5));
    }
    lines.push(end("inv", 100));
    let (seen, callback) = recorder();
    let h = Harness::with(|b| {
        b.with_budget(Budget::tokens(300))
            .on_budget_exceeded(callback)
    });
    let r = h.replay(&lines.join("\n"));
    for g in ["g1", "g2", "g4", "g5"] {
        assert!(r.findings(g).is_empty(), "{g}");
    }
    assert_eq!(r.findings("g3"), ["budget_exceeded"]);
    assert_eq!(r.findings("inv"), ["budget_exceeded"]);
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 1);
    let e = &seen[0];
    assert_eq!(e.agent_name(), Some("coder"));
    assert_eq!(
        (e.input_tokens(), e.output_tokens(), e.generations()),
        (300, 30, 3)
    );
    assert_eq!(e.invocation_span_id(), r.span("inv").span_context.span_id());
    assert_eq!(e.trace_id(), r.span("inv").span_context.trace_id());
    let cost = r.f64("g3", "genai_audit.cumulative.cost_usd");
    assert!((e.cost_usd() - cost).abs() < 1e-15);
    assert_eq!(e.budget(), &Budget::tokens(300));
    assert_eq!(
        h.finding_counts(),
        expect_counts(&[
            ("budget_exceeded", "generation", false, 1),
            ("budget_exceeded", "invocation", false, 1),
        ])
    );
}

#[test]
fn a_cost_budget_and_an_invocation_known_only_at_end() {
    // Recognised only at its end: no cumulative totals, checked at the end.
    let text = [
        r#"{"op":"start","span":"inv","parent":null,"name":"agent","time_ns":1800000000000000000}"#.to_owned(),
        start("g1", Some("inv"), "model call", "", 1),
        r#"{"op":"set","span":"g1","attributes":{"gen_ai.operation.name":"chat","gen_ai.provider.name":"openai","gen_ai.request.model":"gpt-4o","gen_ai.usage.input_tokens":100000,"gen_ai.usage.output_tokens":1000}}"#.to_owned(),
        end("g1", 2),
        r#"{"op":"set","span":"inv","attributes":{"gen_ai.operation.name":"invoke_agent","gen_ai.agent.name":"coder"}}"#.to_owned(),
        end("inv", 3),
    ]
    .join("\n");
    let (seen, callback) = recorder();
    let h = Harness::with(|b| {
        b.with_budget(Budget::usd(0.01))
            .on_budget_exceeded(callback)
    });
    let r = h.replay(&text);
    assert!(r.findings("g1").is_empty());
    assert_eq!(r.findings("inv"), ["budget_exceeded"]);
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].agent_name(), Some("coder"));
    assert!(seen[0].cost_usd() > 0.01);
}

#[test]
fn concurrent_invocations_each_with_its_budget() {
    // Agent k's invocation makes k+1 calls of 100/0 tokens; agent k's budget is 250
    // tokens for even k, 10 000 for odd k. Over budget: agents 2, 4, 6 (300, 500, 700
    // tokens) — agent 0 (100) is under.
    let (seen, callback) = recorder();
    let h = Harness::with(|mut b| {
        for k in 0..8 {
            let limit = if k % 2 == 0 { 250 } else { 10_000 };
            b = b.with_budget(Budget::tokens(limit).for_agent(format!("agent-{k}")));
        }
        b.on_budget_exceeded(callback)
    });
    let calls = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for k in 0..8u64 {
            let tracer = h.tracer();
            let calls = calls.clone();
            scope.spawn(move || {
                let inv = tracer
                    .span_builder("invoke_agent")
                    .with_attributes(vec![
                        KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                        KeyValue::new("gen_ai.agent.name", format!("agent-{k}")),
                    ])
                    .start(&tracer);
                let cx = Context::current_with_span(inv);
                for _ in 0..=k {
                    generation(&tracer, &cx, 100);
                    calls.fetch_add(1, Ordering::Relaxed);
                }
                cx.span().end();
            });
        }
    });
    assert_eq!(calls.load(Ordering::Relaxed), 36);
    let mut agents: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|e| e.agent_name().unwrap_or_default().to_owned())
        .collect();
    agents.sort();
    assert_eq!(agents, ["agent-2", "agent-4", "agent-6"]);
    assert_eq!(
        h.finding_counts(),
        expect_counts(&[
            ("budget_exceeded", "generation", false, 3),
            ("budget_exceeded", "invocation", false, 3),
        ])
    );
}

#[test]
fn a_panicking_callback_does_not_take_the_processor_down() {
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    let h = Harness::with(|b| {
        b.with_budget(Budget::tokens(1))
            .on_budget_exceeded(move |_| {
                count.fetch_add(1, Ordering::Relaxed);
                panic!("the application's callback fails");
            })
    });
    let mut lines = Vec::new();
    for run in 0..3u64 {
        invocation_with_one_call(&mut lines, run, "invoke_agent coder", "coder", 100 * run);
    }
    let r = h.replay(&lines.join("\n"));
    for run in 0..3 {
        assert_eq!(r.findings(&format!("g{run}")), ["budget_exceeded"]);
        assert_eq!(r.findings(&format!("inv{run}")), ["budget_exceeded"]);
    }
    // Called once per invocation, each time caught; every span still exported.
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(h.exporter.get_finished_spans().expect("spans").len(), 6);
}

#[test]
fn invalid_budgets_are_ignored() {
    let (seen, callback) = recorder();
    let h = Harness::with(|b| {
        b.with_budget(Budget::usd(-1.0))
            .with_budget(Budget::usd(f64::NAN))
            .with_budget(Budget::tokens(0))
            .on_budget_exceeded(callback)
    });
    let r = h.replay(&two_agents_three_invocations());
    r.assert_no_findings();
    assert!(seen.lock().expect("lock").is_empty());
}

#[test]
fn the_budget_example_stops_its_agent() {
    let output = common::run_example("budget", &[], &[], None);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Calls cost 0.0065, 0.010250, 0.0140, 0.017750 USD (gpt-4o, 2 000 + 1 500 n input
    // and 300 output tokens): the fourth passes $0.05, and no fifth round starts.
    assert!(
        stdout.starts_with("budget $0.05 passed at $0.0695 after 4 calls (24200 tokens)"),
        "{stdout}"
    );
    assert!(stdout.contains("stopped after round 4 of 50"), "{stdout}");
}

#[test]
fn the_callback_runs_on_the_ending_thread_and_holds_no_lock() {
    // The callback records its thread and, to prove no lock of the processor is held,
    // starts and ends a span of its own through the same processor (a held lock would
    // deadlock here).
    let provider_slot: Arc<Mutex<Option<opentelemetry_sdk::trace::SdkTracer>>> =
        Arc::new(Mutex::new(None));
    let threads = Arc::new(Mutex::new(Vec::new()));
    let (slot, seen) = (provider_slot.clone(), threads.clone());
    let h = Harness::with(|b| {
        b.with_budget(Budget::tokens(1))
            .on_budget_exceeded(move |_| {
                seen.lock().expect("lock").push(std::thread::current().id());
                if let Some(tracer) = slot.lock().expect("lock").as_ref() {
                    tracer.start("invoke_agent from the callback").end();
                }
            })
    });
    *provider_slot.lock().expect("lock") = Some(h.tracer());
    let tracer = h.tracer();
    let ender = std::thread::spawn(move || {
        let cx = Context::current_with_span(tracer.start("invoke_agent coder"));
        generation(&tracer, &cx, 5);
        cx.span().end();
        std::thread::current().id()
    })
    .join()
    .expect("the agent thread");
    assert_eq!(*threads.lock().expect("lock"), [ender]);
    let names: Vec<String> = h
        .exporter
        .get_finished_spans()
        .expect("spans")
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert!(
        names.contains(&"invoke_agent from the callback".to_owned()),
        "{names:?}"
    );
}

#[test]
fn agent_names_are_bounded_and_every_instrument_is_in_the_crates_scope() {
    let h = Harness::with(|b| b.with_metric_cardinality_limit(2));
    let mut lines = Vec::new();
    for i in 0..5u64 {
        invocation_with_one_call(&mut lines, i, "invoke_agent", &format!("agent-{i}"), 10 * i);
    }
    h.replay(&lines.join("\n"));
    let agents: Vec<String> = h
        .metrics
        .histogram("genai_audit.invocation.cost")
        .iter()
        .map(|p| common::point_attr(&p.attributes, "gen_ai.agent.name"))
        .collect();
    assert_eq!(agents, ["_other", "agent-0", "agent-1"]);
    let other = &h.metrics.histogram("genai_audit.invocation.cost")[0];
    assert_eq!(other.count, 3);
    assert_eq!(
        h.metric_scopes(),
        vec![(
            "genai-audit".to_string(),
            Some(env!("CARGO_PKG_VERSION").to_string())
        )]
    );
}

/// Script lines of invocation `inv{n}` (span `name`, agent `agent`) with one `gpt-4o`
/// call `g{n}` of 10 input and 1 output tokens, from `ms` to `ms + 3`.
fn invocation_with_one_call(
    lines: &mut Vec<String>,
    n: u64,
    name: &str,
    agent_name: &str,
    ms: u64,
) {
    let (inv, g) = (format!("inv{n}"), format!("g{n}"));
    lines.push(start(&inv, None, name, &agent(agent_name), ms));
    lines.push(start(
        &g,
        Some(&inv),
        "chat gpt-4o",
        &chat("gpt-4o", 10, 1),
        ms + 1,
    ));
    lines.push(end(&g, ms + 2));
    lines.push(end(&inv, ms + 3));
}

/// A generation under `cx` that used `input_tokens`, started and ended.
fn generation(tracer: &opentelemetry_sdk::trace::SdkTracer, cx: &Context, input_tokens: i64) {
    tracer
        .span_builder("chat m")
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.usage.input_tokens", input_tokens),
        ])
        .start_with_context(tracer, cx)
        .end();
}

/// One invocation of agent `coder` with one priced call of `openai`/`model`.
fn coder_call(h: &Harness, model: &str, cost: f64) {
    let tracer = h.tracer();
    let invocation = tracer
        .span_builder("invoke_agent coder")
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "coder"),
        ])
        .start(&tracer);
    let cx = Context::new().with_span(invocation);
    openai_call(
        &tracer,
        &cx,
        model,
        KeyValue::new("gen_ai.usage.cost", cost),
    );
    cx.span().end();
}

/// A call of `openai`/`model` under `cx` with one more attribute, started and ended.
fn openai_call(
    tracer: &opentelemetry_sdk::trace::SdkTracer,
    cx: &Context,
    model: &str,
    more: KeyValue,
) {
    tracer
        .span_builder(format!("chat {model}"))
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.request.model", model.to_owned()),
            more,
        ])
        .start_with_context(tracer, cx)
        .end();
}

/// Repeated calls reuse the cost attributes a thread recorded last; two processors on
/// one thread each keep their own names and bounds (the second one's model set is full,
/// so the model it records is `_other`, whatever the first one recorded).
#[test]
fn repeated_cost_attributes_stay_exact_across_processors() {
    let first = Harness::new();
    let second = Harness::with(|b| b.with_metric_cardinality_limit(1));
    coder_call(&second, "warm-up", 0.5);
    for (model, cost) in [("gpt-4o", 0.001), ("gpt-4o", 0.002), ("gpt-4o-mini", 0.004)] {
        coder_call(&first, model, cost);
    }
    coder_call(&second, "gpt-4o", 0.008);
    coder_call(&first, "gpt-4o", 0.016);
    let summary = |h: &Harness| -> Vec<(String, String, String, f64)> {
        h.metrics
            .points("genai_audit.cost")
            .into_iter()
            .map(|(attrs, sum)| {
                let get = |k: &str| common::point_attr(&attrs, k);
                let sum = (sum * 1e6).round() / 1e6;
                (
                    get("gen_ai.provider.name"),
                    get("gen_ai.request.model"),
                    get("gen_ai.agent.name"),
                    sum,
                )
            })
            .collect()
    };
    let s = |v: &str| v.to_owned();
    assert_eq!(
        summary(&first),
        vec![
            (s("openai"), s("gpt-4o"), s("coder"), 0.019),
            (s("openai"), s("gpt-4o-mini"), s("coder"), 0.004),
        ]
    );
    assert_eq!(
        summary(&second),
        vec![
            (s("openai"), s("_other"), s("coder"), 0.008),
            (s("openai"), s("warm-up"), s("coder"), 0.5),
        ]
    );
}

/// Model and provider names take a place in the bounded sets only when something is
/// recorded with them: unpriced calls, with the token-usage histogram off, leave the
/// places to the priced ones.
#[test]
fn unrecorded_names_take_no_place_in_the_bounds() {
    let h = Harness::with(|b| b.with_metric_cardinality_limit(2));
    for model in ["private-a", "private-b", "private-c"] {
        coder_call_unpriced(&h, model);
    }
    coder_call(&h, "gpt-4o", 0.001);
    coder_call(&h, "gpt-4o-mini", 0.002);
    let models: Vec<String> = h
        .metrics
        .points("genai_audit.cost")
        .iter()
        .map(|(attrs, _)| common::point_attr(attrs, "gen_ai.request.model"))
        .collect();
    assert_eq!(models, ["gpt-4o", "gpt-4o-mini"]);
}

/// A call of a model no price covers, with no reported cost.
fn coder_call_unpriced(h: &Harness, model: &str) {
    let more = KeyValue::new("gen_ai.usage.input_tokens", 10);
    openai_call(&h.tracer(), &Context::new(), model, more);
}
