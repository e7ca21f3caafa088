"""Record Agno + openinference-instrumentation-agno traces with a fake model.

Writes, next to this script:
  agno-concurrent.jsonl      trace script (start/set/end events, labels = 16-hex span ids)
  agno-concurrent.otlp.json  OTLP JSON, one ExportTraceServiceRequest per line (one per trace)
  harness-log.jsonl          the harness's own ground truth (model calls, tool calls, run outcomes)

Scenario:
  runs A and B: the SAME agno Agent instance, agent.run(...) concurrently from two threads.
    each: model call 1 -> tool call get_weather(city); tool runs; model call 2 -> text answer.
    The fake model makes both threads meet (threading.Barrier) inside model call 1 and
    inside model call 2, so the two invocations really overlap.
  run C: same agent, afterwards, alone; the fake model raises agno's RunCancelledException
    in its first call (what agno's own cancellation checkpoints raise), i.e. the run is
    cancelled while the model call is in flight.
No network is used: the model is an agno.models.base.Model subclass returning canned
ModelResponses with response_usage=MessageMetrics(...). Agno telemetry is switched off.
"""

import json
import os
import sys
import threading
import time

os.environ["AGNO_TELEMETRY"] = "false"

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import agno.models.base
from agno.agent import Agent
from agno.exceptions import RunCancelledException
from agno.metrics import MessageMetrics
from agno.models.base import Model
from agno.models.response import ModelResponse

from openinference.instrumentation.agno import AgnoInstrumentor

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "agno-concurrent.jsonl")
OTLP_PATH = os.path.join(HERE, "agno-concurrent.otlp.json")
HARNESS_LOG_PATH = os.path.join(HERE, "harness-log.jsonl")
# Set AGNO_RECORD_NO_WORKAROUND=1 to check that without the workaround there is no LLM span
# (nothing is written then; the span summary is printed).
NO_WORKAROUND = os.environ.get("AGNO_RECORD_NO_WORKAROUND") == "1"

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
}
CITY = {"A": "Paris", "B": "Tokyo", "C": "Lima"}
LABEL_OF_CITY = {v: k for k, v in CITY.items()}

RUN = threading.local()  # .label, .calls
BARRIER = threading.Barrier(2, timeout=10)  # makes A and B overlap inside each model call


class FakeModel(Model):
    """A model in Agno's own interface: invoke() returns a provider ModelResponse."""

    def invoke(self, messages, assistant_message, response_format=None, tools=None,
               tool_choice=None, run_response=None, compress_tool_results=False):
        label = RUN.label
        RUN.calls += 1
        n = RUN.calls
        span_at_call = current_span_hex()
        run_id = getattr(run_response, "run_id", None)
        if label == "C":
            hlog(event="model_call", run=label, call=n, input_tokens=None, output_tokens=None,
                 current_span=span_at_call, agno_run_id=run_id,
                 outcome="raise RunCancelledException")
            raise RunCancelledException("run C cancelled during model call 1")
        inp, out = TOKENS[label][n - 1]
        try:
            BARRIER.wait()
        except threading.BrokenBarrierError:
            hlog(event="barrier_broken", run=label, call=n)
        assistant_message.metrics.start_timer()
        if n == 1:
            resp = ModelResponse(role="assistant", content=None, tool_calls=[{
                "id": f"call_{label}_1", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": CITY[label]})},
            }])
            returns = "tool_call get_weather"
        else:
            resp = ModelResponse(role="assistant",
                                 content=f"Weather in {CITY[label]}: sunny, 21C")
            returns = "text"
        resp.response_usage = MessageMetrics(input_tokens=inp, output_tokens=out,
                                             total_tokens=inp + out)
        assistant_message.metrics.stop_timer()
        hlog(event="model_call", run=label, call=n, input_tokens=inp, output_tokens=out,
             current_span=span_at_call, agno_run_id=run_id, returns=returns,
             messages_seen=len(messages))
        return resp

    async def ainvoke(self, *args, **kwargs):
        raise NotImplementedError("not used by this recorder")

    def invoke_stream(self, *args, **kwargs):
        raise NotImplementedError("not used by this recorder")

    async def ainvoke_stream(self, *args, **kwargs):
        raise NotImplementedError("not used by this recorder")
        yield  # pragma: no cover

    def _parse_provider_response(self, response, **kwargs):
        return response

    def _parse_provider_response_delta(self, response):
        return response


def get_weather(city: str) -> str:
    """Get the weather for a city.

    Args:
        city: name of the city
    """
    label = getattr(RUN, "label", None)
    hlog(event="tool_call", run=label, run_by_city=LABEL_OF_CITY.get(city), tool="get_weather",
         city=city, current_span=current_span_hex())
    return f"sunny, 21C in {city}"


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main():
    processor = RecordingProcessor()
    provider = TracerProvider(resource=Resource.create({"service.name": "agno-recording"}))
    provider.add_span_processor(processor)

    # The instrumentor wraps invoke/ainvoke/invoke_stream/ainvoke_stream only on the Model
    # subclasses it finds as attributes of the modules under agno.models at instrument() time
    # (pkgutil.walk_packages + inspect.getmembers). A user subclass defined elsewhere gets no
    # LLM span (see README), so the fake model is exposed in agno.models.base.
    if not NO_WORKAROUND:
        agno.models.base.FakeModel = FakeModel
    AgnoInstrumentor().instrument(tracer_provider=provider)

    model = FakeModel(id="fake-model-1", name="FakeModel", provider="fake")
    agent = Agent(name="weather_agent", model=model, tools=[get_weather], telemetry=False)

    results = {}

    def runner(label):
        RUN.label = label
        RUN.calls = 0
        hlog(event="run_begin", run=label, city=CITY[label])
        try:
            out = agent.run(f"What is the weather in {CITY[label]}?")
            status = getattr(out.status, "value", str(out.status))
            m = out.metrics
            results[label] = ("returned", status, str(out.content))
            hlog(event="run_end", run=label, outcome="returned", status=status,
                 content=str(out.content), agno_run_id=out.run_id, session_id=out.session_id,
                 run_metrics={"input_tokens": getattr(m, "input_tokens", None),
                              "output_tokens": getattr(m, "output_tokens", None),
                              "total_tokens": getattr(m, "total_tokens", None)},
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

    t = threading.Thread(target=runner, args=("C",), name="run-C")
    t.start()
    t.join()

    provider.force_flush()
    provider.shutdown()

    started = {e["span"] for e in processor.events if e["op"] == "start"}
    ended = {e["span"] for e in processor.events if e["op"] == "end"}
    kinds = [(e["name"], e["attributes"].get("openinference.span.kind"))
             for e in processor.events if e["op"] == "start"]
    print("spans started:", len(started), "ended:", len(ended), "never ended:", sorted(started - ended))
    print("span names/kinds:", kinds)
    print("results:", json.dumps(results, indent=1))
    if NO_WORKAROUND:
        return

    from importlib.metadata import version
    write_recording(
        processor,
        "agno " + version("agno") + " + openinference-instrumentation-agno "
            + version("openinference-instrumentation-agno")
            + "; see README.md. Labels are the 16-hex-digit span ids.",
        SCRIPT_PATH,
        OTLP_PATH,
        HLOG,
        HARNESS_LOG_PATH,
    )


if __name__ == "__main__":
    main()
