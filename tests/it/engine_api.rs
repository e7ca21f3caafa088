//! The engine's event API on its own (`DESIGN.md` §13): what a verdict holds for each
//! kind of event, with no SDK in the way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use genai_audit::engine::{AuditEvent, Engine, Parent, SpanEnd, SpanStart, Verdict};
use genai_audit::keys::{STALE_STATUS, UNCLOSED_STATUS};
use genai_audit::{Budget, FindingCode, LeakPolicy, Role};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{KeyValue, Value};

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
}

/// A span of trace 1: its id, parent (0: root), name and attributes.
struct S {
    id: u64,
    parent: u64,
    name: &'static str,
    attributes: Vec<KeyValue>,
}

impl S {
    fn parent(&self) -> Parent {
        match self.parent {
            0 => Parent::Root,
            p => Parent::Local(SpanId::from(p)),
        }
    }

    fn start(&self, engine: &Engine, ms: u64) -> Verdict {
        engine.start(&SpanStart {
            trace_id: TraceId::from(1),
            span_id: SpanId::from(self.id),
            parent: self.parent(),
            name: self.name,
            kind: SpanKind::Internal,
            start_time: at(ms),
            attributes: &self.attributes,
            now: at(ms),
        })
    }

    fn end(&self, engine: &Engine, ms: u64) -> Verdict {
        engine.end(&SpanEnd {
            trace_id: TraceId::from(1),
            span_id: SpanId::from(self.id),
            parent: self.parent(),
            name: self.name,
            kind: SpanKind::Internal,
            start_time: at(0),
            end_time: at(ms),
            status: &Status::Unset,
            attributes: &self.attributes,
            now: at(ms),
        })
    }
}

fn invocation() -> S {
    S {
        id: 1,
        parent: 0,
        name: "invoke_agent coder",
        attributes: vec![KeyValue::new("gen_ai.agent.name", "coder")],
    }
}

fn generation(id: u64, parent: u64) -> S {
    S {
        id,
        parent,
        name: "chat gpt-4o",
        attributes: vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", 1000),
            KeyValue::new("gen_ai.usage.output_tokens", 100),
        ],
    }
}

fn written(verdict: &Verdict, key: &str) -> Option<Value> {
    verdict
        .writes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn codes(value: Option<Value>) -> Vec<String> {
    match value {
        Some(Value::Array(opentelemetry::Array::String(codes))) => {
            codes.iter().map(|c| c.as_str().to_owned()).collect()
        }
        _ => Vec::new(),
    }
}

fn findings(events: &[AuditEvent]) -> Vec<(FindingCode, Role)> {
    events
        .iter()
        .filter_map(|e| match e {
            AuditEvent::Finding { code, role, .. } => Some((*code, *role)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_disabled_engine_forwards_everything_untouched_and_reads_nothing() {
    let engine = Engine::builder().with_disabled(true).build();
    assert!(!engine.is_enabled());
    assert!(!engine.reads("gen_ai.usage.input_tokens"));
    let call = generation(2, 0);
    assert!(call.start(&engine, 0).writes.is_empty());
    let verdict = call.end(&engine, 10);
    assert!(verdict.forward && verdict.writes.is_empty());
    assert!(verdict.closed.is_empty() && verdict.events.is_empty());
}

#[test]
fn a_priced_call_comes_back_with_its_writes_and_a_call_event() {
    let engine = Engine::builder().with_disabled(false).build();
    let (inv, call) = (invocation(), generation(2, 1));
    inv.start(&engine, 0);
    call.start(&engine, 1);
    let verdict = call.end(&engine, 10);
    assert!(verdict.forward);
    assert_eq!(
        written(&verdict, "genai_audit.role"),
        Some(Value::from("generation"))
    );
    assert_eq!(
        written(&verdict, "genai_audit.cumulative.input_tokens"),
        Some(Value::I64(1000))
    );
    let calls: Vec<_> = verdict
        .events
        .iter()
        .filter_map(|e| match e {
            AuditEvent::Call(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].model.as_deref(), Some("gpt-4o"));
    assert_eq!(
        calls[0].agent.as_deref(),
        Some("coder"),
        "its invocation's agent"
    );
    assert!(calls[0].cost_usd.is_some_and(|c| c > 0.0));
    // Applied, the writes replace and append; the span's own attributes stay in order.
    let mut attributes = call.attributes.clone();
    let n = attributes.len();
    verdict.writes.apply(&mut attributes);
    assert_eq!(&attributes[..n], &call.attributes[..]);
    let end = inv.end(&engine, 20);
    assert_eq!(
        written(&end, "genai_audit.total.input_tokens"),
        Some(Value::I64(1000))
    );
    assert!(end
        .events
        .iter()
        .any(|e| matches!(e, AuditEvent::Invocation(i) if i.input_tokens == 1000)));
    assert_eq!(engine.tracked_spans(), 0, "nothing left tracked");
}

#[test]
fn under_close_an_open_child_comes_back_closed_and_its_real_end_is_not_forwarded() {
    let engine = Engine::builder()
        .with_disabled(false)
        .leak_policy(LeakPolicy::Close)
        .build();
    let (inv, call) = (invocation(), generation(2, 1));
    inv.start(&engine, 0);
    call.start(&engine, 1);
    let end = inv.end(&engine, 20);
    assert!(end.forward);
    assert!(codes(written(&end, "genai_audit.findings")).contains(&"unclosed_child".to_owned()));
    assert_eq!(end.closed.len(), 1);
    let closed = &end.closed[0];
    assert_eq!(closed.span_id, SpanId::from(2));
    assert_eq!(closed.name, "chat gpt-4o");
    assert_eq!(closed.end_time, at(20), "closed at its parent's end");
    assert_eq!(closed.status, Status::error(UNCLOSED_STATUS));
    let closed_codes = codes(
        closed
            .writes
            .iter()
            .find(|kv| kv.key.as_str() == "genai_audit.findings")
            .map(|kv| kv.value.clone()),
    );
    assert!(closed_codes.contains(&"closed_by_audit".to_owned()));
    // Its real end: not forwarded (it was exported closed), counted `late_end`.
    let late = call.end(&engine, 30);
    assert!(!late.forward);
    assert!(late.writes.is_empty());
    assert_eq!(
        findings(&late.events),
        vec![(FindingCode::LateEnd, Role::Generation)]
    );
}

#[test]
fn shutdown_evicts_what_is_open_closing_it_under_close_and_counting_it_under_flag() {
    for policy in [LeakPolicy::Flag, LeakPolicy::Close] {
        let engine = Engine::builder()
            .with_disabled(false)
            .leak_policy(policy)
            .build();
        invocation().start(&engine, 0);
        assert_eq!(engine.tracked_spans(), 1);
        let verdict = engine.shutdown(at(5_000));
        assert_eq!(engine.tracked_spans(), 0);
        match policy {
            LeakPolicy::Close => {
                assert_eq!(verdict.closed.len(), 1, "{policy:?}");
                assert_eq!(verdict.closed[0].status, Status::error(STALE_STATUS));
                assert_eq!(verdict.closed[0].end_time, at(5_000), "closed at `now`");
            }
            _ => {
                assert!(verdict.closed.is_empty(), "{policy:?}");
                assert_eq!(
                    findings(&verdict.events),
                    vec![(FindingCode::Stale, Role::Invocation)]
                );
            }
        }
    }
}

#[test]
fn a_passed_budget_is_an_event_once_per_invocation() {
    let engine = Engine::builder()
        .with_disabled(false)
        .with_budget(Budget::tokens(1500))
        .build();
    let inv = invocation();
    inv.start(&engine, 0);
    let mut exceeded = 0;
    for id in 2..5 {
        let call = generation(id, 1);
        call.start(&engine, id);
        let verdict = call.end(&engine, id + 1);
        exceeded += verdict
            .events
            .iter()
            .filter(
                |e| matches!(e, AuditEvent::BudgetExceeded(b) if b.agent_name() == Some("coder")),
            )
            .count();
    }
    let end = inv.end(&engine, 100);
    assert!(codes(written(&end, "genai_audit.findings")).contains(&"budget_exceeded".to_owned()));
    exceeded += end
        .events
        .iter()
        .filter(|e| matches!(e, AuditEvent::BudgetExceeded(_)))
        .count();
    assert_eq!(
        exceeded, 1,
        "told once, when the second call passed 1500 tokens"
    );
}

#[test]
fn a_span_whose_parent_is_remote_is_a_root_at_its_end() {
    let engine = Engine::builder().with_disabled(false).build();
    let remote = S {
        id: 7,
        parent: 0,
        name: "invoke_agent coder",
        attributes: Vec::new(),
    };
    let parent = Parent::Remote(SpanId::from(99));
    let start = SpanStart {
        trace_id: TraceId::from(1),
        span_id: SpanId::from(remote.id),
        parent,
        name: remote.name,
        kind: SpanKind::Server,
        start_time: at(0),
        attributes: &remote.attributes,
        now: at(0),
    };
    engine.start(&start);
    let verdict = engine.end(&SpanEnd {
        trace_id: TraceId::from(1),
        span_id: SpanId::from(remote.id),
        parent,
        name: remote.name,
        kind: SpanKind::Server,
        start_time: at(0),
        end_time: at(10),
        status: &Status::Ok,
        attributes: &remote.attributes,
        now: at(10),
    });
    assert_eq!(
        written(&verdict, "genai_audit.role"),
        Some(Value::from("invocation"))
    );
    assert!(
        !codes(written(&verdict, "genai_audit.findings")).contains(&"late_end".to_owned()),
        "a parent in another process is never waited for"
    );
    assert_eq!(engine.tracked_spans(), 0);
}
