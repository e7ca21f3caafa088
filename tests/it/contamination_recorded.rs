//! The real recordings in `tests/recordings/traces/` (instrumentations that handle concurrency
//! correctly) under both contamination policies: no finding, no metric point, no
//! `genai_audit.reported.*` key, the per-invocation totals of their README, the usage
//! and response ids the agents reported left as they were, and under `repair` exactly
//! the same exported attributes as under `flag` (repair must change nothing on a
//! correct trace). `recorded_traces.rs` covers the default policy's recognition.

use crate::common;

use common::{Harness, Replayed};
use genai_audit::ContaminationPolicy;

const POLICIES: [ContaminationPolicy; 2] = [ContaminationPolicy::Flag, ContaminationPolicy::Repair];

fn replay(file: &str, policy: ContaminationPolicy) -> (Harness, Replayed) {
    let path = format!(
        "{}/tests/recordings/traces/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let h = Harness::with(|b| b.contamination_policy(policy));
    let r = h.replay(&text);
    (h, r)
}

/// Invocation label, totals (input, output, generations, tool calls), and what the
/// agent span itself reports: (input key, input, output key, output, response id).
type Expected = (
    &'static str,
    (i64, i64, i64, i64),
    Option<(&'static str, i64, &'static str, i64, Option<&'static str>)>,
);

fn check(file: &str, spans: usize, invocations: &[Expected]) {
    let mut runs = Vec::new();
    for policy in POLICIES {
        let (h, r) = replay(file, policy);
        assert_eq!(
            r.spans.len(),
            spans,
            "{file} {policy:?}: every span exported"
        );
        r.assert_no_findings();
        r.assert_no_duplicate_keys();
        assert!(
            h.metric("genai_audit.findings").is_empty(),
            "{file} {policy:?}: {:?}",
            h.metric("genai_audit.findings")
        );
        for (label, span) in &r.spans {
            for kv in &span.attributes {
                assert!(
                    !kv.key.as_str().starts_with("genai_audit.reported."),
                    "{file} {policy:?}: {label} has {}",
                    kv.key
                );
            }
        }
        for (inv, (input, output, gens, tools), reports) in invocations {
            assert_eq!(r.string(inv, "genai_audit.role"), "invocation", "{inv}");
            assert_eq!(
                (
                    r.i64(inv, "genai_audit.total.input_tokens"),
                    r.i64(inv, "genai_audit.total.output_tokens"),
                    r.i64(inv, "genai_audit.total.generations"),
                    r.i64(inv, "genai_audit.total.tool_calls"),
                ),
                (*input, *output, *gens, *tools),
                "{file} {policy:?}: totals of {inv}"
            );
            if let Some((in_key, in_value, out_key, out_value, response)) = reports {
                assert_eq!(r.i64(inv, in_key), *in_value, "{inv} {in_key}");
                assert_eq!(r.i64(inv, out_key), *out_value, "{inv} {out_key}");
                if let Some(id) = response {
                    assert_eq!(r.string(inv, "gen_ai.response.id"), *id, "{inv}");
                }
            }
        }
        runs.push(r);
    }
    let (flag, repair) = (&runs[0], &runs[1]);
    for (label, span) in &flag.spans {
        assert_eq!(
            span.attributes,
            repair.span(label).attributes,
            "{file}: repair changed {label}"
        );
    }
}

#[test]
fn hermes_loongsuite_two_threads_is_clean_under_both_policies() {
    check(
        "hermes-concurrent-fixed.jsonl",
        14,
        &[
            (
                "f83a2880dd7e8c62",
                (24, 8, 2, 1),
                Some((
                    "gen_ai.usage.input_tokens",
                    24,
                    "gen_ai.usage.output_tokens",
                    8,
                    Some("resp-A-2"),
                )),
            ),
            (
                "511b231a9d284735",
                (36, 9, 2, 1),
                Some((
                    "gen_ai.usage.input_tokens",
                    36,
                    "gen_ai.usage.output_tokens",
                    9,
                    Some("resp-B-2"),
                )),
            ),
        ],
    );
}

#[test]
fn pydantic_ai_three_runs_is_clean_under_both_policies() {
    let agg = |input, output| {
        Some((
            "gen_ai.aggregated_usage.input_tokens",
            input,
            "gen_ai.aggregated_usage.output_tokens",
            output,
            None,
        ))
    };
    check(
        "pydantic-ai-concurrent.jsonl",
        12,
        &[
            ("cd90c90ca8a6f251", (204, 24, 2, 1), agg(204, 24)),
            ("be714a6930675d4c", (216, 36, 2, 1), agg(216, 36)),
            ("71273bb60e5e0cad", (240, 52, 2, 1), agg(240, 52)),
        ],
    );
}

#[test]
fn vercel_ai_two_calls_is_clean_under_both_policies() {
    let ai = |input, output| {
        Some((
            "ai.usage.inputTokens",
            input,
            "ai.usage.outputTokens",
            output,
            None,
        ))
    };
    check(
        "vercel-ai-concurrent.jsonl",
        8,
        &[
            ("36d91603f1e85e65", (84, 16, 2, 1), ai(84, 16)),
            ("4aae904fe1668ae4", (100, 24, 2, 1), ai(100, 24)),
        ],
    );
}
