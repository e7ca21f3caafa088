//! Leaks through `tracing` + `tracing-opentelemetry`: a step span kept alive forever
//! keeps its invocation open too (the registry holds a reference to a span's parent
//! until the span closes, and `tracing-opentelemetry` ends the OpenTelemetry span when
//! the tracing span closes), so neither is ever exported; eviction by age reports both
//! as stale.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{expect_counts, findings_of, string_array, Harness};
use genai_audit::leaks::{STALE_STATUS, UNCLOSED_STATUS};
use genai_audit::LeakPolicy;
use opentelemetry::trace::Status;
use opentelemetry_sdk::trace::SpanData;
use tracing_subscriber::layer::SubscriberExt;

fn skewed_harness(policy: LeakPolicy) -> (Harness, Arc<AtomicU64>) {
    let offset = Arc::new(AtomicU64::new(0));
    let o = offset.clone();
    let h = Harness::with(|b| {
        b.leak_policy(policy)
            .with_max_span_age(Duration::from_secs(60))
            .with_clock(move || SystemTime::now() + Duration::from_secs(o.load(Ordering::SeqCst)))
    });
    (h, offset)
}

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

    assert_eq!(
        h.finding_counts(),
        expect_counts(&[
            ("stale", "invocation", false, 1),
            ("stale", "step", false, 1),
        ])
    );
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
    assert_eq!(
        h.finding_counts(),
        expect_counts(&[
            ("stale", "invocation", false, 1),
            ("stale", "step", false, 1),
        ])
    );
    assert_eq!(h.tracked_spans(), 0);
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
    assert_eq!(
        findings_of(evicted),
        ["stale", "closed_by_audit", "unclosed_child"]
    );
    assert_eq!(evicted.status, Status::error(STALE_STATUS));
    assert_eq!(
        string_array(evicted, "genai_audit.leak.unclosed_names"),
        ["react step"]
    );
    assert_eq!(findings_of(step), ["closed_by_audit"]);
    assert_eq!(step.status, Status::error(UNCLOSED_STATUS));
    assert_eq!(step.parent_span_id, evicted.span_context.span_id());
    assert!(findings_of(second).is_empty());
    assert_eq!(
        h.finding_counts(),
        expect_counts(&[
            ("stale", "invocation", false, 1),
            ("closed_by_audit", "invocation", false, 1),
            ("unclosed_child", "invocation", false, 1),
            ("closed_by_audit", "step", false, 1),
        ])
    );

    // The real ends come when the leaked step closes: not exported, counted.
    drop(leaked);
    assert_eq!(h.exporter.get_finished_spans().unwrap().len(), 4);
    assert_eq!(
        h.finding_counts(),
        expect_counts(&[
            ("stale", "invocation", false, 1),
            ("closed_by_audit", "invocation", false, 1),
            ("unclosed_child", "invocation", false, 1),
            ("closed_by_audit", "step", false, 1),
            ("late_end", "invocation", false, 1),
            ("late_end", "step", false, 1),
        ])
    );
    assert_eq!(h.tracked_spans(), 0);
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
    assert_eq!(
        h.finding_counts(),
        expect_counts(&[
            ("stale", "invocation", false, 1),
            ("stale", "step", false, 1),
        ])
    );
    assert_eq!(h.tracked_spans(), 0);
}
