"""Record the official OpenTelemetry OpenAI instrumentation
(opentelemetry-instrumentation-openai-v2) under an agent loop of the application's own,
with a fake OpenAI server.

Writes, next to this script:
  openai-v2-concurrent.jsonl      trace script (labels = 16-hex span ids)
  openai-v2-concurrent.otlp.json  OTLP JSON, one ExportTraceServiceRequest per line (one per trace)
  harness-log.jsonl               the harness's own ground truth

Scenario:
  The agent is the application's: `WeatherAgent.run` opens an `invoke_agent weather_agent`
  span (the GenAI conventions' agent span, `gen_ai.operation.name = invoke_agent`), calls
  the model through `openai.AsyncOpenAI().chat.completions.create` with one tool, runs
  the tool under an `execute_tool get_weather` span, and calls the model again.
  runs A and B: the SAME WeatherAgent (and client), run concurrently (asyncio.gather);
    the fake server makes both runs meet (asyncio.Barrier) inside each model call.
  run C: afterwards; its task is cancelled while its first model call is in flight.
No network is used: the client's HTTP transport is an `httpx2.MockTransport` (the
OpenAI client's own way to plug a transport in) that answers as the Chat Completions
API does, model `gpt-4o-mini-2024-07-18`, with the usage below.
"""

import asyncio
import json
import os
import sys

import httpx2 as httpx
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

import openai
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "openai-v2-concurrent.jsonl")
OTLP_PATH = os.path.join(HERE, "openai-v2-concurrent.otlp.json")
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

MODEL = "gpt-4o-mini"
SERVED_MODEL = "gpt-4o-mini-2024-07-18"
BARRIER = None
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


async def fake_server(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    messages = body["messages"]
    text = " ".join(str(m.get("content") or "") for m in messages if m["role"] == "user")
    run = next((r for city, r in RUN_OF_CITY.items() if city in text), "?")
    call = 2 if any(m["role"] == "tool" for m in messages) else 1
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
        message = {"role": "assistant", "content": None, "tool_calls": [{
            "id": f"call_{run}_1", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": CITY[run]})}}]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": f"Sunny, 21C in {CITY[run]}"}
        finish = "stop"
    hlog(event="model_call", run=run, call=call, input_tokens=inp, output_tokens=out,
         response_id=f"chatcmpl-{run}{call}")
    return httpx.Response(200, json={
        "id": f"chatcmpl-{run}{call}", "object": "chat.completion", "created": 1765000000,
        "model": SERVED_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out},
    })


class WeatherAgent:
    """An agent loop of the application's own, traced as the GenAI conventions say."""

    def __init__(self, client, tracer):
        self.client = client
        self.tracer = tracer

    async def get_weather(self, city):
        hlog(event="tool_call", run=RUN_OF_CITY.get(city, "?"), tool="get_weather", city=city)
        await asyncio.sleep(0.005)
        return f"sunny, 21C in {city}"

    async def run(self, question):
        with self.tracer.start_as_current_span(
            "invoke_agent weather_agent", kind=SpanKind.INTERNAL,
            attributes={"gen_ai.operation.name": "invoke_agent",
                        "gen_ai.agent.name": "weather_agent",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": MODEL}):
            messages = [{"role": "user", "content": question}]
            for _ in range(4):
                response = await self.client.chat.completions.create(
                    model=MODEL, messages=messages, tools=TOOLS)
                choice = response.choices[0].message
                if not choice.tool_calls:
                    return choice.content
                messages.append(choice.model_dump(exclude_none=True))
                for tc in choice.tool_calls:
                    with self.tracer.start_as_current_span(
                        "execute_tool get_weather",
                        attributes={"gen_ai.operation.name": "execute_tool",
                                    "gen_ai.tool.name": tc.function.name,
                                    "gen_ai.tool.call.id": tc.id}):
                        result = await self.get_weather(**json.loads(tc.function.arguments))
                    messages.append({"role": "tool", "tool_call_id": tc.id, "content": result})
            return None


async def scenario(agent):
    global BARRIER
    BARRIER = asyncio.Barrier(2)

    async def run(label):
        hlog(event="run_begin", run=label, city=CITY[label])
        try:
            answer = await agent.run(f"What is the weather in {CITY[label]}?")
            hlog(event="run_end", run=label, outcome="returned", answer=answer)
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
    provider = TracerProvider(resource=Resource.create({"service.name": "openai-v2-recording"}))
    provider.add_span_processor(processor)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = openai.AsyncOpenAI(
        api_key="not-a-key", base_url="http://fake-openai.invalid/v1", max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(fake_server)))
    agent = WeatherAgent(client, provider.get_tracer("weather-agent"))
    asyncio.run(scenario(agent))
    provider.force_flush()
    provider.shutdown()
    write_recording(
        processor,
        f"openai {openai.__version__} + opentelemetry-instrumentation-openai-v2, under the "
        "application's own invoke_agent spans; see README.md. Labels are the 16-hex-digit span ids.",
        SCRIPT_PATH,
        OTLP_PATH,
        HLOG,
        HARNESS_LOG_PATH,
    )


if __name__ == "__main__":
    main()
