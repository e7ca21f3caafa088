//! Usage edge cases (the design contract (DESIGN.md) §3) and cost edge cases (the design contract (DESIGN.md) §4), through a real
//! tracer provider.

use crate::common;

use common::{direct_price, findings_of, value, Harness};
use genai_audit::{CostAttributes, ModelPrice};
use opentelemetry::trace::{Span, TraceContextExt, Tracer};
use opentelemetry::{KeyValue, Value};
use std::time::{Duration, UNIX_EPOCH};

const T: u64 = 1_760_000_000_000_000_000;

/// One invocation with one generation per attribute set, through the tracing API.
fn run(h: &Harness, generations: &[Vec<KeyValue>]) -> Vec<opentelemetry_sdk::trace::SpanData> {
    let tracer = h.tracer();
    let start = UNIX_EPOCH + Duration::from_nanos(T);
    let inv = tracer
        .span_builder("invoke_agent a")
        .with_start_time(start)
        .with_attributes([KeyValue::new("gen_ai.operation.name", "invoke_agent")])
        .start(&tracer);
    let cx = opentelemetry::Context::new().with_span(inv);
    for (i, attrs) in generations.iter().enumerate() {
        let mut g = tracer
            .span_builder(format!("chat {i}"))
            .with_start_time(start + Duration::from_nanos(1 + i as u64))
            .with_attributes([KeyValue::new("gen_ai.operation.name", "chat")])
            .start_with_context(&tracer, &cx);
        for kv in attrs {
            g.set_attribute(kv.clone());
        }
        g.end();
    }
    cx.span().end();
    h.exporter.get_finished_spans().unwrap()
}

fn by_name<'a>(
    spans: &'a [opentelemetry_sdk::trace::SpanData],
    name: &str,
) -> &'a opentelemetry_sdk::trace::SpanData {
    spans.iter().find(|s| s.name == name).unwrap()
}

fn model(m: &'static str, provider: &'static str) -> [KeyValue; 2] {
    [
        KeyValue::new("gen_ai.request.model", m),
        KeyValue::new("gen_ai.provider.name", provider),
    ]
}

#[test]
fn exclusive_cache_and_reasoning_counts_are_normalised() {
    let h = Harness::new();
    let mut attrs = model("claude-sonnet-4-5", "anthropic").to_vec();
    attrs.extend([
        KeyValue::new("gen_ai.usage.input_tokens", 10),
        KeyValue::new("gen_ai.usage.cache_read.input_tokens", 1000),
        KeyValue::new("gen_ai.usage.cache_creation.input_tokens", 200),
        KeyValue::new("gen_ai.usage.output_tokens", 5),
        KeyValue::new("gen_ai.usage.reasoning.output_tokens", 50),
    ]);
    let spans = run(&h, &[attrs]);
    let g = by_name(&spans, "chat 0");
    assert_eq!(
        value(g, "genai_audit.usage.cache_exclusive"),
        Some(Value::Bool(true))
    );
    assert_eq!(
        value(g, "genai_audit.usage.reasoning_exclusive"),
        Some(Value::Bool(true))
    );
    assert_eq!(
        value(g, "genai_audit.cumulative.input_tokens"),
        Some(Value::I64(1210))
    );
    assert_eq!(
        value(g, "genai_audit.cumulative.output_tokens"),
        Some(Value::I64(55))
    );
    assert_eq!(
        value(g, "genai_audit.cumulative.cache_read_tokens"),
        Some(Value::I64(1000))
    );
    assert_eq!(
        value(g, "genai_audit.cumulative.cache_write_tokens"),
        Some(Value::I64(200))
    );
    assert_eq!(
        value(g, "genai_audit.cumulative.reasoning_tokens"),
        Some(Value::I64(50))
    );
    // The span's own usage keys are left as reported.
    assert_eq!(value(g, "gen_ai.usage.input_tokens"), Some(Value::I64(10)));
    let inv = by_name(&spans, "invoke_agent a");
    assert_eq!(
        value(inv, "genai_audit.total.input_tokens"),
        Some(Value::I64(1210))
    );
    assert!(findings_of(g).is_empty());
}

#[test]
fn string_float_and_deprecated_values_are_read() {
    let h = Harness::new();
    let spans = run(
        &h,
        &[
            vec![
                KeyValue::new("gen_ai.usage.input_tokens", "154"),
                KeyValue::new("gen_ai.usage.output_tokens", 20.0),
            ],
            vec![
                KeyValue::new("gen_ai.usage.prompt_tokens", 46),
                KeyValue::new("gen_ai.usage.completion_tokens", "30.0"),
            ],
            // The SDK keeps duplicate keys: the last value wins.
            vec![
                KeyValue::new("gen_ai.usage.input_tokens", 1),
                KeyValue::new("gen_ai.usage.input_tokens", "100"),
            ],
        ],
    );
    let inv = by_name(&spans, "invoke_agent a");
    assert_eq!(
        value(inv, "genai_audit.total.input_tokens"),
        Some(Value::I64(300))
    );
    assert_eq!(
        value(inv, "genai_audit.total.output_tokens"),
        Some(Value::I64(50))
    );
    assert_eq!(
        value(inv, "genai_audit.total.generations"),
        Some(Value::I64(3))
    );
    for s in &spans {
        assert!(findings_of(s).is_empty());
    }
}

#[test]
fn unusable_values_give_invalid_usage_and_are_counted() {
    let h = Harness::new();
    let bad = [
        Value::I64(-5),
        Value::F64(f64::NAN),
        Value::F64(1.5),
        Value::from("abc"),
        Value::I64(9_007_199_254_740_993), // 2^53 + 1
        Value::Bool(true),
    ];
    let generations: Vec<Vec<KeyValue>> = bad
        .iter()
        .map(|v| {
            let mut a = model("gpt-4o", "openai").to_vec();
            a.push(KeyValue::new("gen_ai.usage.input_tokens", v.clone()));
            a.push(KeyValue::new("gen_ai.usage.output_tokens", 10));
            a
        })
        .collect();
    let spans = run(&h, &generations);
    for (i, v) in bad.iter().enumerate() {
        let g = by_name(&spans, &format!("chat {i}"));
        assert_eq!(findings_of(g), vec!["invalid_usage"], "{v:?}");
        // A call with unusable usage is not priced (never a made-up cost).
        assert_eq!(
            value(g, "genai_audit.cost.unpriced"),
            Some(Value::Bool(true))
        );
        assert!(value(g, "genai_audit.cost_usd").is_none());
    }
    let inv = by_name(&spans, "invoke_agent a");
    // The unusable input counts as absent; the valid output still rolls up.
    assert_eq!(
        value(inv, "genai_audit.total.input_tokens"),
        Some(Value::I64(0))
    );
    assert_eq!(
        value(inv, "genai_audit.total.output_tokens"),
        Some(Value::I64(60))
    );
    assert_eq!(
        value(inv, "genai_audit.total.partial"),
        Some(Value::Bool(true))
    );
    assert!(findings_of(inv).is_empty());

    let points = h.metric("genai_audit.findings");
    assert_eq!(
        points,
        vec![(
            vec![
                (
                    "genai_audit.finding".to_string(),
                    "invalid_usage".to_string()
                ),
                ("genai_audit.repaired".to_string(), "false".to_string()),
                ("genai_audit.role".to_string(), "generation".to_string()),
            ],
            bad.len() as f64
        )]
    );
}

#[test]
fn unknown_model_is_unpriced_and_totals_are_partial() {
    let h = Harness::new();
    let mut known = model("gpt-4o", "openai").to_vec();
    known.extend([
        KeyValue::new("gen_ai.usage.input_tokens", 100),
        KeyValue::new("gen_ai.usage.output_tokens", 10),
    ]);
    let mut unknown = model("qwen-turbo", "dashscope").to_vec();
    unknown.extend([
        KeyValue::new("gen_ai.usage.input_tokens", 7),
        KeyValue::new("gen_ai.usage.output_tokens", 3),
    ]);
    let spans = run(&h, &[known, unknown]);
    let u = by_name(&spans, "chat 1");
    assert_eq!(
        value(u, "genai_audit.cost.unpriced"),
        Some(Value::Bool(true))
    );
    assert!(value(u, "genai_audit.cost_usd").is_none());
    assert!(value(u, "gen_ai.usage.cost").is_none(), "never priced at 0");
    assert!(value(u, "genai_audit.cost.model").is_none());
    let inv = by_name(&spans, "invoke_agent a");
    let p = direct_price(Some("openai"), "gpt-4o", 100, 10, T + 1);
    assert_eq!(
        value(inv, "genai_audit.total.cost_usd"),
        Some(Value::F64(p))
    );
    assert_eq!(
        value(inv, "genai_audit.total.partial"),
        Some(Value::Bool(true))
    );
    assert_eq!(
        value(inv, "genai_audit.total.input_tokens"),
        Some(Value::I64(107))
    );
    assert_eq!(
        value(u, "genai_audit.cumulative.cost_usd"),
        Some(Value::F64(p))
    );
    // Only unpriced calls: no cost total at all, and partial.
    let h = Harness::new();
    let mut only = model("my-private-model", "acme").to_vec();
    only.push(KeyValue::new("gen_ai.usage.input_tokens", 5));
    let spans = run(&h, &[only]);
    let inv = by_name(&spans, "invoke_agent a");
    assert!(value(inv, "genai_audit.total.cost_usd").is_none());
    assert_eq!(
        value(inv, "genai_audit.total.partial"),
        Some(Value::Bool(true))
    );
}

#[test]
fn reported_cost_is_used_as_is() {
    let h = Harness::new();
    let with_usage = |extra: Vec<KeyValue>| {
        let mut a = model("gpt-4o", "openai").to_vec();
        a.extend([
            KeyValue::new("gen_ai.usage.input_tokens", 100),
            KeyValue::new("gen_ai.usage.output_tokens", 10),
        ]);
        a.extend(extra);
        a
    };
    let spans = run(
        &h,
        &[
            with_usage(vec![KeyValue::new("gen_ai.usage.cost", 0.25)]),
            with_usage(vec![
                KeyValue::new("gen_ai.usage.cost.amount", 0.5),
                KeyValue::new("gen_ai.usage.cost.currency", "USD"),
            ]),
            with_usage(vec![KeyValue::new("llm.cost.total", 0.125)]),
            // A cost in another currency is not a USD cost: computed instead.
            with_usage(vec![
                KeyValue::new("gen_ai.usage.cost.amount", 9.0),
                KeyValue::new("gen_ai.usage.cost.currency", "EUR"),
            ]),
        ],
    );
    let check = |name: &str, cost: f64, source: &str| {
        let g = by_name(&spans, name);
        assert_eq!(
            value(g, "genai_audit.cost_usd"),
            Some(Value::F64(cost)),
            "{name}"
        );
        assert_eq!(
            value(g, "genai_audit.cost.source"),
            Some(Value::from(source.to_string())),
            "{name}"
        );
    };
    check("chat 0", 0.25, "reported");
    check("chat 1", 0.5, "reported");
    check("chat 2", 0.125, "reported");
    let computed = direct_price(Some("openai"), "gpt-4o", 100, 10, T + 4);
    check("chat 3", computed, "computed");
    // gen_ai.usage.cost is added only where the span has none.
    assert_eq!(
        value(by_name(&spans, "chat 0"), "gen_ai.usage.cost"),
        Some(Value::F64(0.25))
    );
    assert_eq!(
        value(by_name(&spans, "chat 2"), "gen_ai.usage.cost"),
        Some(Value::F64(0.125))
    );
    assert!(value(by_name(&spans, "chat 1"), "genai_audit.cost.model").is_none());
    let inv = by_name(&spans, "invoke_agent a");
    assert_eq!(
        value(inv, "genai_audit.total.cost_usd"),
        Some(Value::F64(0.25 + 0.5 + 0.125 + computed))
    );
}

#[test]
fn provider_names_are_mapped_to_price_data_ids() {
    let h = Harness::new();
    let call = |m: &'static str, p: &'static str| {
        let mut a = model(m, p).to_vec();
        a.extend([
            KeyValue::new("gen_ai.usage.input_tokens", 1000),
            KeyValue::new("gen_ai.usage.output_tokens", 100),
        ]);
        a
    };
    let spans = run(
        &h,
        &[
            call("anthropic.claude-3-5-sonnet-20240620-v1:0", "aws.bedrock"),
            call("gemini-2.5-pro", "gcp.vertex_ai"),
            call("grok-4", "x_ai"),
            call("gpt-4o", "my-gateway"), // unresolvable provider: the model alone picks
        ],
    );
    let matched = |name: &str| match value(by_name(&spans, name), "genai_audit.cost.model") {
        Some(Value::String(s)) => s.to_string(),
        other => panic!("{name}: {other:?}"),
    };
    assert!(
        matched("chat 0").starts_with("aws/"),
        "{}",
        matched("chat 0")
    );
    assert_eq!(matched("chat 1"), "google/gemini-2.5-pro");
    assert!(
        matched("chat 2").starts_with("x-ai/grok-4"),
        "{}",
        matched("chat 2")
    );
    assert_eq!(matched("chat 3"), "openai/gpt-4o");
    assert_eq!(
        value(by_name(&spans, "chat 1"), "genai_audit.cost_usd"),
        Some(Value::F64(direct_price(
            Some("google"),
            "gemini-2.5-pro",
            1000,
            100,
            T + 2
        )))
    );
}

#[test]
fn tiered_prices_are_applied_per_call_not_to_the_sum() {
    // claude-sonnet-4-5 charges more per token above 200k input tokens in one call.
    let (input, output) = (150_000u64, 1_000u64);
    let one = direct_price(Some("anthropic"), "claude-sonnet-4-5", input, output, T + 1);
    let two = direct_price(Some("anthropic"), "claude-sonnet-4-5", input, output, T + 2);
    let summed = direct_price(
        Some("anthropic"),
        "claude-sonnet-4-5",
        2 * input,
        2 * output,
        T + 1,
    );
    assert!(
        (summed - (one + two)).abs() > 1e-6,
        "the model must be tiered for this test"
    );

    let h = Harness::new();
    let call = || {
        let mut a = model("claude-sonnet-4-5", "anthropic").to_vec();
        a.extend([
            KeyValue::new("gen_ai.usage.input_tokens", input as i64),
            KeyValue::new("gen_ai.usage.output_tokens", output as i64),
        ]);
        a
    };
    let spans = run(&h, &[call(), call()]);
    let inv = by_name(&spans, "invoke_agent a");
    assert_eq!(
        value(inv, "genai_audit.total.cost_usd"),
        Some(Value::F64(one + two))
    );
    assert_ne!(
        value(inv, "genai_audit.total.cost_usd"),
        Some(Value::F64(summed))
    );
}

#[test]
fn custom_model_prices_and_cost_dialects() {
    let h = Harness::with(|b| {
        b.with_model_price(None, "acme-coder", ModelPrice::per_million(2.0, 8.0))
            .with_cost_attributes(
                CostAttributes::NONE
                    .with_llm_cost_total(true)
                    .with_operation_cost(true),
            )
    });
    let mut a = model("acme-coder", "acme").to_vec();
    a.extend([
        KeyValue::new("gen_ai.usage.input_tokens", 1_000_000),
        KeyValue::new("gen_ai.usage.output_tokens", 500_000),
    ]);
    let spans = run(&h, &[a]);
    let g = by_name(&spans, "chat 0");
    assert_eq!(value(g, "genai_audit.cost_usd"), Some(Value::F64(6.0)));
    assert_eq!(
        value(g, "genai_audit.cost.model"),
        Some(Value::from("custom/acme-coder"))
    );
    assert_eq!(value(g, "llm.cost.total"), Some(Value::F64(6.0)));
    assert_eq!(value(g, "operation.cost"), Some(Value::F64(6.0)));
    assert!(value(g, "gen_ai.usage.cost").is_none(), "switched off");
}

#[test]
fn calls_are_priced_at_their_start_time() {
    // claude-sonnet-4-6 charged a long-context rate above 200k input tokens until
    // 2026-03-13 and a flat rate since: the same call costs less after that date.
    const FEB_2026: u64 = 1_770_000_000_000_000_000; // 2026-02-02
    const JUN_2026: u64 = 1_781_000_000_000_000_000; // 2026-06-09
    let before = direct_price(
        Some("anthropic"),
        "claude-sonnet-4-6",
        300_000,
        100,
        FEB_2026,
    );
    let after = direct_price(
        Some("anthropic"),
        "claude-sonnet-4-6",
        300_000,
        100,
        JUN_2026,
    );
    assert!(before > after, "the price data changed at that date");

    let h = Harness::new();
    let r = h.replay(&format!(
        r#"{{"op":"start","span":"old","parent":null,"name":"chat claude-sonnet-4-6","time_ns":{FEB_2026},"attributes":{{"gen_ai.operation.name":"chat","gen_ai.provider.name":"anthropic","gen_ai.request.model":"claude-sonnet-4-6","gen_ai.usage.input_tokens":300000,"gen_ai.usage.output_tokens":100}}}}
{{"op":"start","span":"new","parent":null,"name":"chat claude-sonnet-4-6","time_ns":{JUN_2026},"attributes":{{"gen_ai.operation.name":"chat","gen_ai.provider.name":"anthropic","gen_ai.request.model":"claude-sonnet-4-6","gen_ai.usage.input_tokens":300000,"gen_ai.usage.output_tokens":100}}}}
{{"op":"end","span":"new","time_ns":{}}}
{{"op":"end","span":"old","time_ns":{}}}
"#,
        JUN_2026 + 1,
        JUN_2026 + 2
    ));
    assert_eq!(r.f64("old", "genai_audit.cost_usd"), before);
    assert_eq!(r.f64("new", "genai_audit.cost_usd"), after);
}

/// A Strands agent's default model: `gen_ai.system = strands-agents` (no such provider
/// in the price data) and a Bedrock cross-region id, priced as the aws model it names;
/// a Vertex resource name and a `provider/model` id likewise; a fake id stays unpriced.
#[test]
fn model_ids_that_name_their_provider_are_priced() {
    let h = Harness::new();
    let gen = |m: &'static str, system: &'static str| {
        vec![
            KeyValue::new("gen_ai.request.model", m),
            KeyValue::new("gen_ai.system", system),
            KeyValue::new("gen_ai.usage.input_tokens", 1056),
            KeyValue::new("gen_ai.usage.output_tokens", 170),
        ]
    };
    let spans = run(
        &h,
        &[
            gen(
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "strands-agents",
            ),
            gen("publishers/google/models/gemini-2.5-flash", "my-framework"),
            gen("openai/gpt-4o-mini", "litellm"),
            gen("us.anthropic.fake-model-v1:0", "strands-agents"),
        ],
    );
    for (name, provider, request_model, matched) in [
        (
            "chat 0",
            "aws",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        (
            "chat 1",
            "google",
            "gemini-2.5-flash",
            "google/gemini-2.5-flash",
        ),
        ("chat 2", "openai", "gpt-4o-mini", "openai/gpt-4o-mini"),
    ] {
        let g = by_name(&spans, name);
        let start_ns = T + name[5..].parse::<u64>().unwrap() + 1;
        assert_eq!(
            value(g, "genai_audit.cost_usd"),
            Some(Value::F64(direct_price(
                Some(provider),
                request_model,
                1056,
                170,
                start_ns
            ))),
            "{name}"
        );
        assert_eq!(
            value(g, "genai_audit.cost.model"),
            Some(Value::String(matched.into())),
            "{name}"
        );
    }
    // 1056 × $3.30 + 170 × $16.50 per million tokens.
    let sonnet = common::f64_of(by_name(&spans, "chat 0"), "genai_audit.cost_usd");
    assert!((sonnet - 0.0062898).abs() < 1e-12, "{sonnet}");
    let fake = by_name(&spans, "chat 3");
    assert_eq!(
        value(fake, "genai_audit.cost.unpriced"),
        Some(Value::Bool(true))
    );
    assert_eq!(value(fake, "genai_audit.cost_usd"), None);
}
