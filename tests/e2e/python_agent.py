#!/usr/bin/env python3
"""A small agent trace sent with the real OpenTelemetry Python SDK and OTLP exporters.

Usage: python_agent.py PROTOCOL ENDPOINT [MANIFEST]

  PROTOCOL  `http` (OTLP/HTTP protobuf, ENDPOINT `http://ADDR/v1/traces`, one span per
            request through a SimpleSpanProcessor) or `grpc` (OTLP/gRPC, ENDPOINT
            `ADDR`, insecure, the spans batched by a BatchSpanProcessor)
  MANIFEST  optional file where the spans exactly as the SDK exported them (ids, names,
            kinds, times, attributes, resource, scope) are written as JSON, for a
            checker to compare with what came out of `genai-audit serve`

The trace follows the OpenTelemetry GenAI semantic conventions:

  invoke_agent weather-agent-PROTOCOL       (gen_ai.operation.name=invoke_agent)
    chat gpt-4o-mini                        (usage 1200 -> 80, response id chatcmpl-PROTOCOL-1)
    execute_tool get_weather                (gen_ai.operation.name=execute_tool)
    chat gpt-4o-mini                        (usage 1500 -> 120, response id chatcmpl-PROTOCOL-2)

Every child ends before its parent. Exits non-zero if an export failed.
"""

import json
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind


class RecordingExporter(SpanExporter):
    """Passes spans to the OTLP exporter and remembers them and the export results."""

    def __init__(self, inner):
        self.inner = inner
        self.spans = []
        self.results = []

    def export(self, spans):
        self.spans.extend(spans)
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


def plain(value):
    """An attribute value as JSON (the SDK keeps sequences as tuples)."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return value


def describe(span):
    ctx = span.get_span_context()
    return {
        "name": span.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else "",
        "kind": span.kind.name,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "attributes": {k: plain(v) for k, v in span.attributes.items()},
        "resource": {k: plain(v) for k, v in span.resource.attributes.items()},
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else "",
    }


def chat(tracer, protocol, number, input_tokens, output_tokens):
    model = "gpt-4o-mini"
    with tracer.start_as_current_span(
        f"chat {model}",
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 512,
            "server.address": "api.openai.com",
            "server.port": 443,
        },
    ) as span:
        # What the response tells, set when it arrived (as instrumentations do).
        span.set_attribute("gen_ai.response.model", model)
        span.set_attribute("gen_ai.response.id", f"chatcmpl-{protocol}-{number}")
        span.set_attribute("gen_ai.response.finish_reasons", ["stop"])
        span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", output_tokens)


def main(argv):
    if len(argv) not in (3, 4) or argv[1] not in ("http", "grpc"):
        print(__doc__, file=sys.stderr)
        return 2
    protocol, endpoint = argv[1], argv[2]
    manifest = argv[3] if len(argv) == 4 else None

    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = RecordingExporter(OTLPSpanExporter(endpoint=endpoint, timeout=10))
        processor = SimpleSpanProcessor(exporter)
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = RecordingExporter(
            OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10)
        )
        processor = BatchSpanProcessor(exporter)

    agent = f"weather-agent-{protocol}"
    resource = Resource.create(
        {"service.name": f"python-weather-agent-{protocol}", "deployment.environment": "e2e"}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("genai-audit.e2e.python_agent", "1.0.0")

    with tracer.start_as_current_span(
        f"invoke_agent {agent}",
        kind=SpanKind.INTERNAL,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.provider.name": "openai",
            "gen_ai.conversation.id": f"conv-{protocol}-1",
        },
    ):
        chat(tracer, protocol, 1, 1200, 80)
        with tracer.start_as_current_span(
            "execute_tool get_weather",
            kind=SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_weather",
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": f"call-{protocol}-1",
            },
        ):
            pass
        chat(tracer, protocol, 2, 1500, 120)

    provider.shutdown()  # flushes the batch processor

    if manifest:
        with open(manifest, "w", encoding="utf-8") as f:
            json.dump([describe(s) for s in exporter.spans], f, indent=1)
    failed = [r for r in exporter.results if r != SpanExportResult.SUCCESS]
    exported = len(exporter.spans)
    if failed or exported != 4:
        print(
            f"python_agent.py: {protocol}: {exported} spans handed to the exporter "
            f"(4 expected), {len(failed)} of {len(exporter.results)} exports failed",
            file=sys.stderr,
        )
        return 1
    print(f"python_agent.py: {protocol}: 4 spans exported to {endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
