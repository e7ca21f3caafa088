//! Attribute values between OTLP (`AnyValue`) and the OpenTelemetry API (`Value`).

use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue as OtlpKeyValue};

/// An OTLP attribute as the processor reads it. Values the API has no type for (maps,
/// bytes, mixed or nested arrays) are read as their JSON text; an empty value as an
/// empty string.
pub(crate) fn to_api(kv: &OtlpKeyValue) -> KeyValue {
    KeyValue::new(kv.key.clone(), value_to_api(kv.value.as_ref()))
}

/// Like [`to_api`], taking the attribute (strings move instead of being copied).
pub(crate) fn into_api(kv: OtlpKeyValue) -> KeyValue {
    let value = match kv.value {
        Some(AnyValue {
            value: Some(Any::StringValue(s)),
        }) => Value::String(s.into()),
        other => value_to_api(other.as_ref()),
    };
    KeyValue::new(kv.key, value)
}

fn value_to_api(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        None => Value::String(StringValue::from("")),
        Some(Any::StringValue(s)) => Value::String(s.clone().into()),
        Some(Any::BoolValue(b)) => Value::Bool(*b),
        Some(Any::IntValue(i)) => Value::I64(*i),
        Some(Any::DoubleValue(d)) => Value::F64(*d),
        Some(Any::ArrayValue(array)) => array_to_api(array).unwrap_or_else(|| json_text(value)),
        Some(_) => json_text(value),
    }
}

fn json_text(value: Option<&AnyValue>) -> Value {
    Value::String(serde_json::to_string(&value).unwrap_or_default().into())
}

fn array_to_api(array: &ArrayValue) -> Option<Value> {
    let items: Vec<&Any> = array
        .values
        .iter()
        .map(|v| v.value.as_ref())
        .collect::<Option<_>>()?;
    let first = match items.first() {
        None => return Some(Value::Array(Array::String(Vec::new()))),
        Some(first) => first,
    };
    Some(Value::Array(match first {
        Any::StringValue(_) => Array::String(
            items
                .iter()
                .map(|v| match v {
                    Any::StringValue(s) => Some(StringValue::from(s.clone())),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        Any::BoolValue(_) => Array::Bool(
            items
                .iter()
                .map(|v| match v {
                    Any::BoolValue(b) => Some(*b),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        Any::IntValue(_) | Any::DoubleValue(_) => {
            if items.iter().all(|v| matches!(v, Any::IntValue(_))) {
                Array::I64(
                    items
                        .iter()
                        .filter_map(|v| match v {
                            Any::IntValue(i) => Some(*i),
                            _ => None,
                        })
                        .collect(),
                )
            } else {
                Array::F64(
                    items
                        .iter()
                        .map(|v| match v {
                            Any::IntValue(i) => Some(*i as f64),
                            Any::DoubleValue(d) => Some(*d),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                )
            }
        }
        _ => return None,
    }))
}

/// An attribute the processor wrote, as OTLP.
pub(crate) fn to_otlp(kv: &KeyValue) -> OtlpKeyValue {
    OtlpKeyValue {
        key: kv.key.to_string(),
        value: Some(value_to_otlp(&kv.value)),
        ..OtlpKeyValue::default()
    }
}

fn any(value: Any) -> AnyValue {
    AnyValue { value: Some(value) }
}

fn array(values: Vec<AnyValue>) -> Any {
    Any::ArrayValue(ArrayValue { values })
}

fn value_to_otlp(value: &Value) -> AnyValue {
    any(match value {
        Value::Bool(b) => Any::BoolValue(*b),
        Value::I64(i) => Any::IntValue(*i),
        Value::F64(d) => Any::DoubleValue(*d),
        Value::String(s) => Any::StringValue(s.to_string()),
        Value::Array(Array::Bool(items)) => {
            array(items.iter().map(|b| any(Any::BoolValue(*b))).collect())
        }
        Value::Array(Array::I64(items)) => {
            array(items.iter().map(|i| any(Any::IntValue(*i))).collect())
        }
        Value::Array(Array::F64(items)) => {
            array(items.iter().map(|d| any(Any::DoubleValue(*d))).collect())
        }
        Value::Array(Array::String(items)) => array(
            items
                .iter()
                .map(|s| any(Any::StringValue(s.to_string())))
                .collect(),
        ),
        other => Any::StringValue(other.to_string()),
    })
}
