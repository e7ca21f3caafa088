//! Unit tests of the built-in rules and of user rules.
use super::*;

#[test]
fn every_signal_key_is_found_by_its_length_and_first_byte() {
    for (i, key) in SIGNAL_KEYS.iter().enumerate() {
        assert_eq!(signal_index(key), Some(i), "{key}");
    }
    for other in [
        "gen_ai.usage.cost",
        "gen_ai.agent.name",
        "llm.model_name",
        "ai.model.id",
        "",
    ] {
        assert_eq!(signal_index(other), None, "{other}");
    }
}

#[test]
fn bare_operation_names_are_recognised() {
    assert_eq!(name_role("chat"), Some(Role::Generation));
    assert_eq!(name_role("chat gpt-4o"), Some(Role::Generation));
    assert_eq!(name_role("generate_content"), Some(Role::Generation));
    assert_eq!(
        name_role("embeddings text-embedding-3-small"),
        Some(Role::Embedding)
    );
    assert_eq!(name_role("embeddings"), Some(Role::Embedding));
    assert_eq!(name_role("chatbot"), None);
    assert_eq!(name_role("chat_history"), None);
    assert_eq!(name_role("embeddingsx"), None);
}

fn kv(k: &'static str, v: &'static str) -> KeyValue {
    KeyValue::new(k, v)
}

#[test]
fn operation_names() {
    for (op, role) in [
        ("invoke_agent", Role::Invocation),
        ("react", Role::Step),
        ("plan", Role::Step),
        ("agent_step", Role::Step),
        ("execute_event_loop_cycle", Role::Step),
        ("execute_agent_loop_cycle", Role::Step),
        ("chat", Role::Generation),
        ("text_completion", Role::Generation),
        ("generate_content", Role::Generation),
        ("generate_live_content", Role::Generation),
        ("completion", Role::Generation),
        ("embeddings", Role::Embedding),
        ("execute_tool", Role::Tool),
        ("invoke_workflow", Role::Workflow),
        ("retrieval", Role::Retrieval),
        ("create_agent", Role::Other),
    ] {
        assert_eq!(
            builtin_role("x", &[kv(gen_ai::OPERATION_NAME, op)]),
            role,
            "{op}"
        );
    }
}

#[test]
fn kinds_any_case() {
    assert_eq!(
        builtin_role("x", &[kv(gen_ai::SPAN_KIND, "AGENT")]),
        Role::Invocation
    );
    assert_eq!(
        builtin_role("x", &[kv(gen_ai::SPAN_KIND, "STEP")]),
        Role::Step
    );
    assert_eq!(
        builtin_role("x", &[kv(openinference::SPAN_KIND, "LLM")]),
        Role::Generation
    );
    assert_eq!(
        builtin_role("x", &[kv(openinference::SPAN_KIND, "CHAIN")]),
        Role::Workflow
    );
    assert_eq!(
        builtin_role("x", &[kv(traceloop::SPAN_KIND, "agent")]),
        Role::Invocation
    );
    assert_eq!(
        builtin_role("x", &[kv(traceloop::SPAN_KIND, "workflow")]),
        Role::Workflow
    );
    assert_eq!(
        builtin_role("x", &[kv(traceloop::SPAN_KIND, "tool")]),
        Role::Tool
    );
    assert_eq!(
        builtin_role("x", &[kv(langfuse::OBSERVATION_TYPE, "generation")]),
        Role::Generation
    );
    assert_eq!(
        builtin_role("x", &[kv(langfuse::OBSERVATION_TYPE, "agent")]),
        Role::Invocation
    );
    assert_eq!(
        builtin_role("x", &[kv(gen_ai::SPAN_KIND, "RETRIEVER")]),
        Role::Retrieval
    );
    assert_eq!(
        builtin_role("x", &[kv(gen_ai::SPAN_KIND, "EMBEDDING")]),
        Role::Embedding
    );
    assert_eq!(
        builtin_role("x", &[kv(gen_ai::SPAN_KIND, "ENTRY")]),
        Role::Other
    );
}

#[test]
fn unknown_operation_does_not_hide_other_signals() {
    let attrs = [
        kv(gen_ai::OPERATION_NAME, "enter"),
        kv(gen_ai::SPAN_KIND, "AGENT"),
    ];
    assert_eq!(builtin_role("x", &attrs), Role::Invocation);
    assert_eq!(
        builtin_role("chat gpt-4o", &[kv(gen_ai::OPERATION_NAME, "enter")]),
        Role::Generation
    );
}

#[test]
fn vercel_operation_ids() {
    for (id, role) in [
        ("ai.generateText", Role::Invocation),
        ("ai.streamText", Role::Invocation),
        ("ai.generateObject", Role::Invocation),
        ("ai.streamObject", Role::Invocation),
        ("ai.generateText.doGenerate", Role::Generation),
        ("ai.streamText.doStream", Role::Generation),
        ("ai.embed.doEmbed", Role::Embedding),
        ("ai.embedMany.doEmbed", Role::Embedding),
        ("ai.toolCall", Role::Tool),
        ("ai.embed", Role::Other),
    ] {
        assert_eq!(
            builtin_role("x", &[kv(vercel::OPERATION_ID, id)]),
            role,
            "{id}"
        );
    }
}

#[test]
fn openllmetry_request_type() {
    assert_eq!(
        builtin_role("openai.chat", &[kv(traceloop::LLM_REQUEST_TYPE, "chat")]),
        Role::Generation
    );
    assert_eq!(
        builtin_role("x", &[kv(traceloop::LLM_REQUEST_TYPE, "embedding")]),
        Role::Embedding
    );
    assert_eq!(
        builtin_role("x", &[kv(traceloop::LLM_REQUEST_TYPE, "rerank")]),
        Role::Other
    );
}

#[test]
fn names() {
    assert_eq!(builtin_role("invoke_agent coder", &[]), Role::Invocation);
    assert_eq!(builtin_role("react step", &[]), Role::Step);
    assert_eq!(builtin_role("chat gpt-4o", &[]), Role::Generation);
    assert_eq!(
        builtin_role("text_completion davinci", &[]),
        Role::Generation
    );
    assert_eq!(
        builtin_role("generate_content gemini", &[]),
        Role::Generation
    );
    assert_eq!(builtin_role("execute_tool read", &[]), Role::Tool);
    assert_eq!(builtin_role("chat", &[]), Role::Generation);
    assert_eq!(builtin_role("chatter", &[]), Role::Other);
    assert_eq!(builtin_role("GET /index", &[]), Role::Other);
}

#[test]
fn last_value_wins() {
    let attrs = [
        kv(gen_ai::OPERATION_NAME, "chat"),
        kv(gen_ai::OPERATION_NAME, "execute_tool"),
    ];
    assert_eq!(builtin_role("x", &attrs), Role::Tool);
}

#[test]
fn non_string_operation_is_ignored() {
    assert_eq!(
        builtin_role("x", &[KeyValue::new(gen_ai::OPERATION_NAME, 7)]),
        Role::Other
    );
}

#[test]
fn user_rules_win_then_classifier() {
    let classifier: Arc<dyn Classifier> = Arc::new(|name: &str, _: &[KeyValue]| {
        name.starts_with("llm-call-").then_some(Role::Generation)
    });
    let r = Recogniser::new(
        vec![RoleRule::name_prefix("chat ", Role::Tool)],
        Some(classifier),
    );
    assert_eq!(r.classify("chat gpt-4o", &[]), Role::Tool);
    assert_eq!(r.classify("llm-call-2", &[]), Role::Generation);
    assert_eq!(r.classify("invoke_agent a", &[]), Role::Invocation);
}

#[test]
fn mastra_names_and_span_types() {
    assert_eq!(builtin_role("agent run: 'weather'", &[]), Role::Invocation);
    assert_eq!(builtin_role("llm: 'gpt-4o-mini'", &[]), Role::Generation);
    assert_eq!(builtin_role("tool: 'weather'", &[]), Role::Tool);
    assert_eq!(builtin_role("workflow run: 'w'", &[]), Role::Workflow);
    assert_eq!(builtin_role("llm: gpt", &[]), Role::Other);
    let typed = |t: &'static str| builtin_role("x", &[kv("mastra.span.type", t)]);
    assert_eq!(typed("model_step"), Role::Step);
    assert_eq!(typed("mcp_tool_call"), Role::Tool);
    assert_eq!(typed("model_inference"), Role::Other);
    assert_eq!(typed("model_chunk"), Role::Other);
    // `gen_ai.operation.name = model_step` names no role: the span type decides.
    let attrs = [
        kv("gen_ai.operation.name", "model_step"),
        kv("mastra.span.type", "model_step"),
    ];
    assert_eq!(builtin_role("step: 0", &attrs), Role::Step);
    // `step: N` is a step only under a generation.
    let r = Recogniser::default();
    assert_eq!(
        r.classify_in_context("step: 1", &[], false, || Some(Role::Generation)),
        Role::Step
    );
    assert_eq!(
        r.classify_in_context("step: 1", &[], false, || Some(Role::Invocation)),
        Role::Other
    );
    assert_eq!(
        r.classify_in_context("step: x", &[], false, || Some(Role::Generation)),
        Role::Other
    );
}

#[test]
fn openai_agents_turns_and_workflows() {
    let r = Recogniser::new(Vec::new(), None);
    let chain = [kv("openinference.span.kind", "CHAIN")];
    let agent = [kv("openinference.span.kind", "AGENT")];
    // A turn is a step directly under an invocation, a workflow elsewhere.
    assert_eq!(
        r.classify_in_context("turn", &chain, false, || Some(Role::Invocation)),
        Role::Step
    );
    assert_eq!(
        r.classify_in_context("turn", &chain, false, || Some(Role::Workflow)),
        Role::Workflow
    );
    assert_eq!(
        r.classify_in_context("turns", &chain, false, || Some(Role::Invocation)),
        Role::Workflow
    );
    // The root `Agent workflow` AGENT is a workflow; the agent's own AGENT, or an
    // `Agent workflow` AGENT under a parent, an invocation.
    assert_eq!(
        r.classify_in_context("Agent workflow", &agent, true, || None),
        Role::Workflow
    );
    assert_eq!(
        r.classify_in_context("Agent workflow", &agent, false, || None),
        Role::Invocation
    );
    assert_eq!(
        r.classify_in_context("weather_agent", &agent, true, || None),
        Role::Invocation
    );
    assert_eq!(
        r.classify_in_context("Agent workflow", &chain, true, || None),
        Role::Workflow
    );
}

#[test]
fn smolagents_and_llama_index() {
    let r = Recogniser::new(Vec::new(), None);
    let chain = [kv("openinference.span.kind", "CHAIN")];
    let llm = [kv("openinference.span.kind", "LLM")];
    let at = |name: &str, attrs: &[KeyValue], root: bool, parent: Option<Role>| {
        r.classify_in_context(name, attrs, root, || parent)
    };
    // smolagents' steps, only under an invocation.
    assert_eq!(
        at("Step 3", &chain, false, Some(Role::Invocation)),
        Role::Step
    );
    assert_eq!(
        at("Step 3", &chain, false, Some(Role::Workflow)),
        Role::Workflow
    );
    assert_eq!(
        at("Step x", &chain, false, Some(Role::Invocation)),
        Role::Workflow
    );
    // LlamaIndex: the root run, its steps, and the preparation that calls no model.
    assert_eq!(
        at("FunctionAgent.run", &chain, true, None),
        Role::Invocation
    );
    assert_eq!(at("FunctionAgent.run", &chain, false, None), Role::Workflow);
    let step = "BaseWorkflowAgent.run_agent_step";
    assert_eq!(at(step, &chain, false, None), Role::Step);
    let prepare = "FakeToolLLM._prepare_chat_with_tools";
    assert_eq!(at(prepare, &llm, false, None), Role::Other);
    assert_eq!(at("FakeToolLLM.achat", &llm, false, None), Role::Generation);
}

#[test]
fn dspy_agent_modules_at_the_root() {
    let r = Recogniser::new(Vec::new(), None);
    let chain = [kv("openinference.span.kind", "CHAIN")];
    let at = |name: &str, root: bool| r.classify_in_context(name, &chain, root, || None);
    for name in [
        "ReAct.forward",
        "ReAct.aforward",
        "ReActV2.forward",
        "CodeAct.aforward",
        "RLM.forward",
        "Avatar.forward",
    ] {
        assert_eq!(at(name, true), Role::Invocation, "{name}");
        // Below the root (inside a program of the user's): a workflow, as any chain.
        assert_eq!(at(name, false), Role::Workflow, "{name}");
    }
    for name in [
        "ReAct",
        "ReAct.__call__",
        "MyReAct.forward",
        "ChainOfThought.forward",
        "Predict(ReActSignature).forward",
        ".forward",
    ] {
        assert_eq!(at(name, true), Role::Workflow, "{name}");
    }
    // Another kind keeps its role.
    let llm = [kv("openinference.span.kind", "LLM")];
    assert_eq!(
        r.classify_in_context("ReAct.forward", &llm, true, || None),
        Role::Generation
    );
}

#[test]
fn langgraph_chains() {
    let chain = |name: &str, metadata: &str| {
        let attrs = [
            KeyValue::new("openinference.span.kind", "CHAIN"),
            KeyValue::new("metadata", metadata.to_owned()),
        ];
        builtin_role(name, &attrs)
    };
    assert_eq!(
        chain("agent", r#"{"lc_agent_name":"agent"}"#),
        Role::Invocation
    );
    // Python's json.dumps puts blanks after the separators.
    assert_eq!(
        chain(
            "model",
            r#"{"lc_agent_name": "a", "langgraph_node": "model"}"#
        ),
        Role::Step
    );
    assert_eq!(
        chain("model_request", r#"{"langgraph_node":"model_request"}"#),
        Role::Step
    );
    // A runnable inside the node inherits its metadata, not its name.
    assert_eq!(
        chain("RunnableLambda", r#"{"langgraph_node":"model_request"}"#),
        Role::Workflow
    );
    assert_eq!(
        chain("tools", r#"{"lc_agent_name":"a","langgraph_node":"tools"}"#),
        Role::Workflow
    );
    assert_eq!(chain("x", "not json"), Role::Workflow);
    assert_eq!(chain("x", r#"{"other_lc_agent_name":"a"}"#), Role::Workflow);
    // Only the head of a huge value is read: keys past it are not seen.
    let huge = format!(
        r#"{{"messages":"{}","lc_agent_name":"a"}}"#,
        "x".repeat(1 << 20)
    );
    assert_eq!(chain("agent", &huge), Role::Workflow);
    // Other kinds ignore the metadata.
    let attrs = [
        KeyValue::new("openinference.span.kind", "LLM"),
        KeyValue::new("metadata", r#"{"langgraph_node":"model"}"#),
    ];
    assert_eq!(builtin_role("model", &attrs), Role::Generation);
}

#[test]
fn json_members_without_a_parser() {
    assert_eq!(json_string_member(r#"{"a":"b"}"#, "a"), Some("b"));
    assert_eq!(json_string_member(r#"{"a" : "b"}"#, "a"), Some("b"));
    assert_eq!(json_string_member(r#"{"ba":"x","a":"b"}"#, "a"), Some("b"));
    assert_eq!(json_string_member(r#"{"a":1}"#, "a"), None);
    assert_eq!(json_string_member(r#"{"a":"b\"c"}"#, "a"), None);
    assert_eq!(json_string_member(r#"{"a":"unterminated"#, "a"), None);
    assert_eq!(bounded_prefix("ééé", 3), "é");
}
