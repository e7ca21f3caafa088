"""genai-audit for Python: an OpenTelemetry span processor for gen-ai agents.

It wraps the processor that exports (a ``BatchSpanProcessor``), recognises agent spans
(invocations, steps, generations, tools, ...), writes per-call cost and rolled-up
token and cost totals on them, names children left open when their parent ends,
flags or repairs cross-invocation contamination, and reports budgets as they pass,
with the Rust ``genai-audit`` engine doing the work::

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from genai_audit import GenAiAuditSpanProcessor

    audit = GenAiAuditSpanProcessor(BatchSpanProcessor(exporter),
                                    leak_policy="flag", contamination_policy="repair")
    provider = TracerProvider()
    provider.add_span_processor(audit)
"""

from ._config import RoleRule
from ._native import __version__ as _engine_version
from ._processor import BudgetExceeded, GenAiAuditSpanProcessor

__version__ = "0.1.0"
ENGINE_VERSION: str = _engine_version

__all__ = ["GenAiAuditSpanProcessor", "BudgetExceeded", "RoleRule", "ENGINE_VERSION", "__version__"]
