//! Cost and tokens per group of calls: `genai-audit check --by agent|model|...`.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use serde_json::{json, Value as Json};
use unicode_width::UnicodeWidthStr;

use super::context::{TraceView, NONE};
use crate::report::{cost_units, shorten, units_usd, usd, ReportSpan, Summary};

/// What calls are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GroupBy {
    /// The agent of the call's invocation (`gen_ai.agent.name` of the nearest
    /// invocation above it, else the call's own, else the invocation's name).
    Agent,
    /// The model that answered (`gen_ai.response.model`), else the one asked for.
    Model,
    /// `gen_ai.provider.name`, else `gen_ai.system` (and the other conventions' keys).
    Provider,
    /// The trace id.
    Trace,
    /// The name of the root span above the call.
    Root,
    /// `gen_ai.conversation.id`, else `session.id`, of the call or its nearest
    /// ancestor carrying one.
    Session,
    /// `user.id`, else `enduser.id`, of the call or its nearest ancestor carrying one.
    User,
}

impl GroupBy {
    /// Every grouping.
    pub const ALL: [GroupBy; 7] = [
        GroupBy::Agent,
        GroupBy::Model,
        GroupBy::Provider,
        GroupBy::Trace,
        GroupBy::Root,
        GroupBy::Session,
        GroupBy::User,
    ];

    /// The name on the command line, e.g. `agent`.
    pub const fn as_str(self) -> &'static str {
        match self {
            GroupBy::Agent => "agent",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Trace => "trace",
            GroupBy::Root => "root",
            GroupBy::Session => "session",
            GroupBy::User => "user",
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A grouping [`GroupBy`] does not know (the text as given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: must be one of agent, model, provider, trace, root, session, user")]
pub struct UnknownGrouping(pub String);

impl FromStr for GroupBy {
    type Err = UnknownGrouping;

    fn from_str(s: &str) -> Result<GroupBy, UnknownGrouping> {
        GroupBy::ALL
            .into_iter()
            .find(|g| g.as_str() == s.trim())
            .ok_or_else(|| UnknownGrouping(s.to_owned()))
    }
}

/// The calls of one group and what they used and cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    /// The group (`(none)` for calls without one; `total` for the total row).
    pub name: String,
    /// Model calls: generations and embeddings.
    pub calls: u64,
    /// Calls without a price (`genai_audit.cost.unpriced`): never counted as $0.
    pub unpriced_calls: u64,
    /// Calls with a cost.
    pub priced_calls: u64,
    /// Input tokens (cached ones included).
    pub input_tokens: u64,
    /// Output tokens (reasoning included).
    pub output_tokens: u64,
    /// Cache-read input tokens.
    pub cache_read_tokens: u64,
    /// Cache-write input tokens.
    pub cache_write_tokens: u64,
    /// Reasoning output tokens.
    pub reasoning_tokens: u64,
    /// The exact sum of the priced calls' costs, in 10⁻²⁴ USD.
    cost_units: i128,
}

impl Row {
    fn named(name: &str) -> Row {
        Row {
            name: name.to_owned(),
            ..Row::default()
        }
    }

    /// The cost of the priced calls (an exact sum), or `None` when no call was priced.
    pub fn cost_usd(&self) -> Option<f64> {
        (self.priced_calls > 0).then(|| units_usd(self.cost_units))
    }

    pub(crate) fn add_call(&mut self, call: &ReportSpan) {
        self.calls += 1;
        self.unpriced_calls += u64::from(call.unpriced);
        if let Some(cost) = call.cost_usd {
            self.priced_calls += 1;
            self.cost_units = self.cost_units.saturating_add(cost_units(cost));
        }
        let add = |sum: &mut u64, n: Option<u64>| *sum = sum.saturating_add(n.unwrap_or(0));
        add(&mut self.input_tokens, call.input_tokens);
        add(&mut self.output_tokens, call.output_tokens);
        add(&mut self.cache_read_tokens, call.cache_read_tokens);
        add(&mut self.cache_write_tokens, call.cache_write_tokens);
        add(&mut self.reasoning_tokens, call.reasoning_tokens);
    }

    fn merge(&mut self, other: &Row) {
        self.calls += other.calls;
        self.unpriced_calls += other.unpriced_calls;
        self.priced_calls += other.priced_calls;
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(other.cache_read_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(other.cache_write_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(other.reasoning_tokens);
        self.cost_units = self.cost_units.saturating_add(other.cost_units);
    }

    /// The row as a JSON object: `name`, `calls`, `unpriced_calls`, `input_tokens`,
    /// `output_tokens`, `cache_read_tokens`, `cache_write_tokens`, `reasoning_tokens`,
    /// and `cost_usd` (a number, or `null` when no call was priced).
    pub fn to_json(&self) -> Json {
        json!({
            "name": self.name,
            "calls": self.calls,
            "unpriced_calls": self.unpriced_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": self.cost_usd(),
        })
    }
}

/// One grouping's rows, the most expensive first, and their total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// What the calls are grouped by.
    pub by: GroupBy,
    /// One row per group, by cost (highest first; groups without a priced call count
    /// as 0), then by name.
    pub rows: Vec<Row>,
    /// The sum of the rows (named `total`).
    pub total: Row,
}

impl Table {
    /// The table as a JSON object: `by`, `rows` (see [`Row::to_json`]) and `total`.
    pub fn to_json(&self) -> Json {
        json!({
            "by": self.by.as_str(),
            "rows": self.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "total": self.total.to_json(),
        })
    }

    /// Prints the table, one line per group and a total, in columns.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let head = [
            self.by.as_str(),
            "calls",
            "unpriced",
            "input",
            "output",
            "cache read",
            "cache write",
            "reasoning",
            "cost",
        ];
        let cells = |row: &Row| -> [String; 9] {
            [
                shorten(&row.name, 40),
                row.calls.to_string(),
                row.unpriced_calls.to_string(),
                row.input_tokens.to_string(),
                row.output_tokens.to_string(),
                row.cache_read_tokens.to_string(),
                row.cache_write_tokens.to_string(),
                row.reasoning_tokens.to_string(),
                match row.cost_usd() {
                    Some(cost) => usd(Some(cost)),
                    None => "-".to_owned(),
                },
            ]
        };
        let lines: Vec<[String; 9]> = std::iter::once(head.map(str::to_owned))
            .chain(self.rows.iter().map(cells))
            .chain(std::iter::once(cells(&self.total)))
            .collect();
        // Columns in terminal cells: a CJK character or an emoji takes two.
        let mut widths = [0usize; 9];
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.width());
            }
        }
        let padding = |cell: &str, w: usize| " ".repeat(w.saturating_sub(cell.width()));
        for line in &lines {
            let mut text = format!("{}{}", line[0], padding(&line[0], widths[0]));
            for (cell, w) in line.iter().zip(widths).skip(1) {
                text.push_str(&format!("  {}{cell}", padding(cell, w)));
            }
            writeln!(out, "{}", text.trim_end())?;
        }
        Ok(())
    }
}

/// Cost, calls and tokens per group, for one or more groupings, built one trace at a
/// time in memory proportional to the number of groups.
///
/// Calls are the spans the audit prices: generations and embeddings (tool calls carry
/// no tokens or cost, and are not counted). A call without a price is counted under
/// `unpriced_calls` and adds nothing to the cost; a group whose calls are all unpriced
/// has no cost (`None`), never $0. Costs are summed exactly (fixed point, 10⁻²⁴ USD),
/// as the report's total is, so the total row's cost is the report's total cost.
///
/// ```
/// use genai_audit::costs::{Breakdown, GroupBy};
/// use genai_audit::report::ReportSpan;
/// use opentelemetry::trace::{SpanId, TraceId};
/// use opentelemetry::KeyValue;
///
/// let trace = TraceId::from(7u128);
/// let invocation = ReportSpan::new(trace, SpanId::from(1u64), SpanId::INVALID, "invoke_agent coder", 0, &[
///     KeyValue::new("genai_audit.role", "invocation"),
/// ]);
/// let call = |id: u64, model: &str, cost: Option<f64>| {
///     let mut attributes = vec![
///         KeyValue::new("genai_audit.role", "generation"),
///         KeyValue::new("gen_ai.request.model", model.to_owned()),
///         KeyValue::new("gen_ai.usage.input_tokens", 100),
///         KeyValue::new("gen_ai.usage.output_tokens", 10),
///     ];
///     match cost {
///         Some(cost) => attributes.push(KeyValue::new("genai_audit.cost_usd", cost)),
///         None => attributes.push(KeyValue::new("genai_audit.cost.unpriced", true)),
///     }
///     ReportSpan::new(trace, SpanId::from(id), SpanId::from(1u64), "chat", id, &attributes)
/// };
/// let spans = vec![invocation, call(2, "gpt-4o", Some(0.25)), call(3, "my-model", None)];
///
/// let mut breakdown = Breakdown::new(&[GroupBy::Agent, GroupBy::Model]);
/// breakdown.add_trace(&spans);
/// let tables = breakdown.tables();
/// let by_agent = &tables[0];
/// assert_eq!(by_agent.rows[0].name, "coder");
/// assert_eq!((by_agent.total.calls, by_agent.total.unpriced_calls), (2, 1));
/// assert_eq!(by_agent.total.input_tokens, 200);
/// assert_eq!(by_agent.total.cost_usd(), Some(0.25));
/// let by_model = &tables[1];
/// assert_eq!(by_model.rows[0].name, "gpt-4o");
/// assert_eq!(by_model.rows[1].cost_usd(), None); // unpriced: no cost, not $0
/// ```
#[derive(Debug, Clone, Default)]
pub struct Breakdown {
    groupings: Vec<(GroupBy, HashMap<String, Row>)>,
}

impl Breakdown {
    /// A breakdown by each of `by` (repeats are ignored).
    pub fn new(by: &[GroupBy]) -> Breakdown {
        let mut groupings: Vec<(GroupBy, HashMap<String, Row>)> = Vec::new();
        for &g in by {
            if !groupings.iter().any(|(h, _)| *h == g) {
                groupings.push((g, HashMap::new()));
            }
        }
        Breakdown { groupings }
    }

    /// Whether it groups by nothing.
    pub fn is_empty(&self) -> bool {
        self.groupings.is_empty()
    }

    /// Adds the calls of one trace (all spans of one trace, as the audit hands them).
    pub fn add_trace(&mut self, spans: &[ReportSpan]) {
        if self.groupings.is_empty() || !spans.iter().any(ReportSpan::is_call) {
            return;
        }
        let view = TraceView::new(spans);
        let mut trace_name = String::new();
        for (i, call) in spans.iter().enumerate().filter(|(_, s)| s.is_call()) {
            for (by, groups) in &mut self.groupings {
                let name: std::borrow::Cow<'_, str> = match by {
                    GroupBy::Agent => view.agent_of(i).unwrap_or(NONE.into()),
                    GroupBy::Model => call.model.as_deref().unwrap_or(NONE).into(),
                    GroupBy::Provider => call.provider.as_deref().unwrap_or(NONE).into(),
                    GroupBy::Trace => {
                        if trace_name.is_empty() {
                            trace_name = call.trace_id.to_string();
                        }
                        trace_name.as_str().into()
                    }
                    GroupBy::Root => spans[view.root_of(i)].name.as_str().into(),
                    GroupBy::Session => view
                        .inherited(i, |s| s.session_id.as_deref())
                        .unwrap_or(NONE)
                        .into(),
                    GroupBy::User => view
                        .inherited(i, |s| s.user_id.as_deref())
                        .unwrap_or(NONE)
                        .into(),
                };
                match groups.get_mut(name.as_ref()) {
                    Some(row) => row.add_call(call),
                    None => {
                        let mut row = Row::named(&name);
                        row.add_call(call);
                        groups.insert(name.into_owned(), row);
                    }
                }
            }
        }
    }

    /// One table per grouping, in the order given to [`new`](Self::new).
    pub fn tables(&self) -> Vec<Table> {
        self.groupings
            .iter()
            .map(|(by, groups)| {
                let mut rows: Vec<Row> = groups.values().cloned().collect();
                rows.sort_by(|a, b| {
                    b.cost_units
                        .cmp(&a.cost_units)
                        .then_with(|| a.name.cmp(&b.name))
                });
                let mut total = Row::named("total");
                for row in &rows {
                    total.merge(row);
                }
                Table {
                    by: *by,
                    rows,
                    total,
                }
            })
            .collect()
    }

    /// Prints every table, each under a title line (`cost by agent`) and followed by a
    /// blank line.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        for table in self.tables() {
            writeln!(out, "cost by {}", table.by)?;
            table.write(out)?;
            writeln!(out)?;
        }
        Ok(())
    }

    /// The tables as a JSON array (see [`Table::to_json`]).
    pub fn to_json(&self) -> Json {
        Json::Array(self.tables().iter().map(Table::to_json).collect())
    }

    /// What `check --by ... --json` prints: the summary's JSON object
    /// ([`Summary::to_json`]) with one more member, `breakdowns`: this breakdown's
    /// tables ([`to_json`](Self::to_json)), in the order of the `--by` flags.
    pub fn summary_json(&self, summary: &Summary) -> Json {
        let mut out: Json = serde_json::from_str(&summary.to_json()).unwrap_or_else(|_| json!({}));
        if let Some(map) = out.as_object_mut() {
            map.insert("breakdowns".into(), self.to_json());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceId};
    use opentelemetry::KeyValue;

    use super::*;

    fn call(
        trace: u128,
        id: u64,
        parent: u64,
        cost: Option<f64>,
        extra: &[KeyValue],
    ) -> ReportSpan {
        let mut attributes = vec![
            KeyValue::new("genai_audit.role", "generation"),
            KeyValue::new("gen_ai.usage.input_tokens", 10),
            KeyValue::new("gen_ai.usage.output_tokens", 2),
            KeyValue::new("gen_ai.usage.cache_read.input_tokens", 4),
            KeyValue::new("gen_ai.usage.reasoning.output_tokens", 1),
        ];
        match cost {
            Some(c) => attributes.push(KeyValue::new("genai_audit.cost_usd", c)),
            None => attributes.push(KeyValue::new("genai_audit.cost.unpriced", true)),
        }
        attributes.extend_from_slice(extra);
        ReportSpan::new(
            TraceId::from(trace),
            SpanId::from(id),
            SpanId::from(parent),
            "chat",
            id,
            &attributes,
        )
    }

    #[test]
    fn columns_align_in_display_width_with_cjk_and_emoji_names() {
        let mut breakdown = Breakdown::new(&[GroupBy::Model, GroupBy::Agent]);
        let named = |model: &str, agent: &str| {
            [
                KeyValue::new("gen_ai.request.model", model.to_owned()),
                KeyValue::new("gen_ai.agent.name", agent.to_owned()),
            ]
        };
        breakdown.add_trace(&[
            call(1, 1, 0, Some(0.25), &named("通义千问-max", "研究助手")),
            call(1, 2, 0, Some(1.5), &named("🦜-parrot-🚀", "🤖 bot")),
            call(1, 3, 0, None, &named("gpt-4o-mini", "planner")),
        ]);
        for table in breakdown.tables() {
            let mut out = Vec::new();
            table.write(&mut out).expect("write");
            let text = String::from_utf8(out).expect("utf-8");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 5, "{text}");
            // Every line ends in the same terminal column (the cost is right-aligned)…
            let widths: Vec<usize> = lines.iter().map(|l| l.width()).collect();
            assert!(widths.iter().all(|w| *w == widths[0]), "{text}\n{widths:?}");
            // …and so does each of the eight number columns of every row: the columns
            // where its last eight cells end.
            let ends = |line: &str| -> Vec<usize> {
                let mut ends = Vec::new();
                let mut column = 0;
                let mut chars = line.chars().peekable();
                while let Some(c) = chars.next() {
                    column += c.to_string().width();
                    if c != ' ' && chars.peek().is_none_or(|n| *n == ' ') {
                        ends.push(column);
                    }
                }
                ends.split_off(ends.len() - 8)
            };
            let first = ends(lines[1]);
            for line in &lines[1..] {
                assert_eq!(ends(line), first, "{text}");
            }
            assert!(
                text.contains("通义千问-max") || text.contains("研究助手"),
                "{text}"
            );
            assert!(text.contains('🦜') || text.contains("🤖 bot"), "{text}");
        }
    }

    #[test]
    fn exact_sums_ties_by_name_and_unpriced_apart() {
        let mut breakdown = Breakdown::new(&[GroupBy::Session, GroupBy::Trace, GroupBy::Session]);
        // 0.1 + 0.2 summed exactly: 0.3, and the same in any order.
        breakdown.add_trace(&[
            call(1, 1, 0, Some(0.1), &[KeyValue::new("session.id", "b")]),
            call(
                1,
                2,
                0,
                Some(0.2),
                &[KeyValue::new("gen_ai.conversation.id", "a")],
            ),
        ]);
        breakdown.add_trace(&[
            call(2, 1, 0, Some(0.2), &[KeyValue::new("session.id", "b")]),
            call(
                2,
                2,
                0,
                None,
                &[KeyValue::new("gen_ai.conversation.id", "c")],
            ),
            call(2, 3, 0, Some(0.1), &[KeyValue::new("session.id", "a")]),
        ]);
        let tables = breakdown.tables();
        assert_eq!(tables.len(), 2, "repeats ignored");
        let sessions = &tables[0];
        let names: Vec<&str> = sessions.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"], "a tie on cost goes by name");
        assert_eq!(sessions.rows[0].cost_usd(), Some(0.3));
        assert_eq!(sessions.rows[2].cost_usd(), None);
        assert_eq!(sessions.rows[2].unpriced_calls, 1);
        assert_eq!(sessions.total.calls, 5);
        assert_eq!(sessions.total.cost_usd(), Some(0.6));
        assert_eq!(sessions.total.cache_read_tokens, 20);
        assert_eq!(sessions.total.reasoning_tokens, 5);
        let json = tables[1].to_json();
        assert_eq!(json["by"], "trace");
        // Both traces cost 0.3: by name (the trace id), trace 1 first.
        assert_eq!(json["rows"][0]["calls"], 2);
        assert_eq!(json["rows"][1]["calls"], 3);
        assert_eq!(json["rows"][1]["unpriced_calls"], 1);
        assert!(json["rows"][1]["cost_usd"].is_number());
    }

    #[test]
    fn agent_root_user_from_ancestors_and_none() {
        let root = ReportSpan::new(
            TraceId::from(1u128),
            SpanId::from(9u64),
            SpanId::INVALID,
            "request",
            0,
            &[KeyValue::new("enduser.id", "u-9")],
        );
        let invocation = ReportSpan::new(
            TraceId::from(1u128),
            SpanId::from(1u64),
            SpanId::from(9u64),
            "invoke_agent x",
            1,
            &[
                KeyValue::new("genai_audit.role", "invocation"),
                KeyValue::new("gen_ai.agent.name", "planner"),
            ],
        );
        let spans = vec![
            root,
            invocation,
            call(1, 2, 1, Some(1.0), &[]),
            call(
                1,
                3,
                0,
                Some(2.0),
                &[KeyValue::new("gen_ai.agent.name", "solo")],
            ),
            call(1, 4, 0, Some(3.0), &[]),
        ];
        let mut breakdown = Breakdown::new(&[GroupBy::Agent, GroupBy::Root, GroupBy::User]);
        breakdown.add_trace(&spans);
        let tables = breakdown.tables();
        let names = |t: &Table| -> Vec<String> { t.rows.iter().map(|r| r.name.clone()).collect() };
        assert_eq!(names(&tables[0]), ["(none)", "solo", "planner"]);
        assert_eq!(names(&tables[1]), ["chat", "request"]);
        assert_eq!(tables[1].rows[0].calls, 2);
        assert_eq!(names(&tables[2]), ["(none)", "u-9"]);
        let mut out = Vec::new();
        tables[0].write(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.starts_with("agent "), "{text}");
        assert!(
            text.lines().last().is_some_and(|l| l.starts_with("total")),
            "{text}"
        );
    }

    #[test]
    fn parses_groupings() {
        assert_eq!("model".parse::<GroupBy>(), Ok(GroupBy::Model));
        assert!("cost".parse::<GroupBy>().is_err());
    }
}
