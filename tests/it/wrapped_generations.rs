//! One model call is one generation (`DESIGN.md` §2): a generation whose nearest
//! recognised ancestor is a generation (a framework's span around the client library's,
//! such as DSPy's `LM.acall` over LiteLLM's `acompletion`) is the same call seen twice.
//! Only one counts, in `generations`, cumulative totals and cost; the other is written
//! `genai_audit.wrapper = true`, with no cost. Roles and usage at start or only at end.

use crate::common;

use common::lines::{end, start};
use common::{Harness, Replayed};

const LLM: &str = r#""openinference.span.kind":"LLM""#;
const INV: &str = r#""gen_ai.operation.name":"invoke_agent""#;

fn usage(input: u64, output: u64) -> String {
    format!(
        r#""llm.token_count.prompt":{input},"llm.token_count.completion":{output},"llm.model_name":"gpt-4o-mini","llm.provider":"openai""#
    )
}

fn script(lines: &[String]) -> String {
    lines.join("\n") + "\n"
}

fn replay(lines: &[String]) -> Replayed {
    let r = Harness::new().replay(&script(lines));
    r.assert_no_duplicate_keys();
    r
}

/// The keys a counted generation has and a wrapper has not.
const CALL_KEYS: [&str; 5] = [
    "genai_audit.cost_usd",
    "genai_audit.cost.unpriced",
    "genai_audit.cumulative.generations",
    "genai_audit.cumulative.input_tokens",
    "gen_ai.usage.cost",
];

fn assert_wrapper(r: &Replayed, label: &str) {
    assert_eq!(r.string(label, "genai_audit.role"), "generation", "{label}");
    assert!(r.bool(label, "genai_audit.wrapper"), "{label}");
    for key in CALL_KEYS {
        assert_eq!(r.attr(label, key), None, "{label}: {key}");
    }
}

fn assert_counted(r: &Replayed, label: &str, cumulative: (i64, i64, i64)) {
    assert_eq!(r.string(label, "genai_audit.role"), "generation", "{label}");
    assert_eq!(r.attr(label, "genai_audit.wrapper"), None, "{label}");
    assert_eq!(
        (
            r.i64(label, "genai_audit.cumulative.generations"),
            r.i64(label, "genai_audit.cumulative.input_tokens"),
            r.i64(label, "genai_audit.cumulative.output_tokens"),
        ),
        cumulative,
        "{label}"
    );
}

fn assert_totals(r: &Replayed, label: &str, totals: (i64, i64, i64)) {
    assert_eq!(
        (
            r.i64(label, "genai_audit.total.generations"),
            r.i64(label, "genai_audit.total.input_tokens"),
            r.i64(label, "genai_audit.total.output_tokens"),
        ),
        totals,
        "{label}"
    );
}

/// DSPy through OpenInference: `LM.acall` (LLM, no usage) over LiteLLM's `acompletion`
/// (LLM, usage), twice: two generations, the inner ones, with their cumulative totals.
#[test]
fn outer_without_usage_wraps_inner_with_usage() {
    let r = replay(&[
        start("inv", None, "invoke_agent a", INV, 0),
        start("lm1", Some("inv"), "LM.acall", LLM, 1),
        start("c1", Some("lm1"), "acompletion", LLM, 2),
        end("c1", &usage(101, 11), 3),
        end("lm1", r#""llm.model_name":"openai/gpt-4o-mini""#, 4),
        start("lm2", Some("inv"), "LM.acall", LLM, 5),
        start("c2", Some("lm2"), "acompletion", LLM, 6),
        end("c2", &usage(133, 17), 7),
        end("lm2", "", 8),
        end("inv", "", 9),
    ]);
    assert_counted(&r, "c1", (1, 101, 11));
    assert_counted(&r, "c2", (2, 234, 28));
    assert_wrapper(&r, "lm1");
    assert_wrapper(&r, "lm2");
    assert_totals(&r, "inv", (2, 234, 28));
    assert_eq!(r.findings("inv"), Vec::<String>::new());
    // Priced once per call: the inner spans' costs are the invocation's.
    let cost = r.f64("c1", "genai_audit.cost_usd") + r.f64("c2", "genai_audit.cost_usd");
    assert!((r.f64("inv", "genai_audit.total.cost_usd") - cost).abs() < 1e-15);
}

/// Both carry usage: the inner one counts, the outer one's usage is not added again.
#[test]
fn both_with_usage_the_inner_counts() {
    let r = replay(&[
        start("inv", None, "invoke_agent a", INV, 0),
        start("lm", Some("inv"), "LM.acall", LLM, 1),
        start("c", Some("lm"), "acompletion", LLM, 2),
        end("c", &usage(101, 11), 3),
        end("lm", &usage(101, 11), 4),
        end("inv", "", 5),
    ]);
    assert_counted(&r, "c", (1, 101, 11));
    assert_wrapper(&r, "lm");
    assert_totals(&r, "inv", (1, 101, 11));
}

/// Only the outer one carries usage (set at its end): the inner one, ending first
/// without usage under a generation, is the wrapper; the outer one counts.
#[test]
fn outer_with_usage_counts_when_the_inner_has_none() {
    let r = replay(&[
        start("inv", None, "invoke_agent a", INV, 0),
        start("lm", Some("inv"), "LM.acall", LLM, 1),
        start("c", Some("lm"), "acompletion", LLM, 2),
        end("c", "", 3),
        end("lm", &usage(157, 19), 4),
        end("inv", "", 5),
    ]);
    assert_wrapper(&r, "c");
    assert_counted(&r, "lm", (1, 157, 19));
    assert_totals(&r, "inv", (1, 157, 19));
}

/// Neither carries usage, the outer one recognised at its start: the inner one ends
/// first, without usage, so it is the wrapper, and the outer one counts (unpriced).
#[test]
fn neither_with_usage_one_counts() {
    let r = replay(&[
        start("inv", None, "invoke_agent a", INV, 0),
        start("lm", Some("inv"), "LM.acall", LLM, 1),
        start("c", Some("lm"), "acompletion", LLM, 2),
        end("c", "", 3),
        end("lm", "", 4),
        end("inv", "", 5),
    ]);
    assert_wrapper(&r, "c");
    assert_eq!(r.i64("lm", "genai_audit.cumulative.generations"), 1);
    assert!(r.bool("lm", "genai_audit.cost.unpriced"));
    assert_eq!(r.i64("inv", "genai_audit.total.generations"), 1);
    assert!(r.bool("inv", "genai_audit.total.partial"));
}

/// Roles known only at end (LangChain through OpenInference sets everything at end):
/// the inner one counts with its usage, the outer one is the wrapper, both ways round.
#[test]
fn roles_known_only_at_end() {
    let r = replay(&[
        start("inv", None, "invoke_agent a", INV, 0),
        start("lm", Some("inv"), "ChatOpenAI", "", 1),
        start("c", Some("lm"), "ChatCompletion", "", 2),
        end("c", &format!("{LLM},{}", usage(101, 11)), 3),
        end("lm", LLM, 4),
        end("inv", "", 5),
    ]);
    assert_counted(&r, "c", (1, 101, 11));
    assert_wrapper(&r, "lm");
    assert_totals(&r, "inv", (1, 101, 11));

    // The outer one recognised at its end with usage, the inner one counted before
    // without usage: the outer one's usage and cost count, not a second call.
    let r = replay(&[
        start("inv", None, "invoke_agent a", INV, 0),
        start("lm", Some("inv"), "ChatOpenAI", "", 1),
        start("c", Some("lm"), "ChatCompletion", "", 2),
        end("c", LLM, 3),
        end("lm", &format!("{LLM},{}", usage(101, 11)), 4),
        end("inv", "", 5),
    ]);
    assert_eq!(r.attr("c", "genai_audit.wrapper"), None);
    assert_eq!(r.attr("lm", "genai_audit.wrapper"), None);
    assert_eq!(r.i64("c", "genai_audit.cumulative.generations"), 1);
    assert_eq!(r.i64("lm", "genai_audit.cumulative.generations"), 1);
    assert_eq!(r.i64("lm", "genai_audit.cumulative.input_tokens"), 101);
    assert_totals(&r, "inv", (1, 101, 11));
}

/// Non-recognised spans in between (an HTTP client span) are seen through; a
/// recognised span in between (a tool) makes two calls.
#[test]
fn through_other_spans_but_not_through_a_tool() {
    let r = replay(&[
        start("inv", None, "invoke_agent a", INV, 0),
        start("lm", Some("inv"), "LM.acall", LLM, 1),
        start("http", Some("lm"), "POST /v1/chat/completions", "", 2),
        start("c", Some("http"), "acompletion", LLM, 3),
        end("c", &usage(101, 11), 4),
        end("http", "", 5),
        end("lm", "", 6),
        end("inv", "", 7),
    ]);
    assert_counted(&r, "c", (1, 101, 11));
    assert_wrapper(&r, "lm");
    assert_totals(&r, "inv", (1, 101, 11));

    let tool = r#""openinference.span.kind":"TOOL""#;
    let r = replay(&[
        start("inv", None, "invoke_agent a", INV, 0),
        start("lm", Some("inv"), "planner", LLM, 1),
        start("t", Some("lm"), "search", tool, 2),
        start("c", Some("t"), "summarise", LLM, 3),
        end("c", &usage(101, 11), 4),
        end("t", "", 5),
        end("lm", &usage(157, 19), 6),
        end("inv", "", 7),
    ]);
    assert_counted(&r, "c", (1, 101, 11));
    assert_counted(&r, "lm", (2, 258, 30));
    assert_totals(&r, "inv", (2, 258, 30));
}

/// Three levels: the innermost call counts, both spans around it are wrappers.
#[test]
fn three_levels() {
    let r = replay(&[
        start("inv", None, "invoke_agent a", INV, 0),
        start("a", Some("inv"), "Predict.forward", LLM, 1),
        start("b", Some("a"), "LM.acall", LLM, 2),
        start("c", Some("b"), "acompletion", LLM, 3),
        end("c", &usage(101, 11), 4),
        end("b", "", 5),
        end("a", "", 6),
        end("inv", "", 7),
    ]);
    assert_counted(&r, "c", (1, 101, 11));
    assert_wrapper(&r, "b");
    assert_wrapper(&r, "a");
    assert_totals(&r, "inv", (1, 101, 11));
}

/// An invocation seen only through what its children hand up: a root invocation
/// recognised at its end, the pair under a span never seen starting.
#[test]
fn wrapped_under_an_invocation_known_at_end() {
    let r = replay(&[
        start("inv", None, "agent", "", 0),
        start("lm", Some("inv"), "LM.acall", LLM, 1),
        start("c", Some("lm"), "acompletion", LLM, 2),
        end("c", &usage(101, 11), 3),
        end("lm", "", 4),
        end("inv", INV, 5),
    ]);
    assert_wrapper(&r, "lm");
    assert_eq!(r.attr("c", "genai_audit.wrapper"), None);
    assert_totals(&r, "inv", (1, 101, 11));
}

/// A wrapper is no call in the metrics either: the cost counter and the token histogram
/// count the call once, with the counted span's usage.
#[test]
fn metrics_count_the_call_once() {
    let h = Harness::with(|b| b.with_token_usage_metric(true));
    let r = h.replay(&script(&[
        start("inv", None, "invoke_agent a", INV, 0),
        start("lm", Some("inv"), "LM.acall", LLM, 1),
        start("c", Some("lm"), "acompletion", LLM, 2),
        end("c", &usage(101, 11), 3),
        end("lm", &usage(101, 11), 4),
        end("inv", "", 5),
    ]));
    assert_wrapper(&r, "lm");
    let cost: f64 = h.metric("genai_audit.cost").iter().map(|p| p.1).sum();
    assert_eq!(cost, r.f64("c", "genai_audit.cost_usd"));
    let tokens = h.metrics.histogram("gen_ai.client.token.usage");
    let mut by_type: Vec<(String, u64, f64)> = tokens
        .iter()
        .map(|p| {
            let kind = p
                .attributes
                .iter()
                .find(|(k, _)| k == "gen_ai.token.type")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            (kind, p.count, p.sum)
        })
        .collect();
    by_type.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        by_type,
        [
            ("input".to_owned(), 1, 101.0),
            ("output".to_owned(), 1, 11.0)
        ]
    );
}

/// The inner span ends after the outer one (`late_end`): the outer one, ending first
/// without usage, was counted; the inner one's usage is counted, not a second call.
#[test]
fn inner_ending_late_adds_its_usage_not_a_call() {
    let r = replay(&[
        start("inv", None, "invoke_agent a", INV, 0),
        start("lm", Some("inv"), "LM.acall", LLM, 1),
        start("c", Some("lm"), "acompletion", LLM, 2),
        end("lm", "", 3),
        end("c", &usage(101, 11), 4),
        end("inv", "", 5),
    ]);
    assert_eq!(r.attr("lm", "genai_audit.wrapper"), None);
    assert_eq!(r.attr("c", "genai_audit.wrapper"), None);
    assert_eq!(r.i64("lm", "genai_audit.cumulative.generations"), 1);
    assert_eq!(r.i64("c", "genai_audit.cumulative.generations"), 1);
    assert_eq!(r.i64("c", "genai_audit.cumulative.input_tokens"), 101);
    assert_eq!(r.findings("c"), ["late_end"]);
    assert_eq!(r.findings("lm"), ["unclosed_child"]);
    assert_totals(&r, "inv", (1, 101, 11));
}
