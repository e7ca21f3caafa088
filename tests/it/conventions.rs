//! Each convention of the design contract (DESIGN.md) §2 recognised from a small script, with usage read from
//! that convention's keys and rolled up to the invocation.

use crate::common;

use common::{direct_price, Harness};

const T: u64 = 1_760_000_000_000_000_000;

/// Replaces `@N` with T + N in a script, so the scripts stay readable.
fn at(script: &str) -> String {
    let mut out = String::new();
    let mut rest = script;
    while let Some(i) = rest.find('@') {
        out.push_str(&rest[..i]);
        let digits: String = rest[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        let n: u64 = digits.parse().unwrap();
        out.push_str(&(T + n).to_string());
        rest = &rest[i + 1 + digits.len()..];
    }
    out.push_str(rest);
    out
}

#[test]
fn opentelemetry_genai() {
    let r = Harness::new().replay(&at(r#"
{"op":"start","span":"wf","parent":null,"name":"invoke_workflow triage","time_ns":@0,"attributes":{"gen_ai.operation.name":"invoke_workflow"}}
{"op":"start","span":"inv","parent":"wf","name":"invoke_agent coder","time_ns":@1,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"plan","parent":"inv","name":"plan","time_ns":@2,"attributes":{"gen_ai.operation.name":"plan"}}
{"op":"start","span":"llm","parent":"plan","name":"chat gpt-4o","kind":"client","time_ns":@3,"attributes":{"gen_ai.operation.name":"chat","gen_ai.provider.name":"openai","gen_ai.request.model":"gpt-4o"}}
{"op":"set","span":"llm","attributes":{"gen_ai.usage.input_tokens":100,"gen_ai.usage.output_tokens":10,"gen_ai.response.model":"gpt-4o-2024-08-06"}}
{"op":"end","span":"llm","time_ns":@4}
{"op":"start","span":"emb","parent":"plan","name":"embeddings text-embedding-3-small","kind":"client","time_ns":@5,"attributes":{"gen_ai.operation.name":"embeddings","gen_ai.provider.name":"openai","gen_ai.request.model":"text-embedding-3-small","gen_ai.usage.input_tokens":1000}}
{"op":"end","span":"emb","time_ns":@6}
{"op":"start","span":"ret","parent":"plan","name":"retrieval docs","time_ns":@7,"attributes":{"gen_ai.operation.name":"retrieval"}}
{"op":"end","span":"ret","time_ns":@8}
{"op":"start","span":"tool","parent":"plan","name":"execute_tool grep","time_ns":@9,"attributes":{"gen_ai.operation.name":"execute_tool"}}
{"op":"end","span":"tool","time_ns":@10}
{"op":"end","span":"plan","time_ns":@11}
{"op":"end","span":"inv","time_ns":@12}
{"op":"end","span":"wf","time_ns":@13}
"#));
    for (label, role) in [
        ("wf", "workflow"),
        ("inv", "invocation"),
        ("plan", "step"),
        ("llm", "generation"),
        ("emb", "embedding"),
        ("ret", "retrieval"),
        ("tool", "tool"),
    ] {
        assert_eq!(r.string(label, "genai_audit.role"), role, "{label}");
    }
    // The response model wins over the request model for pricing; the price data
    // matches the dated snapshot to its `gpt-4o` entry.
    assert_eq!(r.string("llm", "genai_audit.cost.model"), "openai/gpt-4o");
    assert_eq!(
        r.f64("llm", "genai_audit.cost_usd"),
        direct_price(Some("openai"), "gpt-4o-2024-08-06", 100, 10, T + 3)
    );
    // Embeddings are priced on their own span; only generations roll up (the design contract (DESIGN.md) §3).
    assert!(r.f64("emb", "genai_audit.cost_usd") > 0.0);
    for label in ["wf", "inv", "plan"] {
        assert_eq!(
            r.i64(label, "genai_audit.total.input_tokens"),
            100,
            "{label}"
        );
        assert_eq!(r.i64(label, "genai_audit.total.generations"), 1, "{label}");
        assert_eq!(r.i64(label, "genai_audit.total.tool_calls"), 1, "{label}");
    }
    assert!(r.attr("ret", "genai_audit.total.input_tokens").is_none());
    r.assert_no_findings();
}

#[test]
fn loongsuite_names_with_attributes_only_at_end() {
    let r = Harness::new().replay(&at(r#"
{"op":"start","span":"entry","parent":null,"name":"enter_ai_application_system","time_ns":@0,"attributes":{}}
{"op":"start","span":"inv","parent":"entry","name":"invoke_agent Hermes","time_ns":@1,"attributes":{}}
{"op":"start","span":"s1","parent":"inv","name":"react step","time_ns":@2,"attributes":{}}
{"op":"start","span":"llm","parent":"s1","name":"chat gpt-4o-mini","kind":"client","time_ns":@3,"attributes":{}}
{"op":"set","span":"llm","attributes":{"gen_ai.operation.name":"chat","gen_ai.span.kind":"LLM","gen_ai.provider.name":"openai","gen_ai.request.model":"gpt-4o-mini","gen_ai.usage.input_tokens":11,"gen_ai.usage.output_tokens":3}}
{"op":"end","span":"llm","time_ns":@4}
{"op":"start","span":"t","parent":"s1","name":"execute_tool read_file","time_ns":@5,"attributes":{}}
{"op":"set","span":"t","attributes":{"gen_ai.operation.name":"execute_tool","gen_ai.span.kind":"TOOL"}}
{"op":"end","span":"t","time_ns":@6}
{"op":"set","span":"s1","attributes":{"gen_ai.operation.name":"react","gen_ai.span.kind":"STEP","gen_ai.react.round":1}}
{"op":"end","span":"s1","time_ns":@7}
{"op":"set","span":"inv","attributes":{"gen_ai.operation.name":"invoke_agent","gen_ai.span.kind":"AGENT","gen_ai.usage.input_tokens":11,"gen_ai.usage.output_tokens":3}}
{"op":"end","span":"inv","time_ns":@8}
{"op":"set","span":"entry","attributes":{"gen_ai.operation.name":"enter","gen_ai.span.kind":"ENTRY"}}
{"op":"end","span":"entry","time_ns":@9}
"#));
    assert_eq!(r.string("inv", "genai_audit.role"), "invocation");
    assert_eq!(r.string("s1", "genai_audit.role"), "step");
    assert_eq!(r.string("llm", "genai_audit.role"), "generation");
    assert_eq!(r.string("t", "genai_audit.role"), "tool");
    assert!(
        r.attr("entry", "genai_audit.role").is_none(),
        "ENTRY is not a role"
    );
    assert_eq!(r.i64("inv", "genai_audit.total.input_tokens"), 11);
    assert_eq!(r.i64("inv", "genai_audit.total.output_tokens"), 3);
    assert_eq!(r.i64("s1", "genai_audit.step.index"), 1);
    assert_eq!(r.i64("llm", "genai_audit.cumulative.input_tokens"), 11);
    // The agent's own reported usage is left as reported and not added in.
    assert_eq!(r.i64("inv", "gen_ai.usage.input_tokens"), 11);
    assert!(r.f64("llm", "genai_audit.cost_usd") > 0.0);
    r.assert_no_findings();
}

#[test]
fn openinference() {
    let r = Harness::new().replay(&at(r#"
{"op":"start","span":"chain","parent":null,"name":"RunnableSequence","time_ns":@0,"attributes":{"openinference.span.kind":"CHAIN"}}
{"op":"start","span":"agent","parent":"chain","name":"AgentExecutor","time_ns":@1,"attributes":{"openinference.span.kind":"AGENT"}}
{"op":"start","span":"llm","parent":"agent","name":"ChatOpenAI","time_ns":@2,"attributes":{"openinference.span.kind":"LLM","llm.model_name":"gpt-4o","llm.provider":"openai"}}
{"op":"set","span":"llm","attributes":{"llm.token_count.prompt":200,"llm.token_count.completion":20,"llm.token_count.prompt_details.cache_read":50}}
{"op":"end","span":"llm","time_ns":@3}
{"op":"start","span":"tool","parent":"agent","name":"search","time_ns":@4,"attributes":{"openinference.span.kind":"TOOL"}}
{"op":"end","span":"tool","time_ns":@5}
{"op":"start","span":"ret","parent":"agent","name":"retriever","time_ns":@6,"attributes":{"openinference.span.kind":"RETRIEVER"}}
{"op":"start","span":"emb","parent":"ret","name":"embed","time_ns":@7,"attributes":{"openinference.span.kind":"EMBEDDING"}}
{"op":"end","span":"emb","time_ns":@8}
{"op":"end","span":"ret","time_ns":@9}
{"op":"end","span":"agent","time_ns":@10}
{"op":"end","span":"chain","time_ns":@11}
"#));
    assert_eq!(r.string("chain", "genai_audit.role"), "workflow");
    assert_eq!(r.string("agent", "genai_audit.role"), "invocation");
    assert_eq!(r.string("llm", "genai_audit.role"), "generation");
    assert_eq!(r.string("tool", "genai_audit.role"), "tool");
    assert_eq!(r.string("ret", "genai_audit.role"), "retrieval");
    assert_eq!(r.string("emb", "genai_audit.role"), "embedding");
    assert_eq!(r.i64("agent", "genai_audit.total.input_tokens"), 200);
    assert_eq!(r.i64("agent", "genai_audit.total.cache_read_tokens"), 50);
    assert_eq!(r.i64("chain", "genai_audit.total.output_tokens"), 20);
    assert_eq!(r.string("llm", "genai_audit.cost.model"), "openai/gpt-4o");
    // The embedding reports no usage: no cost, flagged unpriced, never 0.
    assert!(r.bool("emb", "genai_audit.cost.unpriced"));
    assert!(r.attr("emb", "genai_audit.cost_usd").is_none());
    r.assert_no_findings();
}

#[test]
fn openllmetry() {
    let r = Harness::new().replay(&at(r#"
{"op":"start","span":"wf","parent":null,"name":"joke_workflow.workflow","time_ns":@0,"attributes":{"traceloop.span.kind":"workflow"}}
{"op":"start","span":"agent","parent":"wf","name":"joker.agent","time_ns":@1,"attributes":{"traceloop.span.kind":"agent"}}
{"op":"start","span":"llm","parent":"agent","name":"openai.chat","kind":"client","time_ns":@2,"attributes":{"llm.request.type":"chat","gen_ai.system":"openai","gen_ai.request.model":"gpt-4o"}}
{"op":"set","span":"llm","attributes":{"gen_ai.usage.prompt_tokens":300,"gen_ai.usage.completion_tokens":30}}
{"op":"end","span":"llm","time_ns":@3}
{"op":"start","span":"tool","parent":"agent","name":"lookup.tool","time_ns":@4,"attributes":{"traceloop.span.kind":"tool"}}
{"op":"end","span":"tool","time_ns":@5}
{"op":"start","span":"task","parent":"agent","name":"format.task","time_ns":@6,"attributes":{"traceloop.span.kind":"task"}}
{"op":"end","span":"task","time_ns":@7}
{"op":"end","span":"agent","time_ns":@8}
{"op":"end","span":"wf","time_ns":@9}
"#));
    assert_eq!(r.string("wf", "genai_audit.role"), "workflow");
    assert_eq!(r.string("agent", "genai_audit.role"), "invocation");
    assert_eq!(r.string("llm", "genai_audit.role"), "generation");
    assert_eq!(r.string("tool", "genai_audit.role"), "tool");
    assert!(
        r.attr("task", "genai_audit.role").is_none(),
        "a task is not a role"
    );
    // Deprecated prompt/completion keys are read.
    assert_eq!(r.i64("agent", "genai_audit.total.input_tokens"), 300);
    assert_eq!(r.i64("wf", "genai_audit.total.output_tokens"), 30);
    assert_eq!(
        r.f64("llm", "genai_audit.cost_usd"),
        direct_price(Some("openai"), "gpt-4o", 300, 30, T + 2)
    );
    r.assert_no_findings();
}

#[test]
fn langfuse() {
    let r = Harness::new().replay(&at(r#"
{"op":"start","span":"agent","parent":null,"name":"support-agent","time_ns":@0,"attributes":{"langfuse.observation.type":"agent"}}
{"op":"start","span":"gen","parent":"agent","name":"completion","time_ns":@1,"attributes":{"langfuse.observation.type":"generation","gen_ai.request.model":"claude-sonnet-4-5","gen_ai.system":"anthropic"}}
{"op":"set","span":"gen","attributes":{"gen_ai.usage.input_tokens":400,"gen_ai.usage.output_tokens":40,"gen_ai.usage.cost":0.5}}
{"op":"end","span":"gen","time_ns":@2}
{"op":"start","span":"tool","parent":"agent","name":"kb","time_ns":@3,"attributes":{"langfuse.observation.type":"tool"}}
{"op":"end","span":"tool","time_ns":@4}
{"op":"end","span":"agent","time_ns":@5}
"#));
    assert_eq!(r.string("agent", "genai_audit.role"), "invocation");
    assert_eq!(r.string("gen", "genai_audit.role"), "generation");
    assert_eq!(r.string("tool", "genai_audit.role"), "tool");
    // The reported cost is used as is.
    assert_eq!(r.f64("gen", "genai_audit.cost_usd"), 0.5);
    assert_eq!(r.string("gen", "genai_audit.cost.source"), "reported");
    assert_eq!(r.f64("gen", "gen_ai.usage.cost"), 0.5);
    assert_eq!(r.f64("agent", "genai_audit.total.cost_usd"), 0.5);
    assert_eq!(r.i64("agent", "genai_audit.total.input_tokens"), 400);
    r.assert_no_findings();
}

#[test]
fn vercel_ai_sdk() {
    let r = Harness::new().replay(&at(r#"
{"op":"start","span":"root","parent":null,"name":"ai.generateText","time_ns":@0,"attributes":{"ai.operationId":"ai.generateText","ai.model.provider":"openai.chat","ai.model.id":"gpt-4o"}}
{"op":"start","span":"g1","parent":"root","name":"ai.generateText.doGenerate","time_ns":@1,"attributes":{"ai.operationId":"ai.generateText.doGenerate","ai.model.provider":"openai.chat","ai.model.id":"gpt-4o"}}
{"op":"set","span":"g1","attributes":{"ai.usage.inputTokens":41,"ai.usage.outputTokens":7}}
{"op":"end","span":"g1","time_ns":@2}
{"op":"start","span":"tc","parent":"root","name":"ai.toolCall","time_ns":@3,"attributes":{"ai.operationId":"ai.toolCall","ai.toolCall.name":"weather"}}
{"op":"end","span":"tc","time_ns":@4}
{"op":"start","span":"g2","parent":"root","name":"ai.generateText.doGenerate","time_ns":@5,"attributes":{"ai.operationId":"ai.generateText.doGenerate","ai.model.provider":"openai.chat","ai.model.id":"gpt-4o"}}
{"op":"set","span":"g2","attributes":{"ai.usage.promptTokens":43,"ai.usage.completionTokens":9}}
{"op":"end","span":"g2","time_ns":@6}
{"op":"set","span":"root","attributes":{"ai.usage.inputTokens":84,"ai.usage.outputTokens":16}}
{"op":"end","span":"root","time_ns":@7}
"#));
    assert_eq!(r.string("root", "genai_audit.role"), "invocation");
    assert_eq!(r.string("g1", "genai_audit.role"), "generation");
    assert_eq!(r.string("tc", "genai_audit.role"), "tool");
    assert_eq!(r.i64("root", "genai_audit.total.input_tokens"), 84);
    assert_eq!(r.i64("root", "genai_audit.total.output_tokens"), 16);
    assert_eq!(r.i64("root", "genai_audit.total.tool_calls"), 1);
    assert_eq!(r.i64("g2", "genai_audit.cumulative.input_tokens"), 84);
    // `openai.chat` maps to the price data's `openai`.
    assert_eq!(r.string("g1", "genai_audit.cost.model"), "openai/gpt-4o");
    let expected = direct_price(Some("openai"), "gpt-4o", 41, 7, T + 1)
        + direct_price(Some("openai"), "gpt-4o", 43, 9, T + 5);
    assert_eq!(r.f64("root", "genai_audit.total.cost_usd"), expected);
    r.assert_no_findings();
}

#[test]
fn user_rules_recognise_other_naming_schemes_and_win() {
    use genai_audit::{Role, RoleRule};
    let h = Harness::with(|b| {
        b.with_role_rule(RoleRule::name_prefix("agent.run", Role::Invocation))
            .with_role_rule(RoleRule::name_prefix("loop.step-", Role::Step))
            .with_role_rule(RoleRule::name_prefix("llm-call-", Role::Generation))
            // A user rule wins over the built-in `execute_tool` name rule.
            .with_role_rule(RoleRule::attribute(
                "acme.kind",
                "guardrail",
                Role::Retrieval,
            ))
    });
    let r = h.replay(
        r#"
{"op":"start","span":"inv","parent":null,"name":"agent.run","time_ns":1,"attributes":{}}
{"op":"start","span":"s1","parent":"inv","name":"loop.step-1","time_ns":2,"attributes":{}}
{"op":"start","span":"g1","parent":"s1","name":"llm-call-1","time_ns":3,"attributes":{"gen_ai.usage.input_tokens":5}}
{"op":"end","span":"g1","time_ns":4}
{"op":"end","span":"s1","time_ns":5}
{"op":"start","span":"s2","parent":"inv","name":"loop.step-2","time_ns":6,"attributes":{}}
{"op":"start","span":"g2","parent":"s2","name":"llm-call-2","time_ns":7,"attributes":{"gen_ai.usage.input_tokens":6}}
{"op":"end","span":"g2","time_ns":8}
{"op":"start","span":"x","parent":"s2","name":"execute_tool check","time_ns":9,"attributes":{"acme.kind":"guardrail"}}
{"op":"end","span":"x","time_ns":10}
{"op":"end","span":"s2","time_ns":11}
{"op":"end","span":"inv","time_ns":12}
"#,
    );
    assert_eq!(r.string("inv", "genai_audit.role"), "invocation");
    assert_eq!(r.i64("s2", "genai_audit.step.index"), 2);
    assert_eq!(r.i64("g2", "genai_audit.cumulative.input_tokens"), 11);
    assert_eq!(r.string("x", "genai_audit.role"), "retrieval");
    assert_eq!(r.i64("inv", "genai_audit.total.tool_calls"), 0);
    assert_eq!(r.i64("inv", "genai_audit.steps"), 2);
}
