"""Overhead of the Python binding (DESIGN §14): a 10-span agent turn with realistic
attributes, through the bare SDK pipeline (TracerProvider + BatchSpanProcessor) and
through the same pipeline wrapped by GenAiAuditSpanProcessor, side by side in one run.

    python benches/python/bench_overhead.py [--turns 2000] [--rounds 15]

Rounds alternate between the two pipelines (bare, audited, bare, ...), each timing
`--turns` agent turns with time.perf_counter after a warm-up; the figure is the median
over rounds of audited/bare. The exporter does nothing (what is measured is the
application thread's cost, as an application sees it); the batch processor's queue is
large enough that no span is dropped. Needs the binding installed (a release build:
`pip install ./bindings/python`).

Target: at most 1.2x.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from typing import Any, List, Sequence

from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from genai_audit import GenAiAuditSpanProcessor


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


SYSTEM = "You are a helpful weather assistant. Answer briefly. " * 8
MESSAGES = json.dumps(
    [
        {"role": "system", "parts": [{"type": "text", "content": SYSTEM}]},
        {"role": "user", "parts": [{"type": "text", "content": "What is the weather in Paris and in Lima today?"}]},
    ]
)
OUTPUT = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Sunny, 21C in Paris. " * 4}]}])
TOOLS = json.dumps(
    [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
)


def agent_turn(tracer: trace_api.Tracer, n: int) -> None:
    """10 spans: an invocation, 3 steps each with a model call, 2 tool calls, 1 HTTP call."""
    with tracer.start_as_current_span(
        "invoke_agent weather_agent",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "weather_agent",
            "gen_ai.agent.id": "agent-7",
            "gen_ai.conversation.id": f"conv-{n}",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
        },
    ) as invocation:
        for step in range(3):
            with tracer.start_as_current_span(
                "react step", attributes={"gen_ai.operation.name": "react", "gen_ai.react.round": step + 1}
            ):
                with tracer.start_as_current_span(
                    "chat gpt-4o-mini",
                    kind=SpanKind.CLIENT,
                    attributes={
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-4o-mini",
                        "gen_ai.request.temperature": 0.2,
                        "gen_ai.request.max_tokens": 512,
                        "server.address": "api.openai.com",
                        "server.port": 443,
                        "gen_ai.input.messages": MESSAGES,
                        "gen_ai.tool.definitions": TOOLS,
                    },
                ) as chat:
                    chat.set_attributes(
                        {
                            "gen_ai.response.id": f"chatcmpl-{n}-{step}",
                            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                            "gen_ai.response.finish_reasons": ("tool_calls",) if step < 2 else ("stop",),
                            "gen_ai.usage.input_tokens": 812 + 40 * step,
                            "gen_ai.usage.output_tokens": 37 + step,
                            "gen_ai.output.messages": OUTPUT,
                        }
                    )
                if step < 2:
                    with tracer.start_as_current_span(
                        "execute_tool get_weather",
                        attributes={
                            "gen_ai.operation.name": "execute_tool",
                            "gen_ai.tool.name": "get_weather",
                            "gen_ai.tool.call.id": f"call-{n}-{step}",
                            "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                        },
                    ):
                        pass
        with tracer.start_as_current_span(
            "GET",
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": "GET", "url.full": "https://weather.example/paris", "http.response.status_code": 200},
        ):
            pass
        invocation.set_attribute("gen_ai.response.id", f"chatcmpl-{n}-2")


def pipeline(audited: bool) -> Any:
    batch = BatchSpanProcessor(NullExporter(), max_queue_size=1 << 20, max_export_batch_size=512, schedule_delay_millis=200)
    provider = TracerProvider()
    provider.add_span_processor(GenAiAuditSpanProcessor(batch) if audited else batch)
    return provider, provider.get_tracer("bench")


def timed(tracer: trace_api.Tracer, turns: int, offset: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for n in range(offset, offset + turns):
        agent_turn(tracer, n)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    bare_provider, bare = pipeline(False)
    audit_provider, audited = pipeline(True)
    timed(bare, 200, 0)
    timed(audited, 200, 0)
    ratios: List[float] = []
    bare_times: List[float] = []
    audit_times: List[float] = []
    for r in range(args.rounds):
        offset = (r + 1) * args.turns
        first, second = (bare, audited) if r % 2 == 0 else (audited, bare)
        t1 = timed(first, args.turns, offset)
        t2 = timed(second, args.turns, offset)
        b, a = (t1, t2) if first is bare else (t2, t1)
        bare_times.append(b)
        audit_times.append(a)
        ratios.append(a / b)
    bare_provider.shutdown()
    audit_provider.shutdown()
    per_turn = lambda ts: statistics.median(ts) / args.turns * 1e6  # noqa: E731
    print(
        json.dumps(
            {
                "turns_per_round": args.turns,
                "rounds": args.rounds,
                "bare_us_per_turn": round(per_turn(bare_times), 1),
                "audited_us_per_turn": round(per_turn(audit_times), 1),
                "ratio_median": round(statistics.median(ratios), 3),
                "ratio_min": round(min(ratios), 3),
                "ratio_max": round(max(ratios), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
