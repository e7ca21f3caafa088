"""Keeps, of a replay's JSON Lines (stdin to stdout), the attributes the audit reads or
writes: what test_replay_equivalence.py compares."""

from __future__ import annotations

import json
import sys
from typing import Any, Dict

KEPT_PREFIXES = ("genai_audit.", "gen_ai.usage.", "llm.token_count.", "ai.usage.")
KEPT_KEYS = frozenset(
    {"gen_ai.response.id", "gen_ai.response.model", "gen_ai.react.round", "llm.cost.total", "operation.cost"}
)


def kept(attributes: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in attributes.items() if k.startswith(KEPT_PREFIXES) or k in KEPT_KEYS}


def main() -> None:
    for line in sys.stdin:
        record = json.loads(line)
        if "attributes" in record:
            record["attributes"] = kept(record["attributes"])
        print(json.dumps(record, sort_keys=True))


if __name__ == "__main__":
    main()
