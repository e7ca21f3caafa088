"""The Python framework recordings of the repository, run live with the processor
registered: each harness of tests/recordings/python/<framework>/ (real framework and
instrumentation from PyPI, the harness's fake model; no network) runs in a virtual
environment of its own with the framework's pinned requirements and the binding's
wheel (test.sh makes them in bindings/python/.venv-frameworks/<framework>), under both
leak and both contamination policies.

What the processor exported must say what the Rust processor says of the committed
recording of the same harness (tests/golden/, checked against each README's ground
truth by the Rust tests): for every span its name, role, findings, status, totals,
steps, step index, cumulative totals, cost and leak attributes — compared as a multiset,
since a live run has new ids — and the README's run totals (A 234/28, B 338/42)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

HERE = Path(__file__).resolve().parent
BINDING = HERE.parent
ROOT = BINDING.parent.parent
RECORDINGS = ROOT / "tests/recordings/python"
GOLDEN = HERE / "golden"
VENVS = BINDING / ".venv-frameworks"
POLICIES = [(leak, c) for leak in ("flag", "close") for c in ("flag", "repair")]

SIGNATURE_KEYS = (
    "genai_audit.role",
    "genai_audit.total.input_tokens",
    "genai_audit.total.output_tokens",
    "genai_audit.total.cache_read_tokens",
    "genai_audit.total.generations",
    "genai_audit.total.tool_calls",
    "genai_audit.total.partial",
    "genai_audit.steps",
    "genai_audit.step.index",
    "genai_audit.cumulative.input_tokens",
    "genai_audit.cumulative.output_tokens",
    "genai_audit.cumulative.generations",
    "genai_audit.cost.model",
    "genai_audit.cost.unpriced",
    "genai_audit.leak.unclosed_children",
    "genai_audit.wrapper",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
)


def frameworks() -> List[str]:
    return sorted(p.parent.name for p in RECORDINGS.glob("*/record_*.py"))


def signature(span: Dict[str, Any]) -> Tuple[Any, ...]:
    a = span["attributes"]
    cost = a.get("genai_audit.cost_usd")
    total_cost = a.get("genai_audit.total.cost_usd")
    # The name's first word: a live span's final name (a trace script keeps the name at
    # start: agent-framework's `chat unknown` is renamed `chat fake-model`), and step
    # numbers that a live race hands out in another order (smolagents' `Step 2`).
    return (
        span["name"].split(" ")[0],
        span["status"],
        tuple(sorted(a.get("genai_audit.findings", []))),
        tuple(sorted(a.get("genai_audit.leak.unclosed_names", []))),
        None if cost is None else round(cost, 12),
        None if total_cost is None else round(total_cost, 12),
    ) + tuple(json.dumps(a.get(k)) for k in SIGNATURE_KEYS)


def run_live(framework: str, leak: str, contamination: str, tmp: Path) -> List[Dict[str, Any]]:
    python = VENVS / framework / "bin" / "python"
    if os.environ.get("GENAI_AUDIT_PY_FRAMEWORKS") == "0":
        pytest.skip("live framework harnesses switched off (GENAI_AUDIT_PY_FRAMEWORKS=0)")
    if not python.exists():
        pytest.skip(f"no environment for {framework}: test.sh installs it in {VENVS / framework}")
    work = tmp / "harness"
    shutil.copytree(
        RECORDINGS / framework, work / framework, ignore=shutil.ignore_patterns("*.jsonl", "*.otlp.json", ".venv")
    )
    shutil.copy(RECORDINGS / "recording.py", work / "recording.py")
    [harness] = list((work / framework).glob("record_*.py"))
    out = tmp / "exported.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_AUDIT_")}
    env.update(GENAI_AUDIT_LEAK_POLICY=leak, GENAI_AUDIT_CONTAMINATION_POLICY=contamination)
    done = subprocess.run(
        [str(python), str(HERE / "live" / "run_harness.py"), str(harness), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads(line) for line in out.open()]


@pytest.mark.parametrize("leak,contamination", POLICIES, ids=[f"{l}-{c}" for l, c in POLICIES])
@pytest.mark.parametrize("framework", frameworks())
def test_live_run_says_what_the_recording_says(framework: str, leak: str, contamination: str, tmp_path: Path) -> None:
    live = run_live(framework, leak, contamination, tmp_path)
    [script] = list((RECORDINGS / framework).glob("*-concurrent.jsonl"))
    golden = [json.loads(line) for line in (GOLDEN / f"python.{script.stem}.{leak}-{contamination}.jsonl").open()]
    golden.pop()  # the metrics line
    ids = [s["span"] for s in live]
    assert len(ids) == len(set(ids)), "a span exported twice"
    live_sigs, golden_sigs = Counter(map(signature, live)), Counter(map(signature, golden))
    assert live_sigs == golden_sigs, {
        "only live": list((live_sigs - golden_sigs).elements()),
        "only recorded": list((golden_sigs - live_sigs).elements()),
    }
    # The README's ground truth of the two concurrent runs.
    totals = {
        (s["attributes"].get("genai_audit.total.input_tokens"), s["attributes"].get("genai_audit.total.output_tokens"))
        for s in live
        if s["attributes"].get("genai_audit.role") == "invocation"
    }
    recorded = {
        (s["attributes"].get("genai_audit.total.input_tokens"), s["attributes"].get("genai_audit.total.output_tokens"))
        for s in golden
        if s["attributes"].get("genai_audit.role") == "invocation"
    }
    for truth in ((234, 28), (338, 42)):
        if truth in recorded:
            assert truth in totals
