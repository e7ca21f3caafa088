"""The processor on the real Python SDK: writes, leaks under both policies, metrics,
budgets, configuration, and input that must never raise."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from typing import Any, Dict, List, Optional

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.status import StatusCode

from conftest import Collecting, Pipeline
from genai_audit import BudgetExceeded, GenAiAuditSpanProcessor, RoleRule

INVOKE = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "coder"}
STEP = {"gen_ai.operation.name": "react"}
CHAT = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}


def usage(span: Any, input_tokens: int, output_tokens: int, response_id: Optional[str] = None) -> None:
    span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    if response_id is not None:
        span.set_attribute("gen_ai.response.id", response_id)


def turn(tracer: Any, calls: int = 2, agent: str = "coder") -> None:
    with tracer.start_as_current_span("invoke_agent " + agent, attributes={**INVOKE, "gen_ai.agent.name": agent}):
        for i in range(calls):
            with tracer.start_as_current_span("react step", attributes=STEP):
                with tracer.start_as_current_span("chat gpt-4o", attributes=CHAT) as chat:
                    usage(chat, 1000, 100)


def findings(span: ReadableSpan) -> List[str]:
    return list(span.attributes.get("genai_audit.findings", ()))


def test_writes_roles_cost_and_totals(pipeline: Any) -> None:
    p: Pipeline = pipeline()
    turn(p.tracer, calls=2)
    chats = p.exporter.named("chat gpt-4o")
    assert [c.attributes["genai_audit.cumulative.input_tokens"] for c in chats] == [1000, 2000]
    assert [c.attributes["genai_audit.cumulative.generations"] for c in chats] == [1, 2]
    assert chats[0].attributes["genai_audit.role"] == "generation"
    assert chats[0].attributes["genai_audit.cost.model"] == "openai/gpt-4o"
    assert math.isclose(chats[0].attributes["genai_audit.cost_usd"], 0.0035)
    steps = p.exporter.named("react step")
    assert [s.attributes["genai_audit.step.index"] for s in steps] == [1, 2]
    inv = p.exporter.one("invoke_agent coder")
    assert inv.attributes["genai_audit.steps"] == 2
    assert inv.attributes["genai_audit.total.input_tokens"] == 2000
    assert inv.attributes["genai_audit.total.output_tokens"] == 200
    assert math.isclose(inv.attributes["genai_audit.total.cost_usd"], 0.007)
    assert "genai_audit.findings" not in inv.attributes
    # The span keeps everything else: ids, parent, times, resource, scope.
    assert chats[0].parent.span_id == steps[0].context.span_id
    assert chats[0].instrumentation_scope.name == "tests"
    assert chats[0].end_time >= chats[0].start_time
    assert not p.audit.tracked_spans()


def test_a_span_without_writes_is_forwarded_as_it_is() -> None:
    seen: List[ReadableSpan] = []

    class Inner(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            seen.append(span)

    audit = GenAiAuditSpanProcessor(Inner(Collecting()))
    provider = TracerProvider()
    provider.add_span_processor(audit)
    span = provider.get_tracer("t").start_span("GET /health", attributes={"http.method": "GET"})
    span.end()
    assert len(seen) == 1 and type(seen[0]) is ReadableSpan
    assert dict(seen[0].attributes) == {"http.method": "GET"}
    provider.shutdown()


def open_child_run(p: Pipeline) -> Any:
    """An invocation whose second model call never ends."""
    with p.tracer.start_as_current_span("invoke_agent coder", attributes=INVOKE):
        with p.tracer.start_as_current_span("chat gpt-4o", attributes=CHAT) as chat:
            usage(chat, 1000, 100)
        return p.tracer.start_span("chat gpt-4o", attributes=CHAT)  # never ended here


def test_unclosed_child_under_flag_then_late_end(pipeline: Any) -> None:
    p: Pipeline = pipeline(leak_policy="flag")
    leaked = open_child_run(p)
    inv = p.exporter.one("invoke_agent coder")
    assert findings(inv) == ["unclosed_child"]
    assert inv.attributes["genai_audit.leak.unclosed_children"] == 1
    assert list(inv.attributes["genai_audit.leak.unclosed_names"]) == ["chat gpt-4o"]
    assert inv.attributes["genai_audit.total.partial"] is True
    assert len(p.exporter.named("chat gpt-4o")) == 1
    leaked.end()
    late = [s for s in p.exporter.named("chat gpt-4o") if s.context.span_id == leaked.context.span_id]
    assert len(late) == 1 and "late_end" in findings(late[0])


def test_close_exports_the_open_child_once(pipeline: Any) -> None:
    p: Pipeline = pipeline(leak_policy="close")
    leaked = open_child_run(p)
    inv = p.exporter.one("invoke_agent coder")
    assert findings(inv) == ["unclosed_child"]
    closed = [s for s in p.exporter.spans if s.context.span_id == leaked.context.span_id]
    assert len(closed) == 1
    assert findings(closed[0]) == ["closed_by_audit"]
    assert closed[0].status.status_code is StatusCode.ERROR
    assert closed[0].status.description == "unclosed when parent ended"
    assert closed[0].end_time == inv.end_time
    assert closed[0].parent.span_id == inv.context.span_id
    assert closed[0].attributes["gen_ai.request.model"] == "gpt-4o"
    # Its real end comes later: counted, not exported again.
    leaked.end()
    assert len([s for s in p.exporter.spans if s.context.span_id == leaked.context.span_id]) == 1


def test_stale_at_shutdown_under_both_policies(pipeline: Any) -> None:
    for policy in ("flag", "close"):
        p: Pipeline = pipeline(leak_policy=policy)
        inv = p.tracer.start_span("invoke_agent coder", attributes=INVOKE)
        chat = p.tracer.start_span("chat gpt-4o", attributes=CHAT, context=trace_api.set_span_in_context(inv))
        p.provider.shutdown()
        exported = {s.context.span_id: s for s in p.exporter.spans}
        if policy == "flag":
            assert not exported
        else:
            assert set(exported) == {inv.context.span_id, chat.context.span_id}
            assert "stale" in findings(exported[inv.context.span_id])
            assert "closed_by_audit" in findings(exported[chat.context.span_id])
            assert all(s.status.status_code is StatusCode.ERROR for s in exported.values())
        metrics = p.metrics()
        stale = [v for a, v in metrics["genai_audit.findings"] if a["genai_audit.finding"] == "stale"]
        assert sum(stale) >= 1


def test_stale_by_age_and_capacity(pipeline: Any) -> None:
    p: Pipeline = pipeline(leak_policy="close", max_tracked_spans=2)
    first = p.tracer.start_span("invoke_agent coder", attributes=INVOKE)
    for _ in range(3):
        p.tracer.start_span("invoke_agent other", attributes={**INVOKE, "gen_ai.agent.name": "other"})
    evicted = [s for s in p.exporter.spans if s.context.span_id == first.context.span_id]
    assert len(evicted) == 1 and "stale" in findings(evicted[0])
    first.end()
    assert len([s for s in p.exporter.spans if s.context.span_id == first.context.span_id]) == 1


def test_metrics_names_units_attributes(pipeline: Any) -> None:
    p: Pipeline = pipeline(leak_policy="flag", token_usage_metric=True)
    turn(p.tracer, calls=2)
    open_child_run(p)
    metrics = p.metrics()
    assert p.units["genai_audit.findings"] == "{finding}"
    assert p.units["genai_audit.cost"] == "USD"
    assert p.units["genai_audit.invocation.cost"] == "USD"
    assert p.units["genai_audit.invocation.tokens"] == "{token}"
    assert p.units["genai_audit.spans.tracked"] == "{span}"
    assert p.units["gen_ai.client.token.usage"] == "{token}"
    assert p.scopes["genai_audit.cost"].name == "genai-audit"
    assert metrics["genai_audit.findings"] == [
        (
            {"genai_audit.finding": "unclosed_child", "genai_audit.role": "invocation", "genai_audit.repaired": False},
            1,
        )
    ]
    [(attrs, cost)] = metrics["genai_audit.cost"]
    assert attrs == {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.agent.name": "coder",
        "genai_audit.cost.source": "computed",
    }
    assert math.isclose(cost, 0.0035 * 3)
    tokens = {a["gen_ai.token.type"]: point.sum for a, point in metrics["genai_audit.invocation.tokens"]}
    assert tokens == {"input": 3000, "output": 300}
    [(attrs, point)] = metrics["genai_audit.invocation.cost"]
    assert attrs == {"gen_ai.agent.name": "coder"} and point.count == 2
    assert metrics["genai_audit.spans.tracked"] == [({}, p.audit.tracked_spans())]
    assert p.audit.tracked_spans() >= 1  # the leaked call


def test_budget_callback_once_per_invocation_on_the_ending_thread(pipeline: Any) -> None:
    got: List[BudgetExceeded] = []
    threads: List[int] = []

    def on_exceeded(event: BudgetExceeded) -> None:
        got.append(event)
        threads.append(threading.get_ident())

    p: Pipeline = pipeline(budget_tokens=2500, on_budget_exceeded=on_exceeded)
    turn(p.tracer, calls=5)
    assert len(got) == 1
    event = got[0]
    assert event.agent_name == "coder"
    assert event.generations == 3 and event.input_tokens == 3000 and event.output_tokens == 300
    assert event.budget_tokens == 2500 and event.budget_usd is None
    assert event.invocation_span_id == p.exporter.one("invoke_agent coder").context.span_id
    assert threads == [threading.get_ident()]
    chats = p.exporter.named("chat gpt-4o")
    assert ["budget_exceeded" in findings(c) for c in chats] == [False, False, True, False, False]
    assert "budget_exceeded" in findings(p.exporter.one("invoke_agent coder"))


def test_a_budget_stops_a_looping_agent(pipeline: Any) -> None:
    """The callback cancels the run: fewer model calls than the loop would make."""
    calls = 0
    loop_calls = 50

    async def looping_agent(tracer: Any) -> None:
        nonlocal calls
        with tracer.start_as_current_span("invoke_agent looper", attributes={**INVOKE, "gen_ai.agent.name": "looper"}):
            for _ in range(loop_calls):
                with tracer.start_as_current_span("chat gpt-4o", attributes=CHAT) as chat:
                    calls += 1
                    await asyncio.sleep(0)
                    usage(chat, 1000, 100)
                await asyncio.sleep(0)

    async def main() -> None:
        task = asyncio.ensure_future(looping_agent(p.tracer))
        tasks.append(task)
        try:
            await task
        except asyncio.CancelledError:
            pass

    tasks: List["asyncio.Future[None]"] = []
    p: Pipeline = pipeline(budget_usd=0.01, on_budget_exceeded=lambda e: tasks[0].cancel())
    asyncio.run(main())
    assert calls < loop_calls
    assert calls == 3  # $0.0035 a call: the third passes $0.01, the run stops there
    inv = p.exporter.one("invoke_agent looper")
    assert "budget_exceeded" in findings(inv)
    assert inv.attributes["genai_audit.total.generations"] == 3


def test_contamination_of_a_shared_agent_run_concurrently_is_repaired(pipeline: Any) -> None:
    """One agent object, two concurrent runs: each run writes on its invocation span the
    usage and response id the object last saw — the other run's, in the race."""

    class SharedAgent:
        def __init__(self) -> None:
            self.last_response_id: Optional[str] = None
            self.last_usage = (0, 0)

        async def run(self, tracer: Any, name: str, tokens: int, gate: asyncio.Event, other: asyncio.Event) -> None:
            with tracer.start_as_current_span("invoke_agent shared", attributes={**INVOKE, "gen_ai.agent.name": "shared"}) as inv:
                with tracer.start_as_current_span("chat gpt-4o", attributes=CHAT) as chat:
                    usage(chat, tokens, 10, response_id=f"resp-{name}")
                    self.last_response_id = f"resp-{name}"
                    self.last_usage = (tokens, 10)
                gate.set()
                await other.wait()  # the other run's call ends in between
                inv.set_attribute("gen_ai.response.id", self.last_response_id)
                inv.set_attribute("gen_ai.usage.input_tokens", self.last_usage[0])
                inv.set_attribute("gen_ai.usage.output_tokens", self.last_usage[1])

    async def main(p: Pipeline) -> None:
        agent = SharedAgent()
        a_done, b_done = asyncio.Event(), asyncio.Event()
        await asyncio.gather(
            agent.run(p.tracer, "a", 100, a_done, b_done), agent.run(p.tracer, "b", 200, b_done, a_done)
        )

    for policy in ("flag", "repair"):
        p: Pipeline = pipeline(contamination_policy=policy)
        asyncio.run(main(p))
        invs = p.exporter.named("invoke_agent shared")
        assert len(invs) == 2
        chats = {c.context.trace_id: c for c in p.exporter.named("chat gpt-4o")}
        [bad] = [i for i in invs if findings(i)]
        [good] = [i for i in invs if not findings(i)]
        assert {"foreign_response", "usage_mismatch"} <= set(findings(bad))
        own = chats[bad.context.trace_id].attributes
        other = chats[good.context.trace_id].attributes
        if policy == "repair":
            assert bad.attributes["gen_ai.response.id"] == own["gen_ai.response.id"]
            assert bad.attributes["gen_ai.usage.input_tokens"] == own["gen_ai.usage.input_tokens"]
            assert bad.attributes["genai_audit.reported.gen_ai.response.id"] == other["gen_ai.response.id"]
            assert bad.attributes["genai_audit.reported.gen_ai.usage.input_tokens"] == other["gen_ai.usage.input_tokens"]
            assert all(a["genai_audit.repaired"] for a, _ in p.metrics()["genai_audit.findings"])
        else:
            assert bad.attributes["gen_ai.response.id"] == other["gen_ai.response.id"]
            assert "genai_audit.reported.gen_ai.response.id" not in bad.attributes


def test_threads_and_tasks_get_exact_totals(pipeline: Any) -> None:
    p: Pipeline = pipeline()

    def worker(n: int) -> None:
        for _ in range(20):
            turn(p.tracer, calls=3, agent=f"agent-{n}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def task(n: int) -> None:
        tracer = p.tracer
        with tracer.start_as_current_span("invoke_agent async", attributes={**INVOKE, "gen_ai.agent.name": "async"}):
            for _ in range(3):
                with tracer.start_as_current_span("chat gpt-4o", attributes=CHAT) as chat:
                    await asyncio.sleep(0)
                    usage(chat, 1000, 100)

    async def tasks() -> None:
        await asyncio.gather(*(task(n) for n in range(20)))

    asyncio.run(tasks())
    invs = [s for s in p.exporter.spans if s.name.startswith("invoke_agent")]
    assert len(invs) == 100
    for inv in invs:
        assert inv.attributes["genai_audit.total.input_tokens"] == 3000
        assert inv.attributes["genai_audit.total.generations"] == 3
        assert not findings(inv)
    assert p.audit.tracked_spans() == 0


def test_rules(pipeline: Any) -> None:
    p: Pipeline = pipeline(
        rules=[RoleRule.name_prefix("loop.step-", "step"), ("attribute", "my.kind", "llm", "generation")]
    )
    with p.tracer.start_as_current_span("invoke_agent coder", attributes=INVOKE):
        with p.tracer.start_as_current_span("loop.step-1"):
            with p.tracer.start_as_current_span("llm-call-1", attributes={"my.kind": "llm"}) as call:
                usage(call, 10, 1)
    assert p.exporter.one("loop.step-1").attributes["genai_audit.role"] == "step"
    assert p.exporter.one("llm-call-1").attributes["genai_audit.role"] == "generation"
    assert p.exporter.one("invoke_agent coder").attributes["genai_audit.total.input_tokens"] == 10


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"leak_policy": "drop"},
        {"leak_policy": 1},
        {"contamination_policy": "close"},
        {"max_tracked_spans": 0},
        {"max_tracked_spans": "10"},
        {"max_tracked_spans": True},
        {"max_span_age_secs": 0},
        {"budget_usd": 0},
        {"budget_usd": float("nan")},
        {"budget_usd": float("inf")},
        {"budget_usd": -1.0},
        {"budget_tokens": 0},
        {"prices_file": "/nonexistent/prices.json"},
        {"rules": [("name_prefix", "x", "wizard")]},
        {"rules": ["x"]},
        {"rules": "x"},
        {"on_budget_exceeded": 3},
        {"meter_provider": object()},
        {"disabled": "yes"},
    ],
)
def test_invalid_settings_raise_value_error(options: Dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        GenAiAuditSpanProcessor(SimpleSpanProcessor(Collecting()), **options)


def test_an_unusable_inner_raises_value_error() -> None:
    with pytest.raises(ValueError):
        GenAiAuditSpanProcessor(None)  # type: ignore[arg-type]


def test_environment_with_code_winning(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    monkeypatch.setenv("GENAI_AUDIT_LEAK_POLICY", "close")
    monkeypatch.setenv("GENAI_AUDIT_CONTAMINATION_POLICY", "REPAIR")
    monkeypatch.setenv("GENAI_AUDIT_MAX_TRACKED_SPANS", "7")
    monkeypatch.setenv("GENAI_AUDIT_MAX_SPAN_AGE_SECS", "9")
    audit = GenAiAuditSpanProcessor(SimpleSpanProcessor(Collecting()))
    assert (audit.leak_policy, audit.contamination_policy) == ("close", "repair")
    assert (audit.max_tracked_spans, audit.max_span_age_secs) == (7, 9)
    audit = GenAiAuditSpanProcessor(SimpleSpanProcessor(Collecting()), leak_policy="flag", max_tracked_spans=3)
    assert (audit.leak_policy, audit.max_tracked_spans) == ("flag", 3)
    # An invalid environment value is reported and the default used.
    monkeypatch.setenv("GENAI_AUDIT_LEAK_POLICY", "sometimes")
    monkeypatch.setenv("GENAI_AUDIT_PRICES_FILE", "/nonexistent/prices.json")
    with caplog.at_level(logging.WARNING, logger="genai_audit"):
        audit = GenAiAuditSpanProcessor(SimpleSpanProcessor(Collecting()))
    assert audit.leak_policy == "flag"
    assert "GENAI_AUDIT_LEAK_POLICY" in caplog.text and "GENAI_AUDIT_PRICES_FILE" in caplog.text


def test_environment_budget_and_disabled(monkeypatch: pytest.MonkeyPatch, pipeline: Any) -> None:
    got: List[BudgetExceeded] = []
    monkeypatch.setenv("GENAI_AUDIT_BUDGET_TOKENS", "1500")
    p: Pipeline = pipeline(on_budget_exceeded=got.append)
    turn(p.tracer, calls=3)
    assert len(got) == 1 and got[0].budget_tokens == 1500
    monkeypatch.setenv("GENAI_AUDIT_DISABLED", "true")
    p = pipeline()
    assert not p.audit.is_enabled
    turn(p.tracer, calls=1)
    assert all(not any(k.startswith("genai_audit.") for k in s.attributes) for s in p.exporter.spans)
    p = pipeline(disabled=False)
    assert p.audit.is_enabled


# -- input that must never raise --------------------------------------------------------


class FakeSpan:
    """What a broken instrumentation or a user could hand the processor."""

    def __init__(self, attributes: Any, span_id: int = 7, trace_id: int = 9, name: Any = "chat x") -> None:
        self.context = SpanContext(trace_id, span_id, False, TraceFlags(TraceFlags.SAMPLED))
        self.parent = None
        self.name = name
        self.start_time = 1
        self.end_time = 2
        self.attributes = attributes
        self._attributes = attributes
        self.resource = None
        self.events = ()
        self.links = ()
        self.kind = trace_api.SpanKind.INTERNAL
        self.status = trace_api.Status(StatusCode.UNSET)
        self.instrumentation_scope = None


def test_bad_input_never_raises(pipeline: Any, caplog: Any) -> None:
    p: Pipeline = pipeline(leak_policy="close")
    audit = p.audit
    with caplog.at_level(logging.ERROR, logger="genai_audit"):
        bad: List[Any] = [
            FakeSpan({1: "x", None: 2, ("t",): 3, "gen_ai.operation.name": "chat"}),
            FakeSpan({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 10**40}, span_id=8),
            FakeSpan({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": float("nan")}, span_id=10),
            FakeSpan({"gen_ai.operation.name": "chat", "gen_ai.request.model": "x" * 5_000_000}, span_id=11),
            FakeSpan({"gen_ai.operation.name": "chat", "gen_ai.usage.output_tokens": "\ud800"}, span_id=12),
            FakeSpan({"gen_ai.operation.name": "chat", "gen_ai.usage.output_tokens": [1, "a", None]}, span_id=13),
            FakeSpan(None, span_id=14),
            FakeSpan({"gen_ai.operation.name": "chat"}, span_id=15, name=None),
            FakeSpan({"gen_ai.operation.name": "chat"}, span_id=0, trace_id=2**200),
            object(),
            None,
        ]
        for span in bad:
            audit.on_start(span)  # type: ignore[arg-type]
            audit.on_end(span)  # type: ignore[arg-type]
            audit.on_end(span)  # type: ignore[arg-type]  # ended twice
    exported = {s.context.span_id: s for s in p.exporter.spans if isinstance(s, ReadableSpan)}
    assert "invalid_usage" in findings(exported[8])
    assert "invalid_usage" in findings(exported[10])
    assert exported[11].attributes["genai_audit.role"] == "generation"


def test_nan_usage_and_ended_twice_on_the_sdk(pipeline: Any) -> None:
    p: Pipeline = pipeline()
    with p.tracer.start_as_current_span("invoke_agent coder", attributes=INVOKE):
        chat = p.tracer.start_span("chat gpt-4o", attributes=CHAT)
        chat.set_attribute("gen_ai.usage.input_tokens", float("nan"))
        chat.set_attribute("gen_ai.usage.output_tokens", 10**30)
        chat.end()
        chat.end()
    [exported] = p.exporter.named("chat gpt-4o")
    assert "invalid_usage" in findings(exported)
    assert not math.isnan(exported.attributes.get("genai_audit.cumulative.cost_usd", 0.0))


def test_used_after_shutdown(pipeline: Any) -> None:
    p: Pipeline = pipeline()
    p.provider.shutdown()
    p.audit.shutdown()
    span = p.tracer.start_span("chat gpt-4o", attributes=CHAT)
    span.end()
    p.audit.on_start(span)
    p.audit.on_end(span)
    assert p.audit.force_flush() in (True, False)


def test_errors_of_the_inner_processor_and_the_callback_are_logged(caplog: Any) -> None:
    class Broken(SimpleSpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            raise RuntimeError("inner on_start")

        def on_end(self, span: ReadableSpan) -> None:
            raise RuntimeError("inner on_end")

    def callback(_event: BudgetExceeded) -> None:
        raise RuntimeError("callback")

    audit = GenAiAuditSpanProcessor(Broken(Collecting()), budget_tokens=1, on_budget_exceeded=callback)
    provider = TracerProvider()
    provider.add_span_processor(audit)
    with caplog.at_level(logging.ERROR, logger="genai_audit"):
        turn(provider.get_tracer("t"), calls=1)
    assert "inner on_start" in caplog.text and "inner on_end" in caplog.text and "callback" in caplog.text
    provider.shutdown()
