//! What moved between two runs: `genai-audit diff BEFORE AFTER`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Write};

use serde_json::{json, Value as Json};

use super::context::{agent_label, TraceView};
use crate::report::{cost_units, shorten, units_usd, usd, ReportSpan};

/// The name of the group of calls and findings outside every invocation.
pub const OUTSIDE: &str = "(outside invocations)";

/// What one name (or the whole input) used: its invocations (or roots), calls, tokens,
/// cost, models and findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Invocations (or roots) of that name; for a total, all of them.
    pub count: u64,
    /// Model calls (generations and embeddings) whose nearest invocation (or root) it
    /// is: nested invocations count their own calls.
    pub calls: u64,
    /// Calls without a price.
    pub unpriced_calls: u64,
    /// Calls with a cost.
    pub priced_calls: u64,
    /// Input tokens of the calls.
    pub input_tokens: u64,
    /// Output tokens of the calls.
    pub output_tokens: u64,
    /// The exact sum of the calls' costs, in 10⁻²⁴ USD.
    cost_units: i128,
    /// The models the calls used.
    pub models: BTreeSet<String>,
    /// Findings by code, on its spans (those whose nearest invocation, or root, it is).
    pub findings: BTreeMap<String, u64>,
}

impl Totals {
    /// The cost of the priced calls, or `None` when no call was priced.
    pub fn cost_usd(&self) -> Option<f64> {
        (self.priced_calls > 0).then(|| units_usd(self.cost_units))
    }

    /// Input plus output tokens.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    fn add_call(&mut self, call: &ReportSpan) {
        self.calls += 1;
        self.unpriced_calls += u64::from(call.unpriced);
        if let Some(cost) = call.cost_usd {
            self.priced_calls += 1;
            self.cost_units = self.cost_units.saturating_add(cost_units(cost));
        }
        self.input_tokens = self
            .input_tokens
            .saturating_add(call.input_tokens.unwrap_or(0));
        self.output_tokens = self
            .output_tokens
            .saturating_add(call.output_tokens.unwrap_or(0));
        if let Some(model) = call.model.as_deref() {
            if !self.models.contains(model) {
                self.models.insert(model.to_owned());
            }
        }
    }

    fn add_findings(&mut self, span: &ReportSpan) {
        for code in &span.findings {
            *self.findings.entry(code.clone()).or_insert(0) += 1;
        }
    }

    fn merge(&mut self, other: &Totals) {
        self.count += other.count;
        self.calls += other.calls;
        self.unpriced_calls += other.unpriced_calls;
        self.priced_calls += other.priced_calls;
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cost_units = self.cost_units.saturating_add(other.cost_units);
        self.models.extend(other.models.iter().cloned());
        for (code, n) in &other.findings {
            *self.findings.entry(code.clone()).or_insert(0) += n;
        }
    }

    fn to_json(&self) -> Json {
        json!({
            "count": self.count,
            "calls": self.calls,
            "unpriced_calls": self.unpriced_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd(),
            "models": self.models,
            "findings": self.findings,
        })
    }
}

/// One input of a diff, read one trace at a time: usage per invocation name and per
/// root name (which of the two is compared is decided when both inputs are read).
#[derive(Debug, Clone, Default)]
pub struct DiffInput {
    invocations: HashMap<String, Totals>,
    roots: HashMap<String, Totals>,
}

impl DiffInput {
    /// An empty input.
    pub fn new() -> DiffInput {
        DiffInput::default()
    }

    /// Whether the input has any invocation.
    pub fn has_invocations(&self) -> bool {
        self.invocations
            .iter()
            .any(|(name, usage)| name != OUTSIDE || usage.count > 0)
    }

    /// Adds one trace's spans.
    pub fn add_trace(&mut self, spans: &[ReportSpan]) {
        let view = TraceView::new(spans);
        fn entry<'m>(map: &'m mut HashMap<String, Totals>, name: &str) -> &'m mut Totals {
            map.entry(name.to_owned()).or_default()
        }
        for (i, span) in spans.iter().enumerate() {
            let invocation = view.own_invocation(i);
            let by_invocation = match invocation {
                Some(v) => entry(&mut self.invocations, &agent_label(&spans[v])),
                None => entry(&mut self.invocations, OUTSIDE),
            };
            if invocation == Some(i) {
                by_invocation.count += 1;
            }
            if span.is_call() {
                by_invocation.add_call(span);
            }
            by_invocation.add_findings(span);
            let root = view.root_of(i);
            let by_root = entry(&mut self.roots, &spans[root].name);
            if root == i {
                by_root.count += 1;
            }
            if span.is_call() {
                by_root.add_call(span);
            }
            by_root.add_findings(span);
        }
    }
}

/// What is compared: invocations by agent name, or root spans by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MatchedBy {
    /// Invocations, by agent name (else their span name).
    Invocation,
    /// Root spans, by span name (when an input has no invocation).
    Root,
}

impl MatchedBy {
    /// `invocation` or `root`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MatchedBy::Invocation => "invocation",
            MatchedBy::Root => "root",
        }
    }
}

/// One name's usage before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The name (`total` for the total).
    pub name: String,
    /// Before.
    pub before: Totals,
    /// After.
    pub after: Totals,
}

/// The change from `before` to `after` in percent: `Some(0.0)` from 0 to 0, `None`
/// from 0 to more (growth without bound, which exceeds any limit).
pub fn change_pct(before: f64, after: f64) -> Option<f64> {
    if before == 0.0 {
        return (after == 0.0).then_some(0.0);
    }
    Some((after - before) / before * 100.0)
}

/// Whether growth from `before` to `after` is more than `limit` percent (growth from 0
/// to more always is).
pub fn exceeds(before: f64, after: f64, limit: f64) -> bool {
    change_pct(before, after).is_none_or(|pct| pct > limit)
}

impl Change {
    /// The cost change in percent ([`change_pct`]; no cost counts as 0).
    pub fn cost_pct(&self) -> Option<f64> {
        change_pct(
            self.before.cost_usd().unwrap_or(0.0),
            self.after.cost_usd().unwrap_or(0.0),
        )
    }

    /// The change of input plus output tokens in percent ([`change_pct`]).
    pub fn tokens_pct(&self) -> Option<f64> {
        change_pct(self.before.tokens() as f64, self.after.tokens() as f64)
    }

    /// Whether nothing moved.
    pub fn is_unchanged(&self) -> bool {
        self.before == self.after
    }

    fn to_json(&self) -> Json {
        let delta = |a: u64, b: u64| i128::from(b) - i128::from(a);
        let (b, a) = (&self.before, &self.after);
        let codes: BTreeSet<&String> = b.findings.keys().chain(a.findings.keys()).collect();
        let findings: BTreeMap<&String, i128> = codes
            .into_iter()
            .map(|c| {
                let n = |u: &Totals| u.findings.get(c).copied().unwrap_or(0);
                (c, delta(n(b), n(a)))
            })
            .collect();
        json!({
            "name": self.name,
            "before": b.to_json(),
            "after": a.to_json(),
            "change": {
                "count": delta(b.count, a.count),
                "calls": delta(b.calls, a.calls),
                "input_tokens": delta(b.input_tokens, a.input_tokens),
                "output_tokens": delta(b.output_tokens, a.output_tokens),
                "tokens": delta(b.tokens(), a.tokens()),
                "tokens_pct": self.tokens_pct(),
                "cost_usd": units_usd(a.cost_units.saturating_sub(b.cost_units)),
                "cost_pct": self.cost_pct(),
                "models_added": a.models.difference(&b.models).collect::<Vec<_>>(),
                "models_removed": b.models.difference(&a.models).collect::<Vec<_>>(),
                "findings": findings,
            },
        })
    }
}

/// Two runs compared: invocations matched by agent name (root spans by name when an
/// input has no invocation), and what moved in calls, tokens, cost, models and
/// findings, per name and in total.
///
/// ```
/// use genai_audit::costs::{DiffInput, Diff};
/// use genai_audit::report::ReportSpan;
/// use opentelemetry::trace::{SpanId, TraceId};
/// use opentelemetry::KeyValue;
///
/// let run = |calls: u64| {
///     let trace = TraceId::from(1u128);
///     let mut spans = vec![ReportSpan::new(trace, SpanId::from(1u64), SpanId::INVALID, "invoke_agent coder", 0, &[
///         KeyValue::new("genai_audit.role", "invocation"),
///     ])];
///     for id in 2..2 + calls {
///         spans.push(ReportSpan::new(trace, SpanId::from(id), SpanId::from(1u64), "chat", id, &[
///             KeyValue::new("genai_audit.role", "generation"),
///             KeyValue::new("gen_ai.usage.input_tokens", 100),
///             KeyValue::new("gen_ai.usage.output_tokens", 10),
///             KeyValue::new("genai_audit.cost_usd", 0.5),
///         ]));
///     }
///     let mut input = DiffInput::new();
///     input.add_trace(&spans);
///     input
/// };
/// let diff = Diff::new(run(2), run(3));
/// assert_eq!(diff.names[0].name, "coder");
/// assert_eq!((diff.total.before.calls, diff.total.after.calls), (2, 3));
/// assert_eq!(diff.total.cost_pct(), Some(50.0));
/// assert!(diff.total.cost_pct().is_some_and(|pct| pct > 1.0));
/// assert!(Diff::new(run(2), run(2)).total.is_unchanged());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// What was matched.
    pub matched_by: MatchedBy,
    /// Per name: every name of either input, by cost after (highest first; then cost
    /// before, then name).
    pub names: Vec<Change>,
    /// Everything (named `total`).
    pub total: Change,
}

impl Diff {
    /// Compares two inputs: invocations when both have some, else root spans.
    pub fn new(before: DiffInput, after: DiffInput) -> Diff {
        let matched_by = if before.has_invocations() && after.has_invocations() {
            MatchedBy::Invocation
        } else {
            MatchedBy::Root
        };
        let pick = |input: DiffInput| match matched_by {
            MatchedBy::Invocation => input.invocations,
            MatchedBy::Root => input.roots,
        };
        let (mut before, mut after) = (pick(before), pick(after));
        let names: BTreeSet<String> = before.keys().chain(after.keys()).cloned().collect();
        let mut changes: Vec<Change> = names
            .into_iter()
            .map(|name| Change {
                before: before.remove(&name).unwrap_or_default(),
                after: after.remove(&name).unwrap_or_default(),
                name,
            })
            .collect();
        changes.sort_by(|x, y| {
            y.after
                .cost_units
                .cmp(&x.after.cost_units)
                .then(y.before.cost_units.cmp(&x.before.cost_units))
                .then_with(|| x.name.cmp(&y.name))
        });
        let mut total = Change {
            name: "total".to_owned(),
            before: Totals::default(),
            after: Totals::default(),
        };
        for change in &changes {
            total.before.merge(&change.before);
            total.after.merge(&change.after);
        }
        Diff {
            matched_by,
            names: changes,
            total,
        }
    }

    /// The diff as one JSON object: `matched_by` (`invocation` or `root`), `names` and
    /// `total` (each `{name, before, after, change}`: `before` and `after` with
    /// `count`, `calls`, `unpriced_calls`, `input_tokens`, `output_tokens`, `cost_usd`
    /// (`null` without a priced call), `models`, `findings`; `change` with the
    /// differences, `tokens_pct` and `cost_pct` (`null` for growth from 0),
    /// `models_added`, `models_removed` and `findings` by code).
    pub fn to_json(&self) -> Json {
        json!({
            "matched_by": self.matched_by.as_str(),
            "names": self.names.iter().map(Change::to_json).collect::<Vec<_>>(),
            "total": self.total.to_json(),
        })
    }

    /// Prints the diff: a block per name (a line when nothing moved), then the total.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let what = match self.matched_by {
            MatchedBy::Invocation => "invocations by agent",
            MatchedBy::Root => "root spans by name (an input has no invocation)",
        };
        writeln!(out, "compared: {what}")?;
        writeln!(out)?;
        for change in &self.names {
            write_change(out, change, self.matched_by)?;
        }
        write_change(out, &self.total, self.matched_by)
    }
}

/// The CI gates of `genai-audit diff`: whether the total cost (`--fail-over PCT`) or
/// the total input plus output tokens (`--fail-over-tokens PCT`) grew by more than a
/// percentage. Growth from 0 to more exceeds any percentage; 0 to 0 is 0%. A side
/// without a priced call counts as $0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiffGates {
    /// The cost limit, percent.
    pub fail_over: Option<f64>,
    /// The token limit, percent.
    pub fail_over_tokens: Option<f64>,
    /// The total cost grew by more than `fail_over`.
    pub cost_exceeded: bool,
    /// The total tokens grew by more than `fail_over_tokens`.
    pub tokens_exceeded: bool,
}

impl DiffGates {
    /// Checks `diff`'s totals against the limits.
    pub fn new(diff: &Diff, fail_over: Option<f64>, fail_over_tokens: Option<f64>) -> DiffGates {
        let (b, a) = (&diff.total.before, &diff.total.after);
        let cost = |t: &Totals| t.cost_usd().unwrap_or(0.0);
        DiffGates {
            fail_over,
            fail_over_tokens,
            cost_exceeded: fail_over.is_some_and(|limit| exceeds(cost(b), cost(a), limit)),
            tokens_exceeded: fail_over_tokens
                .is_some_and(|limit| exceeds(b.tokens() as f64, a.tokens() as f64, limit)),
        }
    }

    /// Whether a limit was exceeded (the command then exits 1).
    pub fn failed(&self) -> bool {
        self.cost_exceeded || self.tokens_exceeded
    }

    /// [`Diff::to_json`] with a `gates` member: `fail_over`, `fail_over_tokens` (the
    /// limits, or `null`), `cost_exceeded`, `tokens_exceeded` and `failed`.
    pub fn to_json(&self, diff: &Diff) -> Json {
        let mut out = diff.to_json();
        if let Some(map) = out.as_object_mut() {
            map.insert(
                "gates".into(),
                json!({
                    "fail_over": self.fail_over,
                    "fail_over_tokens": self.fail_over_tokens,
                    "cost_exceeded": self.cost_exceeded,
                    "tokens_exceeded": self.tokens_exceeded,
                    "failed": self.failed(),
                }),
            );
        }
        out
    }

    /// [`Diff::write`]'s text, then a line per limit given, saying whether it was
    /// exceeded.
    pub fn to_text(&self, diff: &Diff) -> String {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = diff.write(&mut out);
        let mut text = String::from_utf8_lossy(&out).into_owned();
        let pct =
            |p: Option<f64>| p.map_or_else(|| "grew from 0".to_owned(), |p| format!("{p:+.2}%"));
        let verdict = |exceeded: bool| if exceeded { "FAIL" } else { "ok" };
        if let Some(limit) = self.fail_over {
            text += &format!(
                "cost {} (limit +{limit}%): {}\n",
                pct(diff.total.cost_pct()),
                verdict(self.cost_exceeded)
            );
        }
        if let Some(limit) = self.fail_over_tokens {
            text += &format!(
                "tokens {} (limit +{limit}%): {}\n",
                pct(diff.total.tokens_pct()),
                verdict(self.tokens_exceeded)
            );
        }
        text
    }
}

/// `+12 (+3.40%)`, `no change`, `+5 (new)`.
fn moved(before: f64, after: f64, delta: String) -> String {
    match change_pct(before, after) {
        _ if before == after => "no change".to_owned(),
        Some(pct) => format!("{delta} ({pct:+.2}%)"),
        None => format!("{delta} (new)"),
    }
}

fn signed(delta: i128) -> String {
    format!("{delta:+}")
}

fn write_change(out: &mut dyn Write, change: &Change, matched_by: MatchedBy) -> io::Result<()> {
    let (b, a) = (&change.before, &change.after);
    let units = match matched_by {
        MatchedBy::Invocation => "invocations",
        MatchedBy::Root => "roots",
    };
    let name = shorten(&change.name, 60);
    if change.is_unchanged() {
        return writeln!(
            out,
            "{name}: no change ({} {units}, {} calls, {} tokens, {})\n",
            a.count,
            a.calls,
            a.tokens(),
            cost_text(a)
        );
    }
    writeln!(out, "{name}")?;
    let line = |out: &mut dyn Write, label: &str, b: u64, a: u64| {
        let delta = signed(i128::from(a) - i128::from(b));
        writeln!(
            out,
            "  {label:<14} {b:>12} → {a:<12} {}",
            moved(b as f64, a as f64, delta)
        )
    };
    line(out, units, b.count, a.count)?;
    line(out, "calls", b.calls, a.calls)?;
    line(out, "input tokens", b.input_tokens, a.input_tokens)?;
    line(out, "output tokens", b.output_tokens, a.output_tokens)?;
    let (cb, ca) = (b.cost_usd().unwrap_or(0.0), a.cost_usd().unwrap_or(0.0));
    let delta = units_usd(a.cost_units.saturating_sub(b.cost_units));
    let delta = if delta < 0.0 {
        format!("-{}", usd(Some(-delta)))
    } else {
        format!("+{}", usd(Some(delta)))
    };
    writeln!(
        out,
        "  {:<14} {:>12} → {:<12} {}",
        "cost",
        cost_text(b),
        cost_text(a),
        moved(cb, ca, delta)
    )?;
    if b.unpriced_calls + a.unpriced_calls > 0 {
        line(out, "unpriced calls", b.unpriced_calls, a.unpriced_calls)?;
    }
    let list = |models: &BTreeSet<String>| {
        if models.is_empty() {
            "-".to_owned()
        } else {
            models
                .iter()
                .map(|m| shorten(m, 40))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if b.models != a.models {
        writeln!(
            out,
            "  {:<14} {} → {}",
            "models",
            list(&b.models),
            list(&a.models)
        )?;
    } else {
        writeln!(out, "  {:<14} {}", "models", list(&a.models))?;
    }
    let codes: BTreeSet<&String> = b.findings.keys().chain(a.findings.keys()).collect();
    if codes.is_empty() {
        writeln!(out, "  {:<14} none", "findings")?;
    }
    for code in codes {
        let n = |u: &Totals| u.findings.get(code).copied().unwrap_or(0);
        line(out, &shorten(code, 14), n(b), n(a))?;
    }
    writeln!(out)
}

fn cost_text(usage: &Totals) -> String {
    match usage.cost_usd() {
        Some(cost) => usd(Some(cost)),
        None if usage.calls > 0 => "unpriced".to_owned(),
        None => usd(Some(0.0)),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceId};
    use opentelemetry::KeyValue;

    use super::*;

    fn span(id: u64, parent: u64, name: &str, attributes: Vec<KeyValue>) -> ReportSpan {
        ReportSpan::new(
            TraceId::from(3u128),
            SpanId::from(id),
            SpanId::from(parent),
            name,
            id,
            &attributes,
        )
    }

    fn generation(id: u64, parent: u64, model: &str, input: i64) -> ReportSpan {
        span(
            id,
            parent,
            "chat",
            vec![
                KeyValue::new("genai_audit.role", "generation"),
                KeyValue::new("gen_ai.response.model", model.to_owned()),
                KeyValue::new("gen_ai.usage.input_tokens", input),
                KeyValue::new("gen_ai.usage.output_tokens", 1),
                KeyValue::new("genai_audit.cost_usd", input as f64 / 1000.0),
            ],
        )
    }

    fn invocation(id: u64, parent: u64, agent: &str) -> ReportSpan {
        span(
            id,
            parent,
            "invoke_agent",
            vec![
                KeyValue::new("genai_audit.role", "invocation"),
                KeyValue::new("gen_ai.agent.name", agent.to_owned()),
            ],
        )
    }

    #[test]
    fn nested_invocations_count_their_own_calls_and_findings() {
        let mut late = generation(5, 0, "m2", 7);
        late.findings.push("missing_parent".to_owned());
        let spans = vec![
            invocation(1, 0, "boss"),
            generation(2, 1, "m1", 10),
            invocation(3, 1, "helper"),
            generation(4, 3, "m2", 20),
            late,
        ];
        let mut input = DiffInput::new();
        input.add_trace(&spans);
        let diff = Diff::new(input.clone(), input);
        assert_eq!(diff.matched_by, MatchedBy::Invocation);
        let names: Vec<&str> = diff.names.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["helper", "boss", OUTSIDE]);
        assert_eq!(diff.names[1].after.calls, 1);
        assert_eq!(diff.names[1].after.input_tokens, 10);
        assert_eq!(diff.names[2].after.findings["missing_parent"], 1);
        assert_eq!(diff.total.after.count, 2);
        assert_eq!(diff.total.after.calls, 3);
        assert_eq!(diff.total.after.input_tokens, 37);
        assert_eq!(diff.total.cost_pct(), Some(0.0));
        assert!(diff.total.is_unchanged());
    }

    #[test]
    fn roots_when_an_input_has_no_invocation_and_growth_from_zero() {
        let mut before = DiffInput::new();
        before.add_trace(&[span(1, 0, "job", vec![])]);
        let mut after = DiffInput::new();
        after.add_trace(&[
            invocation(1, 0, "a"),
            generation(2, 1, "m", 5),
            span(3, 0, "job", vec![]),
        ]);
        let diff = Diff::new(before, after);
        assert_eq!(diff.matched_by, MatchedBy::Root);
        assert_eq!(diff.total.cost_pct(), None);
        assert!(exceeds(0.0, 0.005, 1_000_000.0));
        assert!(!exceeds(0.0, 0.0, 0.0));
        assert_eq!(diff.total.after.models.len(), 1);
        let json = diff.to_json();
        assert_eq!(json["matched_by"], "root");
        assert!(json["total"]["change"]["cost_pct"].is_null());
        assert_eq!(json["total"]["change"]["models_added"][0], "m");
        let mut out = Vec::new();
        diff.write(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("(new)"), "{text}");
    }

    #[test]
    fn percent_changes() {
        assert_eq!(change_pct(200.0, 250.0), Some(25.0));
        assert_eq!(change_pct(0.0, 0.0), Some(0.0));
        assert_eq!(change_pct(0.0, 1.0), None);
        assert!(exceeds(100.0, 101.5, 1.0));
        assert!(!exceeds(100.0, 101.0, 1.0));
        assert!(!exceeds(100.0, 50.0, 1.0));
    }
}
