"""Shared fixtures: a TracerProvider whose only processor is the audit processor over a
SimpleSpanProcessor and an in-memory exporter, with an in-memory metric reader."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Sequence, Tuple

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from genai_audit import GenAiAuditSpanProcessor


class Collecting(SpanExporter):
    """Keeps every span exported, through shutdown."""

    def __init__(self) -> None:
        self.spans: List[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def named(self, name: str) -> List[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, (name, [s.name for s in self.spans])
        return found[0]


class Pipeline:
    def __init__(self, **options: Any) -> None:
        self.exporter = Collecting()
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        options.setdefault("meter_provider", self.meter_provider)
        self.audit = GenAiAuditSpanProcessor(SimpleSpanProcessor(self.exporter), **options)
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.audit)
        self.tracer = self.provider.get_tracer("tests")

    def metrics(self) -> Dict[str, List[Tuple[Dict[str, Any], Any]]]:
        data = self.reader.get_metrics_data()
        out: Dict[str, List[Tuple[Dict[str, Any], Any]]] = {}
        self.units: Dict[str, str] = {}
        self.scopes: Dict[str, Any] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    self.units[metric.name] = metric.unit
                    self.scopes[metric.name] = sm.scope
                    out[metric.name] = [
                        (dict(p.attributes or {}), getattr(p, "value", None) if not hasattr(p, "bucket_counts") else p)
                        for p in metric.data.data_points
                    ]
        return out


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("GENAI_AUDIT_") and v != "GENAI_AUDIT_PY_FRAMEWORKS"]:
        monkeypatch.delenv(var)


@pytest.fixture
def pipeline() -> Callable[..., Pipeline]:
    made: List[Pipeline] = []

    def make(**options: Any) -> Pipeline:
        p = Pipeline(**options)
        made.append(p)
        return p

    yield make
    for p in made:
        p.provider.shutdown()
