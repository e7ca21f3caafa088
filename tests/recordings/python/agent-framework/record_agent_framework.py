"""Record Microsoft Agent Framework traces (its own OpenTelemetry instrumentation) with a
fake chat client.

Writes, next to this script:
  agent-framework-concurrent.jsonl      trace script (labels = 16-hex span ids)
  agent-framework-concurrent.otlp.json  OTLP JSON, one ExportTraceServiceRequest per line (one per trace)
  harness-log.jsonl                     the harness's own ground truth

Scenario:
  runs A and B: the SAME Agent instance, run concurrently (asyncio.gather of
    `agent.run`). Each: model call 1 -> get_weather(city); model call 2 -> the answer.
    The fake client makes both runs meet (asyncio.Barrier) inside each model call.
  run C: same agent, afterwards; its task is cancelled while its first model call is in
    flight.
No network is used: the chat client is the framework's own kind of client
(`FunctionInvocationLayer` + `ChatTelemetryLayer` + `BaseChatClient`, the layers its
provider clients are made of) whose `_inner_get_response` returns canned
`ChatResponse`s with `UsageDetails`.
"""

import asyncio
import os
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import agent_framework
from agent_framework import Agent, BaseChatClient, ChatResponse, Content, Message, tool
from agent_framework._tools import FunctionInvocationLayer
from agent_framework.observability import ChatTelemetryLayer, enable_instrumentation

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "agent-framework-concurrent.jsonl")
OTLP_PATH = os.path.join(HERE, "agent-framework-concurrent.otlp.json")
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


def _texts(message):
    return " ".join(str(getattr(c, "text", "") or "") for c in (message.contents or []))


class FakeChatClient(FunctionInvocationLayer, ChatTelemetryLayer, BaseChatClient):
    OTEL_PROVIDER_NAME = "fake"

    async def _inner_get_response(self, *, messages, stream, options, **kwargs):
        if stream:
            raise NotImplementedError("the harness does not stream")
        run = "?"
        for m in messages:
            if m.role == "user":
                for city, r in RUN_OF_CITY.items():
                    if city in _texts(m):
                        run = r
        call = 2 if any(m.role == "tool" for m in messages) else 1
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
            contents = [Content.from_function_call(call_id=f"call_{run}_1", name="get_weather",
                                                   arguments={"city": CITY[run]})]
        else:
            contents = [Content.from_text(f"Sunny, 21C in {CITY[run]}")]
        hlog(event="model_call", run=run, call=call, input_tokens=inp, output_tokens=out,
             response_id=f"resp-{run}{call}")
        return ChatResponse(
            messages=[Message(role="assistant", contents=contents)],
            response_id=f"resp-{run}{call}",
            model="fake-model",
            usage_details={"input_token_count": inp, "output_token_count": out,
                           "total_token_count": inp + out},
        )


@tool
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
            out = await agent.run(f"What is the weather in {CITY[label]}?")
            hlog(event="run_end", run=label, outcome="returned", answer=out.text)
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
    provider = TracerProvider(resource=Resource.create({"service.name": "agent-framework-recording"}))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)  # the framework traces on the global provider
    enable_instrumentation(enable_sensitive_data=False)
    agent = Agent(client=FakeChatClient(), name="weather_agent", tools=[get_weather],
                  instructions="You answer weather questions.")
    asyncio.run(scenario(agent))
    provider.force_flush()
    provider.shutdown()
    write_recording(
        processor,
        f"agent-framework-core {agent_framework.__version__} (its own instrumentation); "
        "see README.md. Labels are the 16-hex-digit span ids.",
        SCRIPT_PATH,
        OTLP_PATH,
        HLOG,
        HARNESS_LOG_PATH,
    )


if __name__ == "__main__":
    main()
