//! Token usage: reading it from any convention, normalising it, and adding it up.
//!
//! Each quantity is read from a list of keys, and the first key present wins
//! A value is used when it is an integer, a float with an integral value,
//! or a decimal string (`"154"`, `"154.0"`; what `tracing-opentelemetry` makes of a
//! `u64`), between 0 and 2^53 inclusive. Anything else (negative, fractional, NaN,
//! infinite, non-numeric, a boolean, an array, larger than 2^53) is not used: the
//! quantity counts as absent and the span gets the finding `invalid_usage`.
//!
//! Normalisation follows the OpenTelemetry GenAI conventions, where input includes
//! cached tokens and output includes reasoning tokens. An emitter that reports cache
//! counts exclusive of input (Anthropic's API style) shows up as cache read + cache
//! write > input; the input is then taken as input + cache read + cache write and the
//! span is marked `genai_audit.usage.cache_exclusive`. Likewise reasoning > output
//! means output excluded reasoning: output += reasoning, marked
//! `genai_audit.usage.reasoning_exclusive`.

use opentelemetry::{KeyValue, Value};

use crate::attributes::filter_bit;
use crate::keys::read::{gen_ai, openinference, vercel};

/// The largest token count accepted: 2^53, the largest integer a double holds exactly.
pub const MAX_TOKENS: u64 = 1 << 53;

const INPUT_KEYS: [&str; 5] = [
    gen_ai::USAGE_INPUT_TOKENS,
    gen_ai::USAGE_PROMPT_TOKENS,
    openinference::TOKEN_COUNT_PROMPT,
    vercel::USAGE_INPUT_TOKENS,
    vercel::USAGE_PROMPT_TOKENS,
];
const OUTPUT_KEYS: [&str; 5] = [
    gen_ai::USAGE_OUTPUT_TOKENS,
    gen_ai::USAGE_COMPLETION_TOKENS,
    openinference::TOKEN_COUNT_COMPLETION,
    vercel::USAGE_OUTPUT_TOKENS,
    vercel::USAGE_COMPLETION_TOKENS,
];
const CACHE_READ_KEYS: [&str; 5] = [
    gen_ai::USAGE_CACHE_READ_INPUT_TOKENS,
    gen_ai::USAGE_CACHE_READ_INPUT_TOKENS_OLD,
    openinference::TOKEN_COUNT_CACHE_READ,
    vercel::USAGE_CACHE_READ_TOKENS,
    vercel::USAGE_CACHED_INPUT_TOKENS,
];
const CACHE_WRITE_KEYS: [&str; 5] = [
    gen_ai::USAGE_CACHE_WRITE_INPUT_TOKENS,
    gen_ai::USAGE_CACHE_CREATION_INPUT_TOKENS,
    gen_ai::USAGE_CACHE_CREATION_INPUT_TOKENS_OLD,
    openinference::TOKEN_COUNT_CACHE_WRITE,
    vercel::USAGE_CACHE_WRITE_TOKENS,
];
const REASONING_KEYS: [&str; 5] = [
    gen_ai::USAGE_REASONING_OUTPUT_TOKENS,
    gen_ai::USAGE_REASONING_TOKENS,
    openinference::TOKEN_COUNT_REASONING,
    vercel::USAGE_REASONING_TOKENS_DETAIL,
    vercel::USAGE_REASONING_TOKENS,
];

/// The usage one span reports, normalised.
///
/// Read from a span with [`Usage::from_attributes`]; to price a usage of your own (in
/// a test of a [`Pricer`](crate::Pricer), say), build it with the `with_*` methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Input tokens, cached ones included.
    pub input: Option<u64>,
    /// Output tokens, reasoning ones included.
    pub output: Option<u64>,
    /// Input tokens read from the prompt cache.
    pub cache_read: Option<u64>,
    /// Input tokens written to the prompt cache.
    pub cache_write: Option<u64>,
    /// Output tokens spent on reasoning.
    pub reasoning: Option<u64>,
    /// Cache counts were reported exclusive of input and were added to it.
    pub cache_exclusive: bool,
    /// Reasoning was reported exclusive of output and was added to it.
    pub reasoning_exclusive: bool,
    /// Some value was present but unusable (the `invalid_usage` finding).
    pub invalid: bool,
}

impl Usage {
    /// Reads and normalises the usage of a span from its attributes.
    ///
    /// ```
    /// use genai_audit::usage::Usage;
    /// use opentelemetry::KeyValue;
    ///
    /// let usage = Usage::from_attributes(&[
    ///     KeyValue::new("gen_ai.usage.input_tokens", 100),
    ///     KeyValue::new("gen_ai.usage.cache_read.input_tokens", 300), // Anthropic style
    ///     KeyValue::new("gen_ai.usage.output_tokens", "20"),          // a string
    /// ]);
    /// assert_eq!(usage.input, Some(400));
    /// assert!(usage.cache_exclusive);
    /// assert_eq!(usage.output, Some(20));
    /// ```
    pub fn from_attributes(attributes: &[KeyValue]) -> Usage {
        let mut usage = Usage::default();
        let [input, output, cache_read, cache_write, reasoning] =
            present_counts(attributes).map(|value| {
                let count = value.and_then(token_count);
                usage.invalid |= value.is_some() && count.is_none();
                count
            });
        usage.input = input;
        usage.output = output;
        usage.cache_read = cache_read;
        usage.cache_write = cache_write;
        usage.reasoning = reasoning;

        if let Some(input) = usage.input {
            let cached = usage.cache_read.unwrap_or(0) + usage.cache_write.unwrap_or(0);
            if cached > input {
                usage.input = Some(input.saturating_add(cached));
                usage.cache_exclusive = true;
            }
        }
        if let (Some(output), Some(reasoning)) = (usage.output, usage.reasoning) {
            if reasoning > output {
                usage.output = Some(output.saturating_add(reasoning));
                usage.reasoning_exclusive = true;
            }
        }
        usage
    }

    /// This usage with `tokens` input tokens (cached ones included).
    pub fn with_input(mut self, tokens: u64) -> Self {
        self.input = Some(tokens);
        self
    }

    /// This usage with `tokens` output tokens (reasoning ones included).
    pub fn with_output(mut self, tokens: u64) -> Self {
        self.output = Some(tokens);
        self
    }

    /// This usage with `tokens` input tokens read from the prompt cache.
    pub fn with_cache_read(mut self, tokens: u64) -> Self {
        self.cache_read = Some(tokens);
        self
    }

    /// This usage with `tokens` input tokens written to the prompt cache.
    pub fn with_cache_write(mut self, tokens: u64) -> Self {
        self.cache_write = Some(tokens);
        self
    }

    /// This usage with `tokens` output tokens spent on reasoning.
    pub fn with_reasoning(mut self, tokens: u64) -> Self {
        self.reasoning = Some(tokens);
        self
    }

    /// Whether any token count is present.
    pub fn is_empty(&self) -> bool {
        self.input.is_none()
            && self.output.is_none()
            && self.cache_read.is_none()
            && self.cache_write.is_none()
            && self.reasoning.is_none()
    }
}

/// The input and output a span reports, as they stand on it: for each, the first of
/// its keys present, that key's last value, and the count it holds (`None` when
/// unusable). One pass over the attributes.
pub(crate) fn reported_input_output(
    attributes: &[KeyValue],
) -> [Option<(&'static str, &Value, Option<u64>)>; 2] {
    let [input, output, ..] = present_keys(attributes);
    [(0, input), (1, output)].map(|(quantity, found)| {
        found.map(|(rank, value)| (QUANTITY_KEYS[quantity][rank], value, token_count(value)))
    })
}

/// The keys of each quantity, in the order of [`present_counts`]' result.
const QUANTITY_KEYS: [&[&str; 5]; 5] = [
    &INPUT_KEYS,
    &OUTPUT_KEYS,
    &CACHE_READ_KEYS,
    &CACHE_WRITE_KEYS,
    &REASONING_KEYS,
];

/// The bits of every key of [`QUANTITY_KEYS`]: a key whose bit is clear is none of
/// them, which dismisses most other keys without comparing a string.
const QUANTITY_FILTER: u64 = {
    let mut filter = 0;
    let mut quantity = 0;
    while quantity < QUANTITY_KEYS.len() {
        let mut rank = 0;
        while rank < QUANTITY_KEYS[quantity].len() {
            filter |= filter_bit(QUANTITY_KEYS[quantity][rank]);
            rank += 1;
        }
        quantity += 1;
    }
    filter
};

/// Which quantity a key counts and its rank among that quantity's keys, if it is one
/// of [`QUANTITY_KEYS`]: keys outside the three prefixes they share, or whose length
/// and last byte no such key has, cost no string comparison.
fn quantity_key(key: &str) -> Option<(usize, usize)> {
    if QUANTITY_FILTER & filter_bit(key) == 0
        || !matches!(key.as_bytes().first(), Some(b'g' | b'l' | b'a'))
        || !(key.starts_with("gen_ai.usage.")
            || key.starts_with("llm.token_count.")
            || key.starts_with("ai.usage."))
    {
        return None;
    }
    QUANTITY_KEYS
        .iter()
        .enumerate()
        .find_map(|(quantity, keys)| {
            keys.iter()
                .position(|k| *k == key)
                .map(|rank| (quantity, rank))
        })
}

/// For each quantity, the last value of the first of its keys present, in one pass
/// over the attributes (the same as looking up each key in turn).
fn present_counts(attributes: &[KeyValue]) -> [Option<&Value>; 5] {
    present_keys(attributes).map(|f| f.map(|(_, value)| value))
}

/// [`present_counts`] with the rank of the key each value is under.
fn present_keys(attributes: &[KeyValue]) -> [Option<(usize, &Value)>; 5] {
    let mut found: [Option<(usize, &Value)>; 5] = [None; 5];
    for kv in attributes {
        if let Some((quantity, rank)) = quantity_key(kv.key.as_str()) {
            match found[quantity] {
                // An earlier key of the quantity wins over a later one; a later value
                // of the same key over an earlier one.
                Some((best, _)) if best < rank => {}
                _ => found[quantity] = Some((rank, &kv.value)),
            }
        }
    }
    found
}

/// A token count from an attribute value, or `None` when it is unusable.
pub(crate) fn token_count(value: &Value) -> Option<u64> {
    match value {
        Value::I64(v) => u64::try_from(*v).ok().filter(|v| *v <= MAX_TOKENS),
        Value::F64(v) => integral_float(*v),
        Value::String(s) => decimal_string(s.as_str()),
        _ => None,
    }
}

fn integral_float(v: f64) -> Option<u64> {
    (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= MAX_TOKENS as f64).then_some(v as u64)
}

/// `"154"` or `"154.0"`; not `"-1"`, `"1e3"`, `" 154"`, `"0x10"` or `"154.5"`.
fn decimal_string(s: &str) -> Option<u64> {
    let (whole, fraction) = match s.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (s, ""),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || fraction.bytes().any(|b| b != b'0')
    {
        return None;
    }
    whole.parse::<u64>().ok().filter(|v| *v <= MAX_TOKENS)
}

/// Sums over generations (and tool calls), as rolled up to a step or invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Totals {
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) cache_read: u64,
    pub(crate) cache_write: u64,
    pub(crate) reasoning: u64,
    pub(crate) cost_usd: f64,
    /// Calls whose cost is in `cost_usd`.
    pub(crate) priced: u64,
    pub(crate) generations: u64,
    pub(crate) tool_calls: u64,
    /// Some call was unpriced, or some descendant was still open at an end.
    pub(crate) partial: bool,
}

impl Totals {
    /// What one ended span contributes to its ancestors' totals.
    pub(crate) fn add(&mut self, other: &Totals) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
        // Every cost added is finite and non-negative; the sum stays finite too.
        self.cost_usd = (self.cost_usd + other.cost_usd).min(f64::MAX);
        self.priced += other.priced;
        self.generations += other.generations;
        self.tool_calls += other.tool_calls;
        self.partial |= other.partial;
    }

    /// The contribution of one generation.
    pub(crate) fn of_generation(usage: &Usage, cost_usd: Option<f64>) -> Totals {
        Totals {
            input: usage.input.unwrap_or(0),
            output: usage.output.unwrap_or(0),
            cache_read: usage.cache_read.unwrap_or(0),
            cache_write: usage.cache_write.unwrap_or(0),
            reasoning: usage.reasoning.unwrap_or(0),
            cost_usd: cost_usd.unwrap_or(0.0),
            priced: u64::from(cost_usd.is_some()),
            generations: 1,
            tool_calls: 0,
            partial: cost_usd.is_none(),
        }
    }

    /// The contribution of one tool call.
    pub(crate) fn of_tool_call() -> Totals {
        Totals {
            tool_calls: 1,
            ..Totals::default()
        }
    }

    /// Whether any generation or tool call was added.
    pub(crate) fn has_calls(&self) -> bool {
        self.generations > 0 || self.tool_calls > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::last_value;

    fn usage(attrs: &[KeyValue]) -> Usage {
        Usage::from_attributes(attrs)
    }

    #[test]
    fn every_usage_key_is_found_with_its_quantity_and_rank() {
        for (quantity, keys) in QUANTITY_KEYS.iter().enumerate() {
            for (rank, key) in keys.iter().enumerate() {
                assert_eq!(quantity_key(key), Some((quantity, rank)), "{key}");
            }
        }
        assert_eq!(quantity_key("gen_ai.usage.cost"), None);
        assert_eq!(quantity_key("gen_ai.request.model"), None);
    }

    /// The one-pass reading gives what looking up each key in turn gives: every
    /// ordered pair of keys of a quantity, each once or twice, with distinct values.
    #[test]
    fn one_pass_reading_is_the_key_by_key_lookup() {
        for keys in QUANTITY_KEYS {
            for a in keys.iter() {
                for b in keys.iter() {
                    let attrs = [
                        KeyValue::new("http.route", "/x"),
                        KeyValue::new(*a, 1),
                        KeyValue::new(*b, 2),
                        KeyValue::new(*a, 3),
                        KeyValue::new(*b, 4),
                    ];
                    for n in 1..=attrs.len() {
                        let attrs = &attrs[..n];
                        let by_key = keys.iter().find_map(|key| last_value(attrs, key));
                        let quantity = QUANTITY_KEYS.iter().position(|k| *k == keys);
                        let one_pass = quantity.and_then(|q| present_counts(attrs)[q]);
                        assert_eq!(one_pass, by_key, "{a} {b} {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn accepted_values() {
        assert_eq!(token_count(&Value::I64(0)), Some(0));
        assert_eq!(token_count(&Value::I64(154)), Some(154));
        assert_eq!(token_count(&Value::F64(154.0)), Some(154));
        assert_eq!(token_count(&Value::from("154")), Some(154));
        assert_eq!(token_count(&Value::from("154.00")), Some(154));
        assert_eq!(token_count(&Value::I64(1 << 53)), Some(1 << 53));
    }

    #[test]
    fn rejected_values() {
        for v in [
            Value::I64(-1),
            Value::I64((1 << 53) + 1),
            Value::F64(1.5),
            Value::F64(-2.0),
            Value::F64(f64::NAN),
            Value::F64(f64::INFINITY),
            Value::F64(1e300),
            Value::from("-5"),
            Value::from("12a"),
            Value::from(""),
            Value::from("1e3"),
            Value::from(" 12"),
            Value::from("1.5"),
            Value::from(".5"),
            Value::from("99999999999999999999999"),
            Value::Bool(true),
            Value::Array(vec![1i64].into()),
        ] {
            assert_eq!(token_count(&v), None, "{v:?}");
        }
    }

    #[test]
    fn first_present_key_wins_and_last_duplicate_wins() {
        let u = usage(&[
            KeyValue::new("gen_ai.usage.prompt_tokens", 5),
            KeyValue::new("gen_ai.usage.input_tokens", 10),
            KeyValue::new("gen_ai.usage.input_tokens", "11"),
        ]);
        assert_eq!(u.input, Some(11));
        let u = usage(&[KeyValue::new("gen_ai.usage.prompt_tokens", 5)]);
        assert_eq!(u.input, Some(5));
    }

    #[test]
    fn invalid_first_key_is_not_replaced_by_later_keys() {
        let u = usage(&[
            KeyValue::new("gen_ai.usage.input_tokens", -3),
            KeyValue::new("llm.token_count.prompt", 7),
        ]);
        assert_eq!(u.input, None);
        assert!(u.invalid);
    }

    #[test]
    fn exclusive_counts() {
        let u = usage(&[
            KeyValue::new("gen_ai.usage.input_tokens", 10),
            KeyValue::new("gen_ai.usage.cache_read.input_tokens", 100),
            KeyValue::new("gen_ai.usage.cache_creation.input_tokens", 20),
            KeyValue::new("gen_ai.usage.output_tokens", 5),
            KeyValue::new("gen_ai.usage.reasoning.output_tokens", 7),
        ]);
        assert_eq!(u.input, Some(130));
        assert!(u.cache_exclusive);
        assert_eq!(u.output, Some(12));
        assert!(u.reasoning_exclusive);
        assert!(!u.invalid);
    }

    #[test]
    fn inclusive_counts_stay() {
        let u = usage(&[
            KeyValue::new("gen_ai.usage.input_tokens", 1000),
            KeyValue::new("gen_ai.usage.cache_read.input_tokens", 800),
            KeyValue::new("gen_ai.usage.output_tokens", 50),
            KeyValue::new("gen_ai.usage.reasoning.output_tokens", 50),
        ]);
        assert_eq!((u.input, u.output), (Some(1000), Some(50)));
        assert!(!u.cache_exclusive && !u.reasoning_exclusive);
    }
}
