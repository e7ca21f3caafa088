//! Support for the tests of the `genai-audit` command (feature `cli`): running the
//! binary, temporary files, and converting trace scripts to OTLP JSON with the OTLP
//! crate's own types (`opentelemetry-proto`'s transform and serde mapping).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

use genai_audit::script::TraceScript;
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
use opentelemetry_sdk::Resource;

/// Runs `genai-audit` with `args` (no `GENAI_AUDIT_*` variables of the test's own).
pub fn run(args: &[&str]) -> Output {
    run_with(args, &[], None)
}

/// Runs `genai-audit` with `args`, these environment variables, and `stdin`.
pub fn run_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let program = std::path::Path::new(env!("CARGO_BIN_EXE_genai-audit"));
    crate::common::run_program(program, args, env, stdin)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fresh path in a temporary directory of this test run.
pub fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("genai-audit-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(format!("{}-{name}", NEXT.fetch_add(1, Ordering::SeqCst)))
}

/// Writes `text` to a fresh temporary file and returns its path.
pub fn temp_file(name: &str, text: &str) -> String {
    let path = temp_path(name);
    std::fs::write(&path, text).expect("write temp file");
    path.to_string_lossy().into_owned()
}

pub fn recording(path: &str) -> String {
    format!("{}/tests/recordings/{path}", env!("CARGO_MANIFEST_DIR"))
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A trace script's spans as an application's batch exporter would send them: the
/// spans that ended, in end order, without any audit.
pub struct Exported {
    /// The ended spans, in end order.
    pub spans: Vec<SpanData>,
    /// Script label of each span id.
    pub labels: HashMap<SpanId, String>,
}

/// Replays `script` through a plain SDK pipeline (no audit) and keeps what it exported.
pub fn export_script(script: &str) -> Exported {
    let script = TraceScript::parse(script).expect("valid script");
    let keep = crate::common::Recorder::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(keep.clone())
        .build();
    let replay = script.replay(&provider.tracer("recording"));
    let labels = replay
        .labels()
        .map(|(label, id)| (id, label.to_owned()))
        .collect();
    provider.shutdown().expect("shutdown");
    drop(replay);
    let spans = keep.ended();
    Exported { spans, labels }
}

fn resource(service: &str) -> ResourceAttributesWithSchema {
    ResourceAttributesWithSchema::from(
        &Resource::builder_empty()
            .with_attributes([KeyValue::new("service.name", service.to_owned())])
            .build(),
    )
}

/// Requests of at most `per_request` spans each, in the order given, one resource.
pub fn requests(
    spans: &[SpanData],
    per_request: usize,
    service: &str,
) -> Vec<ExportTraceServiceRequest> {
    let resource = resource(service);
    spans
        .chunks(per_request.max(1))
        .map(|chunk| ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(chunk.to_vec(), &resource),
        })
        .collect()
}

/// OTLP JSON lines of `requests`, with the OTLP crate's serde mapping.
pub fn json_lines(requests: &[ExportTraceServiceRequest]) -> String {
    let mut out = String::new();
    for request in requests {
        out.push_str(&serde_json::to_string(request).expect("serialise"));
        out.push('\n');
    }
    out
}

/// Every request of OTLP JSON lines (the forms the OTLP crate's serde mapping does not
/// read, which `enrich` keeps as they were written, normalised first).
pub fn parse_lines(text: &str) -> Vec<ExportTraceServiceRequest> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|_| {
                let mut json: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                normalise(&mut json, None);
                serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}: {l}"))
            })
        })
        .collect()
}

/// Rewrites valid OTLP JSON the typed mapping does not read: `null` members removed,
/// integers written as strings as numbers, enum names as their numbers, hex in
/// lowercase.
fn normalise(json: &mut serde_json::Value, key: Option<&str>) {
    use serde_json::Value as Json;
    match json {
        Json::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for (k, v) in map.iter_mut() {
                normalise(v, Some(k.as_str()));
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|i| normalise(i, None)),
        Json::String(s) => {
            let names = [
                "UNSPECIFIED",
                "INTERNAL",
                "SERVER",
                "CLIENT",
                "PRODUCER",
                "CONSUMER",
            ];
            let codes = ["UNSET", "OK", "ERROR"];
            let number = match key {
                Some("kind") => s
                    .strip_prefix("SPAN_KIND_")
                    .and_then(|n| names.iter().position(|x| *x == n)),
                Some("code") => s
                    .strip_prefix("STATUS_CODE_")
                    .and_then(|n| codes.iter().position(|x| *x == n)),
                Some(
                    "droppedAttributesCount" | "droppedEventsCount" | "droppedLinksCount" | "flags",
                ) => s.parse::<usize>().ok(),
                _ => None,
            };
            if let Some(n) = number {
                *json = Json::from(n);
            } else if matches!(key, Some("traceId" | "spanId" | "parentSpanId")) {
                *s = s.to_lowercase();
            }
        }
        Json::Number(n)
            if matches!(
                key,
                Some("startTimeUnixNano" | "endTimeUnixNano" | "timeUnixNano")
            ) =>
        {
            *json = Json::String(n.to_string());
        }
        _ => {}
    }
}

/// Every span of some requests, in order.
pub fn spans_of(requests: &[ExportTraceServiceRequest]) -> Vec<OtlpSpan> {
    requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| ss.spans.iter().cloned())
        .collect()
}

pub fn span_id_of(span: &OtlpSpan) -> SpanId {
    SpanId::from_bytes(span.span_id.as_slice().try_into().expect("8-byte span id"))
}

/// The `genai_audit.*` attributes of an OTLP span, as (key, display value), sorted.
pub fn audit_attributes(span: &OtlpSpan) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = span
        .attributes
        .iter()
        .filter(|kv| kv.key.starts_with("genai_audit."))
        .map(|kv| {
            (
                kv.key.clone(),
                any_text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
            )
        })
        .collect();
    out.sort();
    out
}

/// The `genai_audit.*` attributes of an SDK span, displayed like [`audit_attributes`].
pub fn sdk_audit_attributes(span: &SpanData) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = span
        .attributes
        .iter()
        .filter(|kv| kv.key.as_str().starts_with("genai_audit."))
        .map(|kv| (kv.key.to_string(), api_text(&kv.value)))
        .collect();
    out.sort();
    out
}

fn api_text(value: &opentelemetry::Value) -> String {
    use opentelemetry::{Array, Value};
    match value {
        Value::Array(Array::String(items)) => {
            let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
            format!("[{}]", items.join(","))
        }
        Value::Array(Array::I64(items)) => format!("{items:?}"),
        Value::Array(Array::F64(items)) => format!("{items:?}"),
        Value::Array(Array::Bool(items)) => format!("{items:?}"),
        Value::F64(v) => format!("{v:?}"),
        other => other.to_string(),
    }
}

fn any_text(value: Option<&Any>) -> String {
    match value {
        None => String::new(),
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::DoubleValue(d)) => format!("{d:?}"),
        Some(Any::ArrayValue(a)) => {
            let items: Vec<String> = a
                .values
                .iter()
                .map(|v| any_text(v.value.as_ref()))
                .collect();
            format!("[{}]", items.join(","))
        }
        Some(other) => format!("{other:?}"),
    }
}

/// The findings of an OTLP span.
pub fn findings(span: &OtlpSpan) -> Vec<String> {
    span.attributes
        .iter()
        .rev()
        .find(|kv| kv.key == "genai_audit.findings")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Any::ArrayValue(a) => Some(
                a.values
                    .iter()
                    .map(|v| any_text(v.value.as_ref()))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// The last value of an attribute of an OTLP span, displayed.
pub fn attr(span: &OtlpSpan, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .rev()
        .find(|kv| kv.key == key)
        .map(|kv| any_text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
}

/// The span named `name` (the first).
pub fn named<'a>(spans: &'a [OtlpSpan], name: &str) -> &'a OtlpSpan {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name}"))
}

/// `enrich` of `files` into a temporary file; returns the requests written.
pub fn enrich(files: &[&str], extra: &[&str]) -> Vec<ExportTraceServiceRequest> {
    let out = temp_path("enriched.json");
    let out = out.to_string_lossy().into_owned();
    let mut args = vec!["enrich"];
    args.extend_from_slice(files);
    args.extend_from_slice(&["-o", &out]);
    args.extend_from_slice(extra);
    let output = run(&args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "enrich failed: {}",
        stderr(&output)
    );
    parse_lines(&read(&out))
}

/// `check --json` of `files`: (exit code, summary).
pub fn check_json(files: &[&str], extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["check", "--json"];
    args.extend_from_slice(files);
    args.extend_from_slice(extra);
    let output = run(&args);
    let summary = serde_json::from_str(stdout(&output).trim())
        .unwrap_or_else(|e| panic!("{e}: {} / {}", stdout(&output), stderr(&output)));
    (output.status.code().unwrap_or(-1), summary)
}
