"""Every trace script of the repository, replayed through the Python SDK with the
processor registered, exports what the Rust processor exports (tests/golden/, made by
golden/regen.sh from the repository's `replay` example): the same spans, once each,
with the same status and end, the same attributes the audit reads or writes, and the
same findings counted in the metrics — under both leak and both contamination
policies."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from golden_filter import kept
from replay import read_script, replay

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
GOLDEN = HERE / "golden"
POLICIES = [(leak, c) for leak in ("flag", "close") for c in ("flag", "repair")]


def scripts() -> List[Tuple[str, Path]]:
    found = [("traces." + p.stem, p) for p in sorted((ROOT / "tests/recordings/traces").glob("*.jsonl"))]
    found += [
        ("python." + p.stem, p) for p in sorted((ROOT / "tests/recordings/python").glob("*/*-concurrent.jsonl"))
    ]
    return found


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
            return False
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def by_label(spans: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    labels = [s["span"] for s in spans]
    assert len(labels) == len(set(labels)), "a span exported twice"
    return {s["span"]: s for s in spans}


@pytest.mark.parametrize("leak,contamination", POLICIES, ids=[f"{l}-{c}" for l, c in POLICIES])
@pytest.mark.parametrize("name,path", scripts(), ids=[n for n, _ in scripts()])
def test_python_exports_what_rust_exports(
    name: str, path: Path, leak: str, contamination: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in [v for v in os.environ if v.startswith("GENAI_AUDIT_")]:
        monkeypatch.delenv(var)
    golden = [json.loads(line) for line in (GOLDEN / f"{name}.{leak}-{contamination}.jsonl").open()]
    rust_metrics = golden.pop()["metrics"]
    rust = by_label(golden)
    events = read_script(str(path))
    last_time = max(e.get("time_ns", 0) for e in events)
    spans, metrics, _ = replay(events, leak_policy=leak, contamination_policy=contamination)
    python = by_label(spans)
    assert sorted(python) == sorted(rust)
    for label, r in rust.items():
        p = python[label]
        for field in ("name", "parent", "status", "status_message", "end_ns", "start_ns"):
            if field == "end_ns" and r["end_ns"] > last_time:
                # Closed at the shutdown: ended at the wall clock's now, in both.
                assert p["end_ns"] > last_time, label
                continue
            assert p[field] == r[field], (label, field)
        pa, ra = kept(p["attributes"]), r["attributes"]
        assert sorted(pa) == sorted(ra), (label, sorted(set(pa) ^ set(ra)))
        for key, value in ra.items():
            assert same(pa[key], value), (label, key, pa[key], value)
    # The findings counted, by code, role and repair, and the priced calls' totals.
    assert metrics.get("genai_audit.findings", []) == rust_metrics.get("genai_audit.findings", [])
    p_cost = sum(pt["value"] for pt in metrics.get("genai_audit.cost", []))
    r_cost = sum(pt["value"] for pt in rust_metrics.get("genai_audit.cost", []))
    assert math.isclose(p_cost, r_cost, rel_tol=1e-9, abs_tol=1e-15)
    for instrument in ("genai_audit.invocation.tokens", "genai_audit.invocation.cost"):
        p_points = {json.dumps(pt["attributes"], sort_keys=True): pt for pt in metrics.get(instrument, [])}
        r_points = {json.dumps(pt["attributes"], sort_keys=True): pt for pt in rust_metrics.get(instrument, [])}
        assert sorted(p_points) == sorted(r_points), instrument
        for key, r_point in r_points.items():
            assert p_points[key]["count"] == r_point["count"], (instrument, key)
            assert math.isclose(p_points[key]["sum"], r_point["sum"], rel_tol=1e-9, abs_tol=1e-15)
