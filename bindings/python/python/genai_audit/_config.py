"""Settings of the processor: code first, then the ``GENAI_AUDIT_*`` environment
variables, then the defaults (DESIGN §8).

A value given in code that is not valid raises ``ValueError`` at construction. A value
from the environment that is not valid is reported on the ``genai_audit`` logger and
the default is used, as every other edge of genai-audit does.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Union

logger = logging.getLogger("genai_audit")

ENV_DISABLED = "GENAI_AUDIT_DISABLED"
ENV_LEAK_POLICY = "GENAI_AUDIT_LEAK_POLICY"
ENV_CONTAMINATION_POLICY = "GENAI_AUDIT_CONTAMINATION_POLICY"
ENV_MAX_TRACKED_SPANS = "GENAI_AUDIT_MAX_TRACKED_SPANS"
ENV_MAX_SPAN_AGE_SECS = "GENAI_AUDIT_MAX_SPAN_AGE_SECS"
ENV_PRICES_FILE = "GENAI_AUDIT_PRICES_FILE"
ENV_BUDGET_USD = "GENAI_AUDIT_BUDGET_USD"
ENV_BUDGET_TOKENS = "GENAI_AUDIT_BUDGET_TOKENS"

DEFAULT_MAX_TRACKED_SPANS = 65536
DEFAULT_MAX_SPAN_AGE_SECS = 3600

ROLES = ("invocation", "step", "generation", "embedding", "tool", "workflow", "retrieval", "other")


@dataclass(frozen=True)
class RoleRule:
    """A rule giving a role to spans by name prefix or by an attribute's value; user
    rules are tried before the built-in recognition, in the order given.

    >>> RoleRule.name_prefix("loop.step-", "step")
    RoleRule(kind='name_prefix', key='loop.step-', value=None, role='step')
    >>> RoleRule.attribute("my.kind", "llm", "generation").kind
    'attribute'
    """

    kind: str
    key: str
    value: Optional[str]
    role: str

    @classmethod
    def name_prefix(cls, prefix: str, role: str) -> "RoleRule":
        """Spans whose name starts with ``prefix`` get ``role``."""
        return cls("name_prefix", prefix, None, role)

    @classmethod
    def attribute(cls, key: str, value: str, role: str) -> "RoleRule":
        """Spans whose attribute ``key`` has the string value ``value`` get ``role``."""
        return cls("attribute", key, value, role)


RuleLike = Union[RoleRule, Tuple[str, ...], Mapping[str, str]]


def _rule(rule: RuleLike) -> Tuple[str, str, Optional[str], str]:
    if isinstance(rule, Mapping):
        if "name_prefix" in rule:
            rule = RoleRule.name_prefix(rule["name_prefix"], rule.get("role", ""))
        elif "attribute" in rule:
            rule = RoleRule.attribute(rule["attribute"], rule.get("value", ""), rule.get("role", ""))
        else:
            raise ValueError(f"rule {rule!r}: expected a 'name_prefix' or 'attribute' key")
    elif isinstance(rule, tuple) and not isinstance(rule, RoleRule):
        if len(rule) == 3 and rule[0] == "name_prefix":
            rule = RoleRule.name_prefix(rule[1], rule[2])
        elif len(rule) == 4 and rule[0] == "attribute":
            rule = RoleRule.attribute(rule[1], rule[2], rule[3])
        else:
            raise ValueError(
                f"rule {rule!r}: expected ('name_prefix', prefix, role) or ('attribute', key, value, role)"
            )
    if not isinstance(rule, RoleRule):
        raise ValueError(f"rule {rule!r}: expected a RoleRule, a tuple or a mapping")
    for part in (rule.key, rule.role) + ((rule.value,) if rule.kind == "attribute" else ()):
        if not isinstance(part, str):
            raise ValueError(f"rule {rule!r}: its parts must be strings")
    if rule.role.strip().lower() not in ROLES:
        raise ValueError(f"rule {rule!r}: unknown role {rule.role!r}, expected one of {', '.join(ROLES)}")
    return (rule.kind, rule.key, rule.value, rule.role.strip().lower())


def _policy(name: str, value: Any, allowed: Tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, not {value!r}")
    return value.strip().lower()


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer of at least 1, not {value!r}")
    return value


def _budget_usd(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"budget_usd must be a number above 0, not {value!r}")
    usd = float(value)
    if not math.isfinite(usd) or usd <= 0:
        raise ValueError(f"budget_usd must be a finite number above 0, not {value!r}")
    return usd


def _from_env(env: Mapping[str, str], name: str, parse: Any) -> Any:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return parse(raw.strip())
    except (ValueError, TypeError, OverflowError) as e:
        logger.warning("genai-audit: %s=%r is not valid (%s); using the default", name, raw, e)
        return None


def _env_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError("expected true or false")


def _env_int(raw: str) -> int:
    return _positive_int("value", int(raw))


def _env_usd(raw: str) -> float:
    return _budget_usd(float(raw))


@dataclass(frozen=True)
class Settings:
    """The resolved settings, as the engine is built with them."""

    disabled: bool
    leak_policy: str
    contamination_policy: str
    max_tracked_spans: int
    max_span_age_secs: int
    prices_file: Optional[str]
    prices_file_from_env: bool
    budget_usd: Optional[float]
    budget_tokens: Optional[int]
    rules: Tuple[Tuple[str, str, Optional[str], str], ...]

    def engine_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of ``NativeEngine``."""
        return {
            "disabled": self.disabled,
            "leak_policy": self.leak_policy,
            "contamination_policy": self.contamination_policy,
            "max_tracked_spans": self.max_tracked_spans,
            "max_span_age_secs": self.max_span_age_secs,
            "prices_file": self.prices_file,
            "budget_usd": self.budget_usd,
            "budget_tokens": self.budget_tokens,
            "rules": list(self.rules),
        }


def resolve(
    *,
    leak_policy: Optional[str],
    contamination_policy: Optional[str],
    prices_file: Optional[Union[str, "os.PathLike[str]"]],
    max_tracked_spans: Optional[int],
    max_span_age_secs: Optional[int],
    budget_usd: Optional[float],
    budget_tokens: Optional[int],
    rules: Optional[Iterable[RuleLike]],
    disabled: Optional[bool],
    env: Optional[Mapping[str, str]] = None,
) -> Settings:
    """Code first, then the environment, then the defaults."""
    env = os.environ if env is None else env
    if disabled is not None and not isinstance(disabled, bool):
        raise ValueError(f"disabled must be a bool, not {disabled!r}")
    if disabled is None:
        disabled = _from_env(env, ENV_DISABLED, _env_bool) or False
    leak = (
        _policy("leak_policy", leak_policy, ("flag", "close"))
        if leak_policy is not None
        else _from_env(env, ENV_LEAK_POLICY, lambda s: _policy(ENV_LEAK_POLICY, s, ("flag", "close")))
        or "flag"
    )
    contamination = (
        _policy("contamination_policy", contamination_policy, ("flag", "repair"))
        if contamination_policy is not None
        else _from_env(
            env,
            ENV_CONTAMINATION_POLICY,
            lambda s: _policy(ENV_CONTAMINATION_POLICY, s, ("flag", "repair")),
        )
        or "flag"
    )
    max_spans = (
        _positive_int("max_tracked_spans", max_tracked_spans)
        if max_tracked_spans is not None
        else _from_env(env, ENV_MAX_TRACKED_SPANS, _env_int) or DEFAULT_MAX_TRACKED_SPANS
    )
    max_age = (
        _positive_int("max_span_age_secs", max_span_age_secs)
        if max_span_age_secs is not None
        else _from_env(env, ENV_MAX_SPAN_AGE_SECS, _env_int) or DEFAULT_MAX_SPAN_AGE_SECS
    )
    prices_from_env = False
    if prices_file is not None:
        try:
            prices = os.fspath(prices_file)
        except TypeError:
            raise ValueError(f"prices_file must be a path, not {prices_file!r}") from None
        if not isinstance(prices, str):
            raise ValueError(f"prices_file must be a text path, not {prices_file!r}")
    else:
        raw = env.get(ENV_PRICES_FILE, "").strip()
        prices = raw or None
        prices_from_env = prices is not None
    if budget_usd is not None or budget_tokens is not None:
        usd = _budget_usd(budget_usd) if budget_usd is not None else None
        tokens = _positive_int("budget_tokens", budget_tokens) if budget_tokens is not None else None
    else:
        usd = _from_env(env, ENV_BUDGET_USD, _env_usd)
        tokens = _from_env(env, ENV_BUDGET_TOKENS, _env_int)
    if rules is None:
        rules = ()
    if isinstance(rules, (str, bytes)) or not isinstance(rules, Iterable):
        raise ValueError(f"rules must be a sequence of RoleRule, not {rules!r}")
    return Settings(
        disabled=bool(disabled),
        leak_policy=leak,
        contamination_policy=contamination,
        max_tracked_spans=max_spans,
        max_span_age_secs=max_age,
        prices_file=prices,
        prices_file_from_env=prices_from_env,
        budget_usd=usd,
        budget_tokens=tokens,
        rules=tuple(_rule(r) for r in rules),
    )
