"""Replays a trace script (docs/trace-script-format.md) through the Python SDK with the
audit processor registered, and prints what it exported as JSON Lines, as the Rust
`replay` example does (`cargo run --example replay -- SCRIPT`):

    {"span": label, "name": ..., "parent": label, "kind": ..., "start_ns": ..., "end_ns": ...,
     "status": "unset"|"ok"|"error", "status_message": ..., "attributes": {...}}

then one line of metrics. Configuration comes from the environment, as in an
application. Usage: python replay.py SCRIPT
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from genai_audit import GenAiAuditSpanProcessor

KINDS = {
    "internal": SpanKind.INTERNAL,
    "client": SpanKind.CLIENT,
    "server": SpanKind.SERVER,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}
KIND_NAMES = {v: k for k, v in KINDS.items()}
STATUS_NAMES = {StatusCode.UNSET: "unset", StatusCode.OK: "ok", StatusCode.ERROR: "error"}


class CollectingExporter(SpanExporter):
    """Keeps every span it is given, through shutdown."""

    def __init__(self) -> None:
        self.spans: List[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def read_script(path: str) -> List[Dict[str, Any]]:
    events = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                events.append(json.loads(line))
    return events


def _value(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(v)
    return v


def replay(
    events: List[Dict[str, Any]], **processor_options: Any
) -> Tuple[List[Dict[str, Any]], Dict[str, Any], GenAiAuditSpanProcessor]:
    """Runs the script; returns the exported spans as dicts (in export order), the
    metrics, and the processor."""
    exporter = CollectingExporter()
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    audit = GenAiAuditSpanProcessor(
        SimpleSpanProcessor(exporter), meter_provider=meter_provider, **processor_options
    )
    provider = TracerProvider()
    provider.add_span_processor(audit)
    tracer = provider.get_tracer("replay")
    spans: Dict[str, Any] = {}
    labels: Dict[int, str] = {}
    for event in events:
        op, label = event["op"], event["span"]
        if op == "start":
            parent = event.get("parent")
            ctx = (
                trace_api.set_span_in_context(spans[parent])
                if parent is not None
                else context_api.Context()
            )
            span = tracer.start_span(
                event["name"],
                context=ctx,
                kind=KINDS[event.get("kind", "internal")],
                attributes={k: _value(v) for k, v in (event.get("attributes") or {}).items()},
                start_time=event["time_ns"],
            )
            spans[label] = span
            labels[span.get_span_context().span_id] = label
        elif op == "set":
            spans[label].set_attributes({k: _value(v) for k, v in event["attributes"].items()})
        elif op == "end":
            span = spans[label]
            status = event.get("status", "unset")
            if status == "ok":
                span.set_status(Status(StatusCode.OK))
            elif status == "error":
                span.set_status(Status(StatusCode.ERROR, event.get("status_message")))
            span.end(end_time=event["time_ns"])
    provider.shutdown()
    out = []
    for s in exporter.spans:
        parent: Optional[str] = None
        if s.parent is not None:
            parent = labels.get(s.parent.span_id, format(s.parent.span_id, "016x"))
        out.append(
            {
                "span": labels.get(s.context.span_id, format(s.context.span_id, "016x")),
                "name": s.name,
                "parent": parent,
                "kind": KIND_NAMES.get(s.kind, "internal"),
                "start_ns": s.start_time,
                "end_ns": s.end_time,
                "status": STATUS_NAMES[s.status.status_code],
                "status_message": s.status.description or "",
                "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in s.attributes.items()},
            }
        )
    return out, collect_metrics(reader), audit


def collect_metrics(reader: InMemoryMetricReader) -> Dict[str, Any]:
    """The metrics as the Rust example prints them: per instrument, points sorted by
    their attributes."""
    data = reader.get_metrics_data()
    out: Dict[str, List[Dict[str, Any]]] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points = []
                for p in metric.data.data_points:
                    attrs = dict(p.attributes or {})
                    if hasattr(p, "bucket_counts"):
                        points.append(
                            {
                                "attributes": attrs,
                                "count": p.count,
                                "sum": p.sum,
                                "bounds": list(p.explicit_bounds),
                                "bucket_counts": list(p.bucket_counts),
                            }
                        )
                    else:
                        points.append({"attributes": attrs, "value": p.value})
                points.sort(key=lambda p: json.dumps(p["attributes"], sort_keys=True))
                out[metric.name] = points
    return out


def main() -> None:
    spans, metrics, _ = replay(read_script(sys.argv[1]))
    for s in spans:
        print(json.dumps(s))
    print(json.dumps({"metrics": metrics}))


if __name__ == "__main__":
    main()
