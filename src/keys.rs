//! Every attribute key the processor reads or writes, in one place.
//!
//! The gen-ai keys of `opentelemetry-semantic-conventions` are deprecated there
//! (the GenAI conventions are still in development), so the crate defines the keys it
//! reads here instead, grouped by convention. The keys it writes all start with
//! `genai_audit.` ([`audit`]), except the cost interop keys of [`cost`].

/// OpenTelemetry GenAI semantic conventions (and LoongSuite, which uses them).
pub mod gen_ai {
    /// `gen_ai.operation.name`: the primary role signal.
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    /// `gen_ai.span.kind`: LoongSuite's span kind (`AGENT`, `STEP`, `LLM`, ...).
    pub const SPAN_KIND: &str = "gen_ai.span.kind";
    /// `gen_ai.provider.name`.
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// `gen_ai.system` (deprecated predecessor of `gen_ai.provider.name`).
    pub const SYSTEM: &str = "gen_ai.system";
    /// `gen_ai.request.model`.
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    /// `gen_ai.response.model`.
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// `gen_ai.response.id`.
    pub const RESPONSE_ID: &str = "gen_ai.response.id";
    /// `gen_ai.conversation.id`.
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
    /// `gen_ai.agent.name`.
    pub const AGENT_NAME: &str = "gen_ai.agent.name";
    /// `gen_ai.react.round`.
    pub const REACT_ROUND: &str = "gen_ai.react.round";
    /// `gen_ai.usage.input_tokens`.
    pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    /// `gen_ai.usage.output_tokens`.
    pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// `gen_ai.usage.prompt_tokens` (deprecated).
    pub const USAGE_PROMPT_TOKENS: &str = "gen_ai.usage.prompt_tokens";
    /// `gen_ai.usage.completion_tokens` (deprecated).
    pub const USAGE_COMPLETION_TOKENS: &str = "gen_ai.usage.completion_tokens";
    /// `gen_ai.usage.cache_read.input_tokens`.
    pub const USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
    /// `gen_ai.usage.cache_read_input_tokens` (older spelling).
    pub const USAGE_CACHE_READ_INPUT_TOKENS_OLD: &str = "gen_ai.usage.cache_read_input_tokens";
    /// `gen_ai.usage.cache_write.input_tokens`.
    pub const USAGE_CACHE_WRITE_INPUT_TOKENS: &str = "gen_ai.usage.cache_write.input_tokens";
    /// `gen_ai.usage.cache_creation.input_tokens`.
    pub const USAGE_CACHE_CREATION_INPUT_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
    /// `gen_ai.usage.cache_creation_input_tokens` (older spelling).
    pub const USAGE_CACHE_CREATION_INPUT_TOKENS_OLD: &str =
        "gen_ai.usage.cache_creation_input_tokens";
    /// `gen_ai.usage.reasoning.output_tokens`.
    pub const USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
    /// `gen_ai.usage.reasoning_tokens` (older spelling).
    pub const USAGE_REASONING_TOKENS: &str = "gen_ai.usage.reasoning_tokens";
}

/// OpenInference (Arize Phoenix).
pub mod openinference {
    /// `openinference.span.kind`.
    pub const SPAN_KIND: &str = "openinference.span.kind";
    /// `llm.model_name`.
    pub const MODEL_NAME: &str = "llm.model_name";
    /// `llm.provider`.
    pub const PROVIDER: &str = "llm.provider";
    /// `llm.token_count.prompt`.
    pub const TOKEN_COUNT_PROMPT: &str = "llm.token_count.prompt";
    /// `llm.token_count.completion`.
    pub const TOKEN_COUNT_COMPLETION: &str = "llm.token_count.completion";
    /// `llm.token_count.prompt_details.cache_read`.
    pub const TOKEN_COUNT_CACHE_READ: &str = "llm.token_count.prompt_details.cache_read";
    /// `llm.token_count.prompt_details.cache_write`.
    pub const TOKEN_COUNT_CACHE_WRITE: &str = "llm.token_count.prompt_details.cache_write";
    /// `llm.token_count.completion_details.reasoning`.
    pub const TOKEN_COUNT_REASONING: &str = "llm.token_count.completion_details.reasoning";
}

/// OpenLLMetry (Traceloop).
pub mod traceloop {
    /// `traceloop.span.kind`.
    pub const SPAN_KIND: &str = "traceloop.span.kind";
    /// `llm.request.type`: `chat`, `completion`, `embedding`, ... on OpenLLMetry model calls.
    pub const LLM_REQUEST_TYPE: &str = "llm.request.type";
}

/// Langfuse.
pub mod langfuse {
    /// `langfuse.observation.type`.
    pub const OBSERVATION_TYPE: &str = "langfuse.observation.type";
}

/// Vercel AI SDK (`ai` on npm).
pub mod vercel {
    /// `ai.operationId`: `ai.generateText`, `ai.generateText.doGenerate`, `ai.toolCall`, ...
    pub const OPERATION_ID: &str = "ai.operationId";
    /// `ai.response.model`.
    pub const RESPONSE_MODEL: &str = "ai.response.model";
    /// `ai.model.id`.
    pub const MODEL_ID: &str = "ai.model.id";
    /// `ai.model.provider`.
    pub const MODEL_PROVIDER: &str = "ai.model.provider";
    /// `ai.usage.inputTokens`.
    pub const USAGE_INPUT_TOKENS: &str = "ai.usage.inputTokens";
    /// `ai.usage.promptTokens` (AI SDK 4).
    pub const USAGE_PROMPT_TOKENS: &str = "ai.usage.promptTokens";
    /// `ai.usage.outputTokens`.
    pub const USAGE_OUTPUT_TOKENS: &str = "ai.usage.outputTokens";
    /// `ai.usage.completionTokens` (AI SDK 4).
    pub const USAGE_COMPLETION_TOKENS: &str = "ai.usage.completionTokens";
    /// `ai.usage.inputTokenDetails.cacheReadTokens`.
    pub const USAGE_CACHE_READ_TOKENS: &str = "ai.usage.inputTokenDetails.cacheReadTokens";
    /// `ai.usage.cachedInputTokens` (AI SDK 5).
    pub const USAGE_CACHED_INPUT_TOKENS: &str = "ai.usage.cachedInputTokens";
    /// `ai.usage.inputTokenDetails.cacheWriteTokens`.
    pub const USAGE_CACHE_WRITE_TOKENS: &str = "ai.usage.inputTokenDetails.cacheWriteTokens";
    /// `ai.usage.outputTokenDetails.reasoningTokens`.
    pub const USAGE_REASONING_TOKENS_DETAIL: &str = "ai.usage.outputTokenDetails.reasoningTokens";
    /// `ai.usage.reasoningTokens` (AI SDK 5).
    pub const USAGE_REASONING_TOKENS: &str = "ai.usage.reasoningTokens";
}

/// Cost keys of other tools: read when a span reports its own cost, and written for
/// backends that read cost from them (DESIGN §4, §5).
pub mod cost {
    /// `gen_ai.usage.cost`: a double in USD, read by Langfuse and OpenLIT.
    pub const GEN_AI_USAGE_COST: &str = "gen_ai.usage.cost";
    /// `gen_ai.usage.cost.amount`: a cost whose currency is in [`GEN_AI_USAGE_COST_CURRENCY`].
    pub const GEN_AI_USAGE_COST_AMOUNT: &str = "gen_ai.usage.cost.amount";
    /// `gen_ai.usage.cost.currency`: only `USD` is used.
    pub const GEN_AI_USAGE_COST_CURRENCY: &str = "gen_ai.usage.cost.currency";
    /// `llm.cost.total`: OpenInference's total cost in USD.
    pub const LLM_COST_TOTAL: &str = "llm.cost.total";
    /// `operation.cost`: a generic cost key read by some APM backends.
    pub const OPERATION_COST: &str = "operation.cost";
}

/// The keys the processor owns (DESIGN §5).
pub mod audit {
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
}
