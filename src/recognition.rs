//! Recognising gen-ai spans: which [`Role`] a span plays.
//!
//! The built-in rules cover the OpenTelemetry GenAI conventions, LoongSuite,
//! OpenInference, OpenLLMetry (Traceloop), Langfuse and the Vercel AI SDK.
//! A span is classified from its name and start attributes when it starts, and again
//! from its final attributes when it ends: many instrumentations set everything at end.
//!
//! Signals are tried in this order, and the first one that names a role wins:
//! user [`RoleRule`]s (in the order added), the custom [`Classifier`],
//! `gen_ai.operation.name`, the span-kind attributes (`gen_ai.span.kind`,
//! `openinference.span.kind`, `traceloop.span.kind`, `langfuse.observation.type`),
//! Vercel's `ai.operationId`, OpenLLMetry's `llm.request.type` (`chat` and `completion`
//! are generations, `embedding` an embedding: older OpenLLMetry releases mark their model
//! calls with nothing else), and last the span name. A value that names no role
//! (`gen_ai.operation.name = enter`, say) does not stop the later signals. When a key
//! appears more than once on a span, its last value is the one read.
//!
//! Kind values are compared without regard to case, so `TOOL` and `tool` are the same
//! kind whichever of the four kind attributes carries them: `AGENT`, `STEP`, `LLM`,
//! `GENERATION`, `EMBEDDING`, `TOOL`, `RETRIEVER`, `WORKFLOW` and `CHAIN` (a workflow)
//! are recognised; other kinds (`ENTRY`, `TASK`, ...) are not.
//!
//! ```
//! use genai_audit::{Role, RoleRule};
//! use opentelemetry::KeyValue;
//!
//! // A framework that names its ReAct rounds `loop.step-1`, `loop.step-2`, ...
//! let rule = RoleRule::name_prefix("loop.step-", Role::Step);
//! assert_eq!(rule.apply("loop.step-3", &[]), Some(Role::Step));
//!
//! // Or one that marks its model calls with an attribute of its own.
//! let rule = RoleRule::attribute("acme.kind", "model_call", Role::Generation);
//! let attributes = [KeyValue::new("acme.kind", "model_call")];
//! assert_eq!(rule.apply("anything", &attributes), Some(Role::Generation));
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use opentelemetry::{KeyValue, Value};

use crate::attributes::last_value;
use crate::keys::read::{gen_ai, langfuse, mastra, openinference, traceloop, vercel};

/// The part a span plays in an agent trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// One run of an agent (`invoke_agent`).
    Invocation,
    /// One round of an agent's loop (a ReAct step, a planning step).
    Step,
    /// One call of a language model.
    Generation,
    /// One call of an embedding model.
    Embedding,
    /// One tool call.
    Tool,
    /// A workflow or chain around agents.
    Workflow,
    /// A retrieval from a vector store or search index.
    Retrieval,
    /// Anything else: passes through untouched.
    Other,
}

impl Role {
    /// Every role, the recognised ones first and [`Role::Other`] last.
    pub const ALL: [Role; 8] = [
        Role::Invocation,
        Role::Step,
        Role::Generation,
        Role::Embedding,
        Role::Tool,
        Role::Workflow,
        Role::Retrieval,
        Role::Other,
    ];

    /// The value written to `genai_audit.role`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Invocation => "invocation",
            Role::Step => "step",
            Role::Generation => "generation",
            Role::Embedding => "embedding",
            Role::Tool => "tool",
            Role::Workflow => "workflow",
            Role::Retrieval => "retrieval",
            Role::Other => "other",
        }
    }

    /// Whether the role is one of the recognised ones (not [`Role::Other`]).
    pub const fn is_recognised(self) -> bool {
        !matches!(self, Role::Other)
    }

    /// Whether rolled-up totals are written on spans of this role.
    pub(crate) const fn carries_totals(self) -> bool {
        matches!(
            self,
            Role::Invocation | Role::Step | Role::Workflow | Role::Tool
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user rule that gives a role to spans the built-in rules do not recognise, or
/// overrides them: user rules are tried first.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRule {
    matcher: Matcher,
    role: Role,
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    NamePrefix(Cow<'static, str>),
    Attribute {
        key: Cow<'static, str>,
        value: Cow<'static, str>,
    },
}

impl RoleRule {
    /// Spans whose name starts with `prefix` get `role`.
    pub fn name_prefix(prefix: impl Into<Cow<'static, str>>, role: Role) -> Self {
        RoleRule {
            matcher: Matcher::NamePrefix(prefix.into()),
            role,
        }
    }

    /// Spans whose attribute `key` has the string value `value` get `role`
    /// (compared exactly; a non-string attribute is compared through its display form).
    pub fn attribute(
        key: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
        role: Role,
    ) -> Self {
        RoleRule {
            matcher: Matcher::Attribute {
                key: key.into(),
                value: value.into(),
            },
            role,
        }
    }

    /// The role this rule gives a span with this name and these attributes, if it matches.
    pub fn apply(&self, name: &str, attributes: &[KeyValue]) -> Option<Role> {
        let matched = match &self.matcher {
            Matcher::NamePrefix(prefix) => name.starts_with(prefix.as_ref()),
            Matcher::Attribute { key, value } => match last_value(attributes, key) {
                Some(Value::String(s)) => s.as_str() == value.as_ref(),
                Some(other) => other.as_str() == value.as_ref(),
                None => false,
            },
        };
        matched.then_some(self.role)
    }
}

/// A custom classifier, consulted after the user rules and before the built-in rules.
///
/// Return `None` to let the built-in rules decide. Any `Fn(&str, &[KeyValue]) -> Option<Role>`
/// closure that is `Send + Sync` is a classifier. It runs inside `on_start` and `on_end`:
/// keep it fast and never block or panic in it.
pub trait Classifier: Send + Sync {
    /// The role of a span with this name and these attributes, or `None`.
    fn classify(&self, name: &str, attributes: &[KeyValue]) -> Option<Role>;
}

impl<F> Classifier for F
where
    F: Fn(&str, &[KeyValue]) -> Option<Role> + Send + Sync,
{
    fn classify(&self, name: &str, attributes: &[KeyValue]) -> Option<Role> {
        self(name, attributes)
    }
}

/// The full recognition pipeline: user rules, custom classifier, built-in rules.
#[derive(Clone, Default)]
pub(crate) struct Recogniser {
    rules: Vec<RoleRule>,
    classifier: Option<Arc<dyn Classifier>>,
}

impl Recogniser {
    /// Whether classifying may read attribute `key`: a rule's key, or any key for a
    /// custom classifier (the built-in recognition's are in
    /// [`read_by_engine`](crate::keys::read_by_engine)).
    pub(crate) fn reads(&self, key: &str) -> bool {
        self.classifier.is_some()
            || self.rules.iter().any(|rule| match &rule.matcher {
                Matcher::Attribute { key: k, .. } => k == key,
                Matcher::NamePrefix(_) => false,
            })
    }
}

impl fmt::Debug for Recogniser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recogniser")
            .field("rules", &self.rules)
            .field("classifier", &self.classifier.is_some())
            .finish()
    }
}

impl Recogniser {
    pub(crate) fn new(rules: Vec<RoleRule>, classifier: Option<Arc<dyn Classifier>>) -> Self {
        Recogniser { rules, classifier }
    }

    /// The role of a span with this name and these attributes.
    #[inline]
    pub(crate) fn classify(&self, name: &str, attributes: &[KeyValue]) -> Role {
        if self.rules.is_empty() && self.classifier.is_none() {
            builtin_role(name, attributes)
        } else {
            self.classify_custom(name, attributes)
        }
    }

    /// [`classify`](Self::classify) with user rules or a custom classifier.
    fn classify_custom(&self, name: &str, attributes: &[KeyValue]) -> Role {
        for rule in &self.rules {
            if let Some(role) = rule.apply(name, attributes) {
                return role;
            }
        }
        if let Some(role) = self
            .classifier
            .as_ref()
            .and_then(|c| c.classify(name, attributes))
        {
            return role;
        }
        builtin_role(name, attributes)
    }

    /// The role of a span where it sits, at its start and again at its end. Besides
    /// what [`classify`](Self::classify) sees:
    ///
    /// - Mastra's `step: N` is a step when its parent is a generation;
    /// - the OpenAI Agents SDK's loop turn, a `CHAIN` named `turn`, is a step when its
    ///   parent is an invocation (its agent's `AGENT` span);
    /// - the OpenAI Agents SDK's root `AGENT` named `Agent workflow` (it wraps each run,
    ///   the agent's own `AGENT` below it) is a workflow;
    /// - smolagents' `Step N` (a `CHAIN`) is a step when its parent is an invocation;
    /// - LlamaIndex's workflow agents: the root `CHAIN` `<Agent>.run` is an invocation,
    ///   `BaseWorkflowAgent.run_agent_step` a step, and `<LLM>._prepare_chat_with_tools`
    ///   (marked `LLM`, it calls no model) plays no role;
    /// - DSPy's agent modules through OpenInference: a root `CHAIN` named
    ///   `ReAct.forward` or `ReAct.aforward` (likewise `ReActV2`, `CodeAct`, `RLM`,
    ///   `Avatar`) is an invocation.
    ///
    /// `parent_role` is asked only for a name that needs it; `is_root`: the span has no
    /// parent in this process.
    pub(crate) fn classify_in_context(
        &self,
        name: &str,
        attributes: &[KeyValue],
        is_root: bool,
        parent_role: impl FnOnce() -> Option<Role>,
    ) -> Role {
        let role = self.classify(name, attributes);
        // LlamaIndex's workflow agents (OpenInference, every kind set at end): the root
        // `<Agent>.run` chain is the invocation, each `run_agent_step` a step, and the
        // `_prepare_chat_with_tools` span marked `LLM` calls no model.
        match role {
            Role::Workflow if name == LLAMA_INDEX_STEP => return Role::Step,
            Role::Workflow if is_root && name.ends_with(LLAMA_INDEX_RUN) => {
                return Role::Invocation
            }
            Role::Workflow if is_root && dspy_agent_name(name) => return Role::Invocation,
            Role::Generation if name.ends_with(LLAMA_INDEX_PREPARE) => return Role::Other,
            _ => {}
        }
        // Which rule of context could apply (names first: most spans need none).
        let wants_parent = match role {
            Role::Other => mastra_step_name(name).then_some(Role::Generation),
            Role::Workflow => (name == OPENAI_AGENTS_TURN || smolagents_step_name(name))
                .then_some(Role::Invocation),
            _ => None,
        };
        if let Some(wanted) = wants_parent {
            if parent_role() == Some(wanted) {
                return Role::Step;
            }
            return role;
        }
        if role == Role::Invocation
            && is_root
            && name == OPENAI_AGENTS_WORKFLOW
            && last_value(attributes, openinference::SPAN_KIND)
                .is_some_and(|v| v.as_str() == "AGENT")
        {
            return Role::Workflow;
        }
        role
    }
}

/// LlamaIndex's workflow agents: a run (`FunctionAgent.run`, `ReActAgent.run`, ...),
/// a step of it, and the preparation of a model call that OpenInference marks `LLM`.
const LLAMA_INDEX_RUN: &str = "Agent.run";
const LLAMA_INDEX_STEP: &str = "BaseWorkflowAgent.run_agent_step";
const LLAMA_INDEX_PREPARE: &str = "._prepare_chat_with_tools";

/// DSPy's modules that run an agent loop (tools called until the model submits), as
/// OpenInference names their spans: `<class>.forward`, `<class>.aforward`.
const DSPY_AGENTS: [&str; 5] = ["ReAct", "ReActV2", "CodeAct", "RLM", "Avatar"];

/// Whether a span name is DSPy's span of an agent module's run (`ReAct.forward`,
/// `ReAct.aforward`, ...).
fn dspy_agent_name(name: &str) -> bool {
    let Some(class) = name
        .strip_suffix(".forward")
        .or_else(|| name.strip_suffix(".aforward"))
    else {
        return false;
    };
    DSPY_AGENTS.contains(&class)
}

/// Whether a span name is smolagents' name of a step of its agent (`Step 1`, `Step 2`,
/// ...; a `CHAIN` under the agent's `AGENT`).
fn smolagents_step_name(name: &str) -> bool {
    name.strip_prefix("Step ")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The OpenAI Agents SDK's span of one turn of its agent loop (an OpenInference `CHAIN`).
const OPENAI_AGENTS_TURN: &str = "turn";
/// The OpenAI Agents SDK's root span of a run (an OpenInference `AGENT` and, below it,
/// a `CHAIN` of the same name).
const OPENAI_AGENTS_WORKFLOW: &str = "Agent workflow";

/// The attribute keys the built-in rules read, in the order they are tried.
const SIGNAL_KEYS: [&str; 8] = [
    gen_ai::OPERATION_NAME,
    gen_ai::SPAN_KIND,
    openinference::SPAN_KIND,
    traceloop::SPAN_KIND,
    langfuse::OBSERVATION_TYPE,
    mastra::SPAN_TYPE,
    vercel::OPERATION_ID,
    traceloop::LLM_REQUEST_TYPE,
];
const OPERATION: usize = 0;
const KINDS: std::ops::Range<usize> = 1..5;
const OPENINFERENCE_KIND: usize = 2;
const MASTRA_TYPE: usize = 5;
const VERCEL_OPERATION: usize = 6;
const LLM_REQUEST_TYPE: usize = 7;

/// Which of [`SIGNAL_KEYS`] an attribute key is, if any: its length and first byte
/// leave at most one candidate, so most keys (`http.*`, `db.*`, `gen_ai.usage.*`) are
/// dismissed without comparing a string.
#[inline]
pub(crate) fn signal_index(key: &str) -> Option<usize> {
    /// The lengths of [`SIGNAL_KEYS`], one bit each.
    const LENGTHS: u64 = 1 << 14 | 1 << 16 | 1 << 19 | 1 << 21 | 1 << 23 | 1 << 25;
    if key.len() >= 64 || LENGTHS >> key.len() & 1 == 0 {
        return None;
    }
    let candidate = match (key.len(), *key.as_bytes().first()?) {
        (21, b'g') => 0,
        (16, b'g') => 1,
        (23, b'o') => 2,
        (19, b't') => 3,
        (25, b'l') => 4,
        (16, b'm') => 5,
        (14, b'a') => 6,
        (16, b'l') => 7,
        _ => return None,
    };
    (SIGNAL_KEYS[candidate] == key).then_some(candidate)
}

/// The last value of each of [`SIGNAL_KEYS`], in one pass over the attributes.
fn signals(attributes: &[KeyValue]) -> [Option<&Value>; 8] {
    let mut found: [Option<&Value>; 8] = [None; 8];
    let mut missing = SIGNAL_KEYS.len();
    for kv in attributes.iter().rev() {
        let Some(i) = signal_index(kv.key.as_str()) else {
            continue;
        };
        if found[i].is_none() {
            found[i] = Some(&kv.value);
            missing -= 1;
            if missing == 0 {
                break;
            }
        }
    }
    found
}

/// The built-in rules. A span without any of [`SIGNAL_KEYS`] (most spans that are not
/// gen-ai) is judged by its name alone, without leaving this function.
#[inline]
pub(crate) fn builtin_role(name: &str, attributes: &[KeyValue]) -> Role {
    if attributes
        .iter()
        .any(|kv| signal_index(kv.key.as_str()).is_some())
    {
        role_from_signals(name, attributes)
    } else {
        name_role(name).unwrap_or(Role::Other)
    }
}

/// The built-in rules for a span with at least one of [`SIGNAL_KEYS`].
#[inline(never)]
fn role_from_signals(name: &str, attributes: &[KeyValue]) -> Role {
    let found = signals(attributes);
    let text = |i: usize| match found[i] {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    if let Some(role) = text(OPERATION).and_then(operation_role) {
        return role;
    }
    for i in KINDS {
        let Some(kind) = text(i) else {
            continue;
        };
        if i == OPENINFERENCE_KIND && kind.eq_ignore_ascii_case("chain") {
            return langgraph_chain_role(name, attributes);
        }
        if let Some(role) = kind_role(kind) {
            return role;
        }
    }
    if let Some(role) = text(MASTRA_TYPE).and_then(mastra_role) {
        return role;
    }
    if let Some(role) = text(VERCEL_OPERATION).and_then(vercel_role) {
        return role;
    }
    if let Some(role) = text(LLM_REQUEST_TYPE).and_then(|t| match t {
        "chat" | "completion" => Some(Role::Generation),
        "embedding" => Some(Role::Embedding),
        _ => None,
    }) {
        return role;
    }
    name_role(name).unwrap_or(Role::Other)
}

fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match last_value(attributes, key)? {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Strands Agents names each cycle of its agent loop so, and sets the same value as
/// `gen_ai.operation.name` at its end: Python, then Rust.
const STRANDS_CYCLE_PYTHON: &str = "execute_event_loop_cycle";
const STRANDS_CYCLE_RUST: &str = "execute_agent_loop_cycle";

fn operation_role(operation: &str) -> Option<Role> {
    Some(match operation {
        "invoke_agent" => Role::Invocation,
        "react" | "plan" | "agent_step" => Role::Step,
        // Strands Agents' cycles of the agent loop (Python, Rust).
        STRANDS_CYCLE_PYTHON | STRANDS_CYCLE_RUST => Role::Step,
        "chat"
        | "text_completion"
        | "generate_content"
        | "generate_live_content"
        | "completion" => Role::Generation,
        "embeddings" => Role::Embedding,
        "execute_tool" => Role::Tool,
        "invoke_workflow" => Role::Workflow,
        "retrieval" => Role::Retrieval,
        _ => return None,
    })
}

fn kind_role(kind: &str) -> Option<Role> {
    const KINDS: [(&str, Role); 9] = [
        ("agent", Role::Invocation),
        ("step", Role::Step),
        ("llm", Role::Generation),
        ("generation", Role::Generation),
        ("embedding", Role::Embedding),
        ("tool", Role::Tool),
        ("retriever", Role::Retrieval),
        ("workflow", Role::Workflow),
        ("chain", Role::Workflow),
    ];
    KINDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(kind))
        .map(|(_, role)| *role)
}

fn vercel_role(operation_id: &str) -> Option<Role> {
    match operation_id {
        "ai.generateText" | "ai.streamText" | "ai.generateObject" | "ai.streamObject" => {
            return Some(Role::Invocation)
        }
        "ai.toolCall" => return Some(Role::Tool),
        _ => {}
    }
    let rest = operation_id.strip_prefix("ai.")?;
    if rest.ends_with(".doGenerate") || rest.ends_with(".doStream") {
        Some(Role::Generation)
    } else if rest.starts_with("embed") && rest.ends_with(".doEmbed") {
        Some(Role::Embedding)
    } else {
        None
    }
}

/// Mastra's `mastra.span.type` (set at end). Its `model_inference` and `model_chunk`
/// spans play no role.
fn mastra_role(span_type: &str) -> Option<Role> {
    Some(match span_type {
        "agent_run" => Role::Invocation,
        "model_step" => Role::Step,
        "model_generation" => Role::Generation,
        "tool_call" | "mcp_tool_call" => Role::Tool,
        "workflow_run" => Role::Workflow,
        _ => return None,
    })
}

/// How much of OpenInference's `metadata` JSON is searched for LangGraph's keys: the
/// value can hold whole message lists (megabytes), and LangChain writes the keys it
/// needs first.
const METADATA_SCAN_BYTES: usize = 4096;

/// An OpenInference `CHAIN` under LangChain / LangGraph: the agent (an invocation) has
/// `lc_agent_name` in its `metadata` and no `langgraph_node`; a node run named after a
/// model node (`model_request`, `model`, `agent`) is a step; every other chain is a
/// workflow. Nested runnables inherit their node's metadata, so a step must also carry
/// its node's name (a `RunnableLambda` inside `model_request` is a workflow).
fn langgraph_chain_role(name: &str, attributes: &[KeyValue]) -> Role {
    let Some(metadata) = string_attr(attributes, openinference::METADATA) else {
        return Role::Workflow;
    };
    let head = bounded_prefix(metadata, METADATA_SCAN_BYTES);
    match json_string_member(head, "langgraph_node") {
        Some(node) if ["model_request", "model", "agent"].contains(&node) && node == name => {
            Role::Step
        }
        Some(_) => Role::Workflow,
        None if json_string_member(head, "lc_agent_name").is_some() => Role::Invocation,
        None => Role::Workflow,
    }
}

/// LangChain's agent name (`lc_agent_name` in OpenInference's `metadata` JSON), read
/// from the same bounded prefix as the role.
pub(crate) fn langchain_agent_name(attributes: &[KeyValue]) -> Option<&str> {
    let metadata = string_attr(attributes, openinference::METADATA)?;
    json_string_member(
        bounded_prefix(metadata, METADATA_SCAN_BYTES),
        "lc_agent_name",
    )
    .filter(|name| !name.is_empty())
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn bounded_prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The value of the first member `"key": "value"` in a JSON text, when it is a string
/// without escapes (LangGraph's node names and agent names are plain identifiers).
/// Not a JSON parser: it looks for the key's quoted name followed by a colon, so it
/// costs one pass over the text, whatever its size.
fn json_string_member<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = json;
    loop {
        let at = rest.find(key)?;
        let before = &rest[..at];
        let after = &rest[at + key.len()..];
        rest = after;
        if !before.ends_with('"') {
            continue;
        }
        let Some(after) = after.strip_prefix('"') else {
            continue;
        };
        let Some(after) = after.trim_start().strip_prefix(':') else {
            continue;
        };
        let after = after.trim_start();
        let value = after.strip_prefix('"')?;
        let end = value.find(['"', '\\'])?;
        return value[end..].starts_with('"').then(|| &value[..end]);
    }
}

/// Whether a span name is Mastra's name of a model step (`step: 0`, `step: 1`, ...). It
/// makes a step only under a Mastra generation (see [`Recogniser::classify_in_context`]).
fn mastra_step_name(name: &str) -> bool {
    name.as_bytes().first() == Some(&b's')
        && name
            .strip_prefix("step: ")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn name_role(name: &str) -> Option<Role> {
    // Every name rule starts with a lower-case letter among these: other names (most
    // spans that are not gen-ai: `GET /x`, `SELECT ...`) cost one comparison.
    match name.as_bytes().first()? {
        b'i' => name.starts_with("invoke_agent").then_some(Role::Invocation),
        b'r' => (name == "react step").then_some(Role::Step),
        b'c' if operation_name(name, "chat") => Some(Role::Generation),
        b't' if operation_name(name, "text_completion") => Some(Role::Generation),
        b'g' if operation_name(name, "generate_content") => Some(Role::Generation),
        b'e' if operation_name(name, "embeddings") => Some(Role::Embedding),
        b'e' if name.starts_with("execute_tool") => Some(Role::Tool),
        b'e' if name == STRANDS_CYCLE_PYTHON || name == STRANDS_CYCLE_RUST => Some(Role::Step),
        b'a' | b'l' | b't' | b'm' | b'w' => mastra_name_role(name),
        _ => None,
    }
}

/// Mastra names its spans at start: `agent run: 'name'`, `llm: 'model'`,
/// `tool: 'name'`, `workflow run: 'name'`.
fn mastra_name_role(name: &str) -> Option<Role> {
    const NAMES: [(&str, Role); 5] = [
        ("agent run: '", Role::Invocation),
        ("llm: '", Role::Generation),
        ("tool: '", Role::Tool),
        ("mcp tool: '", Role::Tool),
        ("workflow run: '", Role::Workflow),
    ];
    NAMES
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix) && name.ends_with('\''))
        .map(|(_, role)| *role)
}

/// Whether a span name is an OpenTelemetry GenAI operation name: `{operation} {model}`,
/// or the bare `{operation}` the conventions use when the model is not known (rig names
/// its model-call spans `chat`, for example).
fn operation_name(name: &str, operation: &str) -> bool {
    name.strip_prefix(operation)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
}

#[cfg(test)]
mod tests;
