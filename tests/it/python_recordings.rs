//! The recordings of `tests/recordings/python/` (real frameworks from PyPI, fake models
//! in each framework's own model interface; harnesses, pinned requirements and ground
//! truth beside them), replayed in process and through the command: every figure of
//! their READMEs, and what the audit must say about the frameworks' own bugs.

use crate::cli_support as cli;
use crate::common::Harness;

fn recording(framework: &str, file: &str) -> String {
    format!(
        "{}/tests/recordings/python/{framework}/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// (invocation, input, output, generations, tool calls, steps, findings).
type Truth = (
    &'static str,
    i64,
    i64,
    i64,
    i64,
    i64,
    &'static [&'static str],
);

fn in_process(framework: &str, script: &str, truth: &[Truth]) {
    let r = Harness::new().replay(&cli::read(&recording(framework, script)));
    for &(inv, input, output, generations, tools, steps, findings) in truth {
        assert_eq!(r.string(inv, "genai_audit.role"), "invocation", "{inv}");
        assert_eq!(r.i64(inv, "genai_audit.total.input_tokens"), input, "{inv}");
        assert_eq!(
            r.i64(inv, "genai_audit.total.output_tokens"),
            output,
            "{inv}"
        );
        assert_eq!(
            r.i64(inv, "genai_audit.total.generations"),
            generations,
            "{inv}"
        );
        assert_eq!(r.i64(inv, "genai_audit.total.tool_calls"), tools, "{inv}");
        assert_eq!(r.i64(inv, "genai_audit.steps"), steps, "{inv}");
        assert_eq!(r.findings(inv), findings, "{inv}");
    }
}

/// Checks `truth` through the command on `files`, and the summary: invocations, every
/// finding, and the findings by code.
fn through_the_command(
    framework: &str,
    files: &[&str],
    truth: &[Truth],
    summary: (u64, u64, &[(&str, u64)]),
) {
    for file in files {
        let path = recording(framework, file);
        let (_, json) = cli::check_json(&[&path], &[]);
        assert_eq!(json["invocations"].as_u64(), Some(summary.0), "{file}");
        assert_eq!(json["findings_total"].as_u64(), Some(summary.1), "{file}");
        for &(code, n) in summary.2 {
            assert_eq!(json["findings"][code].as_u64(), Some(n), "{file}: {code}");
        }
        let spans = cli::spans_of(&cli::enrich(&[&path], &[]));
        for &(inv, input, output, generations, tools, steps, findings) in truth {
            let span = spans
                .iter()
                .find(|s| format!("{:?}", cli::span_id_of(s)).contains(inv))
                .unwrap_or_else(|| panic!("{file}: {inv}"));
            let attr = |key: &str| cli::attr(span, key);
            assert_eq!(
                attr("genai_audit.total.input_tokens"),
                Some(input.to_string()),
                "{file} {inv}"
            );
            assert_eq!(
                attr("genai_audit.total.output_tokens"),
                Some(output.to_string()),
                "{file} {inv}"
            );
            assert_eq!(
                attr("genai_audit.total.generations"),
                Some(generations.to_string()),
                "{file} {inv}"
            );
            assert_eq!(
                attr("genai_audit.total.tool_calls"),
                Some(tools.to_string()),
                "{file} {inv}"
            );
            assert_eq!(
                attr("genai_audit.steps"),
                Some(steps.to_string()),
                "{file} {inv}"
            );
            assert_eq!(cli::findings(span), findings, "{file} {inv}");
        }
    }
}

/// smolagents 1.26 + openinference-instrumentation-smolagents 0.1.43: the agent's
/// shared token counter puts other runs' usage on each run's span (a real
/// `usage_mismatch`: A reports 391/47, B 572/70), and a run that raises never ends its
/// span (C, D: their steps name a parent the export lacks).
const SMOLAGENTS: [Truth; 2] = [
    ("0f868c9f28e3199d", 234, 28, 2, 2, 2, &["usage_mismatch"]),
    ("eddee4a411c9e9c9", 338, 42, 2, 2, 2, &["usage_mismatch"]),
];

#[test]
fn smolagents_in_process() {
    in_process("smolagents", "smolagents-concurrent.jsonl", &SMOLAGENTS);
}

#[test]
fn smolagents_through_the_command() {
    through_the_command(
        "smolagents",
        &[
            "smolagents-concurrent.jsonl",
            "smolagents-concurrent.otlp.json",
        ],
        &SMOLAGENTS,
        (2, 4, &[("usage_mismatch", 2), ("missing_parent", 2)]),
    );
}

/// LlamaIndex 0.14.25 `FunctionAgent` + openinference-instrumentation-llama-index 4.6.1:
/// clean for the two concurrent runs; the cancelled run C's step ends after its run
/// (`late_end`, and `unclosed_child` on the run).
const LLAMA_INDEX: [Truth; 2] = [
    ("68d26e20ea28b5a7", 234, 28, 2, 1, 2, &[]),
    ("f42d86c1302c5ed7", 338, 42, 2, 1, 2, &[]),
];

#[test]
fn llama_index_through_the_command() {
    through_the_command(
        "llamaindex",
        &[
            "llamaindex-concurrent.jsonl",
            "llamaindex-concurrent.otlp.json",
        ],
        &LLAMA_INDEX,
        (3, 2, &[("late_end", 1), ("unclosed_child", 1)]),
    );
}

#[test]
fn llama_index_in_process() {
    in_process("llamaindex", "llamaindex-concurrent.jsonl", &LLAMA_INDEX);
}

/// Agno 3.1.10 + openinference-instrumentation-agno 1.0.15: no step spans; clean (every
/// run's usage on its own calls); the cancelled run C's agent span ends `ok`.
const AGNO: [Truth; 2] = [
    ("98496dcfa34fe612", 234, 28, 2, 1, 0, &[]),
    ("78648ea42984b0c0", 338, 42, 2, 1, 0, &[]),
];

#[test]
fn agno_in_process() {
    in_process("agno", "agno-concurrent.jsonl", &AGNO);
}

#[test]
fn agno_through_the_command() {
    through_the_command(
        "agno",
        &["agno-concurrent.jsonl", "agno-concurrent.otlp.json"],
        &AGNO,
        (3, 0, &[]),
    );
}

/// Google ADK 2.13 (its own GenAI tracing: `invoke_workflow` › `invoke_agent` ›
/// `generate_content`, `execute_tool`, everything but the root's set at end): clean;
/// a cancelled run ends its spans as if nothing went wrong.
const GOOGLE_ADK: [Truth; 2] = [
    ("b469eb3ccea2ec1f", 234, 28, 2, 1, 0, &[]),
    ("5965a5145615a886", 338, 42, 2, 1, 0, &[]),
];

#[test]
fn google_adk_in_process() {
    in_process("google-adk", "google-adk-concurrent.jsonl", &GOOGLE_ADK);
}

#[test]
fn google_adk_through_the_command() {
    through_the_command(
        "google-adk",
        &[
            "google-adk-concurrent.jsonl",
            "google-adk-concurrent.otlp.json",
        ],
        &GOOGLE_ADK,
        (4, 0, &[]),
    );
}

/// AutoGen AgentChat 0.7.5, its own tracing and openinference-instrumentation-autogen-
/// agentchat 0.1.22 both on: no model-call span from either for a model written in
/// AutoGen's interface (no usage anywhere); each tool call has one tool span from each
/// instrumentation (both counted). Each run's OpenInference `AGENT` span ends 0.1–0.2 ms
/// after its `invoke_agent` parent: in process, and in the trace script (its true end
/// order), a `late_end` and an `unclosed_child`; the OTLP export groups spans by
/// instrumentation scope, so across the two scopes ends go by their times, where a child
/// ending less than the skew after its parent counts as ending first: no finding.
const AUTOGEN_IN_ORDER: [Truth; 2] = [
    ("939c651e17bf6968", 0, 0, 0, 2, 0, &["unclosed_child"]),
    ("82b9d616dedb9949", 0, 0, 0, 2, 0, &["unclosed_child"]),
];

const AUTOGEN_BY_TIME: [Truth; 2] = [
    ("939c651e17bf6968", 0, 0, 0, 2, 0, &[]),
    ("82b9d616dedb9949", 0, 0, 0, 2, 0, &[]),
];

#[test]
fn autogen_in_process() {
    in_process("autogen", "autogen-concurrent.jsonl", &AUTOGEN_IN_ORDER);
}

#[test]
fn autogen_through_the_command() {
    through_the_command(
        "autogen",
        &["autogen-concurrent.jsonl"],
        &AUTOGEN_IN_ORDER,
        (6, 4, &[("late_end", 2), ("unclosed_child", 2)]),
    );
    through_the_command(
        "autogen",
        &["autogen-concurrent.otlp.json"],
        &AUTOGEN_BY_TIME,
        (6, 0, &[]),
    );
}

/// DSPy 3.4.1 `ReAct` + openinference-instrumentation-dspy 0.1.48 and -litellm 0.1.51:
/// the root `ReAct.aforward` `CHAIN` is the invocation; each model call is DSPy's
/// `LM.acall` (`LLM`, no usage) around LiteLLM's `acompletion` (`LLM`, usage), counted
/// once (three calls a run: the tool choice, `finish`, the extract step). The cancelled
/// run C's call has usage on neither span: it counts once, on `LM.acall`, unpriced.
const DSPY: [Truth; 3] = [
    ("5df650447c43ed1f", 383, 41, 3, 2, 0, &[]),
    ("ffbc181c74b684c3", 529, 71, 3, 2, 0, &[]),
    ("ed82a743300432f2", 0, 0, 1, 0, 0, &[]),
];

/// The counted calls of DSPy's runs A and B, in end order: (span, cumulative
/// generations, cumulative input, cumulative output).
const DSPY_CALLS: [(&str, i64, i64, i64); 6] = [
    ("d619a1ef58f6dc12", 1, 101, 11),
    ("f6884f0ba39221dc", 2, 234, 28),
    ("6c810d4eede9238a", 3, 383, 41),
    ("4e4b75dea7bf6ff5", 1, 157, 19),
    ("428527791af12bc6", 2, 338, 42),
    ("1d8df9c097fd4a43", 3, 529, 71),
];

/// The spans of DSPy's calls that are not counted: every `LM.acall` of runs A and B,
/// and run C's `acompletion`.
const DSPY_WRAPPERS: [&str; 7] = [
    "19fc3a1f18201275",
    "c7f4d9decd927bc1",
    "eaf95a669d2554c2",
    "ff2d9d7cf4694ba8",
    "75ab6074aaf96ff0",
    "b493c09641ce05ec",
    "aa245072740f7cf2",
];

#[test]
fn dspy_in_process() {
    in_process("dspy", "dspy-concurrent.jsonl", &DSPY);
    let r = Harness::new().replay(&cli::read(&recording("dspy", "dspy-concurrent.jsonl")));
    for (span, generations, input, output) in DSPY_CALLS {
        assert_eq!(r.attr(span, "genai_audit.wrapper"), None, "{span}");
        assert_eq!(
            (
                r.i64(span, "genai_audit.cumulative.generations"),
                r.i64(span, "genai_audit.cumulative.input_tokens"),
                r.i64(span, "genai_audit.cumulative.output_tokens"),
            ),
            (generations, input, output),
            "{span}"
        );
        // A fake model (`fake/fake-react-model`): unpriced, never $0.
        assert!(r.bool(span, "genai_audit.cost.unpriced"), "{span}");
    }
    for span in DSPY_WRAPPERS {
        assert_eq!(r.string(span, "genai_audit.role"), "generation", "{span}");
        assert!(r.bool(span, "genai_audit.wrapper"), "{span}");
        assert_eq!(r.attr(span, "genai_audit.cost.unpriced"), None, "{span}");
        assert_eq!(r.attr(span, "genai_audit.cumulative.generations"), None);
    }
    assert_eq!(
        r.i64("11271a81e05dce6b", "genai_audit.cumulative.generations"),
        1
    );
}

#[test]
fn dspy_through_the_command() {
    through_the_command(
        "dspy",
        &["dspy-concurrent.jsonl", "dspy-concurrent.otlp.json"],
        &DSPY,
        (3, 0, &[]),
    );
    // The summary counts each call once: 3 + 3 + 1.
    for file in ["dspy-concurrent.jsonl", "dspy-concurrent.otlp.json"] {
        let (_, json) = cli::check_json(&[&recording("dspy", file)], &[]);
        assert_eq!(json["generations"].as_u64(), Some(7), "{file}");
        assert_eq!(json["unpriced_generations"].as_u64(), Some(7), "{file}");
    }
}

/// PydanticAI 2.78 (pydantic-ai-slim, its own instrumentation through the
/// `Instrumentation` capability): clean for the two concurrent runs (the agent's
/// `gen_ai.aggregated_usage.*` is not usage the audit compares); the cancelled run C
/// ends its agent span before its chat span: `unclosed_child` on the run, `late_end` on
/// the call.
const PYDANTIC_AI: [Truth; 2] = [
    ("1c3a76f0b09d975c", 234, 28, 2, 1, 0, &[]),
    ("0e2b4c239490e6ba", 338, 42, 2, 1, 0, &[]),
];

const PYDANTIC_AI_CANCELLED: (&str, &str) = ("ea67cb8116a09bbd", "61ec7d3269338b91");

#[test]
fn pydantic_ai_in_process() {
    in_process("pydantic-ai", "pydantic-ai-concurrent.jsonl", &PYDANTIC_AI);
    let r = Harness::new().replay(&cli::read(&recording(
        "pydantic-ai",
        "pydantic-ai-concurrent.jsonl",
    )));
    let (run, call) = PYDANTIC_AI_CANCELLED;
    assert_eq!(r.findings(run), ["unclosed_child"]);
    assert_eq!(r.i64(run, "genai_audit.leak.unclosed_children"), 1);
    assert_eq!(r.findings(call), ["late_end"]);
    assert_eq!(r.string(call, "genai_audit.role"), "generation");
}

#[test]
fn pydantic_ai_through_the_command() {
    through_the_command(
        "pydantic-ai",
        &[
            "pydantic-ai-concurrent.jsonl",
            "pydantic-ai-concurrent.otlp.json",
        ],
        &PYDANTIC_AI,
        (3, 2, &[("late_end", 1), ("unclosed_child", 1)]),
    );
}

/// LangChain 1.5 `create_agent` through OpenLLMetry (opentelemetry-instrumentation-
/// langchain 0.62.4), everything set at end: two nested spans with
/// `gen_ai.operation.name = invoke_agent` per run (`invoke_agent weather_agent` and
/// `weather_agent.workflow`), both invocations with the run's totals; clean. The
/// cancelled run C's call, without usage, counts once (unpriced).
const LANGCHAIN_OPENLLMETRY: [Truth; 6] = [
    ("1463b24ec8f03299", 234, 28, 2, 1, 0, &[]),
    ("c19a3809e603c1d1", 234, 28, 2, 1, 0, &[]),
    ("1b0bea5921873cb9", 338, 42, 2, 1, 0, &[]),
    ("e070ba9d58c8c402", 338, 42, 2, 1, 0, &[]),
    ("ebe02a6a7c5b311c", 0, 0, 1, 0, 0, &[]),
    ("0959b3d4229b3fe3", 0, 0, 1, 0, 0, &[]),
];

#[test]
fn langchain_openllmetry_in_process() {
    in_process(
        "langchain-openllmetry",
        "langchain-openllmetry-concurrent.jsonl",
        &LANGCHAIN_OPENLLMETRY,
    );
    // Cumulative totals count within the run (the outer span, named `invoke_agent …`,
    // is the invocation known at start; the inner one is known only at its end).
    let r = Harness::new().replay(&cli::read(&recording(
        "langchain-openllmetry",
        "langchain-openllmetry-concurrent.jsonl",
    )));
    for (call, generations, input) in [
        ("7922f19437c46755", 1, 101),
        ("d96e2ff1e431ab16", 2, 234),
        ("6f04b92de0e334f7", 1, 157),
        ("e9a9bc52a7aed514", 2, 338),
    ] {
        assert_eq!(
            r.i64(call, "genai_audit.cumulative.generations"),
            generations
        );
        assert_eq!(r.i64(call, "genai_audit.cumulative.input_tokens"), input);
    }
}

#[test]
fn langchain_openllmetry_through_the_command() {
    through_the_command(
        "langchain-openllmetry",
        &[
            "langchain-openllmetry-concurrent.jsonl",
            "langchain-openllmetry-concurrent.otlp.json",
        ],
        &LANGCHAIN_OPENLLMETRY,
        (6, 0, &[]),
    );
}

/// Microsoft Agent Framework 1.26 (agent-framework-core, its own GenAI tracing):
/// `invoke_agent` › `chat`, `execute_tool`; each run's span reports the run's own usage
/// (no `usage_mismatch` under concurrency); clean. The cancelled run C ends its call and
/// its run in order, without usage: one generation, unpriced.
const AGENT_FRAMEWORK: [Truth; 3] = [
    ("73481f4a2613a0c8", 234, 28, 2, 1, 0, &[]),
    ("a4f0c6c32d32864f", 338, 42, 2, 1, 0, &[]),
    ("bb75eba1176fe4ed", 0, 0, 1, 0, 0, &[]),
];

#[test]
fn agent_framework_in_process() {
    in_process(
        "agent-framework",
        "agent-framework-concurrent.jsonl",
        &AGENT_FRAMEWORK,
    );
}

#[test]
fn agent_framework_through_the_command() {
    through_the_command(
        "agent-framework",
        &[
            "agent-framework-concurrent.jsonl",
            "agent-framework-concurrent.otlp.json",
        ],
        &AGENT_FRAMEWORK,
        (3, 0, &[]),
    );
}

/// CrewAI 1.15 through OpenInference (openinference-instrumentation-crewai 1.1.21, its
/// event-listener mode): `crew.kickoff` (`CHAIN`, a workflow) › the agent's task
/// execution (`AGENT`) › `llm_call` (`LLM`), `get_weather.run` (`TOOL`); clean. CrewAI
/// refuses to run one executor twice at once, so A and B run on two crews sharing one
/// LLM object. The cancelled crew C never ends its three spans: the export lacks them.
const CREWAI: [Truth; 2] = [
    ("9c524546124546ce", 234, 28, 2, 1, 0, &[]),
    ("0d92adbe87cf6e1e", 338, 42, 2, 1, 0, &[]),
];

#[test]
fn crewai_in_process() {
    in_process("crewai", "crewai-concurrent.jsonl", &CREWAI);
    let r = Harness::new().replay(&cli::read(&recording("crewai", "crewai-concurrent.jsonl")));
    for root in ["6691f4771799e0d2", "37535831fcb74cc8"] {
        assert_eq!(r.string(root, "genai_audit.role"), "workflow", "{root}");
    }
    assert_eq!(r.spans.len(), 10);
    for never_ended in ["005b43c9de1e64bd", "5e672e9924f3e5f0", "22e9b2e288813619"] {
        assert!(!r.spans.contains_key(never_ended), "{never_ended}");
    }
}

#[test]
fn crewai_through_the_command() {
    through_the_command(
        "crewai",
        &["crewai-concurrent.jsonl", "crewai-concurrent.otlp.json"],
        &CREWAI,
        (2, 0, &[]),
    );
}

/// The official opentelemetry-instrumentation-openai-v2 (2.4b0, openai 3.63) under an
/// agent loop of the application's own (`invoke_agent` and `execute_tool` spans of its
/// own): the only recording here with a real model id (`gpt-4o-mini`, served as
/// `gpt-4o-mini-2024-07-18` by a fake server), so every call is priced, at $0.15 and
/// $0.60 per million tokens. The cancelled run C's chat span never ends (the
/// instrumentation does not end it on `CancelledError`): in process, its run ends with
/// it open (`unclosed_child`); the exported files lack it, so the command finds nothing.
const OPENAI_V2: [Truth; 2] = [
    ("9c08f116b7f98fec", 234, 28, 2, 1, 0, &[]),
    ("35ee35d90fdfb347", 338, 42, 2, 1, 0, &[]),
];

#[test]
fn openai_v2_in_process() {
    in_process("openai-v2", "openai-v2-concurrent.jsonl", &OPENAI_V2);
    let r = Harness::new().replay(&cli::read(&recording(
        "openai-v2",
        "openai-v2-concurrent.jsonl",
    )));
    for (inv, cost) in [
        ("9c08f116b7f98fec", (234.0 * 0.15 + 28.0 * 0.6) / 1e6),
        ("35ee35d90fdfb347", (338.0 * 0.15 + 42.0 * 0.6) / 1e6),
    ] {
        let total = r.f64(inv, "genai_audit.total.cost_usd");
        assert!((total - cost).abs() < 1e-15, "{inv}: {total}");
        assert_eq!(r.attr(inv, "genai_audit.total.partial"), None, "{inv}");
    }
    for call in [
        "f1d873e939d76db3",
        "85a07e090288b85d",
        "26db4a665620568c",
        "675ef6db21c76a41",
    ] {
        assert_eq!(
            r.string(call, "genai_audit.cost.model"),
            "openai/gpt-4o-mini",
            "{call}"
        );
    }
    let cancelled = "3e44ccf606494804";
    assert_eq!(r.findings(cancelled), ["unclosed_child"]);
    assert_eq!(r.i64(cancelled, "genai_audit.leak.unclosed_children"), 1);
}

#[test]
fn openai_v2_through_the_command() {
    through_the_command(
        "openai-v2",
        &[
            "openai-v2-concurrent.jsonl",
            "openai-v2-concurrent.otlp.json",
        ],
        &OPENAI_V2,
        (3, 0, &[]),
    );
}

/// Price coverage over every recording in `tests/recordings/python/`: of the counted
/// generations (wrappers excluded) that report usage, how many get a price, and the
/// model ids left unpriced. Every harness but `openai-v2` uses a fake model id on
/// purpose (no network, no real provider), so those stay unpriced, never $0. The
/// README's figure is this one.
#[test]
fn price_coverage_over_the_recordings() {
    // (folder, generations with usage, priced, unpriced model ids).
    let expected: [(&str, usize, usize, &[&str]); 11] = [
        ("agent-framework", 4, 0, &["fake-model"]),
        ("agno", 4, 0, &["fake-model-1"]),
        ("autogen", 0, 0, &[]),
        ("crewai", 4, 0, &["fake-crew-model"]),
        ("dspy", 6, 0, &["fake/fake-react-model"]),
        ("google-adk", 4, 0, &["fake-model-1"]),
        ("langchain-openllmetry", 4, 0, &["fake-chat-model"]),
        ("llamaindex", 4, 0, &["fake-tool-llm"]),
        ("openai-v2", 4, 4, &[]),
        ("pydantic-ai", 4, 0, &["fake-model"]),
        ("smolagents", 5, 0, &["fake-model-1"]),
    ];
    // Every recording is counted: a new folder must be added above.
    let root = format!("{}/tests/recordings/python", env!("CARGO_MANIFEST_DIR"));
    let mut folders: Vec<String> = std::fs::read_dir(&root)
        .expect("the recordings")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.') && !name.starts_with("__"))
        .collect();
    folders.sort();
    let listed: Vec<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(folders, listed);

    let (mut with_usage_all, mut priced_all) = (0, 0);
    for (folder, with_usage, priced, unpriced_models) in expected {
        let script = format!("{folder}-concurrent.jsonl");
        let (n, p, unpriced) = coverage(&cli::read(&recording(folder, &script)), folder);
        assert_eq!((n, p), (with_usage, priced), "{folder}");
        assert_eq!(unpriced, unpriced_models, "{folder}");
        with_usage_all += n;
        priced_all += p;
    }
    // 4 of 43 generations with usage are priced (9.3%); the 39 others have fake ids.
    assert_eq!((with_usage_all, priced_all), (43, 4));
}

/// Of a trace script's counted generations (wrappers excluded) that report usage: how
/// many, how many get a price, and the model ids left unpriced (each unpriced call is
/// flagged `genai_audit.cost.unpriced`, never priced at 0).
fn coverage(script: &str, name: &str) -> (usize, usize, Vec<String>) {
    use genai_audit::usage::Usage;
    use opentelemetry::Value;
    let text = |v: Option<Value>| v.map(|v| v.as_str().into_owned());
    let r = Harness::new().replay(script);
    let (mut n, mut p) = (0, 0);
    let mut unpriced: Vec<String> = Vec::new();
    for (label, span) in &r.spans {
        let counted = text(r.attr(label, "genai_audit.role")).as_deref() == Some("generation")
            && r.attr(label, "genai_audit.wrapper").is_none();
        let usage = Usage::from_attributes(&span.attributes);
        if !counted || (usage.input.is_none() && usage.output.is_none()) {
            continue;
        }
        n += 1;
        if r.attr(label, "genai_audit.cost_usd").is_some() {
            p += 1;
        } else {
            assert!(r.bool(label, "genai_audit.cost.unpriced"), "{name} {label}");
            let model = [
                "gen_ai.response.model",
                "gen_ai.request.model",
                "llm.model_name",
                "ai.response.model",
                "ai.model.id",
            ]
            .iter()
            .find_map(|k| text(r.attr(label, k)))
            .unwrap_or_default();
            if !unpriced.contains(&model) {
                unpriced.push(model);
            }
        }
    }
    (n, p, unpriced)
}

/// Price coverage over the trace scripts of other frameworks in
/// `tests/recordings/traces/` (Python and JavaScript agents recorded for the project).
#[test]
fn price_coverage_over_the_trace_scripts() {
    let root = format!("{}/tests/recordings/traces", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(&root)
        .expect("the recordings")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".jsonl"))
        .collect();
    files.sort();
    // (file, generations with usage, priced, unpriced model ids): `qwen-turbo` is not
    // in the price data; the others unpriced are the recordings' fake models.
    let expected: [(&str, usize, usize, &[&str]); 8] = [
        ("hermes-concurrent-fixed.jsonl", 4, 0, &["qwen-turbo"]),
        ("langchain-invoke-concurrent.jsonl", 6, 6, &[]),
        ("mastra-generate-concurrent.jsonl", 3, 3, &[]),
        ("openai-agents-concurrent.jsonl", 4, 4, &[]),
        ("pydantic-ai-concurrent.jsonl", 6, 0, &["fake-fn-model"]),
        ("strands-concurrent-2agents.jsonl", 4, 4, &[]),
        ("vercel-ai-concurrent.jsonl", 4, 0, &["mock-model-1"]),
        ("vercel-ai7-generate-concurrent.jsonl", 6, 6, &[]),
    ];
    let listed: Vec<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(files, listed);
    let (mut with_usage_all, mut priced_all) = (0, 0);
    for (file, with_usage, priced, unpriced_models) in expected {
        let (n, p, unpriced) = coverage(&cli::read(&format!("{root}/{file}")), file);
        assert_eq!((n, p), (with_usage, priced), "{file}");
        assert_eq!(unpriced, unpriced_models, "{file}");
        with_usage_all += n;
        priced_all += p;
    }
    // 23 of 37 (62 %).
    assert_eq!((with_usage_all, priced_all), (37, 23));
}

/// The cancelled crew C in process, through the replay example (which shuts the
/// provider down at the end, as an application does at exit) under leak policy
/// `close`: its root `crew.kickoff` is open at shutdown (`stale`), and the audit closes
/// it and the two spans below it.
#[test]
fn crewai_cancelled_crew_is_closed_at_shutdown() {
    let path = recording("crewai", "crewai-concurrent.jsonl");
    let output = crate::common::run_example(
        "replay",
        &[&path],
        &[("GENAI_AUDIT_LEAK_POLICY", "close")],
        None,
    );
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut found = Vec::new();
    for line in stdout.lines() {
        let json: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let span = json["span"].as_str().unwrap_or_default();
        if ["005b43c9de1e64bd", "5e672e9924f3e5f0", "22e9b2e288813619"].contains(&span) {
            let findings: Vec<&str> = json["attributes"]["genai_audit.findings"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            found.push((span.to_owned(), findings.join(",")));
        }
    }
    found.sort();
    assert_eq!(
        found,
        [
            (
                "005b43c9de1e64bd".to_owned(),
                "stale,closed_by_audit,unclosed_child".to_owned()
            ),
            ("22e9b2e288813619".to_owned(), "closed_by_audit".to_owned()),
            (
                "5e672e9924f3e5f0".to_owned(),
                "closed_by_audit,unclosed_child".to_owned()
            ),
        ]
    );
}
