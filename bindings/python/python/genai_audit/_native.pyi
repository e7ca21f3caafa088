"""The Rust engine (``genai_audit._native``); use :class:`genai_audit.GenAiAuditSpanProcessor`."""

from typing import Any, Optional, Sequence, Tuple

__version__: str

class NativeEngine:
    def __init__(
        self,
        *,
        leak_policy: Optional[str] = None,
        contamination_policy: Optional[str] = None,
        prices_file: Optional[str] = None,
        max_tracked_spans: Optional[int] = None,
        max_span_age_secs: Optional[int] = None,
        budget_usd: Optional[float] = None,
        budget_tokens: Optional[int] = None,
        rules: Sequence[Tuple[str, str, Optional[str], str]] = (),
        disabled: Optional[bool] = None,
    ) -> None: ...
    def is_enabled(self) -> bool: ...
    def reads_key(self, key: str) -> bool: ...
    def tracked_spans(self) -> int: ...
    def start(self, span: Any, now_ns: int) -> Optional[Tuple[Any, bool, Any, Any]]: ...
    def end(self, span: Any, now_ns: int) -> Optional[Tuple[Any, bool, Any, Any]]: ...
    def shutdown(self, now_ns: int) -> Optional[Tuple[Any, bool, Any, Any]]: ...
