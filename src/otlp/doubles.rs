//! Doubles that have no JSON number form (NaN, ±Infinity): proto3 JSON writes them as
//! the strings `"NaN"`, `"Infinity"` and `"-Infinity"`, which the OTLP crate's JSON
//! mapping neither writes nor reads. Stand-ins carry them through that mapping.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

/// Each stand-in (a finite double no exporter writes in practice) and the double it
/// stands for, with that double's proto3 JSON text.
pub(crate) const STAND_INS: [(f64, f64, &str); 3] = [
    (f64::MIN_POSITIVE, f64::NAN, "\"NaN\""),
    (-f64::MIN_POSITIVE, f64::INFINITY, "\"Infinity\""),
    (5e-324, f64::NEG_INFINITY, "\"-Infinity\""),
];

/// The stand-in for `d`, which is not finite.
pub(crate) fn stand_in(d: f64) -> f64 {
    STAND_INS
        .iter()
        .find(|(_, real, _)| real.to_bits() == d.to_bits() || (d.is_nan() && real.is_nan()))
        .map_or(STAND_INS[0].0, |(s, _, _)| *s)
}

/// Whether `d` is one of the stand-ins.
pub(crate) fn is_stand_in(d: f64) -> bool {
    STAND_INS.iter().any(|(s, _, _)| s.to_bits() == d.to_bits())
}

/// Calls `f` on every double of every attribute value of `request`: resources,
/// scopes, spans, events, links, and the arrays and lists inside them.
pub(crate) fn each_double(request: &mut ExportTraceServiceRequest, f: &mut dyn FnMut(&mut f64)) {
    fn value(v: &mut AnyValue, f: &mut dyn FnMut(&mut f64)) {
        match &mut v.value {
            Some(Kind::DoubleValue(d)) => f(d),
            Some(Kind::ArrayValue(a)) => a.values.iter_mut().for_each(|v| value(v, f)),
            Some(Kind::KvlistValue(l)) => attributes(&mut l.values, f),
            _ => {}
        }
    }
    fn attributes(list: &mut [KeyValue], f: &mut dyn FnMut(&mut f64)) {
        for v in list.iter_mut().filter_map(|kv| kv.value.as_mut()) {
            value(v, f);
        }
    }
    for rs in &mut request.resource_spans {
        if let Some(resource) = &mut rs.resource {
            attributes(&mut resource.attributes, f);
        }
        for ss in &mut rs.scope_spans {
            if let Some(scope) = &mut ss.scope {
                attributes(&mut scope.attributes, f);
            }
            for span in &mut ss.spans {
                attributes(&mut span.attributes, f);
                for event in &mut span.events {
                    attributes(&mut event.attributes, f);
                }
                for link in &mut span.links {
                    attributes(&mut link.attributes, f);
                }
            }
        }
    }
}

/// Why a request could not be written as OTLP JSON.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteJsonError {
    /// A real double equals a stand-in next to one it would stand for.
    #[error("a double equals the stand-in for NaN or Infinity and cannot be written")]
    StandInTaken,
    /// serde_json could not write it.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// What was written is not UTF-8.
    #[error(transparent)]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// `request` as OTLP JSON text, every double as it is: one with no JSON number form
/// as its proto3 string. An error when a real double equals a stand-in next to one
/// it would stand for (it could not be told apart).
/// `size`: about how long the text will be (its capacity).
pub(crate) fn request_json(
    request: &mut ExportTraceServiceRequest,
    size: usize,
) -> Result<String, WriteJsonError> {
    let (mut special, mut taken) = (false, false);
    each_double(request, &mut |d| {
        special |= !d.is_finite();
        taken |= is_stand_in(*d);
    });
    if special && taken {
        return Err(WriteJsonError::StandInTaken);
    }
    if special {
        each_double(request, &mut |d| {
            if !d.is_finite() {
                *d = stand_in(*d);
            }
        });
    }
    let mut written = Vec::with_capacity(size);
    let written = serde_json::to_writer(&mut written, &*request)
        .map_err(WriteJsonError::from)
        .and_then(|()| String::from_utf8(written).map_err(WriteJsonError::from));
    if !special {
        return written;
    }
    each_double(request, &mut |d| {
        if let Some((_, real, _)) = STAND_INS
            .iter()
            .find(|(s, _, _)| s.to_bits() == d.to_bits())
        {
            *d = *real;
        }
    });
    let mut text = written?;
    for (stand_in, _, real) in STAND_INS {
        let number = serde_json::to_string(&stand_in)?;
        text = text.replace(
            &format!("\"doubleValue\":{number}"),
            &format!("\"doubleValue\":{real}"),
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn request(values: &[f64]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        attributes: values
                            .iter()
                            .map(|d| KeyValue {
                                key: "d".to_owned(),
                                value: Some(AnyValue {
                                    value: Some(Kind::DoubleValue(*d)),
                                }),
                                ..KeyValue::default()
                            })
                            .collect(),
                        ..Span::default()
                    }],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    #[test]
    fn non_finite_doubles_are_written_as_their_strings_and_kept() {
        let mut r = request(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.5]);
        let text = request_json(&mut r, 0).expect("written");
        assert!(text.contains(r#""doubleValue":"NaN""#), "{text}");
        assert!(text.contains(r#""doubleValue":"Infinity""#), "{text}");
        assert!(text.contains(r#""doubleValue":"-Infinity""#), "{text}");
        assert!(text.contains(r#""doubleValue":1.5"#), "{text}");
        // The request itself is as it was.
        let mut doubles = Vec::new();
        each_double(&mut r, &mut |d| doubles.push(*d));
        assert!(doubles[0].is_nan());
        assert_eq!(&doubles[1..], &[f64::INFINITY, f64::NEG_INFINITY, 1.5]);
        // A real stand-in next to a non-finite double cannot be written.
        assert!(request_json(&mut request(&[f64::NAN, 5e-324]), 0).is_err());
        assert!(request_json(&mut request(&[5e-324]), 0).is_ok());
    }
}
