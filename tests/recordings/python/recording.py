"""What every recording harness here shares: a span processor that records the
OpenTelemetry Python SDK's callbacks as trace-script events, and the writers of the
trace script and of OTLP JSON (as the OTLP encoder of `opentelemetry-exporter-otlp`
builds it, ids in hex).

A harness imports it with its own folder's parent on `sys.path`:

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from recording import RecordingProcessor, write_script, write_otlp
"""

import base64
import json
import sys
import threading
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

KIND = {
    SpanKind.INTERNAL: "internal",
    SpanKind.CLIENT: "client",
    SpanKind.SERVER: "server",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
}
STATUS = {StatusCode.UNSET: "unset", StatusCode.OK: "ok", StatusCode.ERROR: "error"}


def _value(v):
    if isinstance(v, (tuple, list)):
        return [_value(x) for x in v]
    return v


def attributes_of(attributes):
    """A span's attributes as plain JSON values (sequences as lists)."""
    return {k: _value(v) for k, v in (attributes or {}).items()}


def hex_span(span_id):
    """A span id as the 16 hex digits a trace script labels it with."""
    return format(span_id, "016x")


def current_span_hex():
    """The current span's label, if there is a current span."""
    ctx = trace.get_current_span().get_span_context()
    return hex_span(ctx.span_id) if ctx.is_valid else None


class RecordingProcessor(SpanProcessor):
    """Records each span's start (with its attributes then), the attributes set or
    changed by its end, and its end, in the order the SDK calls back; keeps the ended
    spans, in end order, for the OTLP file."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []  # trace script events in SDK callback order
        self.start_attrs = {}  # span label -> attributes at start
        self.ended = []  # ReadableSpans in end order

    def on_start(self, span, parent_context=None):
        label = hex_span(span.get_span_context().span_id)
        parent = hex_span(span.parent.span_id) if span.parent is not None else None
        attrs = attributes_of(span.attributes)
        ev = {
            "op": "start",
            "span": label,
            "parent": parent,
            "name": span.name,
            "kind": KIND[span.kind],
            "time_ns": span.start_time,
            "attributes": attrs,
        }
        with self.lock:
            self.start_attrs[label] = dict(attrs)
            self.events.append(ev)

    def on_end(self, span):
        label = hex_span(span.get_span_context().span_id)
        final = attributes_of(span.attributes)
        with self.lock:
            before = self.start_attrs.get(label, {})
            changed = {k: v for k, v in final.items() if k not in before or before[k] != v}
            removed = [k for k in before if k not in final]
            if removed:  # not expressible in a trace script: said loudly
                print(f"WARNING: span {label} lost attributes {removed}", file=sys.stderr)
            if changed:
                self.events.append({"op": "set", "span": label, "attributes": changed})
            end = {"op": "end", "span": label, "time_ns": span.end_time,
                   "status": STATUS[span.status.status_code]}
            if span.status.description:
                end["status_message"] = span.status.description
            self.events.append(end)
            self.ended.append(span)

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def write_script(path, events, header=None):
    """The trace script: an optional `#` header line, then one event a line."""
    with open(path, "w") as f:
        if header is not None:
            f.write("# " + header + "\n")
        for ev in events:
            f.write(json.dumps(ev, separators=(",", ":")) + "\n")


def write_recording(processor, header, script_path, otlp_path, log, log_path):
    """A harness's three files: the trace script (after a `#` line `header`), OTLP
    JSON one request per trace, and the harness log (`log`, one record a line); then
    says how many spans started and ended."""
    write_script(script_path, processor.events, header)
    write_otlp(otlp_path, processor.ended)
    with open(log_path, "w") as f:
        for rec in log:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
    started = {e["span"] for e in processor.events if e["op"] == "start"}
    ended = {e["span"] for e in processor.events if e["op"] == "end"}
    print("spans started:", len(started), "ended:", len(ended), "never ended:", sorted(started - ended))


def _hex_ids(obj):
    if isinstance(obj, dict):
        return {k: base64.b64decode(v).hex()
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
                else _hex_ids(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_hex_ids(x) for x in obj]
    return obj


def otlp_json(spans):
    """`spans` as one OTLP JSON `ExportTraceServiceRequest` (enums as numbers, ids in
    hex), encoded by the OTLP exporter's own encoder."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    d = _hex_ids(MessageToDict(encode_spans(spans), use_integers_for_enums=True))
    return json.dumps(d, separators=(",", ":"))


def write_otlp(path, spans, per_trace=True):
    """OTLP JSON lines: one request per trace, in the order in which each trace's
    first span ended (`per_trace`), or one request of every span."""
    if not per_trace:
        groups = [list(spans)]
    else:
        order, by_trace = [], {}
        for s in spans:
            tid = s.get_span_context().trace_id
            if tid not in by_trace:
                by_trace[tid] = []
                order.append(tid)
            by_trace[tid].append(s)
        groups = [by_trace[tid] for tid in order]
    with open(path, "w") as f:
        for group in groups:
            f.write(otlp_json(group) + "\n")


# The harness's own log of every model and tool call (written as harness-log.jsonl by
# write_recording): each record with its time and the span current when it was made.
HLOG = []


def hlog(**rec):
    rec["time_ns"] = time.time_ns()
    rec["current_span"] = current_span_hex()
    HLOG.append(rec)
    print("HARNESS", json.dumps(rec, sort_keys=True), flush=True)


# The plan the harnesses run: runs A and B of one shared agent concurrently, two model
# calls each with this usage (prompt, completion) and one tool call for a city; run C
# cancelled during its first model call.
TOKENS = {
    ("A", 1): (101, 11), ("A", 2): (133, 17),
    ("B", 1): (157, 19), ("B", 2): (181, 23),
    ("C", 1): (211, 31),  # never returned: run C is cancelled during this call
}
CITY = {"A": "Paris", "B": "Tokyo", "C": "Lima"}
RUN_OF_CITY = {v: k for k, v in CITY.items()}
