//! The event model of a trace script and its error type.

use std::fmt;
use std::str::FromStr;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::KeyValue;

/// A parsed and validated trace script, ready to be replayed.
///
/// Created by [`TraceScript::parse`] (or [`str::parse`]); every script that exists
/// has passed all the checks described in the [module documentation](crate::script).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceScript {
    events: Vec<Event>,
}

/// One event of a [`TraceScript`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A span starts.
    Start(StartEvent),
    /// Attributes are set on a started span.
    Set(SetEvent),
    /// A span ends.
    End(EndEvent),
}

/// A `start` event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StartEvent {
    /// 1-based line number of the event in the script.
    pub line: usize,
    /// Label of the span.
    pub span: String,
    /// Label of the parent span, `None` for a trace root.
    pub parent: Option<String>,
    /// Span name.
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
    /// Start time, UNIX time in nanoseconds (inherited when the line has none).
    pub time_ns: u64,
    /// Attributes the span has when it starts, in script order.
    pub attributes: Vec<KeyValue>,
}

/// A `set` event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SetEvent {
    /// 1-based line number of the event in the script.
    pub line: usize,
    /// Label of the span.
    pub span: String,
    /// Attributes to set, in script order.
    pub attributes: Vec<KeyValue>,
}

/// An `end` event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EndEvent {
    /// 1-based line number of the event in the script.
    pub line: usize,
    /// Label of the span.
    pub span: String,
    /// End time, UNIX time in nanoseconds (inherited when the line has none).
    pub time_ns: u64,
    /// Status the span ends with.
    pub status: Status,
}

impl Event {
    /// 1-based line number of the event in the script.
    pub fn line(&self) -> usize {
        match self {
            Event::Start(e) => e.line,
            Event::Set(e) => e.line,
            Event::End(e) => e.line,
        }
    }

    /// Label of the span the event applies to.
    pub fn span(&self) -> &str {
        match self {
            Event::Start(e) => &e.span,
            Event::Set(e) => &e.span,
            Event::End(e) => &e.span,
        }
    }
}

/// Why a trace script was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    /// 1-based line number of the offending line.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ScriptError {}

impl FromStr for TraceScript {
    type Err = ScriptError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        TraceScript::parse(text)
    }
}

impl TraceScript {
    /// Wraps events the parser has validated.
    pub(super) fn from_events(events: Vec<Event>) -> TraceScript {
        TraceScript { events }
    }

    /// The events of the script, in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }
}
