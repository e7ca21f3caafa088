"""Record Google ADK's own (native) OpenTelemetry traces with a fake model.

Writes, next to this script:
  google-adk-concurrent.jsonl      trace script (start/set/end events, labels = 16-hex span ids)
  google-adk-concurrent.otlp.json  OTLP JSON, one ExportTraceServiceRequest per line (one per trace)
  harness-log.jsonl                the harness's own ground truth (model calls, tool calls, run outcomes)

Scenario (one shared LlmAgent with one tool get_weather(city), one Runner, one
InMemorySessionService, one asyncio event loop):
  runs A, B and C are started concurrently (asyncio tasks, gathered), each with its own session.
    A and B: model call 1 -> function call get_weather(city); tool runs; model call 2 -> text.
      The fake model makes A and B meet (asyncio.Barrier) inside model call 1 and inside
      model call 2, so the two invocations really overlap.
    C: model call 1 blocks; once A and B have finished the harness cancels C's task
      (asyncio cancellation while the model call is in flight).
  run D: afterwards, alone; the fake model raises FakeModelError in its first call.
No network is used: the model is a google.adk.models.BaseLlm subclass yielding canned
LlmResponse objects with usage_metadata. No API key.

ADK's tracer is a module-level trace.get_tracer(...) (a proxy of the global provider), so the
SDK TracerProvider is installed with trace.set_tracer_provider before ADK is imported.
"""

import asyncio
import contextvars
import json
import os
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "google-adk-concurrent.jsonl")
OTLP_PATH = os.path.join(HERE, "google-adk-concurrent.otlp.json")
HARNESS_LOG_PATH = os.path.join(HERE, "harness-log.jsonl")

# The recording processor and the writers every harness here shares.
sys.path.insert(0, os.path.dirname(HERE))
from recording import RecordingProcessor, current_span_hex, write_recording  # noqa: E402


# ---------------------------------------------------------------------------
# Global tracer provider BEFORE importing ADK
# ---------------------------------------------------------------------------

PROCESSOR = RecordingProcessor()
PROVIDER = TracerProvider(resource=Resource.create({"service.name": "google-adk-recording"}))
PROVIDER.add_span_processor(PROCESSOR)
trace.set_tracer_provider(PROVIDER)

from google.adk import version as adk_version  # noqa: E402
from google.adk.agents import LlmAgent  # noqa: E402
from google.adk.models import BaseLlm, LlmRequest, LlmResponse  # noqa: E402
from google.adk.runners import Runner  # noqa: E402
from google.adk.sessions import InMemorySessionService  # noqa: E402
from google.genai import types  # noqa: E402

# ---------------------------------------------------------------------------
# Harness log (ground truth)
# ---------------------------------------------------------------------------

HLOG = []
T0 = time.time_ns()


def hlog(**rec):
    rec["time_ns"] = time.time_ns()
    try:
        rec["task"] = asyncio.current_task().get_name()
    except RuntimeError:
        rec["task"] = None
    HLOG.append(rec)
    print("HARNESS", json.dumps(rec, sort_keys=True), flush=True)


# ---------------------------------------------------------------------------
# Fake model, tool
# ---------------------------------------------------------------------------

TOKENS = {
    "A": [(101, 11), (133, 17)],
    "B": [(157, 19), (181, 23)],
    "C": [(211, 29)],
    "D": [(223, 31)],
}
CITY = {"A": "Paris", "B": "Tokyo", "C": "Lima", "D": "Oslo"}

RUN = contextvars.ContextVar("run")  # (label, [calls])
BARRIER = None  # asyncio.Barrier(2), created in main
C_IN_MODEL = None  # asyncio.Event: C is inside its model call


class FakeModelError(Exception):
    """The fake model's failure in run D."""


class FakeLlm(BaseLlm):
    model: str = "fake-model-1"

    @classmethod
    def supported_models(cls):
        return [r"fake-.*"]

    async def generate_content_async(self, llm_request: LlmRequest, stream: bool = False):
        label, calls = RUN.get()
        calls.append(1)
        n = len(calls)
        span_at_call = current_span_hex()
        n_contents = len(llm_request.contents or [])
        if label == "C":
            hlog(event="model_call", run=label, call=n, input_tokens=None, output_tokens=None,
                 current_span=span_at_call, outcome="blocks until cancelled",
                 contents_seen=n_contents)
            C_IN_MODEL.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                hlog(event="model_call_cancelled", run=label, call=n, current_span=current_span_hex())
                raise
        if label == "D":
            hlog(event="model_call", run=label, call=n, input_tokens=None, output_tokens=None,
                 current_span=span_at_call, outcome="raise FakeModelError", contents_seen=n_contents)
            raise FakeModelError("run D: fake model failed in call 1")
        inp, out = TOKENS[label][n - 1]
        if label in ("A", "B"):
            try:
                await asyncio.wait_for(BARRIER.wait(), 10)
            except (asyncio.TimeoutError, asyncio.BrokenBarrierError):
                hlog(event="barrier_broken", run=label, call=n)
        if n == 1:
            parts = [types.Part(function_call=types.FunctionCall(
                id=f"call_{label}_1", name="get_weather", args={"city": CITY[label]}))]
            returns = "function_call get_weather"
        else:
            parts = [types.Part(text=f"Weather in {CITY[label]}: sunny, 21C")]
            returns = "text"
        hlog(event="model_call", run=label, call=n, input_tokens=inp, output_tokens=out,
             current_span=span_at_call, current_span_at_yield=current_span_hex(),
             returns=returns, contents_seen=n_contents)
        yield LlmResponse(
            content=types.Content(role="model", parts=parts),
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=inp, candidates_token_count=out, total_token_count=inp + out),
            finish_reason=types.FinishReason.STOP,
            model_version="fake-model-1",
        )


def get_weather(city: str) -> dict:
    """Get the weather for a city.

    Args:
        city: name of the city
    """
    try:
        label = RUN.get()[0]
    except LookupError:
        label = None
    hlog(event="tool_call", run=label, tool="get_weather", city=city, current_span=current_span_hex())
    return {"city": city, "weather": f"sunny, 21C in {city}"}


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

APP = "weather_app"
USER = "user-1"


async def amain():
    global BARRIER, C_IN_MODEL
    BARRIER = asyncio.Barrier(2)
    C_IN_MODEL = asyncio.Event()

    agent = LlmAgent(name="weather_agent", model=FakeLlm(), instruction="Answer weather questions.",
                     description="Tells the weather.", tools=[get_weather])
    sessions = InMemorySessionService()
    runner = Runner(agent=agent, app_name=APP, session_service=sessions)
    results = {}

    async def run(label):
        RUN.set((label, []))
        sid = f"session-{label}"
        await sessions.create_session(app_name=APP, user_id=USER, session_id=sid)
        hlog(event="run_begin", run=label, city=CITY[label], session_id=sid,
             current_span=current_span_hex())
        n_events, final = 0, None
        try:
            async for ev in runner.run_async(
                    user_id=USER, session_id=sid,
                    new_message=types.Content(role="user", parts=[types.Part(
                        text=f"What is the weather in {CITY[label]}?")])):
                n_events += 1
                hlog(event="adk_event", run=label, author=ev.author, invocation_id=ev.invocation_id,
                     final=ev.is_final_response(),
                     function_calls=[fc.name for fc in ev.get_function_calls()],
                     function_responses=[fr.name for fr in ev.get_function_responses()],
                     text=(ev.content.parts[0].text if ev.content and ev.content.parts
                           and ev.content.parts[0].text else None),
                     usage=(ev.usage_metadata.model_dump(exclude_none=True) if ev.usage_metadata else None))
                if ev.is_final_response() and ev.content and ev.content.parts:
                    final = ev.content.parts[0].text
            results[label] = ("ok", final)
            hlog(event="run_end", run=label, outcome="returned", output=final, events=n_events,
                 current_span_after=current_span_hex())
        except asyncio.CancelledError:
            results[label] = ("cancelled", None)
            hlog(event="run_end", run=label, outcome="cancelled", events=n_events,
                 current_span_after=current_span_hex())
            raise
        except BaseException as e:  # noqa: BLE001
            results[label] = ("raised", f"{type(e).__name__}: {e}")
            hlog(event="run_end", run=label, outcome="raised", error=f"{type(e).__name__}: {e}",
                 events=n_events, current_span_after=current_span_hex())

    ab_done = asyncio.Event()
    tasks = {}

    async def run_abc():
        # A, B, C created back to back (asyncio starts them in this order): all three in
        # flight at once; A and B meet on the barrier, C blocks in its model call.
        for label in ("A", "B", "C"):
            tasks[label] = asyncio.create_task(run(label), name=f"run-{label}")
        await asyncio.gather(tasks["A"], tasks["B"])
        ab_done.set()
        await asyncio.gather(tasks["C"], return_exceptions=True)

    async def canceller():
        await C_IN_MODEL.wait()
        await ab_done.wait()
        hlog(event="cancel_task", run="C")
        tasks["C"].cancel()

    await asyncio.gather(run_abc(), canceller(), return_exceptions=True)

    td = asyncio.create_task(run("D"), name="run-D")
    await asyncio.gather(td, return_exceptions=True)
    await runner.close()
    return results


def main():
    results = asyncio.run(amain())
    PROVIDER.force_flush()
    PROVIDER.shutdown()
    processor = PROCESSOR

    write_recording(
        processor,
        "google-adk " + adk_version.__version__ + " native OpenTelemetry tracing; "
            "see README.md. Labels are the 16-hex-digit span ids.",
        SCRIPT_PATH,
        OTLP_PATH,
        HLOG,
        HARNESS_LOG_PATH,
    )
    print("results:", json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
