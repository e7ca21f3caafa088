//! The trace-script format through the public API: parsing and validation
//! ([`TraceScript::parse`] and `FromStr`), the parsed [`Event`]s, and replay.

use std::time::{SystemTime, UNIX_EPOCH};

use genai_audit::script::{Event, Replay, StartEvent, TraceScript};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TracerProvider as _};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor, SpanData,
};

const SPEC_EXAMPLE: &str = r#"{"op":"start","span":"inv","parent":null,"name":"invoke_agent coder","time_ns":1700000000000000000,"attributes":{"gen_ai.operation.name":"invoke_agent","gen_ai.agent.name":"coder"}}
{"op":"start","span":"step1","parent":"inv","name":"react step","time_ns":1700000000001000000,"attributes":{"gen_ai.operation.name":"react"}}
{"op":"start","span":"llm0","parent":"step1","name":"chat gpt-4o","kind":"client","time_ns":1700000000002000000,"attributes":{"gen_ai.operation.name":"chat","gen_ai.provider.name":"openai","gen_ai.request.model":"gpt-4o"}}
{"op":"set","span":"llm0","attributes":{"gen_ai.usage.input_tokens":1056,"gen_ai.usage.output_tokens":170,"gen_ai.response.id":"resp-1"}}
{"op":"end","span":"llm0","time_ns":1700000000900000000}
{"op":"end","span":"step1","time_ns":1700000000950000000,"status":"ok"}
{"op":"end","span":"inv","time_ns":1700000001000000000}
"#;

const TRACE_FILES: [&str; 3] = [
    "hermes-concurrent-fixed.jsonl",
    "pydantic-ai-concurrent.jsonl",
    "vercel-ai-concurrent.jsonl",
];

fn read_trace(file: &str) -> String {
    let path = format!(
        "{}/tests/recordings/traces/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Parses `text`, expecting an error on `line` whose reason contains `needle`.
#[track_caller]
fn assert_error(text: &str, line: usize, needle: &str) {
    match TraceScript::parse(text) {
        Ok(_) => panic!("expected an error on line {line} containing {needle:?}"),
        Err(error) => {
            assert_eq!(error.line, line, "wrong line for {error}");
            assert!(
                error.reason.contains(needle),
                "reason {:?} does not contain {needle:?}",
                error.reason
            );
            assert_eq!(error.to_string(), format!("line {line}: {}", error.reason));
        }
    }
}

const ROOT: &str = r#"{"op":"start","span":"a","parent":null,"name":"root","time_ns":10}"#;

/// `ROOT`, a comment, a blank line, then `line` as line 4.
fn after_root(line: &str) -> String {
    format!("{ROOT}\n# comment\n\n{line}\n")
}

#[test]
fn spec_example_parses() {
    let script = TraceScript::parse(SPEC_EXAMPLE).unwrap();
    let events = script.events();
    assert_eq!(events.len(), 7);
    let Event::Start(llm) = &events[2] else {
        panic!("not a start: {:?}", events[2]);
    };
    assert_eq!(llm.line, 3);
    assert_eq!(llm.span, "llm0");
    assert_eq!(llm.parent.as_deref(), Some("step1"));
    assert_eq!(llm.name, "chat gpt-4o");
    assert_eq!(llm.kind, SpanKind::Client);
    assert_eq!(llm.time_ns, 1_700_000_000_002_000_000);
    let keys: Vec<&str> = llm.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "gen_ai.operation.name",
            "gen_ai.provider.name",
            "gen_ai.request.model"
        ]
    );
    let Event::Set(set) = &events[3] else {
        panic!("not a set: {:?}", events[3]);
    };
    assert_eq!(
        set.attributes,
        vec![
            KeyValue::new("gen_ai.usage.input_tokens", 1056_i64),
            KeyValue::new("gen_ai.usage.output_tokens", 170_i64),
            KeyValue::new("gen_ai.response.id", "resp-1"),
        ]
    );
    let Event::End(end) = &events[5] else {
        panic!("not an end: {:?}", events[5]);
    };
    assert_eq!((end.line, end.span.as_str()), (6, "step1"));
    assert_eq!(end.status, Status::Ok);
    assert_eq!(events[4].span(), "llm0");
    assert_eq!(events[6].line(), 7);
    assert_eq!(SPEC_EXAMPLE.parse::<TraceScript>(), Ok(script));
}

#[test]
fn recorded_traces_parse() {
    for file in TRACE_FILES {
        let script =
            TraceScript::parse(&read_trace(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let starts = script
            .events()
            .iter()
            .filter(|e| matches!(e, Event::Start(_)))
            .count();
        let ends = script
            .events()
            .iter()
            .filter(|e| matches!(e, Event::End(_)))
            .count();
        assert!(starts > 0, "{file}");
        assert_eq!(starts, ends, "{file}: every recorded span ends");
    }
}

#[test]
fn blank_and_comment_lines_are_ignored() {
    let script = TraceScript::parse(
        "\u{feff}\n   \n  # a comment\n\t\r\n{\"op\":\"start\",\"span\":\"a\",\"parent\":null,\"name\":\"n\",\"time_ns\":5}\r\n#",
    )
    .unwrap();
    assert_eq!(script.events().len(), 1);
    assert_eq!(script.events()[0].line(), 5);
    assert!(TraceScript::parse("").unwrap().events().is_empty());
}

#[test]
fn invalid_json_is_reported() {
    assert_error(&after_root("{\"op\":"), 4, "invalid JSON");
    assert_error(&after_root("not json"), 4, "invalid JSON");
    assert_error(&after_root(r#"{"op":"set"} trailing"#), 4, "invalid JSON");
    assert_error(
        &after_root("[1,2]"),
        4,
        "expected a JSON object, found an array",
    );
    assert_error(&after_root("\"start\""), 4, "expected a JSON object");
    assert_error("{\"op\":\"start\",\"span\":\"x\",", 1, "invalid JSON");
}

#[test]
fn unknown_op_is_reported() {
    assert_error(
        &after_root(r#"{"op":"finish","span":"a"}"#),
        4,
        "unknown op \"finish\"",
    );
    assert_error(
        &after_root(r#"{"op":3,"span":"a"}"#),
        4,
        "\"op\" must be a string",
    );
    assert_error(
        &after_root(r#"{"span":"a"}"#),
        4,
        "missing required field \"op\"",
    );
}

#[test]
fn missing_required_fields_are_reported() {
    assert_error(
        &after_root(r#"{"op":"end","time_ns":1}"#),
        4,
        "missing required field \"span\"",
    );
    assert_error(
        &after_root(r#"{"op":"start","span":"b","name":"n","time_ns":1}"#),
        4,
        "missing required field \"parent\"",
    );
    assert_error(
        &after_root(r#"{"op":"start","span":"b","parent":"a","time_ns":1}"#),
        4,
        "missing required field \"name\"",
    );
    assert_error(
        &after_root(r#"{"op":"set","span":"a"}"#),
        4,
        "missing required field \"attributes\"",
    );
    assert_error(
        r#"{"op":"start","span":"a","parent":null,"name":"n"}"#,
        1,
        "no earlier event has a time",
    );
    assert_error(
        &after_root(r#"{"op":"start","span":"b","parent":"a","name":7}"#),
        4,
        "\"name\" must be a string",
    );
    assert_error(
        &after_root(r#"{"op":"start","span":"b","parent":1,"name":"n"}"#),
        4,
        "string or null",
    );
}

#[test]
fn unknown_and_misplaced_fields_are_reported() {
    assert_error(
        &after_root(r#"{"op":"set","span":"a","atributes":{}}"#),
        4,
        "unknown field \"atributes\"",
    );
    assert_error(
        &after_root(r#"{"op":"set","span":"a","attributes":{},"time_ns":3}"#),
        4,
        "\"time_ns\" is not allowed in a \"set\" event",
    );
    assert_error(
        &after_root(r#"{"op":"end","span":"a","name":"x"}"#),
        4,
        "\"name\" is not allowed in a \"end\" event",
    );
    assert_error(
        &after_root(r#"{"op":"end","span":"a","span":"a"}"#),
        4,
        "\"span\" is given twice",
    );
}

#[test]
fn unknown_kind_and_status_are_reported() {
    assert_error(
        &after_root(r#"{"op":"start","span":"b","parent":"a","name":"n","kind":"CLIENT"}"#),
        4,
        "unknown kind \"CLIENT\"",
    );
    assert_error(
        &after_root(r#"{"op":"end","span":"a","status":"failed"}"#),
        4,
        "unknown status \"failed\"",
    );
    assert_error(
        &after_root(r#"{"op":"end","span":"a","status":"ok","status_message":"boom"}"#),
        4,
        "only allowed with status \"error\"",
    );
    assert_error(
        &after_root(r#"{"op":"end","span":"a","status_message":"boom"}"#),
        4,
        "only allowed with status \"error\"",
    );
}

#[test]
fn invalid_times_are_reported() {
    assert_error(
        &after_root(r#"{"op":"end","span":"a","time_ns":-1}"#),
        4,
        "must not be negative",
    );
    assert_error(
        &after_root(r#"{"op":"end","span":"a","time_ns":1.5}"#),
        4,
        "must be an integer",
    );
    assert_error(
        &after_root(r#"{"op":"end","span":"a","time_ns":"10"}"#),
        4,
        "must be an integer",
    );
    assert_error(
        &after_root(r#"{"op":"end","span":"a","time_ns":18446744073709551616}"#),
        4,
        "must be an integer",
    );
}

#[test]
fn invalid_attribute_values_are_reported() {
    let set = |attributes: &str| {
        after_root(&format!(
            r#"{{"op":"set","span":"a","attributes":{attributes}}}"#
        ))
    };
    assert_error(
        &set(r#"{"k":null}"#),
        4,
        "attribute \"k\": null is not a valid attribute value",
    );
    assert_error(
        &set(r#"{"k":{"x":1}}"#),
        4,
        "an object is not a valid attribute value",
    );
    assert_error(
        &set(r#"{"ok":1,"k":[1,"2"]}"#),
        4,
        "attribute \"k\": array elements must be all",
    );
    assert_error(
        &set(r#"{"k":[true,1]}"#),
        4,
        "must be all strings, all booleans or all numbers",
    );
    assert_error(
        &set(r#"{"k":[[1],[2]]}"#),
        4,
        "array elements must be strings, booleans or numbers, found an array",
    );
    assert_error(&set(r#"{"k":[1,null]}"#), 4, "found null");
    assert_error(&set(r#"{"":1}"#), 4, "keys must not be empty");
    assert_error(&set(r#"[1]"#), 4, "\"attributes\" must be an object");
    assert_error(
        r#"{"op":"start","span":"a","parent":null,"name":"n","time_ns":1,"attributes":{"k":[{}]}}"#,
        1,
        "found an object",
    );
}

#[test]
fn attribute_values_are_typed() {
    let script = TraceScript::parse(&after_root(
        r#"{"op":"set","span":"a","attributes":{"s":"x","b":true,"i":-3,"f":2.5,"big":18446744073709551615,"huge":1e300,"is":[1,2],"fs":[1,2.5],"bigs":[1,18446744073709551615],"ss":["a","b"],"bs":[false],"empty":[],"s":"again"}}"#,
    ))
    .unwrap();
    let Event::Set(set) = &script.events()[1] else {
        panic!("not a set");
    };
    assert_eq!(
        set.attributes,
        vec![
            KeyValue::new("s", "x"),
            KeyValue::new("b", true),
            KeyValue::new("i", -3_i64),
            KeyValue::new("f", 2.5),
            KeyValue::new("big", 18446744073709551615_u64 as f64),
            KeyValue::new("huge", 1e300),
            KeyValue::new("is", Value::Array(Array::I64(vec![1, 2]))),
            KeyValue::new("fs", Value::Array(Array::F64(vec![1.0, 2.5]))),
            KeyValue::new(
                "bigs",
                Value::Array(Array::F64(vec![1.0, 18446744073709551615_u64 as f64]))
            ),
            KeyValue::new(
                "ss",
                Value::Array(Array::String(vec!["a".into(), "b".into()]))
            ),
            KeyValue::new("bs", Value::Array(Array::Bool(vec![false]))),
            KeyValue::new("empty", Value::Array(Array::String(vec![]))),
            KeyValue::new("s", "again"),
        ]
    );
}

#[test]
fn lifecycle_errors_are_reported() {
    assert_error(
        &after_root(r#"{"op":"start","span":"b","parent":"zz","name":"n"}"#),
        4,
        "parent \"zz\" of span \"b\" was never started",
    );
    assert_error(
        &after_root(r#"{"op":"start","span":"b","parent":"b","name":"n"}"#),
        4,
        "parent \"b\" of span \"b\" was never started",
    );
    assert_error(
        &after_root(r#"{"op":"start","span":"a","parent":null,"name":"again"}"#),
        4,
        "span \"a\" was already started on line 1",
    );
    assert_error(
        &after_root(r#"{"op":"set","span":"nope","attributes":{"k":1}}"#),
        4,
        "set of span \"nope\", which was never started",
    );
    assert_error(
        &after_root(r#"{"op":"end","span":"nope","time_ns":1}"#),
        4,
        "end of span \"nope\", which was never started",
    );
    let ended = after_root(r#"{"op":"end","span":"a","time_ns":20}"#);
    assert_error(
        &format!("{ended}{{\"op\":\"set\",\"span\":\"a\",\"attributes\":{{\"k\":1}}}}\n"),
        5,
        "set of span \"a\", which already ended on line 4",
    );
    assert_error(
        &format!("{ended}{{\"op\":\"end\",\"span\":\"a\",\"time_ns\":30}}\n"),
        5,
        "end of span \"a\", which already ended on line 4",
    );
    assert_error(
        &format!("{ended}{{\"op\":\"start\",\"span\":\"a\",\"parent\":null,\"name\":\"n\"}}\n"),
        5,
        "already started on line 1",
    );
    // A child may start after its parent ended.
    assert!(TraceScript::parse(&format!(
        "{ended}{{\"op\":\"start\",\"span\":\"b\",\"parent\":\"a\",\"name\":\"late\"}}\n"
    ))
    .is_ok());
}

#[test]
fn the_first_error_wins() {
    let text = format!("{ROOT}\n{{\"op\":\"bogus\"}}\nnot json\n");
    assert_error(&text, 2, "unknown op");
}

#[test]
fn defaults_and_inherited_times() {
    let script = TraceScript::parse(
        r#"{"op":"start","span":"a","parent":null,"name":"n","time_ns":100,"kind":null,"attributes":null}
{"op":"start","span":"b","parent":"a","name":"m","kind":"consumer"}
{"op":"end","span":"b","status":"error","status_message":"boom"}
{"op":"end","span":"a","time_ns":300,"status":"unset","status_message":""}
{"op":"start","span":"c","parent":null,"name":"o","kind":"server"}
{"op":"end","span":"c","status":"error"}"#,
    )
    .unwrap();
    let events = script.events();
    let Event::Start(a) = &events[0] else {
        panic!()
    };
    assert_eq!((a.kind.clone(), a.time_ns), (SpanKind::Internal, 100));
    assert!(a.attributes.is_empty());
    let Event::Start(b) = &events[1] else {
        panic!()
    };
    assert_eq!((b.kind.clone(), b.time_ns), (SpanKind::Consumer, 100));
    let Event::End(b_end) = &events[2] else {
        panic!()
    };
    assert_eq!(
        (b_end.time_ns, b_end.status.clone()),
        (100, Status::error("boom"))
    );
    let Event::End(a_end) = &events[3] else {
        panic!()
    };
    assert_eq!((a_end.time_ns, a_end.status.clone()), (300, Status::Unset));
    let Event::Start(c) = &events[4] else {
        panic!()
    };
    assert_eq!((c.kind.clone(), c.time_ns), (SpanKind::Server, 300));
    let Event::End(c_end) = &events[5] else {
        panic!()
    };
    assert_eq!(c_end.status, Status::error(""));
}

#[test]
fn no_panic_on_truncated_or_odd_input() {
    let odd = [
        "\"",
        "{",
        "[",
        "{\"op\":\"start\"",
        "{\"a\\",
        "{\"\\u12\"}",
        "\u{0}",
        "{\"op\":\"\\uD800\"}",
        "{\"op\":\"start\",\"span\":\"\u{e9}\\\u{e9}\"}",
        "-",
        "1e999",
        "{}",
        "null",
        "{\"op\":null}",
    ];
    for text in odd {
        let _ = TraceScript::parse(text);
    }
    for (end, _) in SPEC_EXAMPLE.char_indices() {
        let _ = TraceScript::parse(&SPEC_EXAMPLE[..end]);
    }
    let deep = format!(
        "{{\"op\":\"set\",\"span\":\"a\",\"attributes\":{{\"k\":{}1{}}}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    assert_error(&after_root(&deep), 4, "invalid JSON");
}

/// Replays `script` into an in-memory exporter; returns the spans exported
/// before shutdown and the replay.
fn replay_in_memory(script: &TraceScript) -> (Vec<SpanData>, Replay, SdkTracerProvider) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
        .build();
    let replay = script.replay(&provider.tracer("script-test"));
    let spans = exporter.get_finished_spans().unwrap();
    (spans, replay, provider)
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn by_label<'a>(spans: &'a [SpanData], replay: &Replay, label: &str) -> &'a SpanData {
    let id = replay.span_id(label).unwrap();
    spans
        .iter()
        .find(|s| s.span_context.span_id() == id)
        .unwrap_or_else(|| panic!("{label} not exported"))
}

#[test]
fn replay_of_the_spec_example() {
    let script = TraceScript::parse(SPEC_EXAMPLE).unwrap();
    let (spans, replay, provider) = replay_in_memory(&script);
    assert_eq!(spans.len(), 3);
    // Export order is end order.
    let order: Vec<&str> = spans
        .iter()
        .map(|s| replay.label_of(s.span_context.span_id()).unwrap())
        .collect();
    assert_eq!(order, ["llm0", "step1", "inv"]);
    let labels: Vec<&str> = replay.labels().map(|(label, _)| label).collect();
    assert_eq!(labels, ["inv", "step1", "llm0"]);

    let inv = by_label(&spans, &replay, "inv");
    let step = by_label(&spans, &replay, "step1");
    let llm = by_label(&spans, &replay, "llm0");
    assert_eq!(inv.parent_span_id, SpanId::INVALID);
    assert_eq!(step.parent_span_id, inv.span_context.span_id());
    assert_eq!(llm.parent_span_id, step.span_context.span_id());
    assert_eq!(llm.span_context.trace_id(), inv.span_context.trace_id());
    assert_eq!(inv.name, "invoke_agent coder");
    assert_eq!(llm.name, "chat gpt-4o");
    assert_eq!(llm.span_kind, SpanKind::Client);
    assert_eq!(step.span_kind, SpanKind::Internal);
    assert_eq!(nanos(llm.start_time), 1_700_000_000_002_000_000);
    assert_eq!(nanos(llm.end_time), 1_700_000_000_900_000_000);
    assert_eq!(nanos(inv.end_time), 1_700_000_001_000_000_000);
    assert_eq!(
        llm.attributes,
        vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", 1056_i64),
            KeyValue::new("gen_ai.usage.output_tokens", 170_i64),
            KeyValue::new("gen_ai.response.id", "resp-1"),
        ]
    );
    assert_eq!(llm.status, Status::Unset);
    assert_eq!(step.status, Status::Ok);
    assert_eq!(replay.label_of(SpanId::INVALID), None);
    assert_eq!(replay.span_id("nope"), None);
    assert!(replay.context("inv").is_some());
    provider.shutdown().unwrap();
    drop(replay);
}

#[test]
fn replay_of_late_children_errors_and_leaks() {
    let script = TraceScript::parse(
        r#"{"op":"start","span":"p","parent":null,"name":"parent","time_ns":1000}
{"op":"start","span":"other","parent":null,"name":"other root","kind":"producer","time_ns":1500}
{"op":"end","span":"p","time_ns":2000,"status":"error","status_message":"boom"}
{"op":"start","span":"late","parent":"p","name":"late child","time_ns":3000,"attributes":{"x":1}}
{"op":"set","span":"late","attributes":{"x":2,"y":[1.5,2]}}
{"op":"end","span":"late","time_ns":4000}
{"op":"start","span":"leak","parent":"late","name":"leaked","time_ns":5000}"#,
    )
    .unwrap();
    let (spans, replay, provider) = replay_in_memory(&script);
    assert_eq!(spans.len(), 2, "leaked and open spans are not exported");
    let p = by_label(&spans, &replay, "p");
    let late = by_label(&spans, &replay, "late");
    assert_eq!(p.status, Status::error("boom"));
    assert_eq!(late.parent_span_id, p.span_context.span_id());
    assert_eq!(late.span_context.trace_id(), p.span_context.trace_id());
    assert_eq!(
        late.attributes,
        vec![
            KeyValue::new("x", 1_i64),
            KeyValue::new("x", 2_i64),
            KeyValue::new("y", Value::Array(Array::F64(vec![1.5, 2.0]))),
        ]
    );
    assert_eq!((nanos(late.start_time), nanos(late.end_time)), (3000, 4000));
    // Two roots get two traces.
    let other = replay
        .context("other")
        .unwrap()
        .span()
        .span_context()
        .clone();
    assert_ne!(other.trace_id(), p.span_context.trace_id());
    let leak = replay.context("leak").unwrap();
    assert!(leak.span().is_recording());
    assert_eq!(replay.labels().len(), 4);
    provider.shutdown().unwrap();
    drop(replay);
}

#[test]
fn replay_of_recorded_traces() {
    for file in TRACE_FILES {
        let script = TraceScript::parse(&read_trace(file)).unwrap();
        let (spans, replay, provider) = replay_in_memory(&script);
        let starts: Vec<&StartEvent> = script
            .events()
            .iter()
            .filter_map(|e| match e {
                Event::Start(start) => Some(start),
                _ => None,
            })
            .collect();
        assert_eq!(spans.len(), starts.len(), "{file}");
        for start in starts {
            let span = by_label(&spans, &replay, &start.span);
            assert_eq!(span.name, start.name, "{file}");
            assert_eq!(span.span_kind, start.kind, "{file}");
            assert_eq!(nanos(span.start_time), start.time_ns, "{file}");
            let parent = replay.label_of(span.parent_span_id);
            assert_eq!(parent, start.parent.as_deref(), "{file}: {}", start.span);
        }
        provider.shutdown().unwrap();
        drop(replay);
    }
}
