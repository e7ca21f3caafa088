//! `genai_audit._native`: the Rust engine of `genai-audit` for Python.
//!
//! The pure-Python package `genai_audit` (its `GenAiAuditSpanProcessor`) is the
//! public face; this module gives it one class, [`NativeEngine`], whose `start` and
//! `end` take the Python SDK's span objects, read from them only what the engine
//! needs (ids, parent, name, times, and the attributes whose keys the engine reads),
//! and answer in plain Python values: the writes, whether to forward, the spans the
//! audit closed and the metric and budget events.
//!
//! Nothing here panics across the boundary: every entry point runs under
//! `catch_unwind`, and a panic comes back as a `RuntimeError` the Python layer logs.
//! The GIL is held throughout (the engine's calls take microseconds; releasing it
//! would cost more than it saves), and the engine never calls into Python.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use genai_audit::engine::{
    AuditEvent, ClosedSpan, Engine, Parent, SpanEnd, SpanStart, Verdict, Writes,
};
use genai_audit::{Budget, ContaminationPolicy, GenAiPrices, LeakPolicy, Role, RoleRule};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

/// The most distinct attribute keys whose answer to [`Engine::reads`] is remembered
/// (beyond it, the engine is asked each time).
const READS_CACHE_LIMIT: usize = 4096;

/// The engine, for the Python processor.
#[pyclass(frozen, module = "genai_audit._native")]
struct NativeEngine {
    /// Boxed: the engine is aligned to cache lines (128 bytes), more than the memory
    /// Python allocates its objects in.
    engine: Box<Engine>,
    /// `key -> bool`: whether the engine reads it (a dict keyed by the span's own key
    /// objects, so a lookup hashes nothing anew).
    reads: Py<PyDict>,
}

/// Runs `f`, turning a panic into a `RuntimeError`.
fn guarded<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => Err(PyRuntimeError::new_err("genai-audit engine panicked")),
    }
}

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// A time in nanoseconds, as the SDK keeps it (an int; `None` when unset or not one):
/// checked before extraction, since a failed extraction costs a Python exception.
fn time_of(t: &Bound<'_, PyAny>) -> Option<u64> {
    if t.is_none() || !t.is_instance_of::<PyInt>() {
        return None;
    }
    t.extract::<u64>().ok()
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn parse_role(role: &str) -> PyResult<Role> {
    let wanted = role.trim();
    Role::ALL
        .into_iter()
        .find(|r| r.as_str().eq_ignore_ascii_case(wanted))
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown role {role:?}: expected one of invocation, step, generation, embedding, tool, workflow, retrieval, other"
            ))
        })
}

/// A Python attribute value as the engine sees it; `None` for what the SDK would not
/// keep either (None, dicts, objects).
fn value_of(v: &Bound<'_, PyAny>) -> Option<Value> {
    if let Ok(s) = v.cast::<PyString>() {
        return s.to_str().ok().map(|s| Value::from(s.to_owned()));
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Some(Value::Bool(b.is_true()));
    }
    if let Ok(i) = v.cast::<PyInt>() {
        return Some(match i.extract::<i64>() {
            Ok(i) => Value::I64(i),
            // Too large for an i64: its decimal digits (the engine finds it unusable
            // as usage, as it would any count past 2^53).
            Err(_) => Value::from(i.str().ok()?.to_str().ok()?.to_owned()),
        });
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return Some(Value::F64(f.value()));
    }
    if v.is_instance_of::<PyTuple>() || v.is_instance_of::<PyList>() {
        return array_of(v);
    }
    None
}

/// A homogeneous sequence, typed by its first element; elements of another type are
/// left out.
fn array_of(seq: &Bound<'_, PyAny>) -> Option<Value> {
    let items: Vec<Value> = seq
        .try_iter()
        .ok()?
        .filter_map(|item| item.ok().and_then(|item| value_of(&item)))
        .collect();
    /// The items of one kind, when the first is of that kind.
    fn all<T>(items: &[Value], pick: impl Fn(&Value) -> Option<T>) -> Vec<T> {
        items.iter().filter_map(pick).collect()
    }
    let array = match items.first() {
        None => Array::String(Vec::new()),
        Some(Value::Bool(_)) => Array::Bool(all(&items, |v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        })),
        Some(Value::I64(_)) => Array::I64(all(&items, |v| match v {
            Value::I64(i) => Some(*i),
            _ => None,
        })),
        Some(Value::F64(_)) => Array::F64(all(&items, |v| match v {
            Value::F64(f) => Some(*f),
            _ => None,
        })),
        Some(_) => Array::String(
            items
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect::<Vec<StringValue>>(),
        ),
    };
    Some(Value::Array(array))
}

/// A value written by the engine, as a Python attribute value (arrays: tuples).
fn py_value<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::I64(i) => i.into_bound_py_any(py)?,
        Value::F64(f) => f.into_bound_py_any(py)?,
        Value::String(s) => PyString::new(py, s.as_str()).into_any(),
        Value::Array(Array::Bool(a)) => PyTuple::new(py, a)?.into_any(),
        Value::Array(Array::I64(a)) => PyTuple::new(py, a)?.into_any(),
        Value::Array(Array::F64(a)) => PyTuple::new(py, a)?.into_any(),
        Value::Array(Array::String(a)) => {
            PyTuple::new(py, a.iter().map(|s| s.as_str()))?.into_any()
        }
        other => PyString::new(py, &other.to_string()).into_any(),
    })
}

fn py_writes<'py>(py: Python<'py>, writes: Writes) -> PyResult<Option<Bound<'py, PyDict>>> {
    if writes.is_empty() {
        return Ok(None);
    }
    let dict = PyDict::new(py);
    for kv in writes.iter() {
        dict.set_item(kv.key.as_str(), py_value(py, &kv.value)?)?;
    }
    Ok(Some(dict))
}

fn py_closed<'py>(py: Python<'py>, closed: Vec<ClosedSpan>) -> PyResult<Bound<'py, PyAny>> {
    let list = PyList::empty(py);
    for span in closed {
        let description = match &span.status {
            Status::Error { description } => description.to_string(),
            _ => String::new(),
        };
        let trace_id = u128::from_be_bytes(span.trace_id.to_bytes());
        let span_id = u64::from_be_bytes(span.span_id.to_bytes());
        let writes = py_writes(py, span.writes)?;
        list.append((
            trace_id,
            span_id,
            span.name,
            nanos(span.end_time),
            description,
            writes,
        ))?;
    }
    Ok(list.into_any())
}

/// The events as tuples, tagged by their first element:
/// `("finding", code, role, repaired)`,
/// `("call", provider, model, agent, cost_usd, cost_source, operation, response_model, input_tokens, output_tokens)`,
/// `("invocation", agent, cost_usd, input_tokens, output_tokens)`,
/// `("budget", agent, trace_id, span_id, input_tokens, output_tokens, cost_usd, generations, budget_usd, budget_tokens)`.
fn py_events<'py>(py: Python<'py>, events: Vec<AuditEvent>) -> PyResult<Bound<'py, PyAny>> {
    let list = PyList::empty(py);
    for event in events {
        let item = match event {
            AuditEvent::Finding {
                code,
                role,
                repaired,
            } => ("finding", code.as_str(), role.as_str(), repaired).into_bound_py_any(py)?,
            AuditEvent::Call(call) => (
                "call",
                call.provider,
                call.model,
                call.agent,
                call.cost_usd,
                call.cost_source,
                call.operation,
                call.response_model,
                call.input_tokens,
                call.output_tokens,
            )
                .into_bound_py_any(py)?,
            AuditEvent::Invocation(inv) => (
                "invocation",
                inv.agent,
                inv.cost_usd,
                inv.input_tokens,
                inv.output_tokens,
            )
                .into_bound_py_any(py)?,
            AuditEvent::BudgetExceeded(b) => (
                "budget",
                b.agent_name().map(str::to_owned),
                u128::from_be_bytes(b.trace_id().to_bytes()),
                u64::from_be_bytes(b.invocation_span_id().to_bytes()),
                b.input_tokens(),
                b.output_tokens(),
                b.cost_usd(),
                b.generations(),
                b.budget().usd_limit(),
                b.budget().token_limit(),
            )
                .into_bound_py_any(py)?,
        };
        list.append(item)?;
    }
    Ok(list.into_any())
}

/// The verdict as `None` (forward untouched, nothing else) or
/// `(writes or None, forward, closed or None, events or None)`; with `merge_into`
/// (the span's attributes), the writes come as all its attributes with them applied.
fn py_verdict<'py>(
    py: Python<'py>,
    verdict: Verdict,
    merge_into: Option<&Items<'py>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if verdict.forward
        && verdict.writes.is_empty()
        && verdict.closed.is_empty()
        && verdict.events.is_empty()
    {
        return Ok(None);
    }
    let forward = verdict.forward;
    let writes = match merge_into {
        Some(items) if !verdict.writes.is_empty() => {
            let merged = PyDict::from_sequence(items.as_any())?;
            for kv in verdict.writes.iter() {
                merged.set_item(kv.key.as_str(), py_value(py, &kv.value)?)?;
            }
            Some(merged)
        }
        _ => py_writes(py, verdict.writes)?,
    };
    let closed = if verdict.closed.is_empty() {
        None
    } else {
        Some(py_closed(py, verdict.closed)?)
    };
    let events = if verdict.events.is_empty() {
        None
    } else {
        Some(py_events(py, verdict.events)?)
    };
    Ok(Some(
        (writes, forward, closed, events).into_bound_py_any(py)?,
    ))
}

/// What the engine needs of a Python span.
struct PySpanView {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Parent,
    name: String,
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    attributes: Vec<KeyValue>,
}

/// The span's attributes as `(key, value)` pairs, as read.
type Items<'py> = Bound<'py, PyList>;

impl NativeEngine {
    /// Whether the engine reads `key`, remembered per key object.
    fn reads(&self, py: Python<'_>, key: &Bound<'_, PyString>) -> bool {
        let cache = self.reads.bind(py);
        if let Ok(Some(known)) = cache.get_item(key) {
            return known.is_truthy().unwrap_or(false);
        }
        let Ok(text) = key.to_str() else {
            return false;
        };
        let reads = self.engine.reads(text);
        if cache.len() < READS_CACHE_LIMIT {
            let _ = cache.set_item(key, reads);
        }
        reads
    }

    /// The attributes of `span` the engine reads (`span._attributes`, a plain dict or
    /// the SDK's `BoundedAttributes` over one; else `span.attributes`, any mapping).
    fn attributes<'py>(
        &self,
        py: Python<'py>,
        span: &Bound<'py, PyAny>,
    ) -> PyResult<(Vec<KeyValue>, Bound<'py, PyList>)> {
        let mut dict: Option<Bound<'py, PyDict>> = None;
        // The SDK's spans keep a `BoundedAttributes` (over a plain dict, `_dict`) or a
        // dict in `_attributes`; anything else is read through `attributes`.
        if let Ok(attrs) = span.getattr(intern!(py, "_attributes")) {
            if let Ok(d) = attrs.cast::<PyDict>() {
                dict = Some(d.clone());
            } else if !attrs.is_none() {
                if let Ok(inner) = attrs.getattr(intern!(py, "_dict")) {
                    if let Ok(d) = inner.cast::<PyDict>() {
                        dict = Some(d.clone());
                    }
                }
            }
        }
        // A snapshot of the items (one C call): converting a value never runs while the
        // span's own dict could change under it.
        let items: Bound<'py, PyList> = match dict {
            Some(d) => d.items(),
            None => {
                let attrs = span.getattr(intern!(py, "attributes"))?;
                if attrs.is_none() {
                    return Ok((Vec::new(), PyList::empty(py)));
                }
                PyDict::from_sequence(&attrs.call_method0(intern!(py, "items"))?)?.items()
            }
        };
        let mut out = Vec::new();
        for item in items.iter() {
            let Ok(pair) = item.cast::<PyTuple>() else {
                continue;
            };
            let (Ok(key), Ok(value)) = (pair.get_item(0), pair.get_item(1)) else {
                continue;
            };
            let Ok(key) = key.cast::<PyString>() else {
                continue;
            };
            if !self.reads(py, key) {
                continue;
            }
            let (Ok(text), Some(value)) = (key.to_str(), value_of(&value)) else {
                continue;
            };
            out.push(KeyValue::new(text.to_owned(), value));
        }
        Ok((out, items))
    }

    fn view<'py>(
        &self,
        py: Python<'py>,
        span: &Bound<'py, PyAny>,
        at_end: bool,
    ) -> PyResult<(PySpanView, Items<'py>)> {
        // The SDK's spans keep their fields in `_context`, `_parent`, `_name`, ... (read
        // directly: the public properties are Python functions); a `SpanContext` is a
        // tuple (trace_id, span_id, is_remote, ...). Anything else goes through the
        // public API.
        let fast = span.getattr(intern!(py, "_context")).ok().and_then(|c| {
            let c = c.cast_into::<PyTuple>().ok()?;
            (c.len() >= 3).then_some(c)
        });
        let (trace_id, span_id) = match &fast {
            Some(c) => (
                c.get_item(0)?.extract::<u128>()?,
                c.get_item(1)?.extract::<u64>()?,
            ),
            None => {
                let context = span.getattr(intern!(py, "context"))?;
                (
                    context.getattr(intern!(py, "trace_id"))?.extract()?,
                    context.getattr(intern!(py, "span_id"))?.extract()?,
                )
            }
        };
        let parent = if fast.is_some() {
            span.getattr(intern!(py, "_parent"))?
        } else {
            span.getattr(intern!(py, "parent"))?
        };
        let parent = if parent.is_none() {
            Parent::Root
        } else {
            let (id, remote) = match parent.cast::<PyTuple>() {
                Ok(p) if p.len() >= 3 => (
                    p.get_item(1)?.extract::<u64>()?,
                    p.get_item(2)?.is_truthy()?,
                ),
                _ => (
                    parent.getattr(intern!(py, "span_id"))?.extract::<u64>()?,
                    parent
                        .getattr(intern!(py, "is_remote"))
                        .and_then(|r| r.is_truthy())
                        .unwrap_or(false),
                ),
            };
            match (id, remote) {
                (0, _) => Parent::Root,
                (id, true) => Parent::Remote(SpanId::from(id)),
                (id, false) => Parent::Local(SpanId::from(id)),
            }
        };
        let field = |private: &Bound<'py, PyString>, public: &Bound<'py, PyString>| {
            if fast.is_some() {
                span.getattr(private)
            } else {
                span.getattr(public)
            }
        };
        let name = field(intern!(py, "_name"), intern!(py, "name"))?
            .cast::<PyString>()
            .ok()
            .and_then(|s| s.to_str().ok().map(str::to_owned))
            .unwrap_or_default();
        let start_ns = time_of(&field(
            intern!(py, "_start_time"),
            intern!(py, "start_time"),
        )?);
        let end_ns = if at_end {
            time_of(&field(intern!(py, "_end_time"), intern!(py, "end_time"))?)
        } else {
            None
        };
        let (attributes, items) = self.attributes(py, span)?;
        Ok((
            PySpanView {
                trace_id: TraceId::from(trace_id),
                span_id: SpanId::from(span_id),
                parent,
                name,
                start_ns,
                end_ns,
                attributes,
            },
            items,
        ))
    }
}

#[pymethods]
impl NativeEngine {
    /// Builds the engine. Every argument is optional (`None`: the environment, then the
    /// default); invalid values raise `ValueError`. `rules`: `(kind, a, b, role)` with
    /// kind `name_prefix` (a: the prefix) or `attribute` (a: key, b: value).
    #[new]
    #[pyo3(signature = (*, leak_policy=None, contamination_policy=None, prices_file=None,
        max_tracked_spans=None, max_span_age_secs=None, budget_usd=None, budget_tokens=None,
        rules=Vec::new(), disabled=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        leak_policy: Option<&str>,
        contamination_policy: Option<&str>,
        prices_file: Option<std::path::PathBuf>,
        max_tracked_spans: Option<u64>,
        max_span_age_secs: Option<u64>,
        budget_usd: Option<f64>,
        budget_tokens: Option<u64>,
        rules: Vec<(String, String, Option<String>, String)>,
        disabled: Option<bool>,
        py: Python<'_>,
    ) -> PyResult<Self> {
        guarded(|| {
            let mut builder = Engine::builder();
            if let Some(p) = leak_policy {
                let p: LeakPolicy = p
                    .parse()
                    .map_err(|e| PyValueError::new_err(format!("leak_policy: {e}")))?;
                builder = builder.leak_policy(p);
            }
            if let Some(p) = contamination_policy {
                let p: ContaminationPolicy = p
                    .parse()
                    .map_err(|e| PyValueError::new_err(format!("contamination_policy: {e}")))?;
                builder = builder.contamination_policy(p);
            }
            if let Some(n) = max_tracked_spans {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| PyValueError::new_err("max_tracked_spans must be at least 1"))?;
                builder = builder.with_max_tracked_spans(n);
            }
            if let Some(s) = max_span_age_secs {
                if s < 1 {
                    return Err(PyValueError::new_err(
                        "max_span_age_secs must be at least 1",
                    ));
                }
                builder = builder.with_max_span_age(Duration::from_secs(s));
            }
            if let Some(path) = prices_file {
                let prices = GenAiPrices::from_file(&path).map_err(|e| {
                    PyValueError::new_err(format!("prices_file {}: {e}", path.display()))
                })?;
                builder = builder.with_pricer(prices);
            }
            let budget = match (budget_usd, budget_tokens) {
                (None, None) => None,
                (Some(usd), tokens) => {
                    if !(usd.is_finite() && usd > 0.0) {
                        return Err(PyValueError::new_err(
                            "budget_usd must be a finite number above 0",
                        ));
                    }
                    Some(Budget::usd(usd)).map(|b| match tokens {
                        Some(t) => b.with_tokens(t),
                        None => b,
                    })
                }
                (None, Some(t)) => Some(Budget::tokens(t)),
            };
            if let Some(budget) = budget {
                if budget.token_limit() == Some(0) {
                    return Err(PyValueError::new_err("budget_tokens must be at least 1"));
                }
                builder = builder.with_budget(budget);
            }
            for (kind, a, b, role) in rules {
                let role = parse_role(&role)?;
                let rule = match (kind.as_str(), b) {
                    ("name_prefix", _) => RoleRule::name_prefix(a, role),
                    ("attribute", Some(value)) => RoleRule::attribute(a, value, role),
                    _ => {
                        return Err(PyValueError::new_err(format!(
                            "unknown rule kind {kind:?}: expected name_prefix or attribute (with a value)"
                        )))
                    }
                };
                builder = builder.with_role_rule(rule);
            }
            if let Some(d) = disabled {
                builder = builder.with_disabled(d);
            }
            Ok(NativeEngine {
                engine: Box::new(builder.build()),
                reads: PyDict::new(py).unbind(),
            })
        })
    }

    /// Whether the engine audits (false: disabled, every span passes untouched).
    fn is_enabled(&self) -> bool {
        self.engine.is_enabled()
    }

    /// Whether the engine may read attribute `key`.
    fn reads_key(&self, key: &str) -> bool {
        self.engine.reads(key)
    }

    /// How many spans the engine keeps state for.
    fn tracked_spans(&self) -> usize {
        self.engine.tracked_spans()
    }

    /// A span started (an SDK `Span`); `now_ns`: the time now. Returns `None` or
    /// `(writes, forward, closed, events)` (see the module).
    #[pyo3(signature = (span, now_ns=None))]
    fn start<'py>(
        &self,
        py: Python<'py>,
        span: &Bound<'py, PyAny>,
        now_ns: Option<u64>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        guarded(|| {
            let now_ns = now_ns.unwrap_or_else(|| nanos(SystemTime::now()));
            let (view, _) = self.view(py, span, false)?;
            let verdict = self.engine.start(&SpanStart {
                trace_id: view.trace_id,
                span_id: view.span_id,
                parent: view.parent,
                name: &view.name,
                kind: SpanKind::Internal,
                start_time: time(view.start_ns.unwrap_or(now_ns)),
                attributes: &view.attributes,
                now: time(now_ns),
            });
            py_verdict(py, verdict, None)
        })
    }

    /// A span ended (a `ReadableSpan`); `now_ns`: the time now (default: the system
    /// clock). Returns `None` (forward it untouched) or
    /// `(attributes, forward, closed, events)`, `attributes` being all of the span's
    /// attributes with the writes applied (a new dict), or `None` without writes.
    #[pyo3(signature = (span, now_ns=None))]
    fn end<'py>(
        &self,
        py: Python<'py>,
        span: &Bound<'py, PyAny>,
        now_ns: Option<u64>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        guarded(|| {
            let now_ns = now_ns.unwrap_or_else(|| nanos(SystemTime::now()));
            let (view, items) = self.view(py, span, true)?;
            let start = view.start_ns.unwrap_or(now_ns);
            let verdict = self.engine.end(&SpanEnd {
                trace_id: view.trace_id,
                span_id: view.span_id,
                parent: view.parent,
                name: &view.name,
                kind: SpanKind::Internal,
                start_time: time(start),
                end_time: time(view.end_ns.unwrap_or(now_ns).max(start)),
                status: &Status::Unset,
                attributes: &view.attributes,
                now: time(now_ns),
            });
            py_verdict(py, verdict, Some(&items))
        })
    }

    /// Shuts the engine down: what is still open is evicted (`stale`), and closed under
    /// leak policy `close`. Returns `None` or `(None, True, closed, events)`.
    fn shutdown<'py>(&self, py: Python<'py>, now_ns: u64) -> PyResult<Option<Bound<'py, PyAny>>> {
        guarded(|| py_verdict(py, self.engine.shutdown(time(now_ns)), None))
    }
}

/// The module `genai_audit._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeEngine>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
