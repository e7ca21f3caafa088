//! A finding is written and counted once, under one role (DESIGN §6): a finding
//! counted as `other` is written nowhere, also when the span turns out to be
//! recognised at its end; and rollups reach an invocation at any depth.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use genai_audit::LeakPolicy;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span as SdkSpan};

use crate::common::{findings_of, i64_of, value, Harness};

const T0: u64 = 1_800_000_000;

/// A harness with a clock from the builder, at `T0` + the offset (seconds).
fn clocked(policy: LeakPolicy) -> (Harness, Arc<AtomicU64>) {
    let offset = Arc::new(AtomicU64::new(0));
    let clock = offset.clone();
    let h = Harness::with(|b| {
        b.leak_policy(policy)
            .with_max_span_age(Duration::from_secs(1))
            .with_clock(move || UNIX_EPOCH + Duration::from_secs(T0 + clock.load(Ordering::SeqCst)))
    });
    (h, offset)
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + seconds)
}

/// Starts `invoke_agent <name>` at `seconds`.
fn invocation(tracer: &SdkTracer, name: &str, seconds: u64) -> SdkSpan {
    tracer
        .span_builder(format!("invoke_agent {name}"))
        .with_start_time(at(seconds))
        .with_attributes([KeyValue::new("gen_ai.operation.name", "invoke_agent")])
        .start(tracer)
}

/// Starts `name` under `parent` at t = 0.
fn child_of(tracer: &SdkTracer, parent: &SdkSpan, name: &str) -> SdkSpan {
    let cx = Context::new().with_remote_span_context(parent.span_context().clone());
    tracer
        .span_builder(name.to_owned())
        .with_start_time(at(0))
        .start_with_context(tracer, &cx)
}

#[test]
fn a_stale_span_counted_as_other_is_written_nowhere_when_recognised_at_its_end() {
    for policy in [LeakPolicy::Flag, LeakPolicy::Close] {
        let (h, offset) = clocked(policy);
        let tracer = h.tracer();
        // t = 0: an invocation and a plain child (tracked only because its parent is).
        let mut a = invocation(&tracer, "a", 0);
        let mut child = child_of(&tracer, &a, "child");
        a.end_with_timestamp(at(0));
        // t = 10 s: another invocation starts; the open child is too old and evicted.
        offset.store(10, Ordering::SeqCst);
        let mut b = invocation(&tracer, "b", 10);
        // The child turns out to be a tool call, and ends.
        child.set_attribute(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        child.end_with_timestamp(at(10));
        b.end_with_timestamp(at(11));
        let _ = h.provider.force_flush();

        let spans = h.exporter.get_finished_spans().expect("spans");
        let children: Vec<_> = spans.iter().filter(|s| s.name == "child").collect();
        assert_eq!(children.len(), 1, "{policy:?}: the child is exported once");
        let child = children[0];
        if policy == LeakPolicy::Flag {
            assert_eq!(
                value(child, "genai_audit.role").map(|v| v.to_string()),
                Some("tool".to_owned())
            );
        }
        assert_eq!(findings_of(child), Vec::<String>::new(), "{policy:?}");
        // Counted once, under the role it had when it was evicted.
        assert_eq!(
            h.metrics.finding_counts(),
            vec![("stale".to_owned(), "other".to_owned(), false, 1)],
            "{policy:?}"
        );
    }
}

#[test]
fn a_stale_span_counted_under_its_role_is_written_under_it() {
    let (h, offset) = clocked(LeakPolicy::Flag);
    let tracer = h.tracer();
    let mut a = invocation(&tracer, "a", 0);
    let mut tool = child_of(&tracer, &a, "execute_tool search");
    offset.store(10, Ordering::SeqCst);
    invocation(&tracer, "b", 10).end_with_timestamp(at(10));
    tool.end_with_timestamp(at(10));
    a.end_with_timestamp(at(11));
    let _ = h.provider.force_flush();
    let spans = h.exporter.get_finished_spans().expect("spans");
    let tool = spans
        .iter()
        .find(|s| s.name == "execute_tool search")
        .expect("tool");
    assert_eq!(findings_of(tool), vec!["stale".to_owned()]);
    let a = spans
        .iter()
        .find(|s| s.name == "invoke_agent a")
        .expect("a");
    assert!(findings_of(a).contains(&"stale".to_owned()));
    // Both were too old at t = 10 s: each counted once, under the role it is written
    // under.
    assert_eq!(
        h.metrics
            .finding_counts()
            .into_iter()
            .filter(|(code, ..)| code == "stale")
            .collect::<Vec<_>>(),
        vec![
            ("stale".to_owned(), "invocation".to_owned(), false, 1),
            ("stale".to_owned(), "tool".to_owned(), false, 1)
        ]
    );
}

/// An invocation, `depth` plain spans below it, then a generation.
fn deep(depth: usize) -> (i64, i64, Option<bool>) {
    let h = Harness::new();
    let tracer = h.tracer();
    let invocation = tracer
        .span_builder("invoke_agent deep")
        .with_attributes([KeyValue::new("gen_ai.operation.name", "invoke_agent")])
        .start(&tracer);
    // Every context of the chain, the invocation's first (each holds its span open).
    let mut chain = vec![Context::new().with_span(invocation)];
    for d in 0..depth {
        let parent = chain.last().expect("the invocation");
        let span = tracer.start_with_context(format!("plain {d}"), parent);
        let cx = parent.with_span(span);
        chain.push(cx);
    }
    let mut chat = tracer.start_with_context("chat gpt-4o", chain.last().expect("a parent"));
    chat.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
    chat.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o"));
    chat.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 10));
    chat.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", 5));
    chat.end();
    for cx in chain.iter().rev() {
        cx.span().end();
    }
    drop(chain);
    let _ = h.provider.force_flush();
    let spans = h.exporter.get_finished_spans().expect("spans");
    let top = spans
        .iter()
        .find(|s| s.name == "invoke_agent deep")
        .expect("the invocation ended");
    let partial = match value(top, "genai_audit.total.partial") {
        Some(opentelemetry::Value::Bool(b)) => Some(b),
        _ => None,
    };
    (
        i64_of(top, "genai_audit.total.generations"),
        i64_of(top, "genai_audit.total.input_tokens"),
        partial,
    )
}

#[test]
fn rollups_are_exact_at_any_depth_in_process() {
    for depth in [255, 256, 257, 1_000] {
        assert_eq!(deep(depth), (1, 10, None), "depth {depth}");
    }
}
