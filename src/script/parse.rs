//! The validating parser: one event per line, each line read once by `serde_json`.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, KeyValue, StringValue, Value};

use super::model::{EndEvent, Event, ScriptError, SetEvent, StartEvent, TraceScript};
use super::value::Json;

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
        Ok(TraceScript::from_events(parser.events))
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
        let fields = match Json::parse(text)? {
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
