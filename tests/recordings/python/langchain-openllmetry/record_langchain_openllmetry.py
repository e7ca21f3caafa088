"""Record LangChain agent traces through OpenLLMetry (opentelemetry-instrumentation-langchain)
with a fake chat model.

Writes, next to this script:
  langchain-openllmetry-concurrent.jsonl      trace script (labels = 16-hex span ids)
  langchain-openllmetry-concurrent.otlp.json  OTLP JSON, one ExportTraceServiceRequest per line (one per trace)
  harness-log.jsonl                           the harness's own ground truth

Scenario:
  runs A and B: the SAME agent (`langchain.agents.create_agent`), run concurrently
    (asyncio.gather of `agent.ainvoke`). Each: model call 1 -> get_weather(city); model
    call 2 -> the text answer. The fake model makes both runs meet (asyncio.Barrier)
    inside each model call.
  run C: same agent, afterwards; its task is cancelled while its first model call is in
    flight.
No network is used: the model is a `BaseChatModel` subclass (LangChain's own chat-model
interface) returning `AIMessage`s with `usage_metadata`.
"""

import asyncio
import os
import sys
from typing import Any, List, Optional

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import langchain
from langchain.agents import create_agent
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool

from opentelemetry.instrumentation.langchain import LangchainInstrumentor

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "langchain-openllmetry-concurrent.jsonl")
OTLP_PATH = os.path.join(HERE, "langchain-openllmetry-concurrent.otlp.json")
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


class FakeChatModel(BaseChatModel):
    """Canned answers: call 1 asks for get_weather(city), call 2 answers."""

    @property
    def _llm_type(self) -> str:
        return "fake-chat-model"

    @property
    def _identifying_params(self):
        return {"model_name": "fake-chat-model"}

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        raise NotImplementedError("the harness calls the model asynchronously")

    async def _agenerate(self, messages: List[BaseMessage], stop: Optional[List[str]] = None,
                         run_manager: Optional[AsyncCallbackManagerForLLMRun] = None,
                         **kwargs: Any) -> ChatResult:
        run = "?"
        for m in messages:
            if isinstance(m, HumanMessage):
                for city, r in RUN_OF_CITY.items():
                    if city in str(m.content):
                        run = r
        call = 2 if any(isinstance(m, ToolMessage) for m in messages) else 1
        inp, out = TOKENS[(run, call)]
        if run == "C":
            hlog(event="model_call_begin", run=run, call=call, input_tokens=inp, output_tokens=out)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                hlog(event="model_call_cancelled", run=run, call=call)
                raise
        await BARRIER.wait()
        usage = {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}
        if call == 1:
            msg = AIMessage(content="", id=f"resp-{run}{call}",
                            tool_calls=[{"name": "get_weather", "args": {"city": CITY[run]},
                                         "id": f"call_{run}_1", "type": "tool_call"}],
                            usage_metadata=usage,
                            response_metadata={"model_name": "fake-chat-model"})
        else:
            msg = AIMessage(content=f"Sunny, 21C in {CITY[run]}", id=f"resp-{run}{call}",
                            usage_metadata=usage,
                            response_metadata={"model_name": "fake-chat-model"})
        hlog(event="model_call", run=run, call=call, input_tokens=inp, output_tokens=out)
        return ChatResult(generations=[ChatGeneration(message=msg)],
                          llm_output={"model_name": "fake-chat-model"})


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
            out = await agent.ainvoke({"messages": [HumanMessage(f"What is the weather in {CITY[label]}?")]})
            hlog(event="run_end", run=label, outcome="returned", answer=out["messages"][-1].content)
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
    os.environ.setdefault("TRACELOOP_TRACE_CONTENT", "false")
    processor = RecordingProcessor()
    provider = TracerProvider(resource=Resource.create({"service.name": "langchain-openllmetry-recording"}))
    provider.add_span_processor(processor)
    LangchainInstrumentor().instrument(tracer_provider=provider)
    agent = create_agent(FakeChatModel(), tools=[get_weather], name="weather_agent")
    asyncio.run(scenario(agent))
    provider.force_flush()
    provider.shutdown()
    write_recording(
        processor,
        f"langchain {langchain.__version__} create_agent + opentelemetry-instrumentation-langchain "
        "(OpenLLMetry); see README.md. Labels are the 16-hex-digit span ids.",
        SCRIPT_PATH,
        OTLP_PATH,
        HLOG,
        HARNESS_LOG_PATH,
    )


if __name__ == "__main__":
    main()
