//! A readable report of audited spans: each trace as a tree (name, role, tokens, cost
//! and findings per span; totals per invocation), then a summary (spans, traces,
//! invocations, total cost, findings by code).
//!
//! The report reads only what the audit wrote on the spans (the `genai_audit.*` keys)
//! and their token usage, so it prints spans audited in-process as well as exported
//! ones. Build one [`ReportSpan`] per span with [`ReportSpan::new`], then call
//! [`write_report`]:
//!
//! ```
//! use genai_audit::report::{write_report, ReportOptions, ReportSpan};
//! use opentelemetry::trace::{SpanId, TraceId};
//! use opentelemetry::KeyValue;
//!
//! let trace = TraceId::from(1u128);
//! let llm = ReportSpan::new(trace, SpanId::from(2u64), SpanId::from(1u64), "chat gpt-4o", 2, &[
//!     KeyValue::new("genai_audit.role", "generation"),
//!     KeyValue::new("gen_ai.usage.input_tokens", 1000),
//!     KeyValue::new("gen_ai.usage.output_tokens", 100),
//!     KeyValue::new("genai_audit.cost_usd", 0.0035),
//! ]);
//! let invocation = ReportSpan::new(trace, SpanId::from(1u64), SpanId::INVALID, "invoke_agent coder", 1, &[
//!     KeyValue::new("genai_audit.role", "invocation"),
//!     KeyValue::new("genai_audit.total.input_tokens", 1000),
//!     KeyValue::new("genai_audit.total.output_tokens", 100),
//!     KeyValue::new("genai_audit.total.cost_usd", 0.0035),
//!     KeyValue::new("genai_audit.total.generations", 1),
//! ]);
//! let mut out = Vec::new();
//! let summary = write_report(&mut out, &[llm, invocation], &ReportOptions::default())?;
//! assert_eq!((summary.spans, summary.traces, summary.invocations), (2, 1, 1));
//! assert_eq!(summary.findings_total, 0);
//! assert!(String::from_utf8(out)?.contains("invoke_agent coder"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Lines fit an 80-column terminal (long names are shortened, findings go on a line of
//! their own when they do not fit). With [`ReportOptions::color`] the findings are red
//! and the totals dim (ANSI escapes); pass it only when the output is a terminal.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{self, Write};

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;

use crate::attributes::{first_string, last_value};
use crate::engine::nanos;
use crate::findings::FindingCode;
use crate::keys;
use crate::pricing::call as cost;
use crate::recognition::{langchain_agent_name, Role};
use crate::usage::Usage;

/// What the report needs of one audited span.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSpan {
    /// The span's trace.
    pub trace_id: TraceId,
    /// The span's id.
    pub span_id: SpanId,
    /// Its parent's id ([`SpanId::INVALID`] for a root).
    pub parent_span_id: SpanId,
    /// The span's name.
    pub name: String,
    /// Start time, UNIX nanoseconds (orders siblings).
    pub start_ns: u64,
    /// End time, UNIX nanoseconds, never before `start_ns` ([`ReportSpan::new`] sets it
    /// to the start; [`with_end`](Self::with_end) sets the real end).
    pub end_ns: u64,
    /// `genai_audit.role` (`None`: not recognised).
    pub role: Option<Cow<'static, str>>,
    /// Input tokens: a call's own, or the rolled-up total of an invocation, step,
    /// workflow or tool.
    pub input_tokens: Option<u64>,
    /// Output tokens, likewise.
    pub output_tokens: Option<u64>,
    /// Cost in USD: a call's own (`genai_audit.cost_usd`), or the rolled-up total.
    pub cost_usd: Option<f64>,
    /// The call could not be priced (`genai_audit.cost.unpriced`).
    pub unpriced: bool,
    /// A generation that is one model call seen twice, counted on another span
    /// (`genai_audit.wrapper`): not a call of its own.
    pub wrapper: bool,
    /// The totals miss something (`genai_audit.total.partial`).
    pub partial: bool,
    /// Generations under it (`genai_audit.total.generations`).
    pub generations: Option<u64>,
    /// Tool calls under it (`genai_audit.total.tool_calls`).
    pub tool_calls: Option<u64>,
    /// Steps started under an invocation (`genai_audit.steps`).
    pub steps: Option<u64>,
    /// Finding codes (`genai_audit.findings`).
    pub findings: Vec<String>,
    /// Values the `repair` policy replaced, as `(key, original value)`.
    pub repaired: Vec<(String, String)>,
    /// Cache-read input tokens: a call's own, or the rolled-up total.
    pub cache_read_tokens: Option<u64>,
    /// Cache-write input tokens, likewise.
    pub cache_write_tokens: Option<u64>,
    /// Reasoning output tokens, likewise.
    pub reasoning_tokens: Option<u64>,
    /// The agent the span names: `gen_ai.agent.name`, else, on an invocation,
    /// LangChain's `lc_agent_name` (in OpenInference's `metadata`).
    pub agent_name: Option<Box<str>>,
    /// A call's model: `gen_ai.response.model`, else the request model (the keys the
    /// audit prices by, in the same order). Read on generations and embeddings only.
    pub model: Option<Box<str>>,
    /// A call's provider: `gen_ai.provider.name`, else `gen_ai.system`, `llm.provider`,
    /// `ai.model.provider`. Read on generations and embeddings only.
    pub provider: Option<Box<str>>,
    /// The session: `gen_ai.conversation.id`, else `session.id`.
    pub session_id: Option<Box<str>>,
    /// The user: `user.id`, else `enduser.id`.
    pub user_id: Option<Box<str>>,
}

/// `session.id` (OpenInference, Langfuse): the session when no `gen_ai.conversation.id`.
const SESSION_ID: &str = "session.id";
/// `user.id`: the user.
const USER_ID: &str = "user.id";
/// `enduser.id` (older OpenTelemetry conventions): the user when no `user.id`.
const ENDUSER_ID: &str = "enduser.id";

impl ReportSpan {
    /// Whether a report reads attribute `key` besides those the engine reads: the
    /// session and user ids.
    #[cfg(feature = "cli")]
    pub(crate) fn reads(key: &str) -> bool {
        matches!(key, SESSION_ID | USER_ID | ENDUSER_ID)
    }
}

/// A string or integer attribute as text (ids are written either way).
fn id_text(value: Option<&Value>) -> Option<Box<str>> {
    match value? {
        Value::String(s) => {
            let s = s.as_str().trim();
            (!s.is_empty()).then(|| Box::from(s))
        }
        Value::I64(v) => Some(v.to_string().into_boxed_str()),
        _ => None,
    }
}

/// The session, user and agent a span names, in one pass over its attributes (the last
/// value of a key wins; of two keys, the first listed).
fn identity(attributes: &[KeyValue]) -> [Option<&Value>; 5] {
    let mut found: [Option<&Value>; 5] = [None; 5];
    for kv in attributes {
        let slot = match kv.key.as_str() {
            keys::metric::AGENT_NAME => 0,
            "gen_ai.conversation.id" => 1,
            SESSION_ID => 2,
            USER_ID => 3,
            ENDUSER_ID => 4,
            _ => continue,
        };
        found[slot] = Some(&kv.value);
    }
    found
}

fn int(attributes: &[KeyValue], key: &str) -> Option<u64> {
    match last_value(attributes, key)? {
        Value::I64(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

fn float(attributes: &[KeyValue], key: &str) -> Option<f64> {
    match last_value(attributes, key)? {
        Value::F64(v) if v.is_finite() => Some(*v),
        Value::I64(v) => Some(*v as f64),
        _ => None,
    }
}

fn flag(attributes: &[KeyValue], key: &str) -> bool {
    matches!(last_value(attributes, key), Some(Value::Bool(true)))
}

/// What the report shows of a span the SDK exported.
impl From<&SpanData> for ReportSpan {
    fn from(span: &SpanData) -> Self {
        let start_ns = nanos(span.start_time);
        ReportSpan::new(
            span.span_context.trace_id(),
            span.span_context.span_id(),
            span.parent_span_id,
            span.name.as_ref(),
            start_ns,
            &span.attributes,
        )
        .with_end(nanos(span.end_time))
    }
}

impl ReportSpan {
    /// Reads what the report shows from a span's ids, name, start time and (audited)
    /// attributes.
    pub fn new(
        trace_id: TraceId,
        span_id: SpanId,
        parent_span_id: SpanId,
        name: impl Into<String>,
        start_ns: u64,
        attributes: &[KeyValue],
    ) -> ReportSpan {
        let role = match last_value(attributes, keys::ROLE) {
            Some(Value::String(s)) => Some(
                Role::ALL
                    .iter()
                    .map(|r| r.as_str())
                    .find(|r| *r == s.as_str())
                    .map_or_else(|| Cow::Owned(s.as_str().to_owned()), Cow::Borrowed),
            ),
            _ => None,
        };
        let wrapper = flag(attributes, keys::WRAPPER);
        let call = !wrapper && matches!(role.as_deref(), Some("generation" | "embedding"));
        let (usage, cost_usd) = if call {
            let usage = Usage::from_attributes(attributes);
            (usage, float(attributes, keys::COST_USD))
        } else {
            let usage = Usage::default();
            let usage = Usage {
                input: int(attributes, keys::total::INPUT_TOKENS),
                output: int(attributes, keys::total::OUTPUT_TOKENS),
                cache_read: int(attributes, keys::total::CACHE_READ_TOKENS),
                cache_write: int(attributes, keys::total::CACHE_WRITE_TOKENS),
                reasoning: int(attributes, keys::total::REASONING_TOKENS),
                ..usage
            };
            (usage, float(attributes, keys::total::COST_USD))
        };
        let [agent, conversation, session, user, enduser] = identity(attributes);
        let agent_name = match id_text(agent) {
            None if role.as_deref() == Some("invocation") => {
                langchain_agent_name(attributes).map(Box::from)
            }
            agent => agent,
        };
        let (model, provider) = if call {
            (
                cost::model(attributes).map(Box::from),
                first_string(attributes, &cost::PROVIDER_KEYS).map(Box::from),
            )
        } else {
            (None, None)
        };
        let findings = match last_value(attributes, keys::FINDINGS) {
            Some(Value::Array(Array::String(codes))) => {
                codes.iter().map(|c| c.as_str().to_owned()).collect()
            }
            Some(Value::String(code)) => vec![code.as_str().to_owned()],
            _ => Vec::new(),
        };
        let repaired = attributes
            .iter()
            .filter_map(|kv| {
                let key = kv.key.as_str().strip_prefix(keys::REPORTED_PREFIX)?;
                Some((key.to_owned(), kv.value.to_string()))
            })
            .collect();
        ReportSpan {
            trace_id,
            span_id,
            parent_span_id,
            name: name.into(),
            start_ns,
            end_ns: start_ns,
            role,
            input_tokens: usage.input,
            output_tokens: usage.output,
            cost_usd,
            unpriced: flag(attributes, keys::COST_UNPRICED),
            wrapper,
            partial: flag(attributes, keys::total::PARTIAL),
            generations: int(attributes, keys::total::GENERATIONS),
            tool_calls: int(attributes, keys::total::TOOL_CALLS),
            steps: int(attributes, keys::STEPS),
            findings,
            repaired,
            cache_read_tokens: usage.cache_read,
            cache_write_tokens: usage.cache_write,
            reasoning_tokens: usage.reasoning,
            agent_name,
            model,
            provider,
            session_id: id_text(conversation).or_else(|| id_text(session)),
            user_id: id_text(user).or_else(|| id_text(enduser)),
        }
    }

    /// The span with its end time (kept at its start when it is earlier).
    #[must_use]
    pub fn with_end(mut self, end_ns: u64) -> ReportSpan {
        self.end_ns = end_ns.max(self.start_ns);
        self
    }

    /// Whether the span is a model call the audit prices: a generation or an embedding,
    /// not a [`wrapper`](Self::wrapper).
    pub fn is_call(&self) -> bool {
        !self.wrapper && matches!(self.role.as_deref(), Some("generation" | "embedding"))
    }

    /// Adds a finding code unless the span already has it.
    pub fn add_finding(&mut self, code: FindingCode) {
        if !self.findings.iter().any(|c| c == code.as_str()) {
            self.findings.push(code.as_str().to_owned());
        }
    }
}

/// How much [`write_report`] prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOptions {
    /// ANSI colours (only for a terminal).
    pub color: bool,
    /// Print every trace's tree. Otherwise, when there are more than
    /// [`max_traces`](Self::max_traces) traces, only the trees of the traces with
    /// findings and of the most expensive ones are printed (at most `max_traces`).
    pub all: bool,
    /// See [`all`](Self::all) (default 20).
    pub max_traces: usize,
    /// Print the trees at all (`false`: the summary only).
    pub trees: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            color: false,
            all: false,
            max_traces: 20,
            trees: true,
        }
    }
}

/// The totals of a report. [`Summary::to_json`] gives its stable JSON form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Spans read.
    pub spans: u64,
    /// Distinct traces.
    pub traces: u64,
    /// Spans recognised as invocations.
    pub invocations: u64,
    /// Spans recognised as generations (model calls).
    pub generations: u64,
    /// Sum of every priced call's own cost, USD (nested totals are not added twice).
    pub cost_usd: f64,
    /// Calls that could not be priced.
    pub unpriced: u64,
    /// Findings of all codes (one per code and span).
    pub findings_total: u64,
    /// Findings by code; every known code is present (0 when absent).
    pub findings: BTreeMap<String, u64>,
    /// The cost as an exact sum of fixed-point amounts (10⁻²⁴ USD), so that it is the
    /// same whatever order the calls were added in.
    cost_units: i128,
}

/// Fixed-point units of a USD amount in [`Summary`]'s exact sum.
const UNITS_PER_USD: f64 = 1e24;

/// A USD amount in the fixed-point units of the report's exact sums (10⁻²⁴ USD).
pub(crate) fn cost_units(usd: f64) -> i128 {
    (usd * UNITS_PER_USD).round() as i128
}

/// The USD amount of an exact sum of [`cost_units`].
pub(crate) fn units_usd(units: i128) -> f64 {
    units as f64 / UNITS_PER_USD
}

impl Summary {
    /// A summary of nothing (every finding code at 0).
    fn empty() -> Summary {
        Summary {
            findings: FindingCode::ALL
                .iter()
                .map(|c| (c.as_str().to_owned(), 0))
                .collect(),
            ..Summary::default()
        }
    }

    /// Computes the summary of `spans`.
    pub fn of(spans: &[ReportSpan]) -> Summary {
        let mut summary = Summary::empty();
        summary.add(spans);
        let traces: HashSet<TraceId> = spans.iter().map(|s| s.trace_id).collect();
        summary.traces = traces.len() as u64;
        summary
    }

    /// Adds `spans` to the counts (all but `traces`, which the caller counts).
    fn add(&mut self, spans: &[ReportSpan]) {
        let summary = self;
        for span in spans {
            summary.spans += 1;
            match span.role.as_deref() {
                Some("invocation") => summary.invocations += 1,
                Some("generation") if !span.wrapper => summary.generations += 1,
                _ => {}
            }
            if span.is_call() {
                let units = cost_units(span.cost_usd.unwrap_or(0.0));
                summary.cost_units = summary.cost_units.saturating_add(units);
                summary.cost_usd = units_usd(summary.cost_units);
                summary.unpriced += u64::from(span.unpriced);
            }
            for code in &span.findings {
                summary.findings_total += 1;
                *summary.findings.entry(code.clone()).or_insert(0) += 1;
            }
        }
    }

    /// The number of findings whose code is in `codes` (all codes when `codes` is
    /// empty).
    pub fn count(&self, codes: &[FindingCode]) -> u64 {
        if codes.is_empty() {
            return self.findings_total;
        }
        codes
            .iter()
            .map(|c| self.findings.get(c.as_str()).copied().unwrap_or(0))
            .sum()
    }

    /// The summary as one JSON object with these fields: `spans`, `traces`,
    /// `invocations`, `generations`, `cost_usd` (number), `unpriced_generations`,
    /// `findings_total`, and `findings` (an object with every finding code, sorted,
    /// and its count).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "spans": self.spans,
            "traces": self.traces,
            "invocations": self.invocations,
            "generations": self.generations,
            "cost_usd": self.cost_usd,
            "unpriced_generations": self.unpriced,
            "findings_total": self.findings_total,
            "findings": self.findings,
        })
        .to_string()
    }
}

const WIDTH: usize = 80;

struct Paint {
    color: bool,
}

impl Paint {
    fn red(&self, text: &str) -> String {
        self.wrap("31;1", text)
    }
    fn dim(&self, text: &str) -> String {
        self.wrap("2", text)
    }
    fn bold(&self, text: &str) -> String {
        self.wrap("1", text)
    }
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// `$0.001234`, or `-` without a cost.
pub(crate) fn usd(cost: Option<f64>) -> String {
    cost.map_or_else(|| "-".to_owned(), |c| format!("${c:.6}"))
}

/// `text` with every control character shown as its escape (`\u001b`), so that what
/// spans carry is never sent to the terminal.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

pub(crate) fn shorten(text: &str, max: usize) -> String {
    let text = escape_controls(text);
    if text.chars().count() <= max {
        return text.into_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

struct Tree<'a> {
    spans: Vec<&'a ReportSpan>,
    children: HashMap<SpanId, Vec<usize>>,
    roots: Vec<usize>,
    cost: f64,
    findings: usize,
}

impl<'a> Tree<'a> {
    fn new(spans: Vec<&'a ReportSpan>) -> Tree<'a> {
        let ids: HashMap<SpanId, usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id, i))
            .collect();
        let mut children: HashMap<SpanId, Vec<usize>> = HashMap::new();
        let mut roots = Vec::new();
        for (i, span) in spans.iter().enumerate() {
            if span.parent_span_id != SpanId::INVALID
                && span.parent_span_id != span.span_id
                && ids.contains_key(&span.parent_span_id)
            {
                children.entry(span.parent_span_id).or_default().push(i);
            } else {
                roots.push(i);
            }
        }
        let order = |list: &mut Vec<usize>| {
            list.sort_by(|&a, &b| {
                let (a, b) = (spans[a], spans[b]);
                a.start_ns
                    .cmp(&b.start_ns)
                    .then_with(|| a.name.cmp(&b.name))
            })
        };
        order(&mut roots);
        for list in children.values_mut() {
            order(list);
        }
        let cost = spans
            .iter()
            .filter(|s| s.is_call())
            .filter_map(|s| s.cost_usd)
            .fold(0.0, |sum, c| sum + c);
        let findings = spans.iter().map(|s| s.findings.len()).sum();
        Tree {
            spans,
            children,
            roots,
            cost,
            findings,
        }
    }

    fn write(&self, out: &mut dyn Write, paint: &Paint) -> io::Result<()> {
        let trace_id = self
            .spans
            .first()
            .map(|s| s.trace_id)
            .unwrap_or(TraceId::INVALID);
        let mut head = format!(
            "trace {trace_id}  {} spans  {}",
            self.spans.len(),
            usd(Some(self.cost))
        );
        if self.findings > 0 {
            head += &format!("  {} findings", self.findings);
        }
        writeln!(out, "{}", paint.bold(&head))?;
        // Depth-first, without recursion (traces can be deep).
        let mut stack: Vec<(usize, usize)> = self.roots.iter().rev().map(|&i| (i, 1)).collect();
        let mut seen = vec![false; self.spans.len()];
        while let Some((index, depth)) = stack.pop() {
            if std::mem::replace(&mut seen[index], true) {
                continue;
            }
            let span = self.spans[index];
            self.write_span(out, paint, span, depth)?;
            if let Some(list) = self.children.get(&span.span_id) {
                stack.extend(list.iter().rev().map(|&i| (i, depth + 1)));
            }
        }
        Ok(())
    }

    fn write_span(
        &self,
        out: &mut dyn Write,
        paint: &Paint,
        span: &ReportSpan,
        depth: usize,
    ) -> io::Result<()> {
        let indent = " ".repeat((depth * 2).min(24));
        let name = shorten(&span.name, 34usize.saturating_sub(indent.len()).max(8));
        let role = span.role.as_deref().unwrap_or("");
        let tokens = match (span.input_tokens, span.output_tokens) {
            (None, None) => String::new(),
            (i, o) => format!(
                "{}→{}",
                i.map_or("?".to_owned(), |v| v.to_string()),
                o.map_or("?".to_owned(), |v| v.to_string())
            ),
        };
        let cost = if span.wrapper {
            // The call is counted on another span.
            "wrapper".to_owned()
        } else if span.unpriced {
            "unpriced".to_owned()
        } else if span.role.is_some() && (span.cost_usd.is_some() || !tokens.is_empty()) {
            usd(span.cost_usd)
        } else {
            String::new()
        };
        let mut line = format!(
            "{indent}{name:<width$} {role:<10} {tokens:>11} {cost:>9}",
            width = 34usize.saturating_sub(indent.len())
        );
        let line_len = line.chars().count();
        let findings = span.findings.join(",");
        if !findings.is_empty() {
            if line_len + 3 + findings.chars().count() <= WIDTH {
                line = format!("{line}  {}", paint.red(&format!("! {findings}")));
            } else {
                line = format!("{line}\n{indent}  {}", paint.red(&format!("! {findings}")));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
        if span.role.as_deref() == Some("invocation") {
            let mut totals = format!(
                "{indent}  = {} generations, {} tool calls, {} steps, {} in, {} out, {}",
                span.generations.unwrap_or(0),
                span.tool_calls.unwrap_or(0),
                span.steps.unwrap_or(0),
                span.input_tokens.unwrap_or(0),
                span.output_tokens.unwrap_or(0),
                usd(span.cost_usd),
            );
            if span.partial {
                totals += " (partial)";
            }
            writeln!(out, "{}", paint.dim(&totals))?;
        }
        for (key, value) in &span.repaired {
            writeln!(
                out,
                "{indent}  {}",
                paint.dim(&format!("repaired {key} (was {})", shorten(value, 40)))
            )?;
        }
        Ok(())
    }
}

/// Prints the report of `spans` (trees, then the summary) and returns the summary.
pub fn write_report(
    out: &mut dyn Write,
    spans: &[ReportSpan],
    options: &ReportOptions,
) -> io::Result<Summary> {
    let mut by_trace: HashMap<TraceId, Vec<ReportSpan>> = HashMap::new();
    let mut order: Vec<TraceId> = Vec::new();
    for span in spans {
        let list = by_trace.entry(span.trace_id).or_default();
        if list.is_empty() {
            order.push(span.trace_id);
        }
        list.push(span.clone());
    }
    let mut report = Report::new(options.clone());
    for id in order {
        if let Some(spans) = by_trace.remove(&id) {
            report.add_trace(spans);
        }
    }
    report.write(out)
}

/// A trace kept for printing.
struct KeptTrace {
    spans: Vec<ReportSpan>,
    /// Orders traces: first start, then trace id.
    order: (u64, [u8; 16]),
    cost: f64,
    findings: usize,
}

/// A report built one trace at a time, keeping only the trees it will print (all of
/// them with [`ReportOptions::all`]; otherwise at most a few times
/// [`ReportOptions::max_traces`]), so that a report of millions of traces takes little
/// memory. [`write_report`] is the same for spans already in hand.
///
/// ```
/// use genai_audit::report::{Report, ReportOptions, ReportSpan};
/// use opentelemetry::trace::{SpanId, TraceId};
///
/// let mut report = Report::new(ReportOptions::default());
/// for t in 1..=3u128 {
///     let span = ReportSpan::new(TraceId::from(t), SpanId::from(1u64), SpanId::INVALID, "work", 0, &[]);
///     report.add_trace(vec![span]);
/// }
/// assert_eq!(report.summary().traces, 3);
/// let mut out = Vec::new();
/// report.write(&mut out)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Report {
    options: ReportOptions,
    summary: Summary,
    kept: Vec<KeptTrace>,
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("options", &self.options)
            .field("summary", &self.summary)
            .field("kept", &self.kept.len())
            .finish()
    }
}

impl Report {
    /// An empty report.
    pub fn new(options: ReportOptions) -> Report {
        Report {
            options,
            summary: Summary::empty(),
            kept: Vec::new(),
        }
    }

    /// The summary of the traces added so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Adds one trace's spans (all of the same trace).
    pub fn add_trace(&mut self, spans: Vec<ReportSpan>) {
        if spans.is_empty() {
            return;
        }
        self.summary.add(&spans);
        self.summary.traces += 1;
        if !self.options.trees {
            return;
        }
        let tree = Tree::new(spans.iter().collect());
        let (cost, findings) = (tree.cost, tree.findings);
        drop(tree);
        let first = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let order = (first, spans[0].trace_id.to_bytes());
        self.kept.push(KeptTrace {
            spans,
            order,
            cost,
            findings,
        });
        if !self.options.all && self.kept.len() > 4 * self.options.max_traces.max(4) {
            self.trim();
        }
    }

    /// How many traces with findings are printed first, before the most expensive.
    fn with_findings(&self) -> usize {
        let max = self.options.max_traces;
        max.saturating_sub(max / 4).max(1)
    }

    /// Keeps only the traces that can still be printed: the first `max_traces` (all of
    /// them are printed when there are no more), the first with findings, and the most
    /// expensive.
    fn trim(&mut self) {
        let max = self.options.max_traces;
        self.kept.sort_by_key(|t| t.order);
        let mut keep = vec![false; self.kept.len()];
        for flag in keep.iter_mut().take(max) {
            *flag = true;
        }
        for i in (0..self.kept.len())
            .filter(|&i| self.kept[i].findings > 0)
            .take(self.with_findings())
        {
            keep[i] = true;
        }
        for i in self.by_cost().into_iter().take(max) {
            keep[i] = true;
        }
        let mut flags = keep.into_iter();
        self.kept.retain(|_| flags.next().unwrap_or(false));
    }

    /// Places of the kept traces, the most expensive first (then in order).
    fn by_cost(&self) -> Vec<usize> {
        let mut by_cost: Vec<usize> = (0..self.kept.len()).collect();
        by_cost.sort_by(|&a, &b| {
            let (a, b) = (&self.kept[a], &self.kept[b]);
            b.cost.total_cmp(&a.cost).then(a.order.cmp(&b.order))
        });
        by_cost
    }

    /// Places of the kept traces to show, in order of their first start: all of them,
    /// or (past [`ReportOptions::max_traces`]) those with findings first, then the most
    /// expensive.
    fn shown(&mut self) -> Vec<usize> {
        self.kept.sort_by_key(|t| t.order);
        let total = usize::try_from(self.summary.traces).unwrap_or(usize::MAX);
        let max = self.options.max_traces;
        if self.options.all || total <= max {
            return (0..self.kept.len()).collect();
        }
        let mut picked: Vec<usize> = (0..self.kept.len())
            .filter(|&i| self.kept[i].findings > 0)
            .take(self.with_findings())
            .collect();
        for i in self.by_cost() {
            if picked.len() >= max {
                break;
            }
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        picked.sort_unstable();
        picked
    }

    /// The summary and the traces the printed report would show (the same choice as
    /// [`write`](Self::write)), each trace's spans in the order they were added, for
    /// other renderings of the report (the HTML page of the `genai-audit` command).
    pub fn into_shown(mut self) -> (Summary, Vec<Vec<ReportSpan>>) {
        if !self.options.trees {
            return (self.summary, Vec::new());
        }
        let shown = self.shown();
        let mut kept: Vec<Option<KeptTrace>> = self.kept.into_iter().map(Some).collect();
        let traces = shown
            .into_iter()
            .filter_map(|i| kept.get_mut(i).and_then(Option::take))
            .map(|t| t.spans)
            .collect();
        (self.summary, traces)
    }

    /// Prints the trees (all, or those with findings and then the most expensive, in
    /// order of their first start), then the summary, and returns the summary.
    pub fn write(mut self, out: &mut dyn Write) -> io::Result<Summary> {
        let paint = Paint {
            color: self.options.color,
        };
        if self.options.trees {
            let total = usize::try_from(self.summary.traces).unwrap_or(usize::MAX);
            let shown = self.shown();
            for &i in &shown {
                Tree::new(self.kept[i].spans.iter().collect()).write(out, &paint)?;
                writeln!(out)?;
            }
            if shown.len() < total {
                writeln!(
                    out,
                    "{}",
                    paint.dim(&format!(
                        "({} of {total} traces shown: those with findings, then the most expensive; --all shows every one)",
                        shown.len()
                    ))
                )?;
                writeln!(out)?;
            }
        }
        write_summary(out, &self.summary, &paint)?;
        Ok(self.summary)
    }
}

fn write_summary(out: &mut dyn Write, summary: &Summary, paint: &Paint) -> io::Result<()> {
    let mut line = format!(
        "{} spans, {} traces, {} invocations, {} generations, total cost {}",
        summary.spans,
        summary.traces,
        summary.invocations,
        summary.generations,
        usd(Some(summary.cost_usd)),
    );
    if summary.unpriced > 0 {
        let unpriced = format!(" ({} unpriced)", summary.unpriced);
        if line.chars().count() + unpriced.chars().count() > WIDTH {
            line.push('\n');
            line.push_str(unpriced.trim_start());
        } else {
            line += &unpriced;
        }
    }
    writeln!(out, "{}", paint.bold(&line))?;
    if summary.findings_total == 0 {
        writeln!(out, "findings: none")?;
    } else {
        let codes: Vec<String> = summary
            .findings
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        writeln!(
            out,
            "{}",
            paint.red(&format!(
                "findings: {} ({})",
                summary.findings_total,
                codes.join(", ")
            ))
        )?;
    }
    Ok(())
}
