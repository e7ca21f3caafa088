"""Record LlamaIndex FunctionAgent OpenTelemetry traces (OpenInference instrumentation).

Fake LLM (FunctionCallingLLM subclass), no network. Writes, next to this file:
  llamaindex-concurrent.jsonl      trace script (start/set/end events, label = 16-hex span id)
  llamaindex-concurrent.otlp.json  OTLP JSON, one ExportTraceServiceRequest per line
  harness-log.jsonl                the harness's own ground-truth log (LLM calls, tool calls, runs)
"""
import asyncio
import json
import os
import sys
import time
from typing import Any, List, Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "llamaindex-concurrent.jsonl")
OTLP_PATH = os.path.join(HERE, "llamaindex-concurrent.otlp.json")
HARNESS_PATH = os.path.join(HERE, "harness-log.jsonl")

# ---------------------------------------------------------------- recording processor

# The recording processor and the writers every harness here shares.
sys.path.insert(0, os.path.dirname(HERE))
from recording import RecordingProcessor, hex_span as _hex, write_otlp  # noqa: E402


# ---------------------------------------------------------------- harness log

HARNESS: List[dict] = []


def hlog(**kw: Any) -> None:
    span = trace.get_current_span()
    ctx = span.get_span_context()
    kw["current_otel_span_id"] = _hex(ctx.span_id) if ctx.is_valid else None
    kw["current_otel_span_name"] = getattr(span, "name", None)
    kw["time_ns"] = time.time_ns()
    HARNESS.append(kw)
    print("HARNESS", json.dumps(kw), flush=True)


# ---------------------------------------------------------------- fake LLM

from llama_index.core.llms import ChatMessage, ChatResponse, CompletionResponse, LLMMetadata, MessageRole
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.tools import FunctionTool
from llama_index.core.agent.workflow import FunctionAgent

CITY_RUN = {"Paris": "A", "Tokyo": "B", "Oslo": "C"}
# (run, call number) -> (prompt_tokens, completion_tokens)
USAGE = {
    ("A", 1): (101, 11), ("A", 2): (133, 17),
    ("B", 1): (157, 19), ("B", 2): (181, 23),
    ("C", 1): (199, 29),  # never returned: run C is cancelled while in its first call
}


def _run_of(messages: Sequence[ChatMessage]) -> str:
    for m in messages:
        if m.role == MessageRole.USER:
            for city, run in CITY_RUN.items():
                if city in (m.content or ""):
                    return run
    return "?"


def _city_of(run: str) -> str:
    return {v: k for k, v in CITY_RUN.items()}[run]


class FakeToolLLM(FunctionCallingLLM):
    """Canned responses: call 1 asks for get_weather(city); call 2 answers."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="fake-tool-llm", is_function_calling_model=True,
                           is_chat_model=True, context_window=8192, num_output=256)

    @classmethod
    def class_name(cls) -> str:
        return "FakeToolLLM"

    def _prepare_chat_with_tools(self, tools, user_msg=None, chat_history=None, verbose=False,
                                 allow_parallel_tool_calls=False, tool_required=False, **kwargs):
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(user_msg if isinstance(user_msg, ChatMessage)
                            else ChatMessage(role="user", content=user_msg))
        return {"messages": messages,
                "tools": [t.metadata.to_openai_tool() for t in tools]}

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call=True,
                                     **kwargs) -> List[ToolSelection]:
        calls = response.message.additional_kwargs.get("tool_calls", [])
        if not calls and error_on_no_tool_call:
            raise ValueError("no tool call")
        return [ToolSelection(tool_id=c["id"], tool_name=c["function"]["name"],
                              tool_kwargs=json.loads(c["function"]["arguments"])) for c in calls]

    def _respond(self, messages: Sequence[ChatMessage]) -> ChatResponse:
        run = _run_of(messages)
        call_no = 2 if any(m.role == MessageRole.TOOL for m in messages) else 1
        p, c = USAGE[(run, call_no)]
        usage = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        rid = f"resp-{run}{call_no}"
        if call_no == 1:
            tc = {"id": f"call-{run}1", "type": "function",
                  "function": {"name": "get_weather",
                               "arguments": json.dumps({"city": _city_of(run)})}}
            msg = ChatMessage(role="assistant", content="",
                              additional_kwargs={"tool_calls": [tc]})
        else:
            tool_out = [m for m in messages if m.role == MessageRole.TOOL][-1].content
            msg = ChatMessage(role="assistant", content=f"Answer for run {run}: {tool_out}")
        raw = {"id": rid, "model": "fake-tool-llm", "usage": usage}
        return ChatResponse(message=msg, raw=raw)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        raise NotImplementedError("sync chat unused")

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        run = _run_of(messages)
        call_no = 2 if any(m.role == MessageRole.TOOL for m in messages) else 1
        p, c = USAGE[(run, call_no)]
        hlog(event="llm_call_begin", run=run, call=call_no, prompt_tokens=p, completion_tokens=c)
        if run == "C":
            # Run C hangs in its first LLM call; the harness cancels its task.
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                hlog(event="llm_call_cancelled", run=run, call=call_no)
                raise
        # yield so the two concurrent runs interleave inside LLM calls
        await asyncio.sleep(0.02 if run == "A" else 0.01)
        resp = self._respond(messages)
        hlog(event="llm_call_end", run=run, call=call_no, prompt_tokens=p, completion_tokens=c,
             response_id=resp.raw["id"])
        return resp

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise NotImplementedError

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise NotImplementedError

    def stream_chat(self, messages, **kwargs):
        raise NotImplementedError

    def stream_complete(self, prompt, formatted=False, **kwargs):
        raise NotImplementedError

    async def astream_chat(self, messages, **kwargs):
        raise NotImplementedError

    async def astream_complete(self, prompt, formatted=False, **kwargs):
        raise NotImplementedError


async def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    run = CITY_RUN.get(city, "?")
    hlog(event="tool_call", run=run, tool="get_weather", city=city)
    await asyncio.sleep(0.005)
    return f"Sunny, 21C in {city}"


# ---------------------------------------------------------------- scenario

async def scenario(agent: FunctionAgent) -> None:
    async def run(label: str, city: str):
        hlog(event="run_begin", run=label, city=city)
        handler = agent.run(user_msg=f"What is the weather in {city}?")
        try:
            result = await handler
            hlog(event="run_end", run=label, result=str(result))
            return result
        except asyncio.CancelledError:
            hlog(event="run_cancelled", run=label)
            raise

    # Phase 1: runs A and B concurrently on the SAME agent instance.
    await asyncio.gather(run("A", "Paris"), run("B", "Tokyo"))

    # Phase 2: run C, cancelled while its first LLM call is in flight.
    task = asyncio.create_task(run("C", "Oslo"))
    while not any(h.get("event") == "llm_call_begin" and h.get("run") == "C" for h in HARNESS):
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.01)
    hlog(event="cancel_requested", run="C")
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        hlog(event="run_c_task_cancelled", run="C")
    # let the workflow runtime unwind whatever it still has running
    await asyncio.sleep(0.5)
    hlog(event="after_cancel_settle", run="C")


def main() -> None:
    proc = RecordingProcessor()
    provider = TracerProvider()
    provider.add_span_processor(proc)
    instrumentor = LlamaIndexInstrumentor()
    instrumentor.instrument(tracer_provider=provider)

    tool = FunctionTool.from_defaults(async_fn=get_weather, name="get_weather",
                                      description="Get the current weather for a city.")
    agent = FunctionAgent(name="weather_agent", description="Answers weather questions.",
                          tools=[tool], llm=FakeToolLLM(), streaming=False,
                          system_prompt="You are a weather assistant.")
    asyncio.run(scenario(agent))

    open_before_shutdown = [e["span"] for e in proc.events if e["op"] == "start"
                            and not any(x["op"] == "end" and x["span"] == e["span"] for x in proc.events)]
    hlog(event="spans_open_before_shutdown", spans=open_before_shutdown)
    provider.shutdown()
    instrumentor.uninstrument()

    with open(SCRIPT_PATH, "w") as f:
        for ev in proc.events:
            f.write(json.dumps(ev, separators=(",", ":")) + "\n")

    write_otlp(OTLP_PATH, proc.ended, per_trace=False)

    with open(HARNESS_PATH, "w") as f:
        for h in HARNESS:
            f.write(json.dumps(h, separators=(",", ":")) + "\n")
    print(f"wrote {len(proc.events)} events, {len(proc.ended)} ended spans", file=sys.stderr)


if __name__ == "__main__":
    main()
