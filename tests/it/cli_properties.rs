//! Properties of the command's audit on random exported traces (seeded, reproducible;
//! `GENAI_AUDIT_PROPTEST_CASES` and `GENAI_AUDIT_PROPTEST_SEED` as for the other
//! property suite):
//! - `enrich` of `enrich`'s output gives the same bytes, under every policy;
//! - auditing N traces together gives each span the report it gets when its trace is
//!   audited alone.

use genai_audit::otlp::{enrich, AuditOptions, Inputs};
use genai_audit::report::ReportSpan;
use genai_audit::{ContaminationPolicy, LeakPolicy};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// A small deterministic generator (xorshift), driven by the seed proptest draws.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const T0: u64 = 1_764_000_000_000_000_000;

fn attribute(key: &str, value: String) -> String {
    format!(r#"{{"key":"{key}","value":{value}}}"#)
}

fn string(v: &str) -> String {
    format!(r#"{{"stringValue":"{v}"}}"#)
}

/// One random agent trace: its spans as OTLP JSON, each with the resource it is in.
fn trace(rng: &mut Rng, t: u64) -> Vec<(u64, String)> {
    let start = T0 + t * 1_000_000_000;
    let mut spans: Vec<(u64, String)> = Vec::new();
    let mut push = |rng: &mut Rng,
                    id: u64,
                    parent: Option<u64>,
                    name: &str,
                    s: u64,
                    e: u64,
                    attrs: Vec<String>| {
        // Now and then a parent the input lacks, or an end before the start.
        let parent = if rng.chance(5) {
            Some(id + 1000)
        } else {
            parent
        };
        let (s, e) = if rng.chance(3) { (e, s) } else { (s, e) };
        let parent = parent.map_or(String::new(), |p| format!(r#","parentSpanId":"{p:016x}""#));
        let text = format!(
            r#"{{"traceId":"{t:032x}","spanId":"{id:016x}"{parent},"name":"{name}","kind":1,"startTimeUnixNano":"{s}","endTimeUnixNano":"{e}","attributes":[{}]}}"#,
            attrs.join(",")
        );
        spans.push((rng.below(2), text));
    };
    let steps = rng.below(4);
    let mut responses = Vec::new();
    let mut id = 2;
    let mut at = start + 10;
    for round in 1..=steps {
        let step = id;
        id += 1;
        let step_start = at;
        let calls = 1 + rng.below(2);
        for c in 0..calls {
            let response = format!("resp-{t}-{round}-{c}");
            responses.push(response.clone());
            let model = ["gpt-4o", "claude-sonnet-4-5", "no-such-model"][rng.below(3) as usize];
            let mut attrs = vec![
                attribute("gen_ai.operation.name", string("chat")),
                attribute("gen_ai.request.model", string(model)),
                attribute(
                    "gen_ai.usage.input_tokens",
                    format!(r#"{{"intValue":"{}"}}"#, rng.below(5000)),
                ),
                attribute(
                    "gen_ai.usage.output_tokens",
                    format!(r#"{{"intValue":{}}}"#, rng.below(900)),
                ),
                attribute("gen_ai.response.id", string(&response)),
            ];
            if rng.chance(20) {
                attrs.push(attribute(
                    "x.ratio",
                    format!(
                        r#"{{"doubleValue":{}}}"#,
                        (rng.next() % 1_000_000) as f64 / 7.0
                    ),
                ));
            }
            let s = at + 1;
            at += 10 + rng.below(20);
            push(rng, id, Some(step), &format!("chat {model}"), s, at, attrs);
            id += 1;
        }
        if rng.chance(50) {
            let s = at + 1;
            at += 5;
            push(
                rng,
                id,
                Some(step),
                "execute_tool search",
                s,
                at,
                vec![attribute("gen_ai.operation.name", string("execute_tool"))],
            );
            id += 1;
        }
        // Now and then the next step starts before this one ends, or this one ends
        // after its invocation.
        let end = if rng.chance(10) { at + 50 } else { at + 1 };
        at = if rng.chance(10) {
            at.saturating_sub(3)
        } else {
            at + 2
        };
        let reported_round = round + u64::from(rng.chance(10));
        push(
            rng,
            step,
            Some(1),
            "react step",
            step_start,
            end,
            vec![
                attribute("gen_ai.operation.name", string("react")),
                attribute(
                    "gen_ai.react.round",
                    format!(r#"{{"intValue":"{reported_round}"}}"#),
                ),
            ],
        );
    }
    let mut attrs = vec![attribute("gen_ai.operation.name", string("invoke_agent"))];
    if let Some(response) = responses.get(rng.below(responses.len() as u64 + 1) as usize) {
        attrs.push(attribute("gen_ai.response.id", string(response)));
    }
    if rng.chance(30) {
        attrs.push(attribute(
            "gen_ai.usage.input_tokens",
            format!(r#"{{"intValue":"{}"}}"#, rng.below(100)),
        ));
    }
    push(rng, 1, None, "invoke_agent agent", start, at + 40, attrs);
    if rng.chance(30) {
        push(
            rng,
            id,
            Some(1),
            "http request",
            at + 30,
            at + 60,
            Vec::new(),
        );
    }
    spans
}

/// The input of `traces` as OTLP JSON lines: two resources; each trace's spans of a
/// resource cut into batches of 3 in the order given, and line k of a resource holding
/// the k-th batch of every trace (so the traces are interleaved, and a trace's spans
/// share a request with the same spans of its own whether it is alone or not: order
/// of appearance counts within a request only).
fn input(traces: &[Vec<(u64, String)>]) -> String {
    let mut out = String::new();
    for r in 0..2u64 {
        let batches: Vec<Vec<Vec<&str>>> = traces
            .iter()
            .map(|trace| {
                let spans: Vec<&str> = trace
                    .iter()
                    .filter(|(resource, _)| *resource == r)
                    .map(|(_, text)| text.as_str())
                    .collect();
                spans.chunks(3).map(<[&str]>::to_vec).collect()
            })
            .collect();
        let lines = batches.iter().map(Vec::len).max().unwrap_or(0);
        for k in 0..lines {
            let spans: Vec<&str> = batches
                .iter()
                .filter_map(|b| b.get(k))
                .flatten()
                .copied()
                .collect();
            out.push_str(&format!(
                r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc-{r}"}}}}]}},"scopeSpans":[{{"scope":{{"name":"agent"}},"spans":[{}]}}]}}]}}"#,
                spans.join(",")
            ));
            out.push('\n');
        }
    }
    out
}

/// `enrich` in process: the bytes written, and every report span.
fn run(text: &str, options: &AuditOptions) -> (Vec<u8>, Vec<ReportSpan>) {
    let mut inputs = Inputs::new(1 << 24);
    inputs
        .read("input.json", text.as_bytes())
        .expect("readable");
    let mut reports = Vec::new();
    let mut out = Vec::new();
    enrich(
        &inputs,
        options,
        &mut |trace| reports.extend(trace),
        &|_| {},
        &mut out,
    )
    .expect("enriched");
    reports.sort_by_key(|r| (r.trace_id.to_bytes(), r.span_id.to_bytes(), r.start_ns));
    (out, reports)
}

fn runner(cases_per_run: u32) -> TestRunner {
    let cases = std::env::var("GENAI_AUDIT_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(cases_per_run);
    let mut seed = *b"genai-audit command properties!!";
    if let Some(n) = std::env::var("GENAI_AUDIT_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        seed[24..].copy_from_slice(&n.to_le_bytes());
    }
    let config = Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
}

fn options(leak: bool, repair: bool) -> AuditOptions {
    AuditOptions {
        leak_policy: Some(if leak {
            LeakPolicy::Close
        } else {
            LeakPolicy::Flag
        }),
        contamination_policy: Some(if repair {
            ContaminationPolicy::Repair
        } else {
            ContaminationPolicy::Flag
        }),
        ..AuditOptions::default()
    }
}

#[test]
fn prop_enrich_is_idempotent_and_each_trace_is_audited_on_its_own() {
    let result = runner(96).run(
        &(any::<u64>(), 1usize..6, any::<bool>(), any::<bool>()),
        |(seed, traces, leak, repair)| {
            let mut rng = Rng(seed | 1);
            let traces: Vec<Vec<(u64, String)>> =
                (0..traces as u64).map(|t| trace(&mut rng, t + 1)).collect();
            let options = options(leak, repair);
            let text = input(&traces);
            let (once, together) = run(&text, &options);
            let (twice, _) = run(&String::from_utf8_lossy(&once), &options);
            if once != twice {
                return Err(TestCaseError::fail(format!(
                    "a second enrich changed the bytes\n{}\n---\n{}",
                    String::from_utf8_lossy(&once),
                    String::from_utf8_lossy(&twice)
                )));
            }
            let mut alone: Vec<ReportSpan> = traces
                .iter()
                .flat_map(|t| run(&input(std::slice::from_ref(t)), &options).1)
                .collect();
            alone.sort_by_key(|r| (r.trace_id.to_bytes(), r.span_id.to_bytes(), r.start_ns));
            prop_assert_eq!(together, alone);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
