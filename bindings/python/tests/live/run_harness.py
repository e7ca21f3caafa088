"""Runs one recording harness of tests/recordings/python live, with the audit processor
registered, and writes what it exported as JSON Lines (one span a line, as the replay
prints them, labels being the 16-hex span ids).

    python run_harness.py HARNESS.py OUT.jsonl

Run it on a copy of the harness folder (the harness writes its recording beside
itself). The harness is not changed: every `TracerProvider.add_span_processor` it calls
also registers, first and once per provider, a `GenAiAuditSpanProcessor` over a
`SimpleSpanProcessor` that keeps every span, configured from the environment
(`GENAI_AUDIT_LEAK_POLICY`, `GENAI_AUDIT_CONTAMINATION_POLICY`, ...). The fake models
are the harness's own; nothing goes over the network.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from typing import Any, List, Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from genai_audit import GenAiAuditSpanProcessor

STATUS = {StatusCode.UNSET: "unset", StatusCode.OK: "ok", StatusCode.ERROR: "error"}


class Keeping(SpanExporter):
    def __init__(self) -> None:
        self.spans: List[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def main() -> None:
    harness, out = os.path.abspath(sys.argv[1]), sys.argv[2]
    exporter = Keeping()
    original = TracerProvider.add_span_processor

    def add_span_processor(self: TracerProvider, processor: Any) -> None:
        if not getattr(self, "_genai_audit_registered", False):
            self._genai_audit_registered = True
            original(self, GenAiAuditSpanProcessor(SimpleSpanProcessor(exporter)))
        original(self, processor)

    TracerProvider.add_span_processor = add_span_processor  # type: ignore[method-assign]
    sys.path.insert(0, os.path.dirname(harness))
    os.chdir(os.path.dirname(harness))
    runpy.run_path(harness, run_name="__main__")
    with open(out, "w", encoding="utf-8") as f:
        for s in exporter.spans:
            f.write(
                json.dumps(
                    {
                        "span": format(s.context.span_id, "016x"),
                        "trace": format(s.context.trace_id, "032x"),
                        "name": s.name,
                        "parent": None if s.parent is None else format(s.parent.span_id, "016x"),
                        "start_ns": s.start_time,
                        "end_ns": s.end_time,
                        "status": STATUS[s.status.status_code],
                        "status_message": s.status.description or "",
                        "attributes": {k: plain(v) for k, v in s.attributes.items()},
                    }
                )
                + "\n"
            )


if __name__ == "__main__":
    main()
