//! The real recordings in `tests/recordings/traces/` (correct instrumentations): every span
//! recognised as its README says, no findings, and the per-invocation totals of the
//! README.

use crate::common;

use common::Harness;

fn replay(file: &str) -> common::Replayed {
    let path = format!(
        "{}/tests/recordings/traces/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Harness::new().replay(&text)
}

fn assert_totals(r: &common::Replayed, inv: &str, input: i64, output: i64, gens: i64, tools: i64) {
    assert_eq!(r.string(inv, "genai_audit.role"), "invocation", "{inv}");
    assert_eq!(r.i64(inv, "genai_audit.total.input_tokens"), input, "{inv}");
    assert_eq!(
        r.i64(inv, "genai_audit.total.output_tokens"),
        output,
        "{inv}"
    );
    assert_eq!(r.i64(inv, "genai_audit.total.generations"), gens, "{inv}");
    assert_eq!(r.i64(inv, "genai_audit.total.tool_calls"), tools, "{inv}");
}

#[test]
fn hermes_loongsuite_two_threads() {
    let r = replay("hermes-concurrent-fixed.jsonl");
    assert_eq!(r.spans.len(), 14);
    assert_totals(&r, "f83a2880dd7e8c62", 24, 8, 2, 1);
    assert_totals(&r, "511b231a9d284735", 36, 9, 2, 1);
    // qwen-turbo from dashscope is not in the price data: unpriced, totals partial.
    assert!(r.bool("f83a2880dd7e8c62", "genai_audit.total.partial"));
    assert!(r
        .attr("f83a2880dd7e8c62", "genai_audit.total.cost_usd")
        .is_none());
    assert_eq!(r.i64("f83a2880dd7e8c62", "genai_audit.steps"), 2);
    let roles: Vec<_> = r
        .spans
        .values()
        .filter_map(|s| common::value(s, "genai_audit.role").map(|v| v.to_string()))
        .collect();
    assert_eq!(roles.iter().filter(|r| *r == "generation").count(), 4);
    assert_eq!(roles.iter().filter(|r| *r == "step").count(), 4);
    assert_eq!(roles.iter().filter(|r| *r == "tool").count(), 2);
    assert_eq!(
        roles.len(),
        12,
        "the two enter_ai_application_system roots are not roles"
    );
    r.assert_no_findings();
}

#[test]
fn pydantic_ai_three_runs() {
    let r = replay("pydantic-ai-concurrent.jsonl");
    assert_totals(&r, "cd90c90ca8a6f251", 204, 24, 2, 1);
    assert_totals(&r, "be714a6930675d4c", 216, 36, 2, 1);
    assert_totals(&r, "71273bb60e5e0cad", 240, 52, 2, 1);
    assert_eq!(r.i64("cd90c90ca8a6f251", "genai_audit.steps"), 0);
    r.assert_no_findings();
}

#[test]
fn vercel_ai_two_calls() {
    let r = replay("vercel-ai-concurrent.jsonl");
    assert_totals(&r, "36d91603f1e85e65", 84, 16, 2, 1);
    assert_totals(&r, "4aae904fe1668ae4", 100, 24, 2, 1);
    r.assert_no_findings();
}
