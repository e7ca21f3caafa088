//! Trace scripts: recorded span lifecycles that can be replayed through any
//! OpenTelemetry [`Tracer`].
//!
//! A trace script is a JSON Lines text with one span lifecycle event per line, in
//! the order in which a tracing SDK saw them. Blank lines and lines whose first
//! non-blank character is `#` are ignored (they still count for line numbers).
//! Every event is a JSON object with an `op` and the `span` label it applies to:
//!
//! | `op` | fields | meaning |
//! | --- | --- | --- |
//! | `"start"` | `parent` (required: a label started earlier, or `null` for a new trace root), `name` (required), `kind` (`"internal"` default, `"client"`, `"server"`, `"producer"`, `"consumer"`), `time_ns`, `attributes` | the span starts with these attributes |
//! | `"set"` | `attributes` (required) | adds or overwrites attributes of a started, not yet ended span, in the order given |
//! | `"end"` | `time_ns`, `status` (`"unset"` default, `"ok"`, `"error"`), `status_message` (the error description; must be empty or absent with another status) | the span ends |
//!
//! `time_ns` is a non-negative integer, UNIX time in nanoseconds. When a `start` or
//! `end` has no `time_ns`, it takes the time of the closest earlier `start` or
//! `end` of the script; the first `start` must carry one. Attribute keys are
//! non-empty strings; attribute values are
//! strings, booleans, integers (`i64`; larger integers are read as `f64`), floats, or
//! arrays whose elements are all strings, all booleans or all numbers (an array of
//! numbers with at least one non-`i64` element is read as an `f64` array; an empty
//! array is read as an empty string array). Optional fields given as `null` count as
//! absent. Every object member is kept in text order, so attributes replay in the
//! order written (a key repeated within one object is set twice, the last value
//! winning). A span that is started and never ended models a leaked span. Labels
//! are any strings, unique per script.
//!
//! [`TraceScript::parse`] checks the whole script before anything can be replayed:
//! invalid JSON, an unknown `op`, field, `kind` or `status`, a missing required
//! field, a field that does not belong to the event's `op`, a field given twice, an
//! invalid attribute value, a `parent` never started earlier, a second `start` of a
//! label, or a `set`/`end` of a label that was never started or has already ended
//! are all reported as a [`ScriptError`] with the 1-based line number.
//!
//! [`TraceScript::replay`] then drives the OpenTelemetry API with the script and
//! returns a [`Replay`] that keeps every span alive and maps span ids back to the
//! script's labels.
//!
//! # Example
//!
//! ```
//! use genai_audit::script::TraceScript;
//! use opentelemetry::trace::TracerProvider as _;
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
//!
//! let script = TraceScript::parse(
//!     r#"{"op":"start","span":"inv","parent":null,"name":"invoke_agent coder","time_ns":1700000000000000000}
//! {"op":"start","span":"llm","parent":"inv","name":"chat gpt-4o","kind":"client","time_ns":1700000000001000000,"attributes":{"gen_ai.request.model":"gpt-4o"}}
//! {"op":"end","span":"llm","time_ns":1700000000900000000,"status":"ok"}"#,
//! )?;
//!
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder()
//!     .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
//!     .build();
//! let replay = script.replay(&provider.tracer("replay"));
//!
//! // Only `llm` has ended; `inv` is still open (it models a leaked span).
//! let spans = exporter.get_finished_spans()?;
//! assert_eq!(spans.len(), 1);
//! assert_eq!(replay.label_of(spans[0].span_context.span_id()), Some("llm"));
//! assert_eq!(Some(spans[0].parent_span_id), replay.span_id("inv"));
//!
//! // Shut the provider down first, as an application does at exit, then drop the replay.
//! provider.shutdown()?;
//! drop(replay);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};

use self::json::Json;

/// A parsed and validated trace script, ready to be replayed.
///
/// Created by [`TraceScript::parse`] (or [`str::parse`]); every script that exists
/// has passed all the checks described in the [module documentation](self).
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
    /// Parses and validates a whole trace script.
    ///
    /// Nothing is returned unless every line is valid, so a script is never
    /// half-applied. The error names the first offending line (1-based, counting
    /// blank and comment lines). A leading byte order mark is ignored.
    pub fn parse(text: &str) -> Result<TraceScript, ScriptError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut parser = Parser::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let event = parser
                .event(line, trimmed)
                .map_err(|reason| ScriptError { line, reason })?;
            parser.events.push(event);
        }
        Ok(TraceScript {
            events: parser.events,
        })
    }

    /// The events of the script, in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

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
        for event in &self.events {
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

/// Lifecycle of a label while parsing.
struct Lifecycle {
    started: usize,
    ended: Option<usize>,
}

/// Parsing state: the events so far and what is known about each label.
#[derive(Default)]
struct Parser {
    events: Vec<Event>,
    spans: HashMap<String, Lifecycle>,
    last_time_ns: Option<u64>,
}

/// Every field an event may have.
const KNOWN_FIELDS: [&str; 9] = [
    "op",
    "span",
    "parent",
    "name",
    "kind",
    "time_ns",
    "attributes",
    "status",
    "status_message",
];

/// The fields of one event line, in line order, taken out one by one.
struct Fields(Vec<(String, Json)>);

impl Fields {
    fn new(fields: Vec<(String, Json)>) -> Result<Fields, String> {
        for (index, (name, _)) in fields.iter().enumerate() {
            if !KNOWN_FIELDS.contains(&name.as_str()) {
                return Err(format!("unknown field {name:?}"));
            }
            if fields[..index].iter().any(|(earlier, _)| earlier == name) {
                return Err(format!("field {name:?} is given twice"));
            }
        }
        Ok(Fields(fields))
    }

    /// Takes a field out, `None` when absent.
    fn take(&mut self, name: &str) -> Option<Json> {
        let index = self.0.iter().position(|(field, _)| field == name)?;
        Some(self.0.remove(index).1)
    }

    /// Takes an optional field out; `null` counts as absent.
    fn take_optional(&mut self, name: &str) -> Option<Json> {
        self.take(name).filter(|value| !matches!(value, Json::Null))
    }

    fn required_string(&mut self, name: &str, op: &str) -> Result<String, String> {
        match self.take(name) {
            None => Err(format!("missing required field {name:?} in a {op:?} event")),
            Some(value) => expect_string(name, value),
        }
    }

    fn optional_string(&mut self, name: &str) -> Result<Option<String>, String> {
        self.take_optional(name)
            .map(|value| expect_string(name, value))
            .transpose()
    }

    /// Fails on any field left over: it does not belong to this `op`.
    fn finish(self, op: &str) -> Result<(), String> {
        match self.0.first() {
            Some((name, _)) => Err(format!("field {name:?} is not allowed in a {op:?} event")),
            None => Ok(()),
        }
    }
}

fn expect_string(name: &str, value: Json) -> Result<String, String> {
    match value {
        Json::String(text) => Ok(text),
        other => Err(format!(
            "field {name:?} must be a string, found {}",
            other.describe()
        )),
    }
}

impl Parser {
    fn event(&mut self, line: usize, text: &str) -> Result<Event, String> {
        let fields = match json::parse(text)? {
            Json::Object(fields) => fields,
            other => {
                return Err(format!(
                    "expected a JSON object, found {}",
                    other.describe()
                ))
            }
        };
        let mut fields = Fields::new(fields)?;
        let op = match fields.take("op") {
            None => return Err("missing required field \"op\"".to_string()),
            Some(value) => expect_string("op", value)?,
        };
        match op.as_str() {
            "start" => self.start(line, fields),
            "set" => self.set(line, fields),
            "end" => self.end(line, fields),
            other => Err(format!(
                "unknown op {other:?} (expected \"start\", \"set\" or \"end\")"
            )),
        }
    }

    fn start(&mut self, line: usize, mut fields: Fields) -> Result<Event, String> {
        let span = fields.required_string("span", "start")?;
        let parent = match fields.take("parent") {
            None => return Err(
                "missing required field \"parent\" in a \"start\" event (null for a trace root)"
                    .to_string(),
            ),
            Some(Json::Null) => None,
            Some(Json::String(parent)) => Some(parent),
            Some(other) => {
                return Err(format!(
                    "field \"parent\" must be a string or null, found {}",
                    other.describe()
                ))
            }
        };
        let name = fields.required_string("name", "start")?;
        let kind = match fields.optional_string("kind")?.as_deref() {
            None | Some("internal") => SpanKind::Internal,
            Some("client") => SpanKind::Client,
            Some("server") => SpanKind::Server,
            Some("producer") => SpanKind::Producer,
            Some("consumer") => SpanKind::Consumer,
            Some(other) => {
                return Err(format!(
                    "unknown kind {other:?} (expected \"internal\", \"client\", \"server\", \"producer\" or \"consumer\")"
                ))
            }
        };
        let time_ns = fields.take_optional("time_ns").map(time_ns).transpose()?;
        let attributes = match fields.take_optional("attributes") {
            None => Vec::new(),
            Some(value) => attributes(value)?,
        };
        fields.finish("start")?;

        if let Some(known) = self.spans.get(&span) {
            return Err(format!(
                "span {span:?} was already started on line {}",
                known.started
            ));
        }
        if let Some(parent) = &parent {
            if !self.spans.contains_key(parent) {
                return Err(format!(
                    "parent {parent:?} of span {span:?} was never started"
                ));
            }
        }
        let time_ns = self.resolve_time(time_ns)?;
        self.spans.insert(
            span.clone(),
            Lifecycle {
                started: line,
                ended: None,
            },
        );
        Ok(Event::Start(StartEvent {
            line,
            span,
            parent,
            name,
            kind,
            time_ns,
            attributes,
        }))
    }

    fn set(&mut self, line: usize, mut fields: Fields) -> Result<Event, String> {
        let span = fields.required_string("span", "set")?;
        let attributes = match fields.take_optional("attributes") {
            None => {
                return Err("missing required field \"attributes\" in a \"set\" event".to_string())
            }
            Some(value) => attributes(value)?,
        };
        fields.finish("set")?;
        self.open_span(&span, "set")?;
        Ok(Event::Set(SetEvent {
            line,
            span,
            attributes,
        }))
    }

    fn end(&mut self, line: usize, mut fields: Fields) -> Result<Event, String> {
        let span = fields.required_string("span", "end")?;
        let time_ns = fields.take_optional("time_ns").map(time_ns).transpose()?;
        let status = fields.optional_string("status")?;
        let message = fields.optional_string("status_message")?;
        fields.finish("end")?;
        let status = match (status.as_deref(), message) {
            (Some("error"), message) => Status::error(message.unwrap_or_default()),
            (Some("ok") | Some("unset") | None, Some(message)) if !message.is_empty() => {
                return Err(
                    "field \"status_message\" is only allowed with status \"error\"".to_string(),
                )
            }
            (Some("ok"), _) => Status::Ok,
            (Some("unset") | None, _) => Status::Unset,
            (Some(other), _) => {
                return Err(format!(
                    "unknown status {other:?} (expected \"unset\", \"ok\" or \"error\")"
                ))
            }
        };
        self.open_span(&span, "end")?;
        let time_ns = self.resolve_time(time_ns)?;
        if let Some(known) = self.spans.get_mut(&span) {
            known.ended = Some(line);
        }
        Ok(Event::End(EndEvent {
            line,
            span,
            time_ns,
            status,
        }))
    }

    /// Checks that `span` is started and not yet ended.
    fn open_span(&self, span: &str, op: &str) -> Result<(), String> {
        match self.spans.get(span) {
            None => Err(format!("{op} of span {span:?}, which was never started")),
            Some(Lifecycle {
                ended: Some(ended), ..
            }) => Err(format!(
                "{op} of span {span:?}, which already ended on line {ended}"
            )),
            Some(_) => Ok(()),
        }
    }

    /// The event's own time, or else the time of the closest earlier timed event.
    fn resolve_time(&mut self, time_ns: Option<u64>) -> Result<u64, String> {
        let time_ns = time_ns.or(self.last_time_ns).ok_or_else(|| {
            "missing field \"time_ns\" and no earlier event has a time to inherit".to_string()
        })?;
        self.last_time_ns = Some(time_ns);
        Ok(time_ns)
    }
}

fn time_ns(value: Json) -> Result<u64, String> {
    let Json::Number(number) = value else {
        return Err(format!(
            "field \"time_ns\" must be an integer, found {}",
            value.describe()
        ));
    };
    let time_ns = match (number.as_u64(), number.as_i64()) {
        (Some(time_ns), _) => time_ns,
        (None, Some(_)) => return Err("field \"time_ns\" must not be negative".to_string()),
        (None, None) => {
            return Err(format!(
                "field \"time_ns\" must be an integer of nanoseconds, found {number}"
            ))
        }
    };
    if UNIX_EPOCH
        .checked_add(Duration::from_nanos(time_ns))
        .is_none()
    {
        return Err(format!(
            "field \"time_ns\" {time_ns} is out of range for this platform"
        ));
    }
    Ok(time_ns)
}

fn attributes(value: Json) -> Result<Vec<KeyValue>, String> {
    let Json::Object(fields) = value else {
        return Err(format!(
            "field \"attributes\" must be an object, found {}",
            value.describe()
        ));
    };
    fields
        .into_iter()
        .map(|(key, value)| {
            if key.is_empty() {
                return Err("attribute keys must not be empty".to_string());
            }
            let value = attribute_value(&key, value)?;
            Ok(KeyValue::new(key, value))
        })
        .collect()
}

/// A JSON number as an attribute number: `i64` when it fits, else `f64`.
enum Number {
    I64(i64),
    F64(f64),
}

fn number(number: &serde_json::Number) -> Option<Number> {
    match number.as_i64() {
        Some(value) => Some(Number::I64(value)),
        None => number.as_f64().map(Number::F64),
    }
}

fn attribute_value(key: &str, value: Json) -> Result<Value, String> {
    let invalid = |found: &Json| {
        format!(
            "attribute {key:?}: {} is not a valid attribute value (expected a string, a boolean, a number or an array of one of those)",
            found.describe()
        )
    };
    match value {
        Json::String(text) => Ok(Value::from(text)),
        Json::Bool(flag) => Ok(Value::Bool(flag)),
        Json::Number(ref n) => match number(n) {
            Some(Number::I64(value)) => Ok(Value::I64(value)),
            Some(Number::F64(value)) => Ok(Value::F64(value)),
            None => Err(invalid(&value)),
        },
        Json::Array(items) => attribute_array(key, items).map(Value::Array),
        other => Err(invalid(&other)),
    }
}

fn attribute_array(key: &str, items: Vec<Json>) -> Result<Array, String> {
    let mixed = || {
        format!(
            "attribute {key:?}: array elements must be all strings, all booleans or all numbers"
        )
    };
    let element = |found: &Json| {
        format!(
            "attribute {key:?}: array elements must be strings, booleans or numbers, found {}",
            found.describe()
        )
    };
    if let Some(bad) = items
        .iter()
        .find(|item| !matches!(item, Json::String(_) | Json::Bool(_) | Json::Number(_)))
    {
        return Err(element(bad));
    }
    match items.first() {
        None => Ok(Array::String(Vec::new())),
        Some(Json::String(_)) => items
            .into_iter()
            .map(|item| match item {
                Json::String(text) => Ok(StringValue::from(text)),
                _ => Err(mixed()),
            })
            .collect::<Result<_, _>>()
            .map(Array::String),
        Some(Json::Bool(_)) => items
            .into_iter()
            .map(|item| match item {
                Json::Bool(flag) => Ok(flag),
                _ => Err(mixed()),
            })
            .collect::<Result<_, _>>()
            .map(Array::Bool),
        Some(_) => {
            let numbers = items
                .iter()
                .map(|item| match item {
                    Json::Number(n) => number(n).ok_or_else(|| element(item)),
                    _ => Err(mixed()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if numbers.iter().all(|n| matches!(n, Number::I64(_))) {
                Ok(Array::I64(
                    numbers
                        .iter()
                        .filter_map(|n| match n {
                            Number::I64(value) => Some(*value),
                            Number::F64(_) => None,
                        })
                        .collect(),
                ))
            } else {
                Ok(Array::F64(
                    numbers
                        .iter()
                        .map(|n| match n {
                            Number::I64(value) => *value as f64,
                            Number::F64(value) => *value,
                        })
                        .collect(),
                ))
            }
        }
    }
}

/// A small JSON reader that keeps object members in their order in the text
/// (`serde_json::Value` sorts them), so that attributes replay in script order.
/// Strings and numbers are decoded by `serde_json`, which also validates the line
/// first and provides the error messages.
mod json {
    /// Maximum nesting depth (the same as `serde_json`'s default limit).
    const MAX_DEPTH: usize = 128;

    /// A JSON value with object members in text order (duplicates kept).
    #[derive(Debug)]
    pub(super) enum Json {
        Null,
        Bool(bool),
        Number(serde_json::Number),
        String(String),
        Array(Vec<Json>),
        Object(Vec<(String, Json)>),
    }

    impl Json {
        /// What kind of value this is, for error messages.
        pub(super) fn describe(&self) -> &'static str {
            match self {
                Json::Null => "null",
                Json::Bool(_) => "a boolean",
                Json::Number(_) => "a number",
                Json::String(_) => "a string",
                Json::Array(_) => "an array",
                Json::Object(_) => "an object",
            }
        }
    }

    /// Parses one JSON text.
    pub(super) fn parse(text: &str) -> Result<Json, String> {
        if let Err(error) = serde_json::from_str::<serde_json::Value>(text) {
            let full = error.to_string();
            let position = format!(" at line {} column {}", error.line(), error.column());
            let message = full.strip_suffix(&position).unwrap_or(&full);
            return Err(format!(
                "invalid JSON at column {}: {message}",
                error.column()
            ));
        }
        let mut reader = Reader { text, pos: 0 };
        let value = reader.value(0)?;
        reader.skip_whitespace();
        if reader.pos != text.len() {
            return Err(reader.invalid());
        }
        Ok(value)
    }

    struct Reader<'a> {
        text: &'a str,
        pos: usize,
    }

    impl Reader<'_> {
        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.pos).copied()
        }

        fn invalid(&self) -> String {
            format!("invalid JSON at byte {}", self.pos + 1)
        }

        fn skip_whitespace(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.pos += 1;
            }
        }

        fn expect(&mut self, byte: u8) -> Result<(), String> {
            self.skip_whitespace();
            if self.peek() == Some(byte) {
                self.pos += 1;
                Ok(())
            } else {
                Err(self.invalid())
            }
        }

        fn value(&mut self, depth: usize) -> Result<Json, String> {
            if depth > MAX_DEPTH {
                return Err("invalid JSON: nested too deeply".to_string());
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b'{') => self.object(depth),
                Some(b'[') => self.array(depth),
                Some(b'"') => self.string().map(Json::String),
                Some(b't') => self.literal("true", Json::Bool(true)),
                Some(b'f') => self.literal("false", Json::Bool(false)),
                Some(b'n') => self.literal("null", Json::Null),
                Some(b'-' | b'0'..=b'9') => self.number(),
                _ => Err(self.invalid()),
            }
        }

        fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
            if self.rest().starts_with(word) {
                self.pos += word.len();
                Ok(value)
            } else {
                Err(self.invalid())
            }
        }

        fn rest(&self) -> &str {
            self.text.get(self.pos..).unwrap_or("")
        }

        fn number(&mut self) -> Result<Json, String> {
            let length = self
                .rest()
                .bytes()
                .take_while(|byte| matches!(byte, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .count();
            let digits = self
                .text
                .get(self.pos..self.pos + length)
                .ok_or_else(|| self.invalid())?;
            let number = serde_json::from_str::<serde_json::Number>(digits)
                .map_err(|error| format!("invalid JSON number {digits:?}: {error}"))?;
            self.pos += length;
            Ok(Json::Number(number))
        }

        fn string(&mut self) -> Result<String, String> {
            let bytes = self.text.as_bytes();
            let start = self.pos;
            let mut end = start + 1;
            while let Some(&byte) = bytes.get(end) {
                match byte {
                    b'\\' => end += 2,
                    b'"' => {
                        let quoted = self.text.get(start..=end).ok_or_else(|| self.invalid())?;
                        let text = serde_json::from_str::<String>(quoted)
                            .map_err(|error| format!("invalid JSON string: {error}"))?;
                        self.pos = end + 1;
                        return Ok(text);
                    }
                    _ => end += 1,
                }
            }
            Err(self.invalid())
        }

        fn array(&mut self, depth: usize) -> Result<Json, String> {
            self.pos += 1;
            let mut items = Vec::new();
            self.skip_whitespace();
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(Json::Array(items));
            }
            loop {
                items.push(self.value(depth + 1)?);
                self.skip_whitespace();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        return Ok(Json::Array(items));
                    }
                    _ => return Err(self.invalid()),
                }
            }
        }

        fn object(&mut self, depth: usize) -> Result<Json, String> {
            self.pos += 1;
            let mut members = Vec::new();
            self.skip_whitespace();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(Json::Object(members));
            }
            loop {
                self.skip_whitespace();
                if self.peek() != Some(b'"') {
                    return Err(self.invalid());
                }
                let key = self.string()?;
                self.expect(b':')?;
                let value = self.value(depth + 1)?;
                members.push((key, value));
                self.skip_whitespace();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        return Ok(Json::Object(members));
                    }
                    _ => return Err(self.invalid()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
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
        let path = format!("{}/../shared/traces/{file}", env!("CARGO_MANIFEST_DIR"));
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
}
