//! OTLP JSON, read the way the command needs it: the few fields of a span that order
//! and link the replay, its attributes as the processor reads them, and the text of
//! everything else left as it was written.
//!
//! Every valid form of the OTLP JSON mapping is read: 64-bit integers as numbers or
//! strings, doubles as numbers or as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`
//! or a decimal, enums as numbers or names, `lowerCamelCase` or `snake_case` field
//! names, empty `arrayValue`/`kvlistValue` objects, a key-value without `key`, and
//! `null` for an absent field. Unknown fields are skipped here and kept in the text.

use std::borrow::Cow;
use std::fmt;

use opentelemetry::{Array, KeyValue, StringValue, Value};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A request as far as the command reads it: where its spans are.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RequestHead<'a> {
    #[serde(borrow, default, alias = "resource_spans")]
    pub(super) resource_spans: Option<Vec<ResourceSpansHead<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResourceSpansHead<'a> {
    #[serde(borrow, default)]
    pub(super) resource: Option<&'a RawValue>,
    #[serde(borrow, default, alias = "scope_spans")]
    pub(super) scope_spans: Option<Vec<ScopeSpansHead<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ScopeSpansHead<'a> {
    #[serde(borrow, default)]
    pub(super) scope: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) spans: Option<Vec<&'a RawValue>>,
}

/// What orders and links a span in the replay.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpanHead<'a> {
    #[serde(borrow, default, alias = "trace_id")]
    pub(super) trace_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "span_id")]
    pub(super) span_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "parent_span_id")]
    pub(super) parent_span_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) flags: Option<Int>,
    #[serde(default, alias = "start_time_unix_nano")]
    pub(super) start_time_unix_nano: Option<Int>,
    #[serde(default, alias = "end_time_unix_nano")]
    pub(super) end_time_unix_nano: Option<Int>,
    #[serde(borrow, default)]
    pub(super) attributes: Option<Vec<AttributeHead<'a>>>,
    #[serde(borrow, default)]
    pub(super) name: Option<Cow<'a, str>>,
    // Read only to check their types (an input with a number for a name is refused
    // with its line); the replay reads them again from the text.
    #[allow(dead_code)]
    #[serde(default)]
    kind: Option<Enum>,
    #[allow(dead_code)]
    #[serde(borrow, default)]
    status: Option<StatusBody<'a>>,
}

/// An attribute's key, its value left as text (read only when needed).
#[derive(Deserialize)]
pub(super) struct AttributeHead<'a> {
    #[serde(borrow, default)]
    pub(super) key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) value: Option<&'a RawValue>,
}

/// An attribute's value left as text.
#[derive(Deserialize)]
struct AttributeValueText<'a> {
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
}

/// What the replay gives the SDK span besides ids and times: its attributes as `A`,
/// each item's text ([`SpanBody`], to write them back) or read at once
/// ([`SpanBodyRead`]).
#[derive(Deserialize)]
pub(super) struct Body<'a, A> {
    #[serde(borrow, default)]
    pub(super) name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) kind: Option<Enum>,
    #[serde(borrow, default)]
    pub(super) status: Option<StatusBody<'a>>,
    #[serde(
        default = "Option::default",
        bound(deserialize = "A: Deserialize<'de>")
    )]
    pub(super) attributes: Option<Vec<A>>,
}

/// A span's body, each attribute kept as its text.
pub(super) type SpanBody<'a> = Body<'a, &'a RawValue>;

/// A span's body, its attributes' keys read and their values left as text (when they
/// need not be written back: only the values the audit reads are read).
pub(super) type SpanBodyRead<'a> = Body<'a, AttributeHead<'a>>;

#[derive(Deserialize)]
pub(super) struct StatusBody<'a> {
    #[serde(default)]
    pub(super) code: Option<Enum>,
    #[serde(borrow, default)]
    pub(super) message: Option<Cow<'a, str>>,
}

/// One attribute, its value read.
#[derive(Deserialize)]
pub(super) struct Attribute<'a> {
    #[serde(borrow, default)]
    pub(super) key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) value: Option<AnyValue<'a>>,
}

/// An `AnyValue`: at most one member is set.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct AnyValue<'a> {
    #[serde(borrow, default, alias = "string_value")]
    string_value: Option<Cow<'a, str>>,
    #[serde(default, alias = "bool_value")]
    bool_value: Option<bool>,
    #[serde(default, alias = "int_value")]
    int_value: Option<Int>,
    #[serde(default, alias = "double_value")]
    double_value: Option<Double>,
    #[serde(borrow, default, alias = "array_value")]
    array_value: Option<ArrayValue<'a>>,
    #[serde(borrow, default, alias = "kvlist_value")]
    kvlist_value: Option<&'a RawValue>,
    #[serde(borrow, default, alias = "bytes_value")]
    bytes_value: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
pub(super) struct ArrayValue<'a> {
    #[serde(borrow, default)]
    values: Option<Vec<AnyValue<'a>>>,
}

/// A 64-bit integer written as a number or a decimal string (signed or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Int(pub(super) i128);

impl Int {
    pub(super) fn as_u64(self) -> Option<u64> {
        u64::try_from(self.0).ok()
    }
    fn as_i64(self) -> Option<i64> {
        i64::try_from(self.0).ok()
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer, as a number or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                Ok(Int(i128::from(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(i128::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
                if v.fract() == 0.0 && v.abs() < 1.8e19 {
                    Ok(Int(v as i128))
                } else {
                    Err(E::custom(format!("{v} is not an integer")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                v.trim()
                    .parse::<i128>()
                    .map(Int)
                    .map_err(|_| E::custom(format!("{v:?} is not an integer")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A double written as a number, or as a string: `"NaN"`, `"Infinity"`,
/// `"-Infinity"` or a decimal.
#[derive(Debug, Clone, Copy)]
pub(super) struct Double(f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Double;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a double, as a number or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Double, E> {
                Ok(Double(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Double, E> {
                Ok(Double(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Double, E> {
                Ok(Double(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Double, E> {
                match v.trim() {
                    "NaN" => Ok(Double(f64::NAN)),
                    "Infinity" => Ok(Double(f64::INFINITY)),
                    "-Infinity" => Ok(Double(f64::NEG_INFINITY)),
                    text => text
                        .parse::<f64>()
                        .ok()
                        .filter(|d| d.is_finite())
                        .map(Double)
                        .ok_or_else(|| E::custom(format!("{v:?} is not a double"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// An enum value written as a number or as its name (`SPAN_KIND_CLIENT`,
/// `STATUS_CODE_ERROR`); a name it does not know reads as 0 (unspecified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Enum(pub(super) i64);

const ENUM_NAMES: &[(&str, i64)] = &[
    ("SPAN_KIND_UNSPECIFIED", 0),
    ("SPAN_KIND_INTERNAL", 1),
    ("SPAN_KIND_SERVER", 2),
    ("SPAN_KIND_CLIENT", 3),
    ("SPAN_KIND_PRODUCER", 4),
    ("SPAN_KIND_CONSUMER", 5),
    ("STATUS_CODE_UNSET", 0),
    ("STATUS_CODE_OK", 1),
    ("STATUS_CODE_ERROR", 2),
];

/// The number of an enum value's name (`SPAN_KIND_CLIENT` is 3).
pub(crate) fn enum_number(name: &str) -> Option<i64> {
    ENUM_NAMES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, n)| *n)
}

impl<'de> Deserialize<'de> for Enum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Enum;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an enum value, as a number or a name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Enum, E> {
                Ok(Enum(i64::try_from(v).unwrap_or(0)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Enum, E> {
                Ok(Enum(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Enum, E> {
                let v = v.trim();
                if let Ok(n) = v.parse::<i64>() {
                    return Ok(Enum(n));
                }
                Ok(Enum(enum_number(v).unwrap_or(0)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Decodes a hex id of `N` bytes; an empty or absent one is `None`.
pub(super) fn hex_id<const N: usize>(
    text: Option<&str>,
    what: &str,
) -> Result<Option<[u8; N]>, String> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    if bytes.len() != 2 * N {
        return Err(format!(
            "{what} must be {} hex digits (got {text:?})",
            2 * N
        ));
    }
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
            _ => return Err(format!("{what} must be hex digits (got {text:?})")),
        }
    }
    Ok(Some(out))
}

/// The value the processor reads for an OTLP `AnyValue`. Values the OpenTelemetry API
/// has no type for (maps, bytes, mixed or nested arrays) are read as their JSON text;
/// an absent or empty value as an empty string.
pub(super) fn api_value(value: Option<&AnyValue<'_>>, raw: Option<&str>) -> Value {
    let Some(value) = value else {
        return Value::String(StringValue::from(""));
    };
    if let Some(s) = &value.string_value {
        return Value::String(StringValue::from(s.clone().into_owned()));
    }
    if let Some(b) = value.bool_value {
        return Value::Bool(b);
    }
    if let Some(i) = value.int_value {
        return match i.as_i64() {
            Some(i) => Value::I64(i),
            None => Value::String(i.0.to_string().into()),
        };
    }
    if let Some(Double(d)) = value.double_value {
        return Value::F64(d);
    }
    if let Some(array) = &value.array_value {
        if let Some(array) = api_array(array) {
            return array;
        }
    }
    match raw {
        Some(raw)
            if value.array_value.is_some()
                || value.kvlist_value.is_some()
                || value.bytes_value.is_some() =>
        {
            Value::String(minify(raw).into())
        }
        _ => Value::String(StringValue::from("")),
    }
}

fn api_array(array: &ArrayValue<'_>) -> Option<Value> {
    let items = array.values.as_deref().unwrap_or(&[]);
    let Some(first) = items.first() else {
        return Some(Value::Array(Array::String(Vec::new())));
    };
    if first.string_value.is_some() {
        let strings = items
            .iter()
            .map(|v| {
                v.string_value
                    .as_ref()
                    .map(|s| StringValue::from(s.clone().into_owned()))
            })
            .collect::<Option<Vec<_>>>()?;
        return Some(Value::Array(Array::String(strings)));
    }
    if first.bool_value.is_some() {
        let bools = items
            .iter()
            .map(|v| v.bool_value)
            .collect::<Option<Vec<_>>>()?;
        return Some(Value::Array(Array::Bool(bools)));
    }
    if items
        .iter()
        .all(|v| v.int_value.and_then(Int::as_i64).is_some())
    {
        let ints = items
            .iter()
            .filter_map(|v| v.int_value.and_then(Int::as_i64))
            .collect();
        return Some(Value::Array(Array::I64(ints)));
    }
    let doubles = items
        .iter()
        .map(|v| match (v.int_value, v.double_value) {
            (Some(i), None) => i.as_i64().map(|i| i as f64),
            (None, Some(Double(d))) => Some(d),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Value::Array(Array::F64(doubles)))
}

/// Reads one attribute's text into the key-value the processor reads, or `None` when
/// it is not an attribute object (or its value is of no `AnyValue` form).
pub(super) fn api_attribute(raw: &RawValue) -> Option<(String, Value)> {
    let attribute: Attribute<'_> = serde_json::from_str(raw.get()).ok()?;
    Some(attribute.into_api(|| value_text(raw).map(str::to_owned)))
}

/// A value left as text, read as the processor reads it (`None`: of no `AnyValue`
/// form).
pub(super) fn api_value_text(raw: &RawValue) -> Option<Value> {
    let value: AnyValue<'_> = serde_json::from_str(raw.get()).ok()?;
    Some(api_value(Some(&value), Some(raw.get())))
}

impl Attribute<'_> {
    /// The key-value the processor reads; `text` gives the value's JSON text, for the
    /// values read as their text (maps, bytes, mixed arrays).
    pub(super) fn into_api(self, text: impl FnOnce() -> Option<String>) -> (String, Value) {
        let key = self.key.map(Cow::into_owned).unwrap_or_default();
        let value = match &self.value {
            Some(v) if v.needs_text() => match text() {
                Some(t) => api_value(Some(v), Some(&t)),
                None => api_value(Some(v), None),
            },
            other => api_value(other.as_ref(), None),
        };
        (key, value)
    }
}

impl AnyValue<'_> {
    /// Whether the value is read as its JSON text.
    fn needs_text(&self) -> bool {
        self.string_value.is_none()
            && self.bool_value.is_none()
            && self.int_value.is_none()
            && self.double_value.is_none()
            && (self.kvlist_value.is_some()
                || self.bytes_value.is_some()
                || self.array_value.is_some())
    }
}

/// The text of an attribute's `value` member.
pub(super) fn value_text(raw: &RawValue) -> Option<&str> {
    let attribute: AttributeValueText<'_> = serde_json::from_str(raw.get()).ok()?;
    attribute.value.map(RawValue::get)
}

/// A key-value the processor wrote, as OTLP JSON text.
pub(super) fn attribute_text(kv: &KeyValue, out: &mut String) {
    out.push_str("{\"key\":");
    push_string(out, kv.key.as_str());
    out.push_str(",\"value\":");
    value_json(&kv.value, out);
    out.push('}');
}

/// An attribute written with its value's own text.
pub(super) fn attribute_with_value_text(key: &str, value: &str, out: &mut String) {
    out.push_str("{\"key\":");
    push_string(out, key);
    out.push_str(",\"value\":");
    out.push_str(value);
    out.push('}');
}

/// An API value as an OTLP `AnyValue` in JSON (64-bit integers as strings, as the
/// mapping asks; doubles in their shortest form that reads back to the same bits).
pub(super) fn value_json(value: &Value, out: &mut String) {
    match value {
        Value::Bool(b) => out.push_str(if *b {
            "{\"boolValue\":true}"
        } else {
            "{\"boolValue\":false}"
        }),
        Value::I64(i) => {
            out.push_str("{\"intValue\":\"");
            out.push_str(&i.to_string());
            out.push_str("\"}");
        }
        Value::F64(d) => {
            out.push_str("{\"doubleValue\":");
            push_double(out, *d);
            out.push('}');
        }
        Value::String(s) => {
            out.push_str("{\"stringValue\":");
            push_string(out, s.as_str());
            out.push('}');
        }
        Value::Array(array) => {
            out.push_str("{\"arrayValue\":{\"values\":[");
            let mut first = true;
            let mut item = |out: &mut String, v: Value| {
                if !std::mem::take(&mut first) {
                    out.push(',');
                }
                value_json(&v, out);
            };
            match array {
                Array::Bool(items) => items.iter().for_each(|b| item(out, Value::Bool(*b))),
                Array::I64(items) => items.iter().for_each(|i| item(out, Value::I64(*i))),
                Array::F64(items) => items.iter().for_each(|d| item(out, Value::F64(*d))),
                Array::String(items) => items
                    .iter()
                    .for_each(|s| item(out, Value::String(s.clone()))),
                _ => {}
            }
            out.push_str("]}}");
        }
        other => {
            out.push_str("{\"stringValue\":");
            push_string(out, &other.to_string());
            out.push('}');
        }
    }
}

fn push_double(out: &mut String, d: f64) {
    if d.is_nan() {
        out.push_str("\"NaN\"");
    } else if d == f64::INFINITY {
        out.push_str("\"Infinity\"");
    } else if d == f64::NEG_INFINITY {
        out.push_str("\"-Infinity\"");
    } else {
        // serde_json writes the shortest text that reads back to the same double.
        out.push_str(&serde_json::to_string(&d).unwrap_or_else(|_| "0".to_owned()));
    }
}

fn push_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned()));
}

/// JSON text without the white space between its tokens (strings are kept as they
/// are, escapes included), so that a request written over several lines becomes one.
pub(super) fn minify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// Where `inner` (a slice of `outer`) starts in `outer`.
pub(super) fn offset_in(outer: &str, inner: &str) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// The members of a JSON object, in order, as key and value text.
pub(super) fn members(text: &str) -> Option<Vec<(Cow<'_, str>, &RawValue)>> {
    struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);
    impl<'de> Deserialize<'de> for Members<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Members<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Members<'de>, A::Error> {
                    let mut out = Vec::new();
                    while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                        let value: &'de RawValue = map.next_value()?;
                        out.push((key, value));
                    }
                    Ok(Members(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Members<'_>>(text).ok().map(|m| m.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(value: &str) -> Value {
        let text = format!(r#"{{"key":"k","value":{value}}}"#);
        let raw: Box<RawValue> = serde_json::from_str(&text).unwrap();
        api_attribute(&raw).unwrap().1
    }

    #[test]
    fn every_valid_form_of_a_value_is_read() {
        assert_eq!(
            read(r#"{"arrayValue":{}}"#),
            Value::Array(Array::String(vec![]))
        );
        assert_eq!(
            read(r#"{"kvlistValue":{}}"#),
            Value::String("{\"kvlistValue\":{}}".into())
        );
        assert!(matches!(read(r#"{"doubleValue":"NaN"}"#), Value::F64(d) if d.is_nan()));
        assert_eq!(
            read(r#"{"doubleValue":"Infinity"}"#),
            Value::F64(f64::INFINITY)
        );
        assert_eq!(
            read(r#"{"doubleValue":"-Infinity"}"#),
            Value::F64(f64::NEG_INFINITY)
        );
        assert_eq!(read(r#"{"doubleValue":"1.5"}"#), Value::F64(1.5));
        assert_eq!(read(r#"{"intValue":"-7"}"#), Value::I64(-7));
        assert_eq!(read(r#"{"intValue":7}"#), Value::I64(7));
        assert_eq!(read(r#"{}"#), Value::String("".into()));
        assert_eq!(read(r#"{"string_value":"x"}"#), Value::String("x".into()));
        let raw: Box<RawValue> = serde_json::from_str(r#"{"value":{"boolValue":true}}"#).unwrap();
        assert_eq!(
            api_attribute(&raw),
            Some((String::new(), Value::Bool(true)))
        );
    }

    #[test]
    fn doubles_are_written_to_read_back_bit_for_bit() {
        for d in [
            0.009944534000000005,
            0.1 + 0.2,
            1e-308,
            5e-324,
            f64::MAX,
            123_456_789.123_456_78,
        ] {
            let mut out = String::new();
            value_json(&Value::F64(d), &mut out);
            let raw: Box<RawValue> =
                serde_json::from_str(&format!(r#"{{"key":"k","value":{out}}}"#)).unwrap();
            match api_attribute(&raw).unwrap().1 {
                Value::F64(back) => assert_eq!(back.to_bits(), d.to_bits(), "{out}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn minify_keeps_strings() {
        assert_eq!(
            minify("{ \"a b\" : [ 1 ,\n 2 ], \"c\\\" d\": \" \" }"),
            "{\"a b\":[1,2],\"c\\\" d\":\" \"}"
        );
    }

    #[test]
    fn ids() {
        assert_eq!(hex_id::<2>(Some("0aFf"), "id"), Ok(Some([0x0a, 0xff])));
        assert_eq!(hex_id::<2>(Some(""), "id"), Ok(None));
        assert!(hex_id::<2>(Some("0g00"), "id").is_err());
        assert!(hex_id::<2>(Some("0a"), "id").is_err());
    }
}
