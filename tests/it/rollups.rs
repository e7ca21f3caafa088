//! Rollups see through non-recognised spans, include nested invocations, and stay
//! exact when invocations run concurrently on many threads.

use crate::common;

use common::{findings_of, value, Harness};
use opentelemetry::trace::{Span, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, Value};

#[test]
fn rollup_sees_through_non_recognised_spans() {
    let r = Harness::new().replay(r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"retry","parent":"inv","name":"retry","time_ns":2,"attributes":{"attempt":1}}
{"op":"start","span":"http","parent":"retry","name":"POST /v1/chat/completions","kind":"client","time_ns":3,"attributes":{"http.request.method":"POST"}}
{"op":"start","span":"llm","parent":"http","name":"chat m","kind":"client","time_ns":4,"attributes":{"gen_ai.operation.name":"chat"}}
{"op":"set","span":"llm","attributes":{"gen_ai.usage.input_tokens":40,"gen_ai.usage.output_tokens":4}}
{"op":"end","span":"llm","time_ns":5}
{"op":"end","span":"http","time_ns":6}
{"op":"end","span":"retry","time_ns":7}
{"op":"start","span":"step","parent":"inv","name":"react step","time_ns":8,"attributes":{}}
{"op":"start","span":"mw","parent":"step","name":"middleware","time_ns":9,"attributes":{}}
{"op":"start","span":"tool","parent":"mw","name":"execute_tool x","time_ns":10,"attributes":{}}
{"op":"end","span":"tool","time_ns":11}
{"op":"end","span":"mw","time_ns":12}
{"op":"end","span":"step","time_ns":13}
{"op":"end","span":"inv","time_ns":14}
"#);
    assert_eq!(r.i64("inv", "genai_audit.total.input_tokens"), 40);
    assert_eq!(r.i64("inv", "genai_audit.total.generations"), 1);
    assert_eq!(r.i64("inv", "genai_audit.total.tool_calls"), 1);
    assert_eq!(r.i64("step", "genai_audit.total.tool_calls"), 1);
    assert_eq!(r.i64("step", "genai_audit.total.generations"), 0);
    assert_eq!(r.i64("llm", "genai_audit.cumulative.input_tokens"), 40);
    // Non-recognised spans in between pass through untouched.
    for label in ["retry", "http", "mw"] {
        assert!(
            r.span(label)
                .attributes
                .iter()
                .all(|kv| !kv.key.as_str().starts_with("genai_audit.")),
            "{label}"
        );
    }
    r.assert_no_findings();
}

#[test]
fn nested_invocations_roll_up_into_their_parents() {
    let r = Harness::new().replay(r#"
{"op":"start","span":"outer","parent":null,"name":"invoke_agent planner","time_ns":1,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"s1","parent":"outer","name":"react step","time_ns":2,"attributes":{}}
{"op":"start","span":"g1","parent":"s1","name":"chat m","time_ns":3,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":100,"gen_ai.usage.output_tokens":10}}
{"op":"end","span":"g1","time_ns":4}
{"op":"start","span":"delegate","parent":"s1","name":"execute_tool delegate","time_ns":5,"attributes":{}}
{"op":"start","span":"inner","parent":"delegate","name":"invoke_agent coder","time_ns":6,"attributes":{"gen_ai.operation.name":"invoke_agent"}}
{"op":"start","span":"is1","parent":"inner","name":"react step","time_ns":7,"attributes":{}}
{"op":"start","span":"ig1","parent":"is1","name":"chat m","time_ns":8,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":20,"gen_ai.usage.output_tokens":2}}
{"op":"end","span":"ig1","time_ns":9}
{"op":"end","span":"is1","time_ns":9}
{"op":"start","span":"is2","parent":"inner","name":"react step","time_ns":10,"attributes":{}}
{"op":"start","span":"ig2","parent":"is2","name":"chat m","time_ns":11,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":30,"gen_ai.usage.output_tokens":3}}
{"op":"end","span":"ig2","time_ns":12}
{"op":"end","span":"is2","time_ns":13}
{"op":"end","span":"inner","time_ns":14}
{"op":"end","span":"delegate","time_ns":15}
{"op":"end","span":"s1","time_ns":16}
{"op":"start","span":"s2","parent":"outer","name":"react step","time_ns":17,"attributes":{}}
{"op":"start","span":"g2","parent":"s2","name":"chat m","time_ns":18,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":200,"gen_ai.usage.output_tokens":20}}
{"op":"end","span":"g2","time_ns":19}
{"op":"end","span":"s2","time_ns":20}
{"op":"end","span":"outer","time_ns":21}
"#);
    // The nested invocation: its own two generations.
    assert_eq!(r.i64("inner", "genai_audit.total.input_tokens"), 50);
    assert_eq!(r.i64("inner", "genai_audit.total.generations"), 2);
    assert_eq!(r.i64("inner", "genai_audit.steps"), 2);
    assert_eq!(r.i64("is1", "genai_audit.step.index"), 1);
    assert_eq!(r.i64("is2", "genai_audit.step.index"), 2);
    assert_eq!(r.i64("ig2", "genai_audit.cumulative.input_tokens"), 50);
    // The tool that ran it: everything below it, and itself counted above.
    assert_eq!(r.i64("delegate", "genai_audit.total.input_tokens"), 50);
    assert_eq!(r.i64("delegate", "genai_audit.total.tool_calls"), 0);
    // The outer invocation: everything, nested included; its steps only.
    assert_eq!(r.i64("outer", "genai_audit.total.input_tokens"), 350);
    assert_eq!(r.i64("outer", "genai_audit.total.output_tokens"), 35);
    assert_eq!(r.i64("outer", "genai_audit.total.generations"), 4);
    assert_eq!(r.i64("outer", "genai_audit.total.tool_calls"), 1);
    assert_eq!(r.i64("outer", "genai_audit.steps"), 2);
    assert_eq!(r.i64("s2", "genai_audit.step.index"), 2);
    assert_eq!(r.i64("s1", "genai_audit.total.input_tokens"), 150);
    // Running totals of the outer invocation include the nested calls, in end order.
    assert_eq!(r.i64("g1", "genai_audit.cumulative.input_tokens"), 100);
    assert_eq!(r.i64("g2", "genai_audit.cumulative.input_tokens"), 350);
    assert_eq!(r.i64("g2", "genai_audit.cumulative.generations"), 4);
    r.assert_no_findings();
}

#[test]
fn a_generation_without_invocation_has_no_cumulative_totals() {
    let r = Harness::new().replay(r#"
{"op":"start","span":"g","parent":null,"name":"chat m","time_ns":1,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":9}}
{"op":"end","span":"g","time_ns":2}
{"op":"start","span":"s","parent":null,"name":"react step","time_ns":3,"attributes":{}}
{"op":"end","span":"s","time_ns":4}
"#);
    assert_eq!(r.string("g", "genai_audit.role"), "generation");
    assert!(r.attr("g", "genai_audit.cumulative.input_tokens").is_none());
    assert!(r.attr("s", "genai_audit.step.index").is_none());
    r.assert_no_findings();
}

/// A tiny deterministic generator (no dependency needed for a seed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound + 1
    }
}

#[test]
fn concurrent_invocations_on_many_threads_get_exact_totals() {
    for threads in [2usize, 4, 8] {
        let h = Harness::new();
        let tracer = h.tracer();
        let expected: Vec<(u64, u64, u64)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let tracer = tracer.clone();
                    scope.spawn(move || {
                        let mut rng = Lcg(0x5eed + t as u64);
                        let inv = tracer
                            .span_builder("invoke_agent shared")
                            .with_attributes([
                                KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                                KeyValue::new("thread", t as i64),
                            ])
                            .start(&tracer);
                        let cx = Context::new().with_span(inv);
                        let (mut input, mut output) = (0, 0);
                        let rounds = rng.next(4);
                        for _ in 0..rounds {
                            let step = tracer
                                .span_builder("react step")
                                .start_with_context(&tracer, &cx);
                            let scx = cx.with_span(step);
                            let (i, o) = (rng.next(5000), rng.next(500));
                            input += i;
                            output += o;
                            let mut g = tracer
                                .span_builder("chat gpt-4o")
                                .with_attributes([
                                    KeyValue::new("gen_ai.operation.name", "chat"),
                                    KeyValue::new("gen_ai.request.model", "gpt-4o"),
                                ])
                                .start_with_context(&tracer, &scx);
                            std::thread::yield_now();
                            g.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", i as i64));
                            g.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", o as i64));
                            g.end();
                            let mut tool = tracer
                                .span_builder("execute_tool read")
                                .start_with_context(&tracer, &scx);
                            tool.end();
                            scx.span().end();
                        }
                        cx.span().end();
                        (input, output, rounds)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let spans = h.exporter.get_finished_spans().unwrap();
        for (t, (input, output, rounds)) in expected.iter().enumerate() {
            let inv = spans
                .iter()
                .find(|s| {
                    s.name == "invoke_agent shared"
                        && value(s, "thread") == Some(Value::I64(t as i64))
                })
                .unwrap();
            assert_eq!(
                value(inv, "genai_audit.total.input_tokens"),
                Some(Value::I64(*input as i64))
            );
            assert_eq!(
                value(inv, "genai_audit.total.output_tokens"),
                Some(Value::I64(*output as i64))
            );
            assert_eq!(
                value(inv, "genai_audit.total.generations"),
                Some(Value::I64(*rounds as i64))
            );
            assert_eq!(
                value(inv, "genai_audit.total.tool_calls"),
                Some(Value::I64(*rounds as i64))
            );
            assert_eq!(
                value(inv, "genai_audit.steps"),
                Some(Value::I64(*rounds as i64))
            );
        }
        for s in &spans {
            assert!(findings_of(s).is_empty());
        }
        let tracked = h.metric("genai_audit.spans.tracked");
        assert_eq!(
            tracked,
            vec![(vec![], 0.0)],
            "{threads} threads: nothing left tracked"
        );
    }
}

#[test]
fn usage_reported_on_non_generation_spans_is_never_rolled_up() {
    // the design contract (DESIGN.md) §3: an agent's or a step's own reported usage is what contamination checks
    // compare against; only generations roll up.
    let r = Harness::new().replay(
        r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1,"attributes":{"gen_ai.usage.input_tokens":1000}}
{"op":"start","span":"step","parent":"inv","name":"react step","time_ns":2,"attributes":{"gen_ai.usage.input_tokens":500,"gen_ai.usage.output_tokens":50}}
{"op":"start","span":"tool","parent":"step","name":"execute_tool x","time_ns":3,"attributes":{"gen_ai.usage.input_tokens":70}}
{"op":"end","span":"tool","time_ns":4}
{"op":"start","span":"g","parent":"step","name":"chat m","time_ns":5,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":7,"gen_ai.usage.output_tokens":1}}
{"op":"end","span":"g","time_ns":6}
{"op":"end","span":"step","time_ns":7}
{"op":"end","span":"inv","time_ns":8}
"#,
    );
    for label in ["inv", "step"] {
        assert_eq!(r.i64(label, "genai_audit.total.input_tokens"), 7, "{label}");
        assert_eq!(
            r.i64(label, "genai_audit.total.output_tokens"),
            1,
            "{label}"
        );
    }
    assert_eq!(r.i64("g", "genai_audit.cumulative.input_tokens"), 7);
    // The reported values themselves are left as they were.
    assert_eq!(r.i64("inv", "gen_ai.usage.input_tokens"), 1000);
    assert_eq!(r.i64("step", "gen_ai.usage.input_tokens"), 500);
}

#[test]
fn a_span_is_classified_again_from_its_final_attributes() {
    // the design contract (DESIGN.md) §2: recognised at start from name and start attributes, decided again at
    // end. `call` names no role at start; its attributes at end make it a generation,
    // and it still rolls up, because it was tracked under its invocation.
    let r = Harness::new().replay(
        r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1,"attributes":{}}
{"op":"start","span":"c","parent":"inv","name":"call","time_ns":2,"attributes":{}}
{"op":"set","span":"c","attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":12}}
{"op":"end","span":"c","time_ns":3}
{"op":"start","span":"t","parent":"inv","name":"execute_tool x","time_ns":4,"attributes":{}}
{"op":"set","span":"t","attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":3}}
{"op":"end","span":"t","time_ns":5}
{"op":"end","span":"inv","time_ns":6}
"#,
    );
    assert_eq!(r.string("c", "genai_audit.role"), "generation");
    assert_eq!(r.i64("c", "genai_audit.cumulative.input_tokens"), 12);
    // A span whose end attributes contradict its name: the final attributes win.
    assert_eq!(r.string("t", "genai_audit.role"), "generation");
    assert_eq!(r.i64("inv", "genai_audit.total.input_tokens"), 15);
    assert_eq!(r.i64("inv", "genai_audit.total.generations"), 2);
    assert_eq!(r.i64("inv", "genai_audit.total.tool_calls"), 0);
    r.assert_no_findings();
}

#[test]
fn spans_without_a_recognised_ancestor_leave_no_state() {
    // the design contract (DESIGN.md) §9: the fast path keeps nothing. Open non-gen-ai spans are not tracked;
    // an open invocation and what is under it are.
    let h = Harness::new();
    let tracer = h.tracer();
    let http = tracer.span_builder("GET /").start(&tracer);
    let cx = Context::new().with_span(http);
    let db = tracer
        .span_builder("SELECT")
        .start_with_context(&tracer, &cx);
    assert_eq!(h.metric("genai_audit.spans.tracked"), vec![(vec![], 0.0)]);
    let inv = tracer
        .span_builder("invoke_agent a")
        .start_with_context(&tracer, &cx);
    let icx = cx.with_span(inv);
    let under = tracer
        .span_builder("GET /tool")
        .start_with_context(&tracer, &icx);
    assert_eq!(h.metric("genai_audit.spans.tracked"), vec![(vec![], 2.0)]);
    drop(under);
    drop(icx);
    drop(db);
    drop(cx);
    assert_eq!(h.metric("genai_audit.spans.tracked"), vec![(vec![], 0.0)]);
    // Instruments live in the scope the design contract (DESIGN.md) §7 names, with the crate's version.
    assert_eq!(
        h.metric_scopes(),
        vec![(
            "genai-audit".to_string(),
            Some(env!("CARGO_PKG_VERSION").to_string())
        )]
    );
}
