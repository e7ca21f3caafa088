"""Record PydanticAI traces (its own OpenTelemetry instrumentation) with a fake model.

Writes, next to this script:
  pydantic-ai-concurrent.jsonl      trace script (start/set/end events, labels = 16-hex span ids)
  pydantic-ai-concurrent.otlp.json  OTLP JSON, one ExportTraceServiceRequest per line (one per trace)
  harness-log.jsonl                 the harness's own ground truth (model calls, tool calls, runs)

Scenario:
  runs A and B: the SAME Agent instance, run concurrently (asyncio.gather of `agent.run`).
    Each: model call 1 -> get_weather(city); model call 2 -> the text answer. The fake
    model makes both runs meet (asyncio.Barrier) inside each model call.
  run C: same agent, afterwards; its task is cancelled while its first model call is in
    flight.
No network is used: the model is PydanticAI's own `FunctionModel`, whose function
returns `ModelResponse`s with the usage below (`RequestUsage`).
"""

import asyncio
import os
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import pydantic_ai
from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.capabilities.instrumentation import Instrumentation
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.usage import RequestUsage

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "pydantic-ai-concurrent.jsonl")
OTLP_PATH = os.path.join(HERE, "pydantic-ai-concurrent.otlp.json")
HARNESS_LOG_PATH = os.path.join(HERE, "harness-log.jsonl")

sys.path.insert(0, os.path.dirname(HERE))
from recording import (  # noqa: E402
    CITY,
    HLOG,
    RUN_OF_CITY,
    TOKENS,
    RecordingProcessor,
    hlog,
    write_recording,
)

BARRIER = None


def run_and_call(messages):
    run, call = "?", 1
    for m in messages:
        for part in getattr(m, "parts", []):
            if isinstance(part, UserPromptPart):
                for city, r in RUN_OF_CITY.items():
                    if city in str(part.content):
                        run = r
            if isinstance(part, ToolReturnPart):
                call = 2
    return run, call


async def fake_model(messages, info: AgentInfo) -> ModelResponse:
    run, call = run_and_call(messages)
    inp, out = TOKENS[(run, call)]
    if run == "C":
        hlog(event="model_call_begin", run=run, call=call, input_tokens=inp, output_tokens=out)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            hlog(event="model_call_cancelled", run=run, call=call)
            raise
    await BARRIER.wait()
    if call == 1:
        parts = [ToolCallPart(tool_name="get_weather", args={"city": CITY[run]},
                              tool_call_id=f"call_{run}_1")]
    else:
        parts = [TextPart(content=f"Sunny, 21C in {CITY[run]}")]
    hlog(event="model_call", run=run, call=call, input_tokens=inp, output_tokens=out)
    return ModelResponse(parts=parts, usage=RequestUsage(input_tokens=inp, output_tokens=out),
                         model_name="fake-model")


async def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    hlog(event="tool_call", run=RUN_OF_CITY.get(city, "?"), tool="get_weather", city=city)
    await asyncio.sleep(0.005)
    return f"sunny, 21C in {city}"


async def scenario(agent):
    global BARRIER
    BARRIER = asyncio.Barrier(2)

    async def run(label):
        hlog(event="run_begin", run=label, city=CITY[label])
        try:
            result = await agent.run(f"What is the weather in {CITY[label]}?")
            hlog(event="run_end", run=label, outcome="returned", output=result.output,
                 usage={"input_tokens": result.usage.input_tokens,
                        "output_tokens": result.usage.output_tokens,
                        "requests": result.usage.requests})
        except asyncio.CancelledError:
            hlog(event="run_end", run=label, outcome="cancelled")
            raise

    await asyncio.gather(run("A"), run("B"))

    task = asyncio.create_task(run("C"))
    while not any(h["event"] == "model_call_begin" and h["run"] == "C" for h in HLOG):
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.01)
    hlog(event="cancel_requested", run="C")
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        hlog(event="run_c_task_cancelled", run="C")
    await asyncio.sleep(0.2)


def main():
    processor = RecordingProcessor()
    provider = TracerProvider(resource=Resource.create({"service.name": "pydantic-ai-recording"}))
    provider.add_span_processor(processor)
    agent = Agent(
        FunctionModel(fake_model, model_name="fake-model"),
        name="weather_agent",
        tools=[get_weather],
        capabilities=[Instrumentation(
            settings=InstrumentationSettings(tracer_provider=provider, include_content=False))],
    )
    asyncio.run(scenario(agent))
    provider.force_flush()
    provider.shutdown()
    write_recording(
        processor,
        f"pydantic-ai-slim {pydantic_ai.__version__} (its own instrumentation); see README.md. "
        "Labels are the 16-hex-digit span ids.",
        SCRIPT_PATH,
        OTLP_PATH,
        HLOG,
        HARNESS_LOG_PATH,
    )


if __name__ == "__main__":
    main()
