//! The audit as one self-contained HTML page: `genai-audit report --html OUT.html`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use maud::{html, Markup, PreEscaped, Render, DOCTYPE};

use super::breakdown::{Breakdown, GroupBy, Table};
use super::context::TraceView;
use crate::findings::FindingCode;
use crate::report::{escape_controls, usd, Report, ReportOptions, ReportSpan, Summary};

/// At most this many rows in a trace's timeline: past it, the spans with findings,
/// their ancestors and the first spans in tree order are shown.
const MAX_ROWS: usize = 2_000;
/// At most this many groups in each summary table.
const MAX_GROUPS: usize = 25;

/// Colours of the roles (and of spans without one).
const ROLE_COLOURS: [(&str, &str); 8] = [
    ("invocation", "#7c3aed"),
    ("step", "#0891b2"),
    ("generation", "#2563eb"),
    ("embedding", "#4f46e5"),
    ("tool", "#16a34a"),
    ("workflow", "#ca8a04"),
    ("retrieval", "#db2777"),
    ("other", "#9ca3af"),
];

const STYLE: &str = r#"
:root{color-scheme:light;--fg:#111827;--dim:#6b7280;--line:#e5e7eb;--bad:#dc2626}
*{box-sizing:border-box}
body{font:13px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:0;padding:20px 24px;background:#fff}
h1{font-size:20px;margin:0 0 12px}h2{font-size:15px;margin:0}h3{font-size:13px;margin:14px 0 6px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:14px}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 12px;min-width:110px}
.card b{display:block;font-size:18px}.card span{color:var(--dim)}
.tables{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{color:var(--dim);font-weight:600}td:first-child,th:first-child{text-align:left;max-width:320px;overflow:hidden;text-overflow:ellipsis}
tr.total td{font-weight:600}th.meaning{text-align:left}td.meaning{text-align:left;white-space:normal;max-width:420px;color:var(--dim)}
.legend{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0;color:var(--dim)}
.legend i,.dot{display:inline-block;width:12px;height:12px;border-radius:3px;vertical-align:-2px;margin-right:4px}
.controls{margin:6px 0 12px;color:var(--dim)}
section.trace{border:1px solid var(--line);border-radius:8px;margin:14px 0;overflow:hidden}
section.trace>header{display:flex;flex-wrap:wrap;gap:14px;align-items:baseline;padding:8px 12px;background:#f9fafb;cursor:pointer;border-bottom:1px solid var(--line)}
section.trace>header .id{font-family:ui-monospace,Menlo,monospace}
section.trace>header .meta{color:var(--dim)}
section.trace.collapsed .wf,section.trace.collapsed .totals{display:none}
.bad{color:var(--bad);font-weight:600}
.wf{padding:4px 0}
.row{display:grid;grid-template-columns:minmax(220px,30%) 1fr 170px 90px;align-items:center;min-height:22px;padding:0 12px}
.row:hover{background:#f3f4f6}
.row .name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.row .name small{color:var(--dim);margin-left:4px}
.lane{position:relative;height:14px;margin:0 10px;background:repeating-linear-gradient(90deg,transparent 0,transparent calc(25% - 1px),var(--line) calc(25% - 1px),var(--line) 25%)}
.bar{position:absolute;top:1px;height:12px;border-radius:3px;min-width:2px}
.bar.flagged{outline:2px solid var(--bad);outline-offset:1px}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.axis{color:var(--dim);font-size:11px}.axis .lane{background:none;height:auto;display:flex;justify-content:space-between}
.flags{padding:0 12px 4px;display:flex;flex-wrap:wrap;gap:6px}
.finding{display:inline-block;border:1px solid var(--bad);color:var(--bad);background:#fef2f2;border-radius:10px;padding:0 8px;font-size:12px}
.finding b{font-weight:600}
.totals{padding:6px 12px;border-top:1px solid var(--line);color:var(--dim)}
.note{color:var(--dim)}
#selfcheck{display:none}
"#;

const SCRIPT: &str = r#"
(function () {
  function run() {
    var body = document.body;
    document.querySelectorAll('section.trace > header').forEach(function (h) {
      h.addEventListener('click', function () { h.parentNode.classList.toggle('collapsed'); });
    });
    var only = document.getElementById('only-findings');
    if (only) {
      only.addEventListener('change', function () {
        document.querySelectorAll('section.trace').forEach(function (s) {
          s.style.display = only.checked && s.dataset.findings === '0' ? 'none' : '';
        });
      });
    }
    var traces = document.querySelectorAll('section.trace[data-trace]').length;
    var findings = document.querySelectorAll('[data-finding]').length;
    var errors = window.__reportErrors || [];
    var ok = errors.length === 0 &&
      traces === Number(body.dataset.expectTraces) &&
      findings === Number(body.dataset.expectFindings);
    document.getElementById('selfcheck').textContent =
      JSON.stringify({ traces: traces, findings: findings, errors: errors });
    body.dataset.ok = ok ? 'true' : 'false';
  }
  try { run(); } catch (e) {
    (window.__reportErrors = window.__reportErrors || []).push(String(e));
    document.body.dataset.ok = 'false';
  }
})();
"#;

/// The head's script: records script errors and `console.error` calls for the
/// self-check.
const HEAD_SCRIPT: &str = "window.__reportErrors=[];window.addEventListener('error',function(e){\
window.__reportErrors.push(String(e.message||e));});(function(){var original=console.error;\
console.error=function(){window.__reportErrors.push('console.error: '+\
Array.prototype.join.call(arguments,' '));return original.apply(console,arguments);};})();";

/// Text taken from spans, for the template: escaped by [`escape_html`] (which also
/// escapes `'` and shows control characters as escapes) instead of maud's own
/// escaping.
struct Text<'a>(&'a str);

impl Render for Text<'_> {
    fn render_to(&self, buffer: &mut String) {
        buffer.push_str(&escape_html(self.0));
    }
}

/// Text for HTML: `&`, `<`, `>`, `"` and `'` as entities and control characters shown
/// as escapes (`\u001b`), so that nothing a span carries can become markup, in text
/// or in a quoted attribute value.
pub fn escape_html(text: &str) -> String {
    let text = escape_controls(text);
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn role_colour(role: Option<&str>) -> &'static str {
    let role = role.unwrap_or("other");
    ROLE_COLOURS
        .iter()
        .find(|(r, _)| *r == role)
        .map_or(ROLE_COLOURS[7].1, |(_, c)| c)
}

/// `850 µs`, `12.3 ms`, `4.20 s`.
fn duration(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// The meaning of a finding code, for a code this version may not know.
fn meaning(code: &str) -> &'static str {
    FindingCode::meaning_of(code).unwrap_or("a finding of another version of genai-audit")
}

/// The audit as one HTML page with no external file and no network access (inline CSS
/// and script): a summary (spans, traces, invocations, cost, cost by agent and by
/// model, findings by code with their meanings), a legend of the role colours, and
/// per trace a waterfall timeline (a bar per span from its start to its end, nested
/// under its parent, coloured by role), each call's tokens and cost, the trace's
/// totals, and every finding on its span with its meaning.
///
/// Traces are chosen as the terminal report chooses its trees ([`Report`]): every
/// trace up to [`ReportOptions::max_traces`] (or with [`ReportOptions::all`]),
/// otherwise those with findings and then the most expensive; the page says how many
/// were left out. On the page, traces with findings come first, then by cost.
///
/// Everything taken from spans is escaped ([`escape_html`]). The page's script checks
/// itself once loaded: it counts the traces (`section[data-trace]`) and findings
/// (`[data-finding]`) it shows, compares them with the counts it was written with
/// (`data-expect-traces`, `data-expect-findings` on `body`), and sets
/// `body[data-ok]` to `true` or `false` (the counts and any script error are in
/// `#selfcheck`).
///
/// ```
/// use genai_audit::costs::HtmlReport;
/// use genai_audit::report::{ReportOptions, ReportSpan};
/// use opentelemetry::trace::{SpanId, TraceId};
/// use opentelemetry::{Array, KeyValue, StringValue, Value};
///
/// let trace = TraceId::from(5u128);
/// let mut late = ReportSpan::new(trace, SpanId::from(2u64), SpanId::from(1u64), "<b>chat</b>", 2_000, &[
///     KeyValue::new("genai_audit.role", "generation"),
///     KeyValue::new("gen_ai.usage.input_tokens", 120),
///     KeyValue::new("gen_ai.usage.output_tokens", 30),
///     KeyValue::new("genai_audit.cost_usd", 0.002),
///     KeyValue::new("genai_audit.findings", Value::Array(Array::String(vec![StringValue::from("late_end")]))),
/// ]).with_end(9_000);
/// let root = ReportSpan::new(trace, SpanId::from(1u64), SpanId::INVALID, "invoke_agent coder", 1_000, &[
///     KeyValue::new("genai_audit.role", "invocation"),
/// ]).with_end(8_000);
///
/// let mut page = HtmlReport::new(ReportOptions::default());
/// page.add_trace(vec![root, late]);
/// let mut html = Vec::new();
/// page.write(&mut html)?;
/// let html = String::from_utf8(html)?;
/// assert_eq!(html.matches("data-trace=").count(), 1);
/// assert_eq!(html.matches("data-finding=").count(), 1);
/// assert!(html.contains("ended after its parent had ended"));
/// assert!(html.contains("&lt;b&gt;chat&lt;/b&gt;") && !html.contains("<b>chat"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct HtmlReport {
    report: Report,
    breakdown: Breakdown,
}

impl HtmlReport {
    /// An empty page; `options` choose the traces shown (colours and `trees` are not
    /// used).
    pub fn new(options: ReportOptions) -> HtmlReport {
        HtmlReport {
            report: Report::new(ReportOptions {
                color: false,
                trees: true,
                ..options
            }),
            breakdown: Breakdown::new(&[GroupBy::Agent, GroupBy::Model]),
        }
    }

    /// Adds one trace's spans (all of the same trace).
    pub fn add_trace(&mut self, spans: Vec<ReportSpan>) {
        self.breakdown.add_trace(&spans);
        self.report.add_trace(spans);
    }

    /// The summary of the traces added so far.
    pub fn summary(&self) -> &Summary {
        self.report.summary()
    }

    /// Writes the page and returns the summary.
    pub fn write(self, out: &mut dyn Write) -> io::Result<Summary> {
        let tables = self.breakdown.tables();
        let (summary, mut traces) = self.report.into_shown();
        let weight = |spans: &Vec<ReportSpan>| {
            let findings: usize = spans.iter().map(|s| s.findings.len()).sum();
            let cost: f64 = spans
                .iter()
                .filter(|s| s.is_call())
                .filter_map(|s| s.cost_usd)
                .sum();
            (findings > 0, cost)
        };
        traces.sort_by(|a, b| {
            let ((fa, ca), (fb, cb)) = (weight(a), weight(b));
            fb.cmp(&fa).then(cb.total_cmp(&ca))
        });
        let shown_findings: usize = traces.iter().flatten().map(|s| s.findings.len()).sum();
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { "genai-audit report" }
                    style { (PreEscaped(STYLE)) }
                    script { (PreEscaped(HEAD_SCRIPT)) }
                }
                body data-expect-traces=(traces.len()) data-expect-findings=(shown_findings) {
                    h1 { "genai-audit report" }
                    (summary_part(&summary, &tables, traces.len()))
                    @for spans in &traces {
                        (trace_part(spans))
                    }
                    pre id="selfcheck" {}
                    script { (PreEscaped(SCRIPT)) }
                }
            }
        };
        out.write_all(page.into_string().as_bytes())?;
        Ok(summary)
    }
}

fn card(value: &str, label: &str) -> Markup {
    html! { div class="card" { b { (Text(value)) } span { (Text(label)) } } }
}

fn summary_part(summary: &Summary, tables: &[Table], shown: usize) -> Markup {
    let total = usize::try_from(summary.traces).unwrap_or(usize::MAX);
    html! {
        div class="cards" {
            (card(&summary.spans.to_string(), "spans"))
            (card(&summary.traces.to_string(), "traces"))
            (card(&summary.invocations.to_string(), "invocations"))
            (card(&summary.generations.to_string(), "generations"))
            (card(&usd(Some(summary.cost_usd)), "total cost"))
            @if summary.unpriced > 0 {
                (card(&summary.unpriced.to_string(), "unpriced calls"))
            }
            (card(&summary.findings_total.to_string(), "findings"))
        }
        div class="tables" {
            @for table in tables {
                (table_part(table))
            }
            (findings_table(summary))
        }
        div class="legend" {
            @for (role, colour) in ROLE_COLOURS {
                span {
                    i style={ "background:" (colour) } {}
                    @if role == "other" { "not recognised" } @else { (role) }
                }
            }
            span { i style="outline:2px solid #dc2626" {} "span with findings" }
        }
        div class="controls" {
            @if shown < total {
                span class="note" {
                    (shown) " of " (total) " traces shown: those with findings, then the most expensive ("
                    (total - shown) " left out; " code { "--all" } " shows every one). "
                }
            } @else {
                span class="note" { (total) " traces. " }
            }
            label { input type="checkbox" id="only-findings"; " only traces with findings" }
            " "
            span class="note" { "(click a trace's header to fold it)" }
        }
    }
}

fn table_part(table: &Table) -> Markup {
    let row = |r: &super::breakdown::Row, class: Option<&str>| {
        html! {
            tr class=[class] {
                td title=(Text(&r.name)) { (Text(&r.name)) }
                td { (r.calls) }
                td { (r.unpriced_calls) }
                td { (r.input_tokens) }
                td { (r.output_tokens) }
                td { (r.cache_read_tokens) }
                td { (r.cost_usd().map_or_else(|| "-".to_owned(), |c| usd(Some(c)))) }
            }
        }
    };
    html! {
        div {
            h3 { "Cost by " (table.by) }
            table {
                tr {
                    th { (table.by) } th { "calls" } th { "unpriced" } th { "input" }
                    th { "output" } th { "cache read" } th { "cost" }
                }
                @for r in table.rows.iter().take(MAX_GROUPS) {
                    (row(r, None))
                }
                @if table.rows.len() > MAX_GROUPS {
                    tr { td class="note" colspan="7" { "… " (table.rows.len() - MAX_GROUPS) " more" } }
                }
                (row(&table.total, Some("total")))
            }
        }
    }
}

fn findings_table(summary: &Summary) -> Markup {
    let found: Vec<(&String, &u64)> = summary.findings.iter().filter(|(_, n)| **n > 0).collect();
    html! {
        div {
            h3 { "Findings by code" }
            table {
                tr { th { "code" } th { "count" } th class="meaning" { "meaning" } }
                @for (code, n) in &found {
                    tr data-code=(Text(code)) {
                        td class="bad" { (Text(code)) }
                        td { (n) }
                        td class="meaning" { (Text(meaning(code))) }
                    }
                }
                @if found.is_empty() {
                    tr { td colspan="3" class="note" { "none" } }
                }
            }
        }
    }
}

/// The spans of a trace in tree order (roots and siblings by start), with depths.
fn tree_order(view: &TraceView<'_>) -> Vec<(usize, usize)> {
    let spans = view.spans;
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for i in 0..spans.len() {
        match view.parent(i) {
            Some(p) => children.entry(p).or_default().push(i),
            None => roots.push(i),
        }
    }
    let by_start = |list: &mut Vec<usize>| {
        list.sort_by(|&a, &b| {
            (spans[a].start_ns, &spans[a].name).cmp(&(spans[b].start_ns, &spans[b].name))
        })
    };
    by_start(&mut roots);
    children.values_mut().for_each(by_start);
    let mut order = Vec::with_capacity(spans.len());
    let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|i| (i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        order.push((i, depth));
        if let Some(list) = children.get(&i) {
            stack.extend(list.iter().rev().map(|&c| (c, depth + 1)));
        }
    }
    order
}

fn trace_part(spans: &[ReportSpan]) -> Markup {
    let Some(first) = spans.first() else {
        return html! {};
    };
    let view = TraceView::new(spans);
    let mut order = tree_order(&view);
    let all = order.len();
    if all > MAX_ROWS {
        // The spans with findings and their ancestors, then the first in tree order.
        let mut keep: HashSet<usize> = HashSet::new();
        for (i, span) in spans.iter().enumerate() {
            if !span.findings.is_empty() {
                keep.extend(view.up(i));
            }
        }
        let mut room = MAX_ROWS.saturating_sub(keep.len());
        order.retain(|(i, _)| {
            if keep.contains(i) {
                true
            } else if room > 0 {
                room -= 1;
                true
            } else {
                false
            }
        });
    }
    let t0 = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let t1 = spans.iter().map(|s| s.end_ns).max().unwrap_or(t0);
    let span_ns = (t1 - t0).max(1);
    let calls: Vec<&ReportSpan> = spans.iter().filter(|s| s.is_call()).collect();
    let sum = |f: fn(&ReportSpan) -> Option<u64>| calls.iter().filter_map(|s| f(s)).sum::<u64>();
    let cost: f64 = calls.iter().filter_map(|s| s.cost_usd).sum();
    let priced = calls.iter().any(|s| s.cost_usd.is_some());
    let unpriced = calls.iter().filter(|s| s.unpriced).count();
    let findings: usize = spans.iter().map(|s| s.findings.len()).sum();
    let id = first.trace_id.to_string();
    let trace_cost = if priced {
        usd(Some(cost))
    } else if calls.is_empty() {
        "no calls".to_owned()
    } else {
        "unpriced".to_owned()
    };
    html! {
        section class="trace" data-trace=(id) data-findings=(findings) {
            header {
                h2 { "trace " span class="id" { (id) } }
                span class="meta" { (spans.len()) " spans · " (duration(t1 - t0)) " · " (trace_cost) }
                @if findings > 0 {
                    span class="bad" { (findings) " finding" @if findings != 1 { "s" } }
                }
            }
            div class="wf" {
                div class="row axis" {
                    div { "span" }
                    div class="lane" {
                        span { "0" }
                        span { (duration(span_ns / 4)) }
                        span { (duration(span_ns / 2)) }
                        span { (duration(span_ns / 4 * 3)) }
                        span { (duration(span_ns)) }
                    }
                    div class="num" { "tokens in→out" }
                    div class="num" { "cost" }
                }
                @for &(i, depth) in &order {
                    (row_part(&spans[i], depth, t0, span_ns))
                }
            }
            @if order.len() < all {
                div class="totals" {
                    (order.len()) " of " (all) " spans shown (those with findings and their ancestors first)"
                }
            }
            div class="totals" {
                (calls.len()) " calls · " (sum(|s| s.input_tokens)) " input · "
                (sum(|s| s.output_tokens)) " output · " (sum(|s| s.cache_read_tokens))
                " cache read · " (sum(|s| s.reasoning_tokens)) " reasoning tokens · cost "
                @if priced { (usd(Some(cost))) } @else { "-" }
                @if unpriced > 0 { " (" (unpriced) " unpriced)" }
            }
        }
    }
}

fn row_part(span: &ReportSpan, depth: usize, t0: u64, span_ns: u64) -> Markup {
    let role = span.role.as_deref();
    let role_text = role.filter(|r| !r.is_empty());
    let left = (span.start_ns.saturating_sub(t0)) as f64 / span_ns as f64 * 100.0;
    let width = (span.end_ns - span.start_ns) as f64 / span_ns as f64 * 100.0;
    let tokens = match (span.input_tokens, span.output_tokens) {
        (None, None) => None,
        (i, o) => {
            let n = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
            Some(format!("{}→{}", n(i), n(o)))
        }
    };
    let cached = span
        .cache_read_tokens
        .filter(|c| *c > 0 && tokens.is_some());
    let cost = if span.unpriced {
        "unpriced".to_owned()
    } else if role.is_some() && (span.cost_usd.is_some() || tokens.is_some()) {
        usd(span.cost_usd)
    } else {
        String::new()
    };
    let indent = depth.min(30) * 14;
    // Lines of the bar's tooltip: `&#10;` between them.
    let line_break = PreEscaped("&#10;");
    html! {
        div class="row" data-span=(span.span_id) data-role=(Text(role_text.unwrap_or("other"))) {
            div class="name" style={ "padding-left:" (indent) "px" } title=(Text(&span.name)) {
                (Text(&span.name)) small { (Text(role_text.unwrap_or(""))) }
            }
            div class="lane" {
                div class={ "bar" @if !span.findings.is_empty() { " flagged" } }
                    style={ "left:" (format!("{left:.3}")) "%;width:" (format!("{width:.3}")) "%;background:" (role_colour(role)) }
                    title={
                        (Text(&span.name)) (line_break)
                        (Text(role_text.unwrap_or("not recognised"))) ", " (duration(span.end_ns - span.start_ns))
                        " at +" (duration(span.start_ns.saturating_sub(t0)))
                        @if let Some(model) = span.model.as_deref() { (line_break) "model " (Text(model)) }
                        @if let Some(agent) = span.agent_name.as_deref() { (line_break) "agent " (Text(agent)) }
                    } {}
            }
            div class="num" {
                @if let Some(tokens) = &tokens { (tokens) }
                @if let Some(c) = cached { " " small title="cache read" { "(" (c) " cached)" } }
            }
            div class="num" { (cost) }
        }
        @if !span.findings.is_empty() {
            div class="flags" style={ "padding-left:" (12 + indent) "px" } {
                @for code in &span.findings {
                    span class="finding" data-finding=(Text(code)) title=(Text(meaning(code))) {
                        "⚠ " b { (Text(code)) } ": " (Text(meaning(code)))
                    }
                }
            }
        }
    }
}

/// Writes `bytes` to `path` as `enrich -o` writes its output (see [`replace_file`]).
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file(path, |file| file.write_all(bytes))
}

/// Replaces the file at `path` with what `write` writes: into a temporary file beside
/// it (`.NAME.genai-audit-XXXXXX.tmp`, made by `tempfile`, with the permissions
/// `File::create` would give), renamed over it only once `write` returned `Ok`, so
/// that on any error the previous file is untouched and the temporary file removed.
/// Not forced to disk: after a power loss, the file system's own guarantees for a
/// rename over a file apply.
pub fn replace_file<E: From<io::Error>>(
    path: &Path,
    write: impl FnOnce(&mut fs::File) -> Result<(), E>,
) -> Result<(), E> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map_or_else(|| "output".to_owned(), |n| n.to_string_lossy().into_owned());
    let mut builder = tempfile::Builder::new();
    let prefix = format!(".{file_name}.genai-audit-");
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // As `File::create`: 0o666 less the umask (tempfile's own default is 0o600).
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    // Dropped on any error (a failed write, a failed rename): the file is removed.
    let mut temporary = builder.tempfile_in(dir)?;
    write(temporary.as_file_mut())?;
    temporary.persist(path).map_err(|e| E::from(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceId};
    use opentelemetry::{Array, KeyValue, StringValue, Value};

    use super::*;

    fn span(id: u64, parent: u64, name: &str, attributes: Vec<KeyValue>) -> ReportSpan {
        ReportSpan::new(
            TraceId::from(9u128),
            SpanId::from(id),
            SpanId::from(parent),
            name,
            id * 10,
            &attributes,
        )
        .with_end(id * 10 + 100)
    }

    fn page(traces: Vec<Vec<ReportSpan>>, options: ReportOptions) -> String {
        let mut report = HtmlReport::new(options);
        for t in traces {
            report.add_trace(t);
        }
        let mut out = Vec::new();
        report.write(&mut out).expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn span_text_cannot_become_markup() {
        let evil = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>&\u{1b}[31m";
        let spans = vec![
            span(
                1,
                0,
                evil,
                vec![
                    KeyValue::new("genai_audit.role", "invocation"),
                    KeyValue::new("gen_ai.agent.name", evil),
                ],
            ),
            span(
                2,
                1,
                evil,
                vec![
                    KeyValue::new("genai_audit.role", "generation"),
                    KeyValue::new("gen_ai.request.model", evil),
                    KeyValue::new(
                        "genai_audit.findings",
                        Value::Array(Array::String(vec![
                            StringValue::from(evil),
                            StringValue::from("late_end"),
                        ])),
                    ),
                ],
            ),
        ];
        let html = page(vec![spans], ReportOptions::default());
        assert!(!html.contains("<script>alert"), "a script from a span name");
        assert!(!html.contains("<img"), "an element from a span name");
        assert!(!html.contains('\u{1b}'), "control characters are escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&gt;&lt;img"));
        // The page's own scripts: the error hook in the head and the self-check.
        assert_eq!(html.matches("<script>").count(), 2);
        assert_eq!(html.matches("data-finding=").count(), 2);
        assert!(html.contains("data-expect-findings=\"2\""));
    }

    #[test]
    fn large_inputs_say_what_was_left_out() {
        let traces: Vec<Vec<ReportSpan>> = (1..=30u128)
            .map(|t| {
                vec![ReportSpan::new(
                    TraceId::from(t),
                    SpanId::from(1u64),
                    SpanId::INVALID,
                    "root",
                    0,
                    &[],
                )]
            })
            .collect();
        let html = page(traces.clone(), ReportOptions::default());
        assert_eq!(html.matches("data-trace=").count(), 20);
        assert!(html.contains("20 of 30 traces shown"), "{html}");
        let html = page(
            traces,
            ReportOptions {
                all: true,
                ..ReportOptions::default()
            },
        );
        assert_eq!(html.matches("data-trace=").count(), 30);
    }

    #[test]
    fn long_traces_keep_findings_and_their_ancestors() {
        let mut spans: Vec<ReportSpan> = (1..=(MAX_ROWS as u64 + 50))
            .map(|i| span(i, if i == 1 { 0 } else { 1 }, "s", vec![]))
            .collect();
        let last = spans.len() - 1;
        spans[last].findings.push("late_end".to_owned());
        let html = page(vec![spans], ReportOptions::default());
        assert_eq!(html.matches("data-finding=").count(), 1);
        assert_eq!(html.matches("class=\"row\" data-span").count(), MAX_ROWS);
        assert!(html.contains(&format!("{MAX_ROWS} of {} spans shown", MAX_ROWS + 50)));
    }

    #[test]
    fn atomic_write_replaces_only_when_written() {
        let dir = tempfile::tempdir().expect("dir");
        let dir = dir.path();
        let path = dir.join("r.html");
        write_file_atomically(&path, b"one").expect("write");
        write_file_atomically(&path, b"two").expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert!(write_file_atomically(&dir.join("missing/r.html"), b"x").is_err());
        // A failed write leaves the file as it was and no temporary file.
        let failed = replace_file(&path, |file| {
            file.write_all(b"half")?;
            Err(io::Error::other("failed"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert_eq!(
            fs::read_dir(dir).expect("dir").count(),
            1,
            "no temporary file left"
        );
        // The file has the permissions `File::create` gives, not the temporary's 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let plain = dir.join("plain");
            fs::File::create(&plain).expect("create");
            let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode();
            assert_eq!(mode(&path), mode(&plain));
        }
    }
}
