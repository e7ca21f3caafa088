//! A clean coding-agent turn: one invocation, one step, three generations on a model
//! the price data knows, two `read` tool calls and one `webfetch` between them.

use crate::common;

use common::{direct_price, Harness};

const T: u64 = 1_760_000_000_000_000_000; // 2025-10-09, claude-sonnet-4-5 is priced

fn script() -> String {
    let lines = [
        format!(r#"{{"op":"start","span":"inv","parent":null,"name":"invoke_agent coder","time_ns":{},"attributes":{{"gen_ai.operation.name":"invoke_agent","gen_ai.agent.name":"coder","gen_ai.conversation.id":"c1"}}}}"#, T),
        format!(r#"{{"op":"start","span":"step","parent":"inv","name":"react step","time_ns":{},"attributes":{{"gen_ai.operation.name":"react","gen_ai.react.round":1}}}}"#, T + 1),
        format!(r#"{{"op":"start","span":"llm1","parent":"step","name":"chat claude-sonnet-4-5","kind":"client","time_ns":{},"attributes":{{"gen_ai.operation.name":"chat","gen_ai.provider.name":"anthropic","gen_ai.request.model":"claude-sonnet-4-5"}}}}"#, T + 2),
        r#"{"op":"set","span":"llm1","attributes":{"gen_ai.usage.input_tokens":1056,"gen_ai.usage.output_tokens":170,"gen_ai.response.id":"r1"}}"#.to_string(),
        format!(r#"{{"op":"end","span":"llm1","time_ns":{}}}"#, T + 3),
        format!(r#"{{"op":"start","span":"read1","parent":"step","name":"execute_tool read","time_ns":{},"attributes":{{"gen_ai.operation.name":"execute_tool","gen_ai.tool.name":"read"}}}}"#, T + 4),
        format!(r#"{{"op":"end","span":"read1","time_ns":{}}}"#, T + 5),
        format!(r#"{{"op":"start","span":"llm2","parent":"step","name":"chat claude-sonnet-4-5","kind":"client","time_ns":{},"attributes":{{"gen_ai.operation.name":"chat","gen_ai.provider.name":"anthropic","gen_ai.request.model":"claude-sonnet-4-5"}}}}"#, T + 6),
        r#"{"op":"set","span":"llm2","attributes":{"gen_ai.usage.input_tokens":581,"gen_ai.usage.output_tokens":253,"gen_ai.response.id":"r2"}}"#.to_string(),
        format!(r#"{{"op":"end","span":"llm2","time_ns":{}}}"#, T + 7),
        format!(r#"{{"op":"start","span":"read2","parent":"step","name":"execute_tool read","time_ns":{},"attributes":{{"gen_ai.operation.name":"execute_tool","gen_ai.tool.name":"read"}}}}"#, T + 8),
        format!(r#"{{"op":"end","span":"read2","time_ns":{}}}"#, T + 9),
        format!(r#"{{"op":"start","span":"fetch","parent":"step","name":"execute_tool webfetch","time_ns":{},"attributes":{{"gen_ai.operation.name":"execute_tool","gen_ai.tool.name":"webfetch"}}}}"#, T + 10),
        format!(r#"{{"op":"end","span":"fetch","time_ns":{}}}"#, T + 11),
        format!(r#"{{"op":"start","span":"llm3","parent":"step","name":"chat claude-sonnet-4-5","kind":"client","time_ns":{},"attributes":{{"gen_ai.operation.name":"chat","gen_ai.provider.name":"anthropic","gen_ai.request.model":"claude-sonnet-4-5"}}}}"#, T + 12),
        r#"{"op":"set","span":"llm3","attributes":{"gen_ai.usage.input_tokens":680,"gen_ai.usage.output_tokens":76,"gen_ai.response.id":"r3"}}"#.to_string(),
        format!(r#"{{"op":"end","span":"llm3","time_ns":{}}}"#, T + 13),
        format!(r#"{{"op":"end","span":"step","time_ns":{}}}"#, T + 14),
        format!(r#"{{"op":"end","span":"inv","time_ns":{}}}"#, T + 15),
    ];
    lines.join("\n")
}

#[test]
fn cumulative_totals_costs_and_no_findings() {
    let h = Harness::new();
    let r = h.replay(&script());

    let p1 = direct_price(Some("anthropic"), "claude-sonnet-4-5", 1056, 170, T + 2);
    let p2 = direct_price(Some("anthropic"), "claude-sonnet-4-5", 581, 253, T + 6);
    let p3 = direct_price(Some("anthropic"), "claude-sonnet-4-5", 680, 76, T + 12);
    assert!(p1 > 0.0 && p2 > 0.0 && p3 > 0.0);

    // Per-call cost, exactly what genai-prices gives for that call.
    for (label, price) in [("llm1", p1), ("llm2", p2), ("llm3", p3)] {
        assert_eq!(r.string(label, "genai_audit.role"), "generation");
        assert_eq!(r.f64(label, "genai_audit.cost_usd"), price, "{label}");
        assert_eq!(r.f64(label, "gen_ai.usage.cost"), price, "{label}");
        assert_eq!(r.string(label, "genai_audit.cost.source"), "computed");
        assert_eq!(
            r.string(label, "genai_audit.cost.model"),
            "anthropic/claude-sonnet-4-5"
        );
        assert!(r.attr(label, "genai_audit.cost.unpriced").is_none());
    }

    // Running totals in end order.
    assert_eq!(r.i64("llm1", "genai_audit.cumulative.input_tokens"), 1056);
    assert_eq!(r.i64("llm1", "genai_audit.cumulative.output_tokens"), 170);
    assert_eq!(r.i64("llm1", "genai_audit.cumulative.generations"), 1);
    assert_eq!(r.i64("llm2", "genai_audit.cumulative.input_tokens"), 1637);
    assert_eq!(r.i64("llm2", "genai_audit.cumulative.output_tokens"), 423);
    assert_eq!(r.i64("llm3", "genai_audit.cumulative.input_tokens"), 2317);
    assert_eq!(r.i64("llm3", "genai_audit.cumulative.output_tokens"), 499);
    assert_eq!(r.i64("llm3", "genai_audit.cumulative.generations"), 3);
    assert_eq!(r.f64("llm1", "genai_audit.cumulative.cost_usd"), p1);
    assert_eq!(
        r.f64("llm3", "genai_audit.cumulative.cost_usd"),
        p1 + p2 + p3
    );

    // The invocation's and the step's totals are the same.
    for label in ["inv", "step"] {
        assert_eq!(
            r.i64(label, "genai_audit.total.input_tokens"),
            2317,
            "{label}"
        );
        assert_eq!(
            r.i64(label, "genai_audit.total.output_tokens"),
            499,
            "{label}"
        );
        assert_eq!(
            r.i64(label, "genai_audit.total.cache_read_tokens"),
            0,
            "{label}"
        );
        assert_eq!(r.i64(label, "genai_audit.total.generations"), 3, "{label}");
        assert_eq!(r.i64(label, "genai_audit.total.tool_calls"), 3, "{label}");
        assert_eq!(
            r.f64(label, "genai_audit.total.cost_usd"),
            p1 + p2 + p3,
            "{label}"
        );
        assert!(
            r.attr(label, "genai_audit.total.partial").is_none(),
            "{label}"
        );
    }
    assert_eq!(r.string("inv", "genai_audit.role"), "invocation");
    assert_eq!(r.i64("inv", "genai_audit.steps"), 1);
    assert_eq!(r.string("step", "genai_audit.role"), "step");
    assert_eq!(r.i64("step", "genai_audit.step.index"), 1);
    for tool in ["read1", "read2", "fetch"] {
        assert_eq!(r.string(tool, "genai_audit.role"), "tool");
        // A tool without descendant calls carries no totals.
        assert!(r.attr(tool, "genai_audit.total.tool_calls").is_none());
    }

    // Rolled-up totals never go under gen_ai.usage.* on the invocation or the step.
    for label in ["inv", "step"] {
        assert!(r.attr(label, "gen_ai.usage.input_tokens").is_none());
        assert!(r.attr(label, "gen_ai.usage.cost").is_none());
    }

    r.assert_no_findings();
    r.assert_no_duplicate_keys();
    // No finding was counted either.
    assert!(h.metric("genai_audit.findings").is_empty());
}
