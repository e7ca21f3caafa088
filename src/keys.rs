//! The attribute keys the processor writes.
//!
//! Every key it owns starts with `genai_audit.`; besides those, a priced call may get
//! the cost keys other backends read ([`GEN_AI_USAGE_COST`], and on request
//! [`LLM_COST_TOTAL`] and [`OPERATION_COST`]), and a repaired span gets its original
//! values under [`REPORTED_PREFIX`]. Spans the audit closes carry one of the status
//! descriptions [`UNCLOSED_STATUS`] and [`STALE_STATUS`]; the metrics' names and
//! attributes are in [`metric`].
//!
//! The keys the processor *reads* (the OpenTelemetry GenAI conventions, OpenInference,
//! OpenLLMetry, Langfuse, the Vercel AI SDK, Mastra) are other projects' vocabulary and
//! are not part of this crate's API.

/// The span's role.
pub const ROLE: &str = "genai_audit.role";
/// This call's cost in USD.
pub const COST_USD: &str = "genai_audit.cost_usd";
/// `computed` or `reported`.
pub const COST_SOURCE: &str = "genai_audit.cost.source";
/// `provider/model` the price matched.
pub const COST_MODEL: &str = "genai_audit.cost.model";
/// No price found; no cost written.
pub const COST_UNPRICED: &str = "genai_audit.cost.unpriced";

/// On a generation that wraps another generation of the same model call, or that
/// another generation of it wraps (a framework's span around the client library's):
/// the call is counted once, on the other span; this one gets no cost and is in no
/// count or total.
pub const WRAPPER: &str = "genai_audit.wrapper";

/// Running totals on a generation.
pub mod cumulative {
    /// Input tokens so far.
    pub const INPUT_TOKENS: &str = "genai_audit.cumulative.input_tokens";
    /// Output tokens so far.
    pub const OUTPUT_TOKENS: &str = "genai_audit.cumulative.output_tokens";
    /// Cache-read tokens so far.
    pub const CACHE_READ_TOKENS: &str = "genai_audit.cumulative.cache_read_tokens";
    /// Cache-write tokens so far.
    pub const CACHE_WRITE_TOKENS: &str = "genai_audit.cumulative.cache_write_tokens";
    /// Reasoning tokens so far.
    pub const REASONING_TOKENS: &str = "genai_audit.cumulative.reasoning_tokens";
    /// Cost so far, in USD.
    pub const COST_USD: &str = "genai_audit.cumulative.cost_usd";
    /// Generations so far.
    pub const GENERATIONS: &str = "genai_audit.cumulative.generations";
}

/// Rolled-up totals on invocations, steps, workflows and tools.
pub mod total {
    /// Input tokens.
    pub const INPUT_TOKENS: &str = "genai_audit.total.input_tokens";
    /// Output tokens.
    pub const OUTPUT_TOKENS: &str = "genai_audit.total.output_tokens";
    /// Cache-read tokens.
    pub const CACHE_READ_TOKENS: &str = "genai_audit.total.cache_read_tokens";
    /// Cache-write tokens.
    pub const CACHE_WRITE_TOKENS: &str = "genai_audit.total.cache_write_tokens";
    /// Reasoning tokens.
    pub const REASONING_TOKENS: &str = "genai_audit.total.reasoning_tokens";
    /// Cost in USD.
    pub const COST_USD: &str = "genai_audit.total.cost_usd";
    /// Generations.
    pub const GENERATIONS: &str = "genai_audit.total.generations";
    /// Tool calls.
    pub const TOOL_CALLS: &str = "genai_audit.total.tool_calls";
    /// Some descendant was unpriced, or still open when this span ended.
    pub const PARTIAL: &str = "genai_audit.total.partial";
}

/// Step spans started under an invocation.
pub const STEPS: &str = "genai_audit.steps";
/// 1-based position of a step among its invocation's steps.
pub const STEP_INDEX: &str = "genai_audit.step.index";
/// Cache counts were exclusive of input (Anthropic style).
pub const USAGE_CACHE_EXCLUSIVE: &str = "genai_audit.usage.cache_exclusive";
/// Reasoning counts were exclusive of output.
pub const USAGE_REASONING_EXCLUSIVE: &str = "genai_audit.usage.reasoning_exclusive";
/// Codes of the findings about this span.
pub const FINDINGS: &str = "genai_audit.findings";
/// Recognised children still open when this span ended.
pub const LEAK_UNCLOSED_CHILDREN: &str = "genai_audit.leak.unclosed_children";
/// Names of those children.
pub const LEAK_UNCLOSED_NAMES: &str = "genai_audit.leak.unclosed_names";
/// Prefix under which a repaired span keeps its original values.
pub const REPORTED_PREFIX: &str = "genai_audit.reported.";

/// `gen_ai.usage.cost`: a double in USD, read by Langfuse and OpenLIT; written on a
/// priced call that has none (on by default, see `CostAttributes`).
pub const GEN_AI_USAGE_COST: &str = "gen_ai.usage.cost";
/// `llm.cost.total`: OpenInference's total cost in USD (opt-in).
pub const LLM_COST_TOTAL: &str = "llm.cost.total";
/// `operation.cost`: a generic cost key read by some APM backends (opt-in).
pub const OPERATION_COST: &str = "operation.cost";

/// Status description of a span the audit closed because its parent ended with it
/// open (leak policy `close`).
pub const UNCLOSED_STATUS: &str = "unclosed when parent ended";
/// Status description of a span the audit closed because it was evicted while open
/// (leak policy `close`).
pub const STALE_STATUS: &str = "evicted while open (stale)";

/// The names of the instruments the processor records on the meter provider given
/// to its builder (instrumentation scope `genai-audit`), and their attribute keys.
pub mod metric {
    /// Counter of findings, unit `{finding}`.
    pub const FINDINGS: &str = "genai_audit.findings";
    /// Spans the processor currently keeps state for, unit `{span}`.
    pub const SPANS_TRACKED: &str = "genai_audit.spans.tracked";
    /// Attribute of [`FINDINGS`]: the finding's code.
    pub const FINDING: &str = "genai_audit.finding";
    /// Attribute of [`FINDINGS`]: the role of the span the finding is about.
    pub const ROLE: &str = "genai_audit.role";
    /// Attribute of [`FINDINGS`]: whether the `repair` policy corrected it.
    pub const REPAIRED: &str = "genai_audit.repaired";
    /// Counter of the cost of priced calls, unit `USD`.
    pub const COST: &str = "genai_audit.cost";
    /// Histogram of the cost of each invocation, unit `USD`.
    pub const INVOCATION_COST: &str = "genai_audit.invocation.cost";
    /// Histogram of the tokens of each invocation, unit `{token}`.
    pub const INVOCATION_TOKENS: &str = "genai_audit.invocation.tokens";
    /// The OpenTelemetry GenAI conventions' token histogram, unit `{token}` (opt-in).
    pub const CLIENT_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
    /// Attribute: the provider of a call.
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// Attribute: the model of a call.
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    /// Attribute: the model that answered a call.
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// Attribute: the operation of a call (`chat`, ...).
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    /// Attribute: the agent of an invocation.
    pub const AGENT_NAME: &str = "gen_ai.agent.name";
    /// Attribute: `input` or `output`.
    pub const TOKEN_TYPE: &str = "gen_ai.token.type";
    /// Attribute of [`COST`]: `computed` or `reported`.
    pub const COST_SOURCE: &str = "genai_audit.cost.source";
    /// The value recorded instead of a model, provider or agent name past the
    /// cardinality bound.
    pub const OTHER: &str = "_other";
}

/// Keys of other projects' conventions that the processor reads.
pub(crate) mod read {
    /// OpenTelemetry GenAI semantic conventions (and LoongSuite, which uses them).
    pub(crate) mod gen_ai {
        /// `gen_ai.operation.name`: the primary role signal.
        pub(crate) const OPERATION_NAME: &str = "gen_ai.operation.name";
        /// `gen_ai.span.kind`: LoongSuite's span kind (`AGENT`, `STEP`, `LLM`, ...).
        pub(crate) const SPAN_KIND: &str = "gen_ai.span.kind";
        /// `gen_ai.provider.name`.
        pub(crate) const PROVIDER_NAME: &str = "gen_ai.provider.name";
        /// `gen_ai.system` (deprecated predecessor of `gen_ai.provider.name`).
        pub(crate) const SYSTEM: &str = "gen_ai.system";
        /// `gen_ai.request.model`.
        pub(crate) const REQUEST_MODEL: &str = "gen_ai.request.model";
        /// `gen_ai.response.model`.
        pub(crate) const RESPONSE_MODEL: &str = "gen_ai.response.model";
        /// `gen_ai.response.id`.
        pub(crate) const RESPONSE_ID: &str = "gen_ai.response.id";
        /// `gen_ai.conversation.id`.
        pub(crate) const CONVERSATION_ID: &str = "gen_ai.conversation.id";
        /// `gen_ai.agent.name`.
        pub(crate) const AGENT_NAME: &str = "gen_ai.agent.name";
        /// `gen_ai.react.round`.
        pub(crate) const REACT_ROUND: &str = "gen_ai.react.round";
        /// `gen_ai.usage.input_tokens`.
        pub(crate) const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
        /// `gen_ai.usage.output_tokens`.
        pub(crate) const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
        /// `gen_ai.usage.prompt_tokens` (deprecated).
        pub(crate) const USAGE_PROMPT_TOKENS: &str = "gen_ai.usage.prompt_tokens";
        /// `gen_ai.usage.completion_tokens` (deprecated).
        pub(crate) const USAGE_COMPLETION_TOKENS: &str = "gen_ai.usage.completion_tokens";
        /// `gen_ai.usage.cache_read.input_tokens`.
        pub(crate) const USAGE_CACHE_READ_INPUT_TOKENS: &str =
            "gen_ai.usage.cache_read.input_tokens";
        /// `gen_ai.usage.cache_read_input_tokens` (older spelling).
        pub(crate) const USAGE_CACHE_READ_INPUT_TOKENS_OLD: &str =
            "gen_ai.usage.cache_read_input_tokens";
        /// `gen_ai.usage.cache_write.input_tokens`.
        pub(crate) const USAGE_CACHE_WRITE_INPUT_TOKENS: &str =
            "gen_ai.usage.cache_write.input_tokens";
        /// `gen_ai.usage.cache_creation.input_tokens`.
        pub(crate) const USAGE_CACHE_CREATION_INPUT_TOKENS: &str =
            "gen_ai.usage.cache_creation.input_tokens";
        /// `gen_ai.usage.cache_creation_input_tokens` (older spelling).
        pub(crate) const USAGE_CACHE_CREATION_INPUT_TOKENS_OLD: &str =
            "gen_ai.usage.cache_creation_input_tokens";
        /// `gen_ai.usage.reasoning.output_tokens`.
        pub(crate) const USAGE_REASONING_OUTPUT_TOKENS: &str =
            "gen_ai.usage.reasoning.output_tokens";
        /// `gen_ai.usage.reasoning_tokens` (older spelling).
        pub(crate) const USAGE_REASONING_TOKENS: &str = "gen_ai.usage.reasoning_tokens";
    }

    /// OpenInference (Arize Phoenix).
    pub(crate) mod openinference {
        /// `openinference.span.kind`.
        pub(crate) const SPAN_KIND: &str = "openinference.span.kind";
        /// `metadata`: a JSON object (LangChain puts LangGraph's node and agent names in it).
        pub(crate) const METADATA: &str = "metadata";
        /// `llm.model_name`.
        pub(crate) const MODEL_NAME: &str = "llm.model_name";
        /// `llm.provider`.
        pub(crate) const PROVIDER: &str = "llm.provider";
        /// `llm.token_count.prompt`.
        pub(crate) const TOKEN_COUNT_PROMPT: &str = "llm.token_count.prompt";
        /// `llm.token_count.completion`.
        pub(crate) const TOKEN_COUNT_COMPLETION: &str = "llm.token_count.completion";
        /// `llm.token_count.prompt_details.cache_read`.
        pub(crate) const TOKEN_COUNT_CACHE_READ: &str = "llm.token_count.prompt_details.cache_read";
        /// `llm.token_count.prompt_details.cache_write`.
        pub(crate) const TOKEN_COUNT_CACHE_WRITE: &str =
            "llm.token_count.prompt_details.cache_write";
        /// `llm.token_count.completion_details.reasoning`.
        pub(crate) const TOKEN_COUNT_REASONING: &str =
            "llm.token_count.completion_details.reasoning";
    }

    /// OpenLLMetry (Traceloop).
    pub(crate) mod traceloop {
        /// `traceloop.span.kind`.
        pub(crate) const SPAN_KIND: &str = "traceloop.span.kind";
        /// `llm.request.type`: `chat`, `completion`, `embedding`, ... on OpenLLMetry model calls.
        pub(crate) const LLM_REQUEST_TYPE: &str = "llm.request.type";
    }

    /// Langfuse.
    pub(crate) mod langfuse {
        /// `langfuse.observation.type`.
        pub(crate) const OBSERVATION_TYPE: &str = "langfuse.observation.type";
    }

    /// Vercel AI SDK (`ai` on npm).
    pub(crate) mod vercel {
        /// `ai.operationId`: `ai.generateText`, `ai.generateText.doGenerate`, `ai.toolCall`, ...
        pub(crate) const OPERATION_ID: &str = "ai.operationId";
        /// `ai.response.model`.
        pub(crate) const RESPONSE_MODEL: &str = "ai.response.model";
        /// `ai.model.id`.
        pub(crate) const MODEL_ID: &str = "ai.model.id";
        /// `ai.model.provider`.
        pub(crate) const MODEL_PROVIDER: &str = "ai.model.provider";
        /// `ai.usage.inputTokens`.
        pub(crate) const USAGE_INPUT_TOKENS: &str = "ai.usage.inputTokens";
        /// `ai.usage.promptTokens` (AI SDK 4).
        pub(crate) const USAGE_PROMPT_TOKENS: &str = "ai.usage.promptTokens";
        /// `ai.usage.outputTokens`.
        pub(crate) const USAGE_OUTPUT_TOKENS: &str = "ai.usage.outputTokens";
        /// `ai.usage.completionTokens` (AI SDK 4).
        pub(crate) const USAGE_COMPLETION_TOKENS: &str = "ai.usage.completionTokens";
        /// `ai.usage.inputTokenDetails.cacheReadTokens`.
        pub(crate) const USAGE_CACHE_READ_TOKENS: &str =
            "ai.usage.inputTokenDetails.cacheReadTokens";
        /// `ai.usage.cachedInputTokens` (AI SDK 5).
        pub(crate) const USAGE_CACHED_INPUT_TOKENS: &str = "ai.usage.cachedInputTokens";
        /// `ai.usage.inputTokenDetails.cacheWriteTokens`.
        pub(crate) const USAGE_CACHE_WRITE_TOKENS: &str =
            "ai.usage.inputTokenDetails.cacheWriteTokens";
        /// `ai.usage.outputTokenDetails.reasoningTokens`.
        pub(crate) const USAGE_REASONING_TOKENS_DETAIL: &str =
            "ai.usage.outputTokenDetails.reasoningTokens";
        /// `ai.usage.reasoningTokens` (AI SDK 5).
        pub(crate) const USAGE_REASONING_TOKENS: &str = "ai.usage.reasoningTokens";
    }

    /// Mastra's observability exported as OpenTelemetry spans.
    pub(crate) mod mastra {
        /// `mastra.span.type`: `agent_run`, `model_generation`, `model_step`, ...
        pub(crate) const SPAN_TYPE: &str = "mastra.span.type";
    }

    /// Cost keys of other tools, read when a span reports its own cost.
    pub(crate) mod cost {
        /// `gen_ai.usage.cost`: a double in USD.
        pub(crate) const GEN_AI_USAGE_COST: &str = super::super::GEN_AI_USAGE_COST;
        /// `gen_ai.usage.cost.amount`: a cost whose currency is in `gen_ai.usage.cost.currency`.
        pub(crate) const GEN_AI_USAGE_COST_AMOUNT: &str = "gen_ai.usage.cost.amount";
        /// `gen_ai.usage.cost.currency`: only `USD` is used.
        pub(crate) const GEN_AI_USAGE_COST_CURRENCY: &str = "gen_ai.usage.cost.currency";
        /// `llm.cost.total`: OpenInference's total cost in USD.
        pub(crate) const LLM_COST_TOTAL: &str = super::super::LLM_COST_TOTAL;
    }
}

/// The keys the engine reads besides those under [`READ_PREFIXES`]: recognition's
/// signals, models and providers, response ids, conversation and agent names, ReAct
/// rounds, reported costs.
const READ_KEYS: &[&str] = &[
    read::gen_ai::OPERATION_NAME,
    read::gen_ai::SPAN_KIND,
    read::gen_ai::PROVIDER_NAME,
    read::gen_ai::SYSTEM,
    read::gen_ai::REQUEST_MODEL,
    read::gen_ai::RESPONSE_MODEL,
    read::gen_ai::RESPONSE_ID,
    read::gen_ai::CONVERSATION_ID,
    read::gen_ai::AGENT_NAME,
    read::gen_ai::REACT_ROUND,
    read::openinference::SPAN_KIND,
    read::openinference::METADATA,
    read::openinference::MODEL_NAME,
    read::openinference::PROVIDER,
    read::traceloop::SPAN_KIND,
    read::traceloop::LLM_REQUEST_TYPE,
    read::langfuse::OBSERVATION_TYPE,
    read::vercel::OPERATION_ID,
    read::vercel::RESPONSE_MODEL,
    read::vercel::MODEL_ID,
    read::vercel::MODEL_PROVIDER,
    read::mastra::SPAN_TYPE,
    read::cost::LLM_COST_TOTAL,
];

/// Prefixes of keys the engine reads: token counts and reported costs in every
/// convention (a key under them that is not a known count is still looked at), and
/// the engine's own keys.
const READ_PREFIXES: [&str; 4] = [
    "gen_ai.usage.",
    "llm.token_count.",
    "ai.usage.",
    "genai_audit.",
];

/// Whether the built-in engine (recognition, usage, pricing, contamination, budgets,
/// metrics) may read attribute `key`: an edge can leave every other attribute out of
/// what it hands the engine (prompts and completions, mostly) and get the same verdict.
pub(crate) fn read_by_engine(key: &str) -> bool {
    READ_PREFIXES.iter().any(|p| key.starts_with(p)) || READ_KEYS.contains(&key)
}
