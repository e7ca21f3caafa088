"""Record CrewAI traces through OpenInference (openinference-instrumentation-crewai, its
event-listener mode, which makes the LLM spans) with a fake LLM.

Writes, next to this script:
  crewai-concurrent.jsonl      trace script (labels = 16-hex span ids)
  crewai-concurrent.otlp.json  OTLP JSON, one ExportTraceServiceRequest per line (one per trace)
  harness-log.jsonl            the harness's own ground truth

Scenario:
  runs A and B: kicked off concurrently (asyncio.gather of `crew.akickoff`), each on a
    crew of its own made by the same factory, sharing ONE LLM object and tool: CrewAI
    refuses to run one agent's executor twice at once ("Executor is already running.
    Cannot invoke the same executor instance concurrently"). Each: model call 1 -> get_weather(city) (CrewAI's
    text tool-calling format); model call 2 -> the final answer. The fake LLM makes both
    runs meet (threading.Barrier) inside each model call.
  run C: a third crew from the factory, afterwards; its task is cancelled while its first model call is in
    flight.
No network is used: the LLM is a `crewai.llms.base_llm.BaseLLM` subclass (CrewAI's own
interface for custom LLMs) that emits CrewAI's LLM call events and tracks usage the way
its native providers do. CrewAI's own telemetry is off.
"""

import asyncio
import json
import os
import sys
import threading

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "false")

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import crewai
from crewai import Agent, Crew, Task
from crewai.events.types.llm_events import LLMCallType
from crewai.llms.base_llm import BaseLLM, llm_call_context
from crewai.tools import tool

from openinference.instrumentation.crewai import CrewAIInstrumentor

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "crewai-concurrent.jsonl")
OTLP_PATH = os.path.join(HERE, "crewai-concurrent.otlp.json")
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

BARRIER = threading.Barrier(2, timeout=30)  # A and B meet inside each model call
RELEASE_C = threading.Event()


def run_and_call(messages):
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    text = "\n".join(str(m.get("content", "")) for m in messages)
    run = "?"
    for city, r in RUN_OF_CITY.items():
        if city in text:
            run = r
    # The tool's answer (lower-case "sunny", unlike the final answer) in the messages.
    call = 2 if run in CITY and f"sunny, 21C in {CITY[run]}" in text else 1
    return run, call


class FakeLLM(BaseLLM):
    """Answers in CrewAI's text tool-calling format, with the usage of TOKENS."""

    def supports_function_calling(self) -> bool:
        return False

    def call(self, messages, tools=None, callbacks=None, available_functions=None,
             from_task=None, from_agent=None, response_model=None):
        # CrewAI's async executor calls the LLM synchronously, in a worker thread; one
        # call scope per call, as CrewAI's native providers open.
        with llm_call_context():
            return self._call(messages, tools, callbacks, available_functions, from_task,
                              from_agent)

    def _call(self, messages, tools, callbacks, available_functions, from_task, from_agent):
        run, call = run_and_call(messages)
        if run == "C" and RELEASE_C.is_set():
            # After the recording: let the abandoned run finish quietly.
            return "Thought: done.\nFinal Answer: abandoned"
        self._emit_call_started_event(messages=messages, tools=tools, callbacks=callbacks,
                                      available_functions=available_functions,
                                      from_task=from_task, from_agent=from_agent)
        inp, out = TOKENS[(run, call)]
        if run == "C":
            hlog(event="model_call_begin", run=run, call=call, input_tokens=inp, output_tokens=out)
            # Blocks until the harness has written the recording (cancelling the
            # awaiting task cannot reach a call in a worker thread).
            RELEASE_C.wait(timeout=60)
            return "Thought: done.\nFinal Answer: abandoned"
        BARRIER.wait()
        if call == 1:
            text = ("Thought: I need the weather.\nAction: get_weather\n"
                    f"Action Input: {json.dumps({'city': CITY[run]})}")
        else:
            text = f"Thought: I know the answer.\nFinal Answer: Sunny, 21C in {CITY[run]}"
        usage = {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out}
        self._track_token_usage_internal(usage)
        hlog(event="model_call", run=run, call=call, input_tokens=inp, output_tokens=out)
        self._emit_call_completed_event(response=text, call_type=LLMCallType.LLM_CALL,
                                        from_task=from_task, from_agent=from_agent,
                                        messages=messages, usage=usage,
                                        response_id=f"resp-{run}{call}")
        return text


@tool("get_weather")
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    hlog(event="tool_call", run=RUN_OF_CITY.get(city, "?"), tool="get_weather", city=city)
    return f"sunny, 21C in {city}"


async def scenario(make_crew):
    async def run(label):
        hlog(event="run_begin", run=label, city=CITY[label])
        try:
            out = await make_crew().akickoff(inputs={"city": CITY[label]})
            hlog(event="run_end", run=label, outcome="returned", answer=str(out.raw),
                 usage=out.token_usage.model_dump() if out.token_usage else None)
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
    provider = TracerProvider(resource=Resource.create({"service.name": "crewai-recording"}))
    provider.add_span_processor(processor)
    CrewAIInstrumentor().instrument(tracer_provider=provider, use_event_listener=True)
    llm = FakeLLM(model="fake-crew-model")  # shared by every crew

    def make_crew():
        agent = Agent(role="weather agent", goal="Answer weather questions",
                      backstory="You look the weather up.", llm=llm, tools=[get_weather],
                      allow_delegation=False, verbose=False, max_iter=4)
        task = Task(description="What is the weather in {city}?",
                    expected_output="The weather.", agent=agent)
        return Crew(agents=[agent], tasks=[task], verbose=False)

    asyncio.run(scenario(make_crew))
    provider.force_flush()
    write_recording(
        processor,
        f"crewai {crewai.__version__} + openinference-instrumentation-crewai (event listener); "
        "see README.md. Labels are the 16-hex-digit span ids.",
        SCRIPT_PATH,
        OTLP_PATH,
        HLOG,
        HARNESS_LOG_PATH,
    )
    RELEASE_C.set()  # lets run C's worker thread finish, after the recording
    provider.shutdown()


if __name__ == "__main__":
    main()
