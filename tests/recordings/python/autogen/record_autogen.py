"""Record AutoGen AgentChat 0.7.x traces (autogen-core native gen_ai spans + OpenInference
autogen-agentchat instrumentor) with a fake ChatCompletionClient.

Writes, next to this script:
  autogen-concurrent.jsonl      trace script (start/set/end events, labels = 16-hex span ids)
  autogen-concurrent.otlp.json  OTLP JSON, one ExportTraceServiceRequest per line (one per trace)
  harness-log.jsonl             the harness's own ground truth (model calls, tool calls, run outcomes)

Scenario:
  runs A and B: the SAME AssistantAgent instance (one tool get_weather, reflect_on_tool_use=True),
    run concurrently with asyncio.gather(agent.run(task=...), agent.run(task=...)).
    each: model call 1 -> FunctionCall get_weather(city); tool runs; model call 2 -> text answer.
    The fake client makes both runs meet (asyncio.Barrier) inside model call 1 and model call 2,
    so the two invocations really overlap.
  run C: same agent, afterwards, alone; model call 1 waits on a future linked to the run's
    CancellationToken; the harness cancels the token 100 ms later (AutoGen's cancellation API).
No network is used: the model is a subclass of autogen_core.models.ChatCompletionClient
returning canned CreateResults with RequestUsage.
"""

import asyncio
import contextvars
import json
import os
import sys
import time
from importlib.metadata import version as pkg_version

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from autogen_agentchat.agents import AssistantAgent
from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import ChatCompletionClient, CreateResult, ModelInfo, RequestUsage

from openinference.instrumentation.autogen_agentchat import AutogenAgentChatInstrumentor

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "autogen-concurrent.jsonl")
OTLP_PATH = os.path.join(HERE, "autogen-concurrent.otlp.json")
HARNESS_LOG_PATH = os.path.join(HERE, "harness-log.jsonl")

# The recording processor and the writers every harness here shares.
sys.path.insert(0, os.path.dirname(HERE))
from recording import RecordingProcessor, current_span_hex, write_recording  # noqa: E402


# ---------------------------------------------------------------------------
# Harness log (ground truth)
# ---------------------------------------------------------------------------

HLOG = []
RUN = contextvars.ContextVar("RUN", default=None)  # run label of the current asyncio task
CALLS = {}  # run label -> number of model calls so far


def hlog(**rec):
    rec["time_ns"] = time.time_ns()
    task = asyncio.current_task() if _loop_running() else None
    rec["task"] = task.get_name() if task else None
    HLOG.append(rec)
    print("HARNESS", json.dumps(rec, sort_keys=True), flush=True)


def _loop_running():
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def brief(messages):
    """Short description of the prompt the model got: type, source, start of content."""
    out = []
    for m in messages:
        c = m.content if isinstance(m.content, str) else repr(m.content)
        out.append(f"{type(m).__name__}[{getattr(m, 'source', '')}]: {c[:60]}")
    return out


# ---------------------------------------------------------------------------
# Fake model client, tool
# ---------------------------------------------------------------------------

TOKENS = {
    "A": [(101, 11), (133, 17)],
    "B": [(157, 19), (181, 23)],
    "C": [(211, 29)],
}
CITY = {"A": "Paris", "B": "Tokyo", "C": "Lima"}
BARRIER = None  # asyncio.Barrier(2), created inside the loop


class FakeChatCompletionClient(ChatCompletionClient):
    """AutoGen-interface fake: call 1 of a run -> get_weather FunctionCall, call 2 -> text."""

    def __init__(self):
        self._actual = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)

    async def create(self, messages, *, tools=[], tool_choice="auto", json_output=None,
                     extra_create_args={}, cancellation_token=None):
        label = RUN.get()
        CALLS[label] = CALLS.get(label, 0) + 1
        n = CALLS[label]
        span_at_call = current_span_hex()
        if label == "C":
            hlog(event="model_call_begin", run=label, call=n, current_span=span_at_call,
                 messages_seen=len(messages), prompt=brief(messages), outcome="waits until the CancellationToken is cancelled")
            fut = asyncio.ensure_future(asyncio.sleep(30))
            cancellation_token.link_future(fut)
            try:
                await fut
            except asyncio.CancelledError:
                hlog(event="model_call", run=label, call=n, input_tokens=None, output_tokens=None,
                     current_span=current_span_hex(), outcome="cancelled (CancelledError)")
                raise
        inp, out = TOKENS[label][n - 1]
        if label in ("A", "B"):
            try:
                await asyncio.wait_for(BARRIER.wait(), 10)
            except (asyncio.TimeoutError, asyncio.BrokenBarrierError):
                hlog(event="barrier_broken", run=label, call=n)
        usage = RequestUsage(prompt_tokens=inp, completion_tokens=out)
        if n == 1:
            content = [FunctionCall(id=f"call_{label}_1", name="get_weather",
                                    arguments=json.dumps({"city": CITY[label]}))]
            finish = "function_calls"
            returns = "get_weather"
        else:
            content = f"Weather in {CITY[label]}: sunny, 21C"
            finish = "stop"
            returns = "text"
        self._actual = usage
        self._total = RequestUsage(prompt_tokens=self._total.prompt_tokens + inp,
                                   completion_tokens=self._total.completion_tokens + out)
        hlog(event="model_call", run=label, call=n, input_tokens=inp, output_tokens=out,
             current_span=span_at_call, current_span_after_barrier=current_span_hex(),
             returns=returns, messages_seen=len(messages), prompt=brief(messages))
        return CreateResult(finish_reason=finish, content=content, usage=usage, cached=False)

    def create_stream(self, *args, **kwargs):
        raise NotImplementedError("not used")

    async def close(self):
        pass

    def actual_usage(self):
        return self._actual

    def total_usage(self):
        return self._total

    def count_tokens(self, messages, *, tools=[]):
        return 0

    def remaining_tokens(self, messages, *, tools=[]):
        return 100000

    @property
    def capabilities(self):
        return self.model_info

    @property
    def model_info(self):
        return ModelInfo(vision=False, function_calling=True, json_output=False,
                         family="unknown", structured_output=False)


async def get_weather(city: str) -> str:
    """Get the weather for a city."""
    label = RUN.get()
    hlog(event="tool_call", run=label, tool="get_weather", city=city, current_span=current_span_hex())
    return f"sunny, 21C in {city}"


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


async def amain():
    global BARRIER
    BARRIER = asyncio.Barrier(2)
    client = FakeChatCompletionClient()
    hlog(event="agent_create_begin", current_span=current_span_hex())
    agent = AssistantAgent("weather_agent", model_client=client, tools=[get_weather],
                           reflect_on_tool_use=True, description="Answers weather questions.")
    hlog(event="agent_create_end", current_span=current_span_hex())
    results = {}

    async def runner(label, delay=0.0, token=None):
        await asyncio.sleep(delay)
        RUN.set(label)
        hlog(event="run_begin", run=label, city=CITY[label], current_span=current_span_hex())
        try:
            res = await agent.run(task=f"What is the weather in {CITY[label]}?", cancellation_token=token)
            last = res.messages[-1]
            out = last.content if isinstance(last.content, str) else str(last.content)
            usage = [(type(m).__name__, m.models_usage.prompt_tokens, m.models_usage.completion_tokens)
                     for m in res.messages if getattr(m, "models_usage", None)]
            results[label] = ("ok", out)
            hlog(event="run_end", run=label, outcome="returned", output=out,
                 messages=[type(m).__name__ for m in res.messages], messages_usage=usage,
                 current_span_after=current_span_hex())
        except BaseException as e:  # noqa: BLE001 - record whatever the framework raises
            results[label] = ("raised", f"{type(e).__name__}: {e}")
            hlog(event="run_end", run=label, outcome="raised", error=f"{type(e).__name__}: {e}",
                 current_span_after=current_span_hex())

    # A and B concurrently on the same agent object; B starts 50 ms after A (deterministic order).
    await asyncio.gather(
        asyncio.create_task(runner("A"), name="run-A"),
        asyncio.create_task(runner("B", 0.05), name="run-B"),
    )

    # C: cancelled through its CancellationToken while model call 1 is in flight.
    token = CancellationToken()

    async def canceller():
        await asyncio.sleep(0.1)
        hlog(event="cancel_token", run="C")
        token.cancel()

    await asyncio.gather(
        asyncio.create_task(runner("C", 0.0, token), name="run-C"),
        asyncio.create_task(canceller(), name="canceller"),
    )
    return results


def main():
    processor = RecordingProcessor()
    provider = TracerProvider(resource=Resource.create({"service.name": "autogen-recording"}))
    provider.add_span_processor(processor)
    # autogen-core's gen_ai spans (create_agent / invoke_agent / execute_tool) use
    # trace.get_tracer("autogen-core"), i.e. the GLOBAL provider; there is no parameter on
    # AssistantAgent for it (the runtime's tracer_provider is only for its own message spans).
    trace.set_tracer_provider(provider)
    AutogenAgentChatInstrumentor().instrument(tracer_provider=provider)

    results = asyncio.run(amain())

    provider.force_flush()
    provider.shutdown()

    write_recording(
        processor,
        "autogen-agentchat " + pkg_version("autogen-agentchat")
            + " (native autogen-core gen_ai spans) + openinference-instrumentation-autogen-agentchat "
            + pkg_version("openinference-instrumentation-autogen-agentchat")
            + "; see README.md. Labels are the 16-hex-digit span ids.",
        SCRIPT_PATH,
        OTLP_PATH,
        HLOG,
        HARNESS_LOG_PATH,
    )
    print("results:", json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
