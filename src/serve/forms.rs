//! The proto3 JSON forms the OTLP crate's JSON mapping does not read, made into the
//! ones it reads: for a JSON body that does not decode as it came.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::Value as Json;

use crate::otlp::{each_double, enum_number, is_stand_in, stand_in, STAND_INS};

/// Why an OTLP JSON body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormError {
    /// Not JSON, or not a request.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A real double equals a stand-in next to one it would stand for.
    #[error(
        "a double equal to one this receiver stands in for NaN or Infinity: send it as protobuf"
    )]
    StandInTaken,
    /// A `doubleValue` string that is not a number.
    #[error("{0:?} is not a double")]
    NotADouble(String),
}

/// Reads a JSON body in any proto3 JSON form: `snake_case` member names, enum names,
/// numbers as strings or strings as numbers, doubles as `"NaN"`, `"Infinity"` or
/// `"-Infinity"`, upper-case hex ids, `null` members.
pub(crate) fn lenient_request(body: &[u8]) -> Result<ExportTraceServiceRequest, FormError> {
    let mut json: Json = serde_json::from_slice(body)?;
    let mut seen = Seen::default();
    normalise(&mut json, None, &mut seen)?;
    if seen.special && seen.stand_in {
        return Err(FormError::StandInTaken);
    }
    let mut request: ExportTraceServiceRequest = serde_json::from_value(json)?;
    if seen.special {
        each_double(&mut request, &mut |d| {
            if let Some((_, real, _)) = STAND_INS
                .iter()
                .find(|(s, _, _)| s.to_bits() == d.to_bits())
            {
                *d = *real;
            }
        });
    }
    Ok(request)
}

/// What the normalising saw: a double with no JSON value form, a real double equal
/// to a stand-in.
#[derive(Debug, Default)]
struct Seen {
    special: bool,
    stand_in: bool,
}

/// Reads a JSON body: with the OTLP crate's mapping when it can read it whole, else
/// as [`lenient_request`] does. That mapping ignores members it does not know, so a
/// body with `snake_case` member names would read as one with no spans: a body with
/// `_spans"` or `"trace_id"` in it goes the lenient way at once (a string value that
/// ends in `_spans` sends its body that way too: slower, and read the same).
pub(crate) fn json_request(body: &[u8]) -> Result<ExportTraceServiceRequest, FormError> {
    let snake = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    if snake(b"_spans\"") || snake(b"\"trace_id\"") {
        return lenient_request(body);
    }
    serde_json::from_slice::<ExportTraceServiceRequest>(body).or_else(|_| lenient_request(body))
}

/// `lowerCamelCase` of a `snake_case` name.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn normalise(json: &mut Json, key: Option<&str>, seen: &mut Seen) -> Result<(), FormError> {
    match json {
        Json::Object(map) => {
            let members = std::mem::take(map);
            for (k, mut v) in members {
                if v.is_null() {
                    continue;
                }
                let k = if k.contains('_') { camel(&k) } else { k };
                normalise(&mut v, Some(&k), seen)?;
                map.insert(k, v);
            }
        }
        Json::Array(items) => {
            for item in items {
                normalise(item, None, seen)?;
            }
        }
        Json::String(s) => match key {
            // An enum's name: its number.
            Some("kind" | "code") => {
                if let Some(n) = enum_number(s.trim()) {
                    *json = Json::from(n);
                }
            }
            Some(
                "droppedAttributesCount" | "droppedEventsCount" | "droppedLinksCount" | "flags",
            ) => {
                if let Ok(n) = s.trim().parse::<u32>() {
                    *json = Json::from(n);
                }
            }
            Some("doubleValue") => match s.trim().parse::<f64>() {
                Ok(d) if d.is_finite() => *json = Json::from(d),
                Ok(d) => {
                    seen.special = true;
                    *json = Json::from(stand_in(d));
                }
                Err(_) => return Err(FormError::NotADouble(s.clone())),
            },
            Some("traceId" | "spanId" | "parentSpanId") => *s = s.to_ascii_lowercase(),
            _ => {}
        },
        Json::Number(n)
            if matches!(
                key,
                Some("startTimeUnixNano" | "endTimeUnixNano" | "timeUnixNano")
            ) =>
        {
            *json = Json::String(n.to_string());
        }
        Json::Number(n) if key == Some("doubleValue") => {
            let d = n.as_f64().unwrap_or(0.0);
            seen.stand_in |= is_stand_in(d);
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
    use opentelemetry_proto::tonic::common::v1::KeyValue;

    #[test]
    fn snake_case_members_are_never_read_as_no_spans() {
        let body = br#"{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174","name":"x"}]}]}]}"#;
        let request = json_request(body).expect("read");
        assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 1);
        // A value that mentions such a name: read whole all the same.
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"a \"trace_id\" and resource_spans"}]}]}]}"#;
        let request = json_request(body).expect("read");
        assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 1);
    }

    #[test]
    fn every_form_but_non_finite_doubles_is_read() {
        let body = br#"{"resource_spans":[{"scope_spans":[{"spans":[{
            "trace_id":"5B8EFFF798038103D269B633813FC60C","span_id":"EEE19B7EC3C1B174",
            "name":"chat","kind":"SPAN_KIND_CLIENT","flags":"256","parent_span_id":null,
            "start_time_unix_nano":1700000000000000000,"endTimeUnixNano":"1700000001000000000",
            "status":{"code":"STATUS_CODE_ERROR"},
            "attributes":[{"key":"d","value":{"double_value":"1.5"}},
                          {"key":"i","value":{"intValue":"7"}}]}]}]}]}"#;
        let request = lenient_request(body).expect("read");
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.kind, 3);
        assert_eq!(span.flags, 256);
        assert_eq!(
            span.span_id,
            vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        );
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
        assert_eq!(span.attributes.len(), 2);
        let special = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[
            {"key":"n","value":{"doubleValue":"NaN"}},
            {"key":"a","value":{"arrayValue":{"values":[{"doubleValue":"-Infinity"},{"doubleValue":"Infinity"}]}}},
            {"key":"d","value":{"doubleValue":2.5}}]}]}]}]}"#;
        let request = lenient_request(special).expect("read");
        let attributes = &request.resource_spans[0].scope_spans[0].spans[0].attributes;
        let double = |kv: &KeyValue| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Kind::DoubleValue(d)) => *d,
            _ => 0.0,
        };
        assert!(double(&attributes[0]).is_nan());
        let Some(Kind::ArrayValue(array)) =
            attributes[1].value.as_ref().and_then(|v| v.value.clone())
        else {
            panic!("an array");
        };
        let items: Vec<f64> = array
            .values
            .iter()
            .map(|v| match v.value {
                Some(Kind::DoubleValue(d)) => d,
                _ => 0.0,
            })
            .collect();
        assert_eq!(items, [f64::NEG_INFINITY, f64::INFINITY]);
        assert_eq!(double(&attributes[2]), 2.5);
        // A real double equal to a stand-in is refused, never misread.
        let taken = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[
            {"key":"d","value":{"doubleValue":5e-324}},{"key":"n","value":{"doubleValue":"NaN"}}]}]}]}]}"#;
        assert!(lenient_request(taken).is_err());
        let alone = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[
            {"key":"d","value":{"doubleValue":5e-324}}]}]}]}]}"#;
        assert!(lenient_request(alone).is_ok());
    }
}
