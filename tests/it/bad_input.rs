//! Bad input gets a defined behaviour and never a panic: spans ended twice, parents
//! that end first, children started after their parent ended, spans never ended,
//! parents never seen, odd attribute types, huge counts.

use crate::common;

use common::{findings_of, value, Harness};
use opentelemetry::trace::{
    Span, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue, Value};

#[test]
fn a_span_ended_twice_is_exported_once() {
    let h = Harness::new();
    let tracer = h.tracer();
    let mut span = tracer
        .span_builder("chat m")
        .with_attributes([KeyValue::new("gen_ai.operation.name", "chat")])
        .start(&tracer);
    span.end();
    span.end();
    drop(span);
    let spans = h.exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1);
}

#[test]
fn a_parent_that_ends_first_has_partial_totals_and_ancestors_still_get_the_child() {
    let r = Harness::new().replay(r#"
{"op":"start","span":"wf","parent":null,"name":"w","time_ns":1,"attributes":{"gen_ai.operation.name":"invoke_workflow"}}
{"op":"start","span":"inv","parent":"wf","name":"invoke_agent a","time_ns":2,"attributes":{}}
{"op":"start","span":"g0","parent":"inv","name":"chat m","time_ns":3,"attributes":{"gen_ai.operation.name":"chat","gen_ai.usage.input_tokens":1}}
{"op":"end","span":"g0","time_ns":4}
{"op":"start","span":"g","parent":"inv","name":"chat m","time_ns":5,"attributes":{"gen_ai.operation.name":"chat"}}
{"op":"end","span":"inv","time_ns":6}
{"op":"set","span":"g","attributes":{"gen_ai.usage.input_tokens":10}}
{"op":"end","span":"g","time_ns":7}
{"op":"end","span":"wf","time_ns":8}
"#);
    // The invocation ended with its generation still open: partial, without it.
    assert!(r.bool("inv", "genai_audit.total.partial"));
    assert_eq!(r.i64("inv", "genai_audit.total.input_tokens"), 1);
    // The late generation still counts for its invocation's running total and for the
    // workflow above, which was still open.
    assert_eq!(r.i64("g", "genai_audit.cumulative.input_tokens"), 11);
    assert_eq!(r.i64("wf", "genai_audit.total.input_tokens"), 11);
    assert_eq!(r.i64("wf", "genai_audit.total.generations"), 2);
}

#[test]
fn a_child_started_after_its_parent_ended_gets_its_own_attributes_only() {
    let r = Harness::new().replay(r#"
{"op":"start","span":"inv","parent":null,"name":"invoke_agent a","time_ns":1,"attributes":{}}
{"op":"end","span":"inv","time_ns":2}
{"op":"start","span":"g","parent":"inv","name":"chat gpt-4o","time_ns":3,"attributes":{"gen_ai.operation.name":"chat","gen_ai.request.model":"gpt-4o","gen_ai.usage.input_tokens":10}}
{"op":"end","span":"g","time_ns":4}
{"op":"start","span":"x","parent":"inv","name":"GET /","time_ns":5,"attributes":{}}
{"op":"end","span":"x","time_ns":6}
"#);
    assert_eq!(r.string("g", "genai_audit.role"), "generation");
    assert!(r.attr("g", "genai_audit.cost_usd").is_some());
    assert!(r.attr("g", "genai_audit.cumulative.input_tokens").is_none());
    assert!(r.span("x").attributes.is_empty());
    assert!(r.attr("inv", "genai_audit.total.input_tokens").is_none());
}

#[test]
fn spans_never_ended_do_not_break_shutdown() {
    let h = Harness::new();
    let tracer = h.tracer();
    let inv = tracer
        .span_builder("invoke_agent a")
        .with_attributes([KeyValue::new("gen_ai.operation.name", "invoke_agent")])
        .start(&tracer);
    let cx = Context::new().with_span(inv);
    let step = tracer
        .span_builder("react step")
        .start_with_context(&tracer, &cx);
    std::mem::forget(step);
    let mut g = tracer
        .span_builder("chat m")
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.usage.input_tokens", 3),
        ])
        .start_with_context(&tracer, &cx);
    g.end();
    let spans = h.exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        value(&spans[0], "genai_audit.cumulative.input_tokens"),
        Some(Value::I64(3))
    );
    h.provider.shutdown().unwrap();
    drop(cx); // after shutdown: the invocation is never exported, and nothing panics
}

#[test]
fn a_parent_never_seen_is_no_problem() {
    let h = Harness::new();
    let tracer = h.tracer();
    let remote = SpanContext::new(
        TraceId::from(7u128),
        SpanId::from(9u64),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let cx = Context::new().with_remote_span_context(remote);
    let mut g = tracer
        .span_builder("chat gpt-4o")
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", 3),
        ])
        .start_with_context(&tracer, &cx);
    g.end();
    let spans = h.exporter.get_finished_spans().unwrap();
    assert_eq!(
        value(&spans[0], "genai_audit.role"),
        Some(Value::from("generation"))
    );
    assert!(value(&spans[0], "genai_audit.cumulative.input_tokens").is_none());
}

#[test]
fn odd_attribute_types_and_huge_counts() {
    let r = Harness::new().replay(r#"
{"op":"start","span":"inv","parent":null,"name":"agent","time_ns":1,"attributes":{"gen_ai.operation.name":["invoke_agent"],"gen_ai.span.kind":7}}
{"op":"start","span":"g","parent":"inv","name":"chat m","time_ns":2,"attributes":{"gen_ai.operation.name":"chat","gen_ai.request.model":5,"gen_ai.usage.input_tokens":9007199254740992,"gen_ai.usage.output_tokens":[1,2]}}
{"op":"end","span":"g","time_ns":3}
{"op":"end","span":"inv","time_ns":4}
"#);
    // Non-string role values name no role.
    assert!(r.attr("inv", "genai_audit.role").is_none());
    // 2^53 is the largest usable count; an array is unusable.
    assert_eq!(r.findings("g"), vec!["invalid_usage"]);
    // A non-string model cannot be priced.
    assert!(r.bool("g", "genai_audit.cost.unpriced"));
    assert!(r.attr("g", "genai_audit.cost_usd").is_none());
    assert!(findings_of(r.span("inv")).is_empty());
}

#[test]
fn keys_the_processor_writes_replace_existing_values() {
    let r = Harness::new().replay(
        r#"
{"op":"start","span":"g","parent":null,"name":"chat gpt-4o","time_ns":1,"attributes":{"gen_ai.operation.name":"chat","gen_ai.request.model":"gpt-4o","gen_ai.usage.input_tokens":10,"genai_audit.role":"bogus","genai_audit.cost_usd":99.0}}
{"op":"set","span":"g","attributes":{"genai_audit.role":"bogus again"}}
{"op":"end","span":"g","time_ns":2}
"#,
    );
    let roles: Vec<_> = r
        .span("g")
        .attributes
        .iter()
        .filter(|kv| kv.key.as_str() == "genai_audit.role")
        .collect();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].value, Value::from("generation"));
    assert_ne!(r.f64("g", "genai_audit.cost_usd"), 99.0);
    r.assert_no_duplicate_keys();
}
