"""Record DSPy ReAct traces (openinference-instrumentation-dspy and
openinference-instrumentation-litellm) with a fake model.

Writes, next to this script:
  dspy-concurrent.jsonl      trace script (start/set/end events, labels = 16-hex span ids)
  dspy-concurrent.otlp.json  OTLP JSON, one ExportTraceServiceRequest per line (one per trace)
  harness-log.jsonl          the harness's own ground truth (model calls, tool calls, run outcomes)

Scenario:
  runs A and B: the SAME dspy.ReAct instance, run concurrently (asyncio.gather of
    `agent.acall`). Each: model call 1 -> get_weather(city); model call 2 -> finish;
    model call 3 -> the extract step's answer. The fake model makes both runs meet
    (asyncio.Barrier) inside each of their model calls, so the runs really overlap.
  run C: same agent, afterwards; its task is cancelled while its first model call is
    in flight.
No network is used: the model is a LiteLLM custom provider (`litellm.CustomLLM`,
registered as `fake/`), the way LiteLLM plugs in any backend, and DSPy's LM calls it
through LiteLLM (`engine="litellm"`, no cache).
"""

import asyncio
import json
import os
import sys

# LiteLLM fetches its model cost map at import unless told to use its bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import dspy
import litellm
from litellm import CustomLLM, ModelResponse
from litellm.types.utils import Usage

from openinference.instrumentation.dspy import DSPyInstrumentor
from openinference.instrumentation.litellm import LiteLLMInstrumentor

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "dspy-concurrent.jsonl")
OTLP_PATH = os.path.join(HERE, "dspy-concurrent.otlp.json")
HARNESS_LOG_PATH = os.path.join(HERE, "harness-log.jsonl")

# The recording processor and the writers every harness here shares.
sys.path.insert(0, os.path.dirname(HERE))
from recording import (  # noqa: E402
    CITY,
    HLOG,
    RUN_OF_CITY,
    RecordingProcessor,
    hlog,
    write_recording,
)

# (run, call) -> (prompt tokens, completion tokens)
TOKENS = {
    ("A", 1): (101, 11), ("A", 2): (133, 17), ("A", 3): (149, 13),
    ("B", 1): (157, 19), ("B", 2): (181, 23), ("B", 3): (191, 29),
    ("C", 1): (211, 31),  # never returned: run C is cancelled during this call
}
BARRIER = None  # asyncio.Barrier(2), made inside the event loop


def run_of(messages):
    text = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
    for city, run in RUN_OF_CITY.items():
        if city in text:
            return run
    return "?"


def call_of(messages):
    """1: no observation yet; 2: after get_weather; 3: the extract step (its signature
    asks for `reasoning` and `answer`)."""
    system = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
    if "[[ ## answer ## ]]" in system:
        return 3
    user = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
    return 2 if "observation_0" in user else 1


def reply(run, call):
    city = CITY[run]
    if call == 1:
        return ("[[ ## next_thought ## ]]\nI need the weather.\n\n"
                "[[ ## next_tool_name ## ]]\nget_weather\n\n"
                f"[[ ## next_tool_args ## ]]\n{json.dumps({'city': city})}\n\n"
                "[[ ## completed ## ]]")
    if call == 2:
        return ("[[ ## next_thought ## ]]\nI have the weather.\n\n"
                "[[ ## next_tool_name ## ]]\nfinish\n\n"
                "[[ ## next_tool_args ## ]]\n{}\n\n"
                "[[ ## completed ## ]]")
    return ("[[ ## reasoning ## ]]\nThe tool said so.\n\n"
            f"[[ ## answer ## ]]\nSunny, 21C in {city}\n\n"
            "[[ ## completed ## ]]")


class FakeLLM(CustomLLM):
    """A LiteLLM provider that answers from the script above, with the usage of TOKENS."""

    async def acompletion(self, *args, **kwargs):
        messages = kwargs.get("messages") or []
        run, call = run_of(messages), call_of(messages)
        inp, out = TOKENS[(run, call)]
        if run == "C":
            hlog(event="model_call_begin", run=run, call=call, input_tokens=inp, output_tokens=out)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                hlog(event="model_call_cancelled", run=run, call=call)
                raise
        if run in ("A", "B"):
            await BARRIER.wait()
        text = reply(run, call)
        hlog(event="model_call", run=run, call=call, input_tokens=inp, output_tokens=out,
             response_id=f"resp-{run}{call}")
        return ModelResponse(
            id=f"resp-{run}{call}",
            model="fake-react-model",
            choices=[{"index": 0, "finish_reason": "stop",
                      "message": {"role": "assistant", "content": text}}],
            usage=Usage(prompt_tokens=inp, completion_tokens=out, total_tokens=inp + out),
        )

    def completion(self, *args, **kwargs):
        raise NotImplementedError("the harness calls the model asynchronously")


async def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    run = RUN_OF_CITY.get(city, "?")
    hlog(event="tool_call", run=run, tool="get_weather", city=city)
    await asyncio.sleep(0.005)
    return f"sunny, 21C in {city}"


async def scenario(agent):
    global BARRIER
    BARRIER = asyncio.Barrier(2)

    async def run(label):
        hlog(event="run_begin", run=label, city=CITY[label])
        try:
            out = await agent.acall(question=f"What is the weather in {CITY[label]}?")
            hlog(event="run_end", run=label, outcome="returned", answer=out.answer)
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
    provider = TracerProvider(resource=Resource.create({"service.name": "dspy-recording"}))
    provider.add_span_processor(processor)
    DSPyInstrumentor().instrument(tracer_provider=provider)
    LiteLLMInstrumentor().instrument(tracer_provider=provider)

    litellm.custom_provider_map = [{"provider": "fake", "custom_handler": FakeLLM()}]
    lm = dspy.LM("fake/fake-react-model", engine="litellm", cache=False, num_retries=0)
    dspy.configure(lm=lm)
    agent = dspy.ReAct("question -> answer", tools=[get_weather], max_iters=4)

    asyncio.run(scenario(agent))

    provider.force_flush()
    provider.shutdown()
    write_recording(
        processor,
        f"dspy {dspy.__version__} ReAct + openinference-instrumentation-dspy and -litellm; "
        "see README.md. Labels are the 16-hex-digit span ids.",
        SCRIPT_PATH,
        OTLP_PATH,
        HLOG,
        HARNESS_LOG_PATH,
    )


if __name__ == "__main__":
    main()
