"""``GenAiAuditSpanProcessor``: the audit, wrapped around the processor that exports."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from time import time_ns
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from . import _config
from ._metrics import AuditMetrics
from ._native import NativeEngine
from ._native import __version__ as _engine_version

logger = logging.getLogger("genai_audit")


@dataclass(frozen=True)
class BudgetExceeded:
    """An invocation that passed its budget, as ``on_budget_exceeded`` receives it
    (once per invocation, on the thread that ended the span that passed it)."""

    agent_name: Optional[str]
    """The invocation's ``gen_ai.agent.name``, when known."""
    trace_id: int
    """The invocation's trace id."""
    invocation_span_id: int
    """The invocation's span id."""
    input_tokens: int
    """Input tokens of the invocation so far."""
    output_tokens: int
    """Output tokens of the invocation so far."""
    cost_usd: float
    """Cost of the invocation so far, in USD (priced calls only)."""
    generations: int
    """Model calls of the invocation so far."""
    budget_usd: Optional[float]
    """The cost limit it passed (or had)."""
    budget_tokens: Optional[int]
    """The token limit it passed (or had)."""


class _AuditedSpan(ReadableSpan):
    """An ended span with the audit's writes, or a span the audit closed."""

    def __init__(
        self,
        span: ReadableSpan,
        attributes: Dict[str, Any],
        *,
        name: Optional[str] = None,
        status: Optional[Status] = None,
        end_time: Optional[int] = None,
    ) -> None:
        super().__init__(
            name=span.name if name is None else name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=span.events,
            links=span.links,
            kind=span.kind,
            instrumentation_info=getattr(span, "_instrumentation_info", None),
            status=span.status if status is None else status,
            start_time=span.start_time,
            end_time=span.end_time if end_time is None else end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
        try:
            self._audit_dropped = (span.dropped_attributes, span.dropped_events, span.dropped_links)
        except Exception:
            self._audit_dropped = (0, 0, 0)

    @property
    def dropped_attributes(self) -> int:
        return self._audit_dropped[0]

    @property
    def dropped_events(self) -> int:
        return self._audit_dropped[1]

    @property
    def dropped_links(self) -> int:
        return self._audit_dropped[2]


def _with_attributes(span: ReadableSpan, attributes: Dict[str, Any]) -> ReadableSpan:
    """``span`` (an ended ``ReadableSpan``) with other attributes: a shallow copy of the
    SDK's own ``ReadableSpan`` when it is one (every field as it is, in one step),
    else a new span built from its public fields."""
    if type(span) is ReadableSpan:
        copy = _AuditedSpan.__new__(_AuditedSpan)
        fields = copy.__dict__
        fields.update(span.__dict__)
        original = fields.get("_attributes")
        fields["_attributes"] = attributes
        fields["_audit_dropped"] = (getattr(original, "dropped", 0), span.dropped_events, span.dropped_links)
        return copy
    return _AuditedSpan(span, attributes)


def _attributes(span: ReadableSpan) -> Dict[str, Any]:
    """A copy of a span's attributes (retried once if another thread changes them)."""
    for _ in range(2):
        try:
            return dict(span.attributes or {})
        except RuntimeError:  # a live span changed size under the copy
            continue
    return {}


class GenAiAuditSpanProcessor(SpanProcessor):
    """Audits gen-ai agent spans and hands them, enriched, to ``inner``.

    Register only this processor on the ``TracerProvider``; it forwards ``on_start``,
    ``on_end`` (with a ``ReadableSpan`` carrying the audit's writes, a new one only when
    there are writes), ``force_flush`` and ``shutdown`` to ``inner``.

    Every setting is optional; what code does not set comes from the ``GENAI_AUDIT_*``
    environment variables, then the defaults. A setting given in code that is not valid
    raises ``ValueError`` here; after construction nothing raises into the application:
    errors go to the ``genai_audit`` logger.

    :param inner: the processor that exports (``BatchSpanProcessor``, ...).
    :param leak_policy: ``"flag"`` (default) or ``"close"``: also export a recognised
        child still open when its parent ends, ended then, with ``closed_by_audit``.
    :param contamination_policy: ``"flag"`` (default) or ``"repair"``.
    :param prices_file: a genai-prices JSON file instead of the bundled prices.
    :param max_tracked_spans: the most spans tracked at once (default 65536).
    :param max_span_age_secs: the age after which an open span is evicted (``stale``;
        default 3600).
    :param budget_usd: a cost budget per invocation, in USD.
    :param budget_tokens: a token budget (input + output) per invocation.
    :param on_budget_exceeded: called with a :class:`BudgetExceeded` once per
        invocation that passes its budget, on the thread that ended the span; keep it
        fast (cancel a task, set a flag). What it raises is logged.
    :param meter_provider: records the metrics of DESIGN §7 on it.
    :param rules: :class:`RoleRule` s, tried before the built-in recognition.
    :param disabled: ``True``: a pure pass-through (``GENAI_AUDIT_DISABLED``).
    :param token_usage_metric: also record ``gen_ai.client.token.usage`` (opt-in).
    :param metric_cardinality_limit: distinct providers, models and agents recorded per
        attribute before ``_other``.
    """

    def __init__(
        self,
        inner: SpanProcessor,
        *,
        leak_policy: Optional[str] = None,
        contamination_policy: Optional[str] = None,
        prices_file: Optional[Union[str, "os.PathLike[str]"]] = None,
        max_tracked_spans: Optional[int] = None,
        max_span_age_secs: Optional[int] = None,
        budget_usd: Optional[float] = None,
        budget_tokens: Optional[int] = None,
        on_budget_exceeded: Optional[Callable[[BudgetExceeded], Any]] = None,
        meter_provider: Optional[MeterProvider] = None,
        rules: Optional[Iterable[_config.RuleLike]] = None,
        disabled: Optional[bool] = None,
        token_usage_metric: bool = False,
        metric_cardinality_limit: int = 1000,
    ) -> None:
        if inner is None or not callable(getattr(inner, "on_end", None)):
            raise ValueError(f"inner must be a span processor, not {inner!r}")
        if on_budget_exceeded is not None and not callable(on_budget_exceeded):
            raise ValueError("on_budget_exceeded must be callable")
        if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
            raise ValueError(f"meter_provider must be a MeterProvider, not {meter_provider!r}")
        if isinstance(metric_cardinality_limit, bool) or not isinstance(metric_cardinality_limit, int):
            raise ValueError("metric_cardinality_limit must be an integer")
        settings = _config.resolve(
            leak_policy=leak_policy,
            contamination_policy=contamination_policy,
            prices_file=prices_file,
            max_tracked_spans=max_tracked_spans,
            max_span_age_secs=max_span_age_secs,
            budget_usd=budget_usd,
            budget_tokens=budget_tokens,
            rules=rules,
            disabled=disabled,
        )
        kwargs = settings.engine_kwargs()
        try:
            engine = NativeEngine(**kwargs)
        except ValueError as e:
            if not settings.prices_file_from_env:
                raise
            logger.warning(
                "genai-audit: %s is not usable (%s); using the bundled prices", _config.ENV_PRICES_FILE, e
            )
            kwargs["prices_file"] = None
            engine = NativeEngine(**kwargs)
        self._inner = inner
        # The SDK's experimental hook before a span is frozen (1.35+), forwarded.
        self._inner_on_ending: Optional[Callable[[Span], None]] = getattr(inner, "_on_ending", None)
        self._settings = settings
        self._engine: Optional[NativeEngine] = engine if engine.is_enabled() else None
        self._close = self._engine is not None and settings.leak_policy == "close"
        # Under `close`: the spans started and not yet ended, to export the ones the
        # audit closes as they are (bounded like the engine's own state).
        self._open: Dict[int, Span] = {}
        self._open_limit = settings.max_tracked_spans
        self._callback = on_budget_exceeded
        self._metrics: Optional[AuditMetrics] = None
        if meter_provider is not None and self._engine is not None:
            self._metrics = AuditMetrics(
                meter_provider,
                self._engine.tracked_spans,
                _engine_version,
                cardinality_limit=metric_cardinality_limit,
                token_usage=token_usage_metric,
            )
        self._shutdown_lock = threading.Lock()
        self._is_shut_down = False

    # -- what the application may ask -------------------------------------------------

    @property
    def inner(self) -> SpanProcessor:
        """The wrapped processor."""
        return self._inner

    @property
    def is_enabled(self) -> bool:
        """Whether the processor audits (false: disabled, a pure pass-through)."""
        return self._engine is not None

    @property
    def leak_policy(self) -> str:
        """The leak policy in force."""
        return self._settings.leak_policy

    @property
    def contamination_policy(self) -> str:
        """The contamination policy in force."""
        return self._settings.contamination_policy

    @property
    def max_tracked_spans(self) -> int:
        """The most spans tracked at once."""
        return self._settings.max_tracked_spans

    @property
    def max_span_age_secs(self) -> int:
        """The age after which an open span is evicted."""
        return self._settings.max_span_age_secs

    def tracked_spans(self) -> int:
        """How many spans the engine keeps state for now."""
        engine = self._engine
        return 0 if engine is None else engine.tracked_spans()

    # -- SpanProcessor -----------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Optional[Context] = None) -> None:
        engine = self._engine
        if engine is not None and not self._is_shut_down:
            try:
                verdict = engine.start(span)
                if self._close:
                    self._remember(span)
                if verdict is not None:
                    self._apply_side_effects(verdict, span)
            except Exception:
                logger.exception("genai-audit: on_start failed; the span passes unaudited")
        try:
            self._inner.on_start(span, parent_context=parent_context)
        except Exception:
            logger.exception("genai-audit: the inner processor's on_start raised")

    def _on_ending(self, span: Span) -> None:
        ending = self._inner_on_ending
        if ending is not None:
            try:
                ending(span)
            except Exception:
                logger.exception("genai-audit: the inner processor's _on_ending raised")

    def on_end(self, span: ReadableSpan) -> None:
        engine = self._engine
        if engine is not None and not self._is_shut_down:
            try:
                if self._close:
                    self._open.pop(span.context.span_id, None)
                verdict = engine.end(span)
                if verdict is not None:
                    attributes, forward, closed, events = verdict
                    if closed:
                        self._export_closed(closed, span)
                    if events:
                        self._record(events)
                    if not forward:
                        return
                    if attributes is not None:
                        span = _with_attributes(span, attributes)
            except Exception:
                logger.exception("genai-audit: on_end failed; the span passes as it is")
        self._forward(span)

    def shutdown(self) -> None:
        with self._shutdown_lock:
            if self._is_shut_down:
                return
            self._is_shut_down = True
        engine = self._engine
        if engine is not None:
            try:
                verdict = engine.shutdown(time_ns())
                if verdict is not None:
                    self._apply_side_effects(verdict, None)
                self._open.clear()
            except Exception:
                logger.exception("genai-audit: shutdown of the audit failed")
        try:
            self._inner.shutdown()
        except Exception:
            logger.exception("genai-audit: the inner processor's shutdown raised")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return bool(self._inner.force_flush(timeout_millis))
        except Exception:
            logger.exception("genai-audit: the inner processor's force_flush raised")
            return False

    # -- internals --------------------------------------------------------------------

    def _forward(self, span: ReadableSpan) -> None:
        try:
            self._inner.on_end(span)
        except Exception:
            logger.exception("genai-audit: the inner processor's on_end raised")

    def _remember(self, span: Span) -> None:
        opened = self._open
        opened[span.context.span_id] = span
        if len(opened) > self._open_limit:
            try:
                del opened[next(iter(opened))]
            except (StopIteration, KeyError, RuntimeError):
                pass

    def _apply_side_effects(self, verdict: Sequence[Any], near: Optional[ReadableSpan]) -> None:
        _writes, _forward, closed, events = verdict
        if closed:
            self._export_closed(closed, near)
        if events:
            self._record(events)

    def _export_closed(self, closed: List[Any], near: Optional[ReadableSpan]) -> None:
        for trace_id, span_id, name, end_ns, description, writes in closed:
            try:
                live = self._open.pop(span_id, None)
                status = Status(StatusCode.ERROR, description or None)
                if live is not None:
                    attributes = _attributes(live)
                    if writes:
                        attributes.update(writes)
                    exported: ReadableSpan = _AuditedSpan(
                        live, attributes, name=name, status=status, end_time=end_ns
                    )
                else:
                    # Not remembered (past the bound): what the engine kept of it.
                    exported = ReadableSpan(
                        name=name,
                        context=SpanContext(trace_id, span_id, False, TraceFlags(TraceFlags.SAMPLED)),
                        resource=None if near is None else near.resource,
                        attributes=dict(writes or {}),
                        status=status,
                        start_time=end_ns,
                        end_time=end_ns,
                    )
                self._forward(exported)
            except Exception:
                logger.exception("genai-audit: exporting a span the audit closed failed")

    def _record(self, events: List[Any]) -> None:
        metrics = self._metrics
        for event in events:
            try:
                if event[0] == "budget":
                    self._budget_exceeded(event)
                elif metrics is not None:
                    metrics.record(event)
            except Exception:
                logger.exception("genai-audit: recording an audit event failed")

    def _budget_exceeded(self, event: Sequence[Any]) -> None:
        callback = self._callback
        if callback is None:
            return
        _, agent, trace_id, span_id, input_tokens, output_tokens, cost, generations, usd, tokens = event
        try:
            callback(
                BudgetExceeded(
                    agent_name=agent,
                    trace_id=trace_id,
                    invocation_span_id=span_id,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cost_usd=cost,
                    generations=generations,
                    budget_usd=usd,
                    budget_tokens=tokens,
                )
            )
        except Exception:
            logger.exception("genai-audit: the on_budget_exceeded callback raised")
