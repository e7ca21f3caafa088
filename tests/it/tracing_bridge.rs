//! Leaks through `tracing` + `tracing-opentelemetry`: a step span kept alive forever
//! keeps its invocation open too (the registry holds a reference to a span's parent
//! until the span closes, and `tracing-opentelemetry` ends the OpenTelemetry span when
//! the tracing span closes), so neither is ever exported; eviction by age reports both
//! as stale.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{
    assert_closed_with_open_child, expect_counts, findings_of, skewed_harness, Harness,
    CLOSED_WITH_OPEN_STEP, LATE_ENDS_OF_INVOCATION_AND_STEP, STALE_INVOCATION_AND_STEP,
};
use genai_audit::LeakPolicy;
use opentelemetry_sdk::trace::SpanData;
use tracing_subscriber::layer::SubscriberExt;

fn names(h: &Harness) -> Vec<String> {
    h.exporter
        .get_finished_spans()
        .unwrap()
        .iter()
        .map(|s| s.name.to_string())
        .collect()
}

fn exported(h: &Harness, name: &str) -> Vec<SpanData> {
    h.exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.name == name)
        .collect()
}

/// Runs an agent turn whose step span is leaked (kept in `leaked`), checks that the
/// invocation stays open, then moves the clock past the maximum age and starts another
/// invocation.
fn leak_a_step(h: &Harness, offset: &AtomicU64, leaked: &mut Vec<tracing::Span>) {
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(h.tracer()));
    tracing::subscriber::with_default(subscriber, || {
        let invocation = tracing::info_span!(
            "invoke_agent coder",
            "gen_ai.operation.name" = "invoke_agent",
            "gen_ai.agent.name" = "coder"
        );
        invocation.in_scope(|| {
            let step = tracing::info_span!("react step", "gen_ai.operation.name" = "react");
            step.in_scope(|| {
                let chat = tracing::info_span!(
                    "chat gpt-4o",
                    "gen_ai.operation.name" = "chat",
                    "gen_ai.provider.name" = "openai",
                    "gen_ai.request.model" = "gpt-4o",
                    "gen_ai.usage.input_tokens" = 1000_i64,
                    "gen_ai.usage.output_tokens" = 100_i64
                );
                chat.in_scope(|| {});
            });
            // The step is never closed: its span handle lives on.
            leaked.push(step);
        });
        drop(invocation);

        // Only the generation was exported: the invocation's last handle is gone, but
        // its open child keeps it open.
        assert_eq!(names(h), ["chat gpt-4o"]);
        assert_eq!(h.tracked_spans(), 2, "the invocation and the step are open");
        assert!(h.finding_counts().is_empty());

        offset.store(61, Ordering::SeqCst);
        tracing::info_span!(
            "invoke_agent coder",
            "gen_ai.operation.name" = "invoke_agent",
            "gen_ai.agent.name" = "coder",
            "app.turn" = 2_i64
        )
        .in_scope(|| {});
    });
}

#[test]
fn leaked_tracing_step_keeps_its_invocation_open_until_evicted_as_stale() {
    let (h, offset) = skewed_harness(LeakPolicy::Flag);
    let mut leaked = Vec::new();
    leak_a_step(&h, &offset, &mut leaked);

    assert_eq!(h.finding_counts(), expect_counts(STALE_INVOCATION_AND_STEP));
    // The second invocation ended normally; nothing else was exported.
    assert_eq!(names(&h), ["chat gpt-4o", "invoke_agent coder"]);
    assert!(findings_of(&exported(&h, "invoke_agent coder")[0]).is_empty());
    assert_eq!(h.tracked_spans(), 0);

    // When the leaked step finally closes, the step and then its invocation end: both
    // are exported with `stale`, and not counted again.
    drop(leaked);
    assert_eq!(
        names(&h),
        [
            "chat gpt-4o",
            "invoke_agent coder",
            "react step",
            "invoke_agent coder"
        ]
    );
    let spans = h.exporter.get_finished_spans().unwrap();
    assert_eq!(findings_of(&spans[2]), ["stale"]);
    assert_eq!(findings_of(&spans[3]), ["stale"]);
    assert_eq!(spans[2].parent_span_id, spans[3].span_context.span_id());
    h.assert_counts(STALE_INVOCATION_AND_STEP, 0);
}

#[test]
fn leaked_tracing_step_is_exported_closed_under_close() {
    let (h, offset) = skewed_harness(LeakPolicy::Close);
    let mut leaked = Vec::new();
    leak_a_step(&h, &offset, &mut leaked);

    let spans = h.exporter.get_finished_spans().unwrap();
    let order: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    // The step (closed with its parent) first, then the evicted invocation, then the
    // second invocation that triggered the eviction.
    assert_eq!(
        order,
        [
            "chat gpt-4o",
            "react step",
            "invoke_agent coder",
            "invoke_agent coder"
        ]
    );
    let (step, evicted, second) = (&spans[1], &spans[2], &spans[3]);
    assert_closed_with_open_child(evicted, step, "react step");
    assert_eq!(step.parent_span_id, evicted.span_context.span_id());
    assert!(findings_of(second).is_empty());
    assert_eq!(h.finding_counts(), expect_counts(CLOSED_WITH_OPEN_STEP));

    // The real ends come when the leaked step closes: not exported, counted.
    drop(leaked);
    assert_eq!(h.exporter.get_finished_spans().unwrap().len(), 4);
    h.assert_counts(
        &[CLOSED_WITH_OPEN_STEP, LATE_ENDS_OF_INVOCATION_AND_STEP].concat(),
        0,
    );
}

#[test]
fn forgotten_tracing_step_is_stale_at_shutdown() {
    let h = Harness::with(|b| b.leak_policy(LeakPolicy::Flag));
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(h.tracer()));
    tracing::subscriber::with_default(subscriber, || {
        let invocation = tracing::info_span!("invoke_agent coder");
        invocation.in_scope(|| {
            let step = tracing::info_span!("react step");
            step.in_scope(|| {});
            std::mem::forget(step);
        });
    });
    assert!(h.exporter.get_finished_spans().unwrap().is_empty());
    assert_eq!(h.tracked_spans(), 2);
    h.provider.shutdown().unwrap();
    h.assert_counts(STALE_INVOCATION_AND_STEP, 0);
}
