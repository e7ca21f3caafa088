"""Record smolagents + openinference-instrumentation-smolagents traces with a fake model.

Writes, next to this script:
  smolagents-concurrent.jsonl      trace script (start/set/end events, labels = 16-hex span ids)
  smolagents-concurrent.otlp.json  OTLP JSON, one ExportTraceServiceRequest per line (one per trace)
  harness-log.jsonl                the harness's own ground truth (model calls, tool calls, run outcomes)

Scenario:
  runs A and B: the SAME ToolCallingAgent instance, run concurrently from two threads.
    each: model call 1 -> tool call get_weather(city); model call 2 -> final_answer.
    The fake model makes both threads meet (threading.Barrier) inside model call 1 and
    inside model call 2, so the two invocations really overlap.
  run C: same agent, afterwards, alone; the fake model raises FakeCancelled in its first call.
  run D: same agent, afterwards, alone; the fake model calls agent.interrupt() during its
    first call (smolagents' own cancellation API) and then returns the tool call normally.
No network is used: the model is a smolagents.Model subclass returning canned ChatMessages.
"""

import json
import os
import sys
import threading
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import smolagents
from smolagents import ChatMessage, Model, ToolCallingAgent, tool
from smolagents.models import ChatMessageToolCall, ChatMessageToolCallFunction, MessageRole
from smolagents.monitoring import LogLevel, TokenUsage

from openinference.instrumentation.smolagents import SmolagentsInstrumentor

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "smolagents-concurrent.jsonl")
OTLP_PATH = os.path.join(HERE, "smolagents-concurrent.otlp.json")
HARNESS_LOG_PATH = os.path.join(HERE, "harness-log.jsonl")

# The recording processor and the writers every harness here shares.
sys.path.insert(0, os.path.dirname(HERE))
from recording import RecordingProcessor, current_span_hex, write_recording  # noqa: E402


# ---------------------------------------------------------------------------
# Harness log (ground truth)
# ---------------------------------------------------------------------------

HLOG = []
HLOG_LOCK = threading.Lock()


def hlog(**rec):
    rec["time_ns"] = time.time_ns()
    rec["thread"] = threading.current_thread().name
    with HLOG_LOCK:
        HLOG.append(rec)
    print("HARNESS", json.dumps(rec, sort_keys=True), flush=True)


# ---------------------------------------------------------------------------
# Fake model, tool
# ---------------------------------------------------------------------------

TOKENS = {
    "A": [(101, 11), (133, 17)],
    "B": [(157, 19), (181, 23)],
    "C": [(211, 29)],
    "D": [(223, 31), (227, 37)],
}
CITY = {"A": "Paris", "B": "Tokyo", "C": "Lima", "D": "Oslo"}

RUN = threading.local()  # .label, .calls
BARRIER = threading.Barrier(2, timeout=10)  # makes A and B overlap inside each model call


class FakeCancelled(Exception):
    """Stands for a cancellation arriving while the model call is in flight."""


class FakeModel(Model):
    def __init__(self):
        super().__init__(model_id="fake-model-1")
        self.agent = None  # set after the agent is built (for run D)

    def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kwargs):
        label = RUN.label
        RUN.calls += 1
        n = RUN.calls
        span_at_call = current_span_hex()
        if label == "C":
            hlog(event="model_call", run=label, call=n, input_tokens=None, output_tokens=None,
                 current_span=span_at_call, outcome="raise FakeCancelled")
            raise FakeCancelled("run C cancelled during model call 1")
        inp, out = TOKENS[label][n - 1]
        if label in ("A", "B"):
            try:
                BARRIER.wait()
            except threading.BrokenBarrierError:
                hlog(event="barrier_broken", run=label, call=n)
        if label == "D" and n == 1:
            self.agent.interrupt()
            hlog(event="agent_interrupt_called", run=label, call=n, current_span=span_at_call)
        if n == 1:
            tc = ChatMessageToolCall(
                id=f"call_{label}_1", type="function",
                function=ChatMessageToolCallFunction(name="get_weather", arguments={"city": CITY[label]}),
            )
        else:
            tc = ChatMessageToolCall(
                id=f"call_{label}_2", type="function",
                function=ChatMessageToolCallFunction(
                    name="final_answer", arguments={"answer": f"Weather in {CITY[label]}: sunny, 21C"}),
            )
        hlog(event="model_call", run=label, call=n, input_tokens=inp, output_tokens=out,
             current_span=span_at_call, returns=tc.function.name,
             messages_seen=len(messages))
        return ChatMessage(role=MessageRole.ASSISTANT, content=None, tool_calls=[tc],
                           token_usage=TokenUsage(input_tokens=inp, output_tokens=out))


@tool
def get_weather(city: str) -> str:
    """Get the weather for a city.

    Args:
        city: name of the city
    """
    label = getattr(RUN, "label", None)
    hlog(event="tool_call", run=label, tool="get_weather", city=city, current_span=current_span_hex())
    return f"sunny, 21C in {city}"


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main():
    processor = RecordingProcessor()
    provider = TracerProvider(resource=Resource.create({"service.name": "smolagents-recording"}))
    provider.add_span_processor(processor)

    # The instrumentor only wraps `generate` of Model subclasses that are attributes of the
    # `smolagents` module at instrument() time (it walks vars(smolagents)). A user subclass
    # overriding generate() is not wrapped (see README), so the fake model is exposed there.
    smolagents.FakeModel = FakeModel
    SmolagentsInstrumentor().instrument(tracer_provider=provider)

    model = FakeModel()
    agent = ToolCallingAgent(tools=[get_weather], model=model, max_steps=4,
                             verbosity_level=LogLevel.OFF, name="weather_agent")
    model.agent = agent

    results = {}

    def runner(label):
        RUN.label = label
        RUN.calls = 0
        hlog(event="run_begin", run=label, city=CITY[label])
        try:
            out = agent.run(f"What is the weather in {CITY[label]}?")
            results[label] = ("ok", str(out))
            hlog(event="run_end", run=label, outcome="returned", output=str(out),
                 current_span_after=current_span_hex())
        except BaseException as e:  # noqa: BLE001 - record whatever the framework raises
            results[label] = ("raised", f"{type(e).__name__}: {e}")
            hlog(event="run_end", run=label, outcome="raised", error=f"{type(e).__name__}: {e}",
                 current_span_after=current_span_hex())

    # A and B concurrently on the same agent object. B starts shortly after A so the order
    # of the run spans is deterministic; the barrier makes both model calls overlap.
    ta = threading.Thread(target=runner, args=("A",), name="run-A")
    tb = threading.Thread(target=runner, args=("B",), name="run-B")
    ta.start()
    time.sleep(0.05)
    tb.start()
    ta.join()
    tb.join()

    for label in ("C", "D"):
        t = threading.Thread(target=runner, args=(label,), name=f"run-{label}")
        t.start()
        t.join()

    provider.force_flush()
    provider.shutdown()

    write_recording(
        processor,
        "smolagents " + smolagents.__version__ + " + openinference-instrumentation-smolagents; "
            "see README.md. Labels are the 16-hex-digit span ids.",
        SCRIPT_PATH,
        OTLP_PATH,
        HLOG,
        HARNESS_LOG_PATH,
    )
    print("results:", json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
