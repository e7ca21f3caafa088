"""The instruments of DESIGN §7, on the meter provider given to the processor.

Same names, units and attributes as the Rust processor's; attribute values that come
from spans (providers, models, agent names) are bounded: past a limit of distinct
values per attribute, ``_other`` is recorded.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set

from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

SCOPE = "genai-audit"
OTHER = "_other"

# The bucket boundaries the OpenTelemetry GenAI conventions give gen_ai.client.token.usage.
TOKEN_BUCKETS: Sequence[float] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
# Bucket boundaries of the invocation cost histogram, in USD.
COST_BUCKETS: Sequence[float] = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0)


class _Bounded:
    """The distinct values of one attribute recorded so far, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        self._seen: Set[str] = set()
        self._limit = max(1, limit)
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(value)
            return value


def _histogram(meter: Meter, name: str, unit: str, description: str, buckets: Sequence[float]) -> Any:
    try:
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=list(buckets)
        )
    except TypeError:  # an API without bucket advice
        return meter.create_histogram(name, unit=unit, description=description)


class AuditMetrics:
    """Records the engine's events on the instruments."""

    def __init__(
        self,
        meter_provider: MeterProvider,
        tracked: Callable[[], int],
        version: str,
        cardinality_limit: int = 1000,
        token_usage: bool = False,
    ) -> None:
        meter = meter_provider.get_meter(SCOPE, version)

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            try:
                return [Observation(tracked())]
            except Exception:  # never let the reader fail
                return []

        self._findings = meter.create_counter(
            "genai_audit.findings", unit="{finding}", description="Findings about gen-ai spans, by code, role and repair."
        )
        self._tracked = meter.create_observable_up_down_counter(
            "genai_audit.spans.tracked",
            callbacks=[observe],
            unit="{span}",
            description="Spans the audit processor currently keeps state for.",
        )
        self._cost = meter.create_counter("genai_audit.cost", unit="USD", description="Cost of priced model calls.")
        self._invocation_cost = _histogram(
            meter, "genai_audit.invocation.cost", "USD", "Cost of each agent invocation.", COST_BUCKETS
        )
        self._invocation_tokens = _histogram(
            meter,
            "genai_audit.invocation.tokens",
            "{token}",
            "Input and output tokens of each agent invocation.",
            TOKEN_BUCKETS,
        )
        self._token_usage = (
            _histogram(
                meter, "gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.", TOKEN_BUCKETS
            )
            if token_usage
            else None
        )
        self._models = _Bounded(cardinality_limit)
        self._providers = _Bounded(cardinality_limit)
        self._agents = _Bounded(cardinality_limit)

    def record(self, event: Sequence[Any]) -> None:
        """Records one event tuple of the engine (see ``genai_audit._native``)."""
        tag = event[0]
        if tag == "finding":
            _, code, role, repaired = event
            self._findings.add(
                1, {"genai_audit.finding": code, "genai_audit.role": role, "genai_audit.repaired": repaired}
            )
        elif tag == "call":
            _, provider, model, agent, cost, source, operation, response_model, input_tokens, output_tokens = event
            if cost is not None:
                attributes: Dict[str, Any] = {}
                if provider is not None:
                    attributes["gen_ai.provider.name"] = self._providers(provider)
                if model is not None:
                    attributes["gen_ai.request.model"] = self._models(model)
                if agent is not None:
                    attributes["gen_ai.agent.name"] = self._agents(agent)
                attributes["genai_audit.cost.source"] = source
                self._cost.add(cost, attributes)
            if self._token_usage is not None:
                base: Dict[str, Any] = {}
                if operation is not None:
                    base["gen_ai.operation.name"] = operation
                if provider is not None:
                    base["gen_ai.provider.name"] = self._providers(provider)
                if model is not None:
                    base["gen_ai.request.model"] = self._models(model)
                if response_model is not None:
                    base["gen_ai.response.model"] = self._models(response_model)
                for kind, tokens in (("input", input_tokens), ("output", output_tokens)):
                    if tokens is not None:
                        self._token_usage.record(tokens, {**base, "gen_ai.token.type": kind})
        elif tag == "invocation":
            _, agent, cost, input_tokens, output_tokens = event
            named: Dict[str, Any] = {} if agent is None else {"gen_ai.agent.name": self._agents(agent)}
            if cost is not None:
                self._invocation_cost.record(cost, named)
            self._invocation_tokens.record(input_tokens, {**named, "gen_ai.token.type": "input"})
            self._invocation_tokens.record(output_tokens, {**named, "gen_ai.token.type": "output"})


def noop(_events: Optional[List[Any]]) -> None:
    """Nothing to record."""
