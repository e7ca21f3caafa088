//! Replaying a [`TraceScript`] through an OpenTelemetry [`Tracer`].

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, Status, TraceContextExt, Tracer};
use opentelemetry::Context;

use super::model::{Event, TraceScript};

impl TraceScript {
    /// Replays the script through `tracer`, driving the OpenTelemetry API.
    ///
    /// For each `start`, a span is built with
    /// [`Tracer::span_builder`] (name, kind, start time and start attributes) and
    /// started with a parent [`Context`] holding the parent span, or with an empty
    /// context for a root, which therefore starts a new trace. Each span then lives
    /// in its own [`Context`]: `set` sets the attributes in the order given, `end`
    /// sets the status (unless unset) and ends the span with the script's time. A
    /// child whose parent has already ended still starts with that parent.
    ///
    /// The returned [`Replay`] holds every span. Spans the script never ends stay
    /// open until the replay is dropped: shut the tracer provider down before
    /// dropping the [`Replay`] to model leaked spans at application exit (an SDK
    /// span dropped before that would be ended and exported by the drop).
    pub fn replay<T>(&self, tracer: &T) -> Replay
    where
        T: Tracer,
        T::Span: Send + Sync + 'static,
    {
        let mut replay = Replay::default();
        let root = Context::new();
        for event in self.events() {
            match event {
                Event::Start(start) => {
                    let builder = tracer
                        .span_builder(start.name.clone())
                        .with_kind(start.kind.clone())
                        .with_start_time(system_time(start.time_ns))
                        .with_attributes(start.attributes.iter().cloned());
                    let parent_cx = start
                        .parent
                        .as_deref()
                        .and_then(|parent| replay.context(parent))
                        .unwrap_or(&root);
                    let span = tracer.build_with_context(builder, parent_cx);
                    replay.insert(start.span.clone(), Context::new().with_span(span));
                }
                Event::Set(set) => {
                    if let Some(cx) = replay.context(&set.span) {
                        cx.span().set_attributes(set.attributes.iter().cloned());
                    }
                }
                Event::End(end) => {
                    if let Some(cx) = replay.context(&end.span) {
                        let span = cx.span();
                        if end.status != Status::Unset {
                            span.set_status(end.status.clone());
                        }
                        span.end_with_timestamp(system_time(end.time_ns));
                    }
                }
            }
        }
        replay
    }
}

/// Converts script nanoseconds to a [`SystemTime`]; the parser has checked that
/// the time is representable.
fn system_time(time_ns: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_nanos(time_ns))
        .unwrap_or(UNIX_EPOCH)
}

/// The spans of a replayed [`TraceScript`], each kept alive in its own [`Context`].
///
/// Dropping an SDK span ends it, so spans the script never ends (leaked spans)
/// stay open for as long as the `Replay` lives. To model a leak at application
/// exit, shut the tracer provider down **before** dropping the `Replay`.
#[derive(Debug, Default)]
pub struct Replay {
    spans: Vec<(String, Context)>,
    by_label: HashMap<String, usize>,
    by_id: HashMap<SpanId, usize>,
}

impl Replay {
    fn insert(&mut self, label: String, cx: Context) {
        let index = self.spans.len();
        let span_id = cx.span().span_context().span_id();
        if span_id != SpanId::INVALID {
            self.by_id.entry(span_id).or_insert(index);
        }
        self.by_label.insert(label.clone(), index);
        self.spans.push((label, cx));
    }

    /// The script label of the span with this id, if the replay started it.
    ///
    /// Tracers that do not record (for example a no-op tracer) may give spans an
    /// invalid or shared id; only the first span with a given valid id is found.
    pub fn label_of(&self, span_id: SpanId) -> Option<&str> {
        self.by_id
            .get(&span_id)
            .and_then(|&index| self.spans.get(index))
            .map(|(label, _)| label.as_str())
    }

    /// The span id the span labelled `label` got from the tracer.
    pub fn span_id(&self, label: &str) -> Option<SpanId> {
        self.context(label)
            .map(|cx| cx.span().span_context().span_id())
    }

    /// The [`Context`] holding the span labelled `label` (for example to end a
    /// span the script leaked).
    pub fn context(&self, label: &str) -> Option<&Context> {
        self.by_label
            .get(label)
            .and_then(|&index| self.spans.get(index))
            .map(|(_, cx)| cx)
    }

    /// Every span of the replay as `(label, span id)`, in start order.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&str, SpanId)> + '_ {
        self.spans
            .iter()
            .map(|(label, cx)| (label.as_str(), cx.span().span_context().span_id()))
    }
}
