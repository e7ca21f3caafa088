#!/usr/bin/env bash
# End to end: the real OpenTelemetry Python SDK and its OTLP exporters (from PyPI) send a
# small agent trace to `genai-audit serve`, once over OTLP/HTTP and once over OTLP/gRPC;
# the audited spans it writes to --output are then checked (roles, rolled-up totals,
# costs at the bundled gpt-4o-mini price, no findings, every attribute the SDK sent kept).
#
# Needs python3 (with venv) and PyPI; without PyPI it prints SKIPPED and exits 0. Any
# other failure fails it. Run from anywhere: bash tests/e2e/python_otlp.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

# The PyPI packages, pinned (the newest releases when this test was written; they pin
# opentelemetry-api, -proto and -exporter-otlp-proto-common to the same version).
OTEL_VERSION=1.45.2
PACKAGES=(
  "opentelemetry-sdk==$OTEL_VERSION"
  "opentelemetry-exporter-otlp-proto-http==$OTEL_VERSION"
  "opentelemetry-exporter-otlp-proto-grpc==$OTEL_VERSION"
)
# The bundled price of openai/gpt-4o-mini (genai-prices), in USD per token; checked with
# `genai-audit check` on an equivalent trace script (1200 in, 80 out -> $0.000228).
PRICE_INPUT=0.15e-6
PRICE_OUTPUT=0.60e-6

NAME=python_otlp.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/genai-audit-python-otlp.XXXXXX")
server_pid=""
failed=1

cleanup() {
  local rc=$?
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    sleep 0.5
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 || $failed -ne 0 ]] && [[ -s "$tmp/serve.err" ]]; then
    echo "--- genai-audit serve stderr ---"
    cat "$tmp/serve.err"
    echo "---"
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  echo "FAIL: $NAME: $*"
  exit 1
}

# The environment must not redirect the exporters (OTEL_EXPORTER_OTLP_*), nor send
# loopback traffic through a proxy.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^OTEL_' || true)
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1

# 1. A virtual environment with the SDK and the exporters.
python3 -m venv "$tmp/venv" || fail "python3 -m venv failed"
py="$tmp/venv/bin/python"
pip=("$py" -m pip)

# Is PyPI reachable? (A fresh download, not the cache: a cached index can hide that it is not.)
probe_rc=0
timeout 120 "${pip[@]}" download --no-deps --no-cache-dir --retries 1 --timeout 20 \
  -d "$tmp/probe" "opentelemetry-api==$OTEL_VERSION" >"$tmp/probe.log" 2>&1 || probe_rc=$?
if [[ $probe_rc -ne 0 ]]; then
  if [[ $probe_rc -eq 124 ]]; then
    echo "SKIPPED: $NAME: PyPI cannot be reached (pip download timed out after 120 s)"
    failed=0
    exit 0
  fi
  # The network errors pip reports, the most telling first.
  reason=""
  for pattern in 'Temporary failure in name resolution' 'Name or service not known' \
    'No address associated with hostname' 'Connection refused' 'Connection reset by peer' \
    'Network is unreachable' 'No route to host' 'ProxyError' 'SSLError' 'ConnectTimeout' \
    'ReadTimeout' 'timed out' 'Failed to establish a new connection' 'NewConnectionError' \
    'Max retries exceeded' 'Could not fetch URL'; do
    if grep -qF "$pattern" "$tmp/probe.log"; then
      reason=$pattern
      break
    fi
  done
  if [[ -n "$reason" ]]; then
    echo "SKIPPED: $NAME: PyPI cannot be reached (pip download: $reason)"
    failed=0
    exit 0
  fi
  cat "$tmp/probe.log"
  fail "pip download of opentelemetry-api==$OTEL_VERSION failed (exit $probe_rc), not for a network error"
fi

if ! "${pip[@]}" install -q "${PACKAGES[@]}" >"$tmp/pip.log" 2>&1; then
  cat "$tmp/pip.log"
  fail "pip install ${PACKAGES[*]} failed"
fi
echo "$NAME: $("$py" --version), $("${pip[@]}" freeze | grep -iE '^(opentelemetry-(sdk|api|exporter-otlp-proto-(http|grpc))|grpcio|protobuf)==' | tr '\n' ' ')"

# 2. The command, listening on free ports.
cargo build --quiet --features cli --bin genai-audit </dev/null || fail "cargo build failed"
bin=target/debug/genai-audit
out="$tmp/out.jsonl"
"$bin" serve --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --wait 300ms --output "$out" \
  </dev/null >"$tmp/serve.out" 2>"$tmp/serve.err" &
server_pid=$!

http_addr="" grpc_addr=""
for _ in $(seq 1 300); do
  line=$(grep -m 1 'genai-audit serve: OTLP/HTTP on' "$tmp/serve.err" || true)
  if [[ $line =~ OTLP/HTTP\ on\ http://([0-9.]+:[0-9]+),\ OTLP/gRPC\ on\ ([0-9.]+:[0-9]+) ]]; then
    http_addr=${BASH_REMATCH[1]}
    grpc_addr=${BASH_REMATCH[2]}
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || fail "genai-audit serve exited before listening"
  sleep 0.1
done
[[ -n "$http_addr" && -n "$grpc_addr" ]] || fail "genai-audit serve did not print its addresses within 30 s"
echo "$NAME: genai-audit serve: OTLP/HTTP on $http_addr, OTLP/gRPC on $grpc_addr"

# 3, 4. The agent, over each protocol. Each trace must be written once held for --wait
# (before any shutdown): the live path, not only the flush at SIGTERM.
live_checks=()
run_agent() {
  local protocol=$1 endpoint=$2 root
  timeout 60 "$py" tests/e2e/python_agent.py "$protocol" "$endpoint" "$tmp/sent-$protocol.json" \
    || fail "python_agent.py $protocol $endpoint failed"
  root=$("$py" -c 'import json,sys; print(next(s["span_id"] for s in json.load(open(sys.argv[1])) if not s["parent_span_id"]))' "$tmp/sent-$protocol.json")
  for _ in $(seq 1 100); do
    if [[ -f "$out" ]] && grep -q "\"$root\"" "$out"; then
      live_checks+=("PASS: $protocol: the trace was audited and written live, after --wait, before SIGTERM")
      return 0
    fi
    sleep 0.1
  done
  live_checks+=("FAIL: $protocol: the trace was not written within 10 s of its export (before SIGTERM)")
}
run_agent http "http://$http_addr/v1/traces"
run_agent grpc "$grpc_addr"

kill -TERM "$server_pid"
for _ in $(seq 1 600); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$server_pid" 2>/dev/null && fail "genai-audit serve still running 60 s after SIGTERM"
server_rc=0
wait "$server_pid" || server_rc=$?
server_pid=""

# 5. The checks.
if [[ $server_rc -eq 0 ]]; then
  live_checks+=("PASS: genai-audit serve exited 0 after SIGTERM")
else
  live_checks+=("FAIL: genai-audit serve exited $server_rc after SIGTERM")
fi
passed=0 failures=0
for c in "${live_checks[@]}"; do
  echo "$c"
  if [[ $c == PASS:* ]]; then passed=$((passed + 1)); else failures=$((failures + 1)); fi
done

checker_rc=0
"$py" - "$out" "$tmp/sent-http.json" "$tmp/sent-grpc.json" "$PRICE_INPUT" "$PRICE_OUTPUT" \
  "$tmp/counts" <<'PY' || checker_rc=$?
"""Checks the audited OTLP JSON lines against what the Python SDK exported (stdlib only)."""
import json
import math
import sys

out_path, http_path, grpc_path = sys.argv[1:4]
price_in, price_out = float(sys.argv[4]), float(sys.argv[5])
counts_path = sys.argv[6]
TOLERANCE = 1e-12
KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
USAGE = {"chatcmpl-{}-1": (1200, 80), "chatcmpl-{}-2": (1500, 120)}

failures = 0
passes = 0


def check(ok, what, detail=""):
    global failures, passes
    if ok:
        passes += 1
        print(f"PASS: {what}")
    else:
        failures += 1
        print(f"FAIL: {what}" + (f": {detail}" if detail else ""))
    return ok


def otlp_value(v):
    """An OTLP JSON AnyValue as (type, value)."""
    if "stringValue" in v:
        return ("string", v["stringValue"])
    if "boolValue" in v:
        return ("bool", v["boolValue"])
    if "intValue" in v:
        return ("int", int(v["intValue"]))
    if "doubleValue" in v:
        return ("double", float(v["doubleValue"]))
    if "arrayValue" in v:
        return ("array", [otlp_value(x) for x in v["arrayValue"].get("values", [])])
    if "kvlistValue" in v:
        return ("kvlist", {kv["key"]: otlp_value(kv["value"]) for kv in v["kvlistValue"].get("values", [])})
    if "bytesValue" in v:
        return ("bytes", v["bytesValue"])
    return ("empty", None)


def sdk_value(v):
    """A value the Python SDK held (as JSON from the agent's manifest) as (type, value)."""
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int):
        return ("int", v)
    if isinstance(v, float):
        return ("double", v)
    if isinstance(v, str):
        return ("string", v)
    if isinstance(v, list):
        return ("array", [sdk_value(x) for x in v])
    raise TypeError(f"unexpected value {v!r}")


def attributes(kvs):
    keys = [kv["key"] for kv in kvs]
    return {kv["key"]: otlp_value(kv["value"]) for kv in kvs}, keys


# Every span written, with its resource and scope.
written = []
with open(out_path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError as e:
            check(False, f"output line {n} is JSON", str(e))
            continue
        for rs in request.get("resourceSpans", []):
            resource, _ = attributes(rs.get("resource", {}).get("attributes", []))
            for ss in rs.get("scopeSpans", []):
                scope = ss.get("scope", {}) or {}
                for span in ss.get("spans", []):
                    written.append((span, resource, scope))
print(f"python_otlp.sh: {len(written)} spans written to --output")

all_ids = [s["spanId"] for s, _, _ in written]
check(len(all_ids) == len(set(all_ids)), "no span id is written twice",
      f"duplicates: {sorted({i for i in all_ids if all_ids.count(i) > 1})}")
traces_sent = set()

for protocol, path in (("http", http_path), ("grpc", grpc_path)):
    p = protocol
    with open(path, encoding="utf-8") as f:
        sent = json.load(f)
    trace_id = sent[0]["trace_id"]
    traces_sent.add(trace_id)
    got = [(s, r, sc) for s, r, sc in written if s["traceId"] == trace_id]
    check(len(got) == 4, f"{p}: trace {trace_id} has exactly 4 spans", f"got {len(got)}")
    by_id = {s["spanId"]: (s, r, sc) for s, r, sc in got}
    check(set(by_id) == {s["span_id"] for s in sent}, f"{p}: the span ids are those the SDK sent",
          f"sent {sorted(s['span_id'] for s in sent)}, got {sorted(by_id)}")

    # Identity, structure, times, resource, scope and attributes as the SDK sent them.
    lost, changed, added_other, dup_keys, findings = [], [], [], [], []
    for s in sent:
        if s["span_id"] not in by_id:
            continue
        span, resource, scope = by_id[s["span_id"]]
        for field, want in (("name", s["name"]), ("parentSpanId", s["parent_span_id"]),
                            ("kind", KINDS[s["kind"]]),
                            ("startTimeUnixNano", s["start_time_unix_nano"]),
                            ("endTimeUnixNano", s["end_time_unix_nano"])):
            have = span.get(field, "" if field == "parentSpanId" else None)
            if field.endswith("UnixNano") and have is not None:
                have = int(have)
            if have != want:
                changed.append(f"{s['name']}: {field} {have!r} != {want!r}")
        if scope.get("name") != s["scope"]:
            changed.append(f"{s['name']}: scope {scope.get('name')!r} != {s['scope']!r}")
        for key, value in s["resource"].items():
            if key not in resource:
                lost.append(f"resource {key}")
            elif resource[key] != sdk_value(value):
                changed.append(f"resource {key}: {resource[key]!r} != {sdk_value(value)!r}")
        attrs, keys = attributes(span.get("attributes", []))
        if len(keys) != len(set(keys)):
            dup_keys.append(f"{s['name']}: {sorted({k for k in keys if keys.count(k) > 1})}")
        for key, value in s["attributes"].items():
            if key not in attrs:
                lost.append(f"{s['name']}: {key}")
            elif attrs[key] != sdk_value(value):
                changed.append(f"{s['name']}: {key}: {attrs[key]!r} != {sdk_value(value)!r}")
        for key in attrs:
            if key not in s["attributes"] and not key.startswith("genai_audit.") and key != "gen_ai.usage.cost":
                added_other.append(f"{s['name']}: {key}")
        if "genai_audit.findings" in attrs:
            findings.append(f"{s['name']}: {attrs['genai_audit.findings']!r}")
    check(not lost, f"{p}: every attribute and resource attribute the SDK sent is kept", "; ".join(lost))
    check(not changed, f"{p}: ids, parents, names, kinds, times, scope and attribute values unchanged",
          "; ".join(changed))
    check(not added_other, f"{p}: only genai_audit.* keys (and gen_ai.usage.cost) are added",
          "; ".join(added_other))
    check(not dup_keys, f"{p}: no attribute key appears twice on a span", "; ".join(dup_keys))
    check(not findings, f"{p}: no span has genai_audit.findings", "; ".join(findings))

    resources = [r for _, r, _ in got]
    check(bool(resources) and all(r.get("service.name") == ("string", f"python-weather-agent-{p}") for r in resources),
          f"{p}: resource service.name=python-weather-agent-{p}")
    check(bool(resources) and all(r.get("telemetry.sdk.language") == ("string", "python") for r in resources),
          f"{p}: resource telemetry.sdk.language=python")

    def role_of(name):
        return [(attributes(s.get("attributes", []))[0], s) for s, _, _ in got if s["name"] == name]

    def number(attrs, key):
        v = attrs.get(key)
        return v[1] if v and v[0] in ("int", "double") else None

    # The generations.
    gens = role_of("chat gpt-4o-mini")
    check(len(gens) == 2, f"{p}: 2 generation spans", f"got {len(gens)}")
    gen_costs = []
    for attrs, span in gens:
        rid = attrs.get("gen_ai.response.id", ("", ""))[1]
        tokens = next((t for pattern, t in USAGE.items() if pattern.format(p) == rid), None)
        check(attrs.get("genai_audit.role") == ("string", "generation"),
              f"{p}: {rid}: genai_audit.role=generation", repr(attrs.get("genai_audit.role")))
        cost = number(attrs, "genai_audit.cost_usd")
        if tokens is None:
            check(False, f"{p}: generation with a known response id", repr(rid))
            continue
        expected = tokens[0] * price_in + tokens[1] * price_out
        check(cost is not None and attrs["genai_audit.cost_usd"][0] == "double"
              and abs(cost - expected) <= TOLERANCE,
              f"{p}: {rid}: genai_audit.cost_usd = {tokens[0]}*{price_in:g} + {tokens[1]}*{price_out:g} = {expected:.9g}",
              f"got {attrs.get('genai_audit.cost_usd')!r}")
        if cost is not None:
            gen_costs.append(cost)

    # The tool call.
    tools = role_of("execute_tool get_weather")
    check(len(tools) == 1 and tools[0][0].get("genai_audit.role") == ("string", "tool"),
          f"{p}: execute_tool get_weather: genai_audit.role=tool",
          repr([t[0].get("genai_audit.role") for t in tools]))

    # The invocation and its rolled-up totals.
    invs = role_of(f"invoke_agent weather-agent-{p}")
    if not check(len(invs) == 1, f"{p}: 1 invocation span", f"got {len(invs)}"):
        continue
    inv, inv_span = invs[0]
    check(inv_span.get("parentSpanId", "") == "", f"{p}: the invocation is the trace's root")
    check(inv.get("genai_audit.role") == ("string", "invocation"), f"{p}: invocation: genai_audit.role=invocation",
          repr(inv.get("genai_audit.role")))
    for key, want in (("genai_audit.total.input_tokens", 2700), ("genai_audit.total.output_tokens", 200),
                      ("genai_audit.total.generations", 2), ("genai_audit.total.tool_calls", 1)):
        check(inv.get(key) == ("int", want), f"{p}: invocation: {key}={want}", f"got {inv.get(key)!r}")
    total = number(inv, "genai_audit.total.cost_usd")
    expected_total = 2700 * price_in + 200 * price_out
    check(total is not None and total > 0 and math.isfinite(total)
          and len(gen_costs) == 2 and abs(total - sum(gen_costs)) <= TOLERANCE,
          f"{p}: invocation: genai_audit.total.cost_usd > 0 and = the sum of its generations' costs",
          f"got {total!r}, generations {gen_costs!r}")
    check(total is not None and abs(total - expected_total) <= TOLERANCE,
          f"{p}: invocation: genai_audit.total.cost_usd = {expected_total:.9g}", f"got {total!r}")
    check("genai_audit.total.partial" not in inv or inv["genai_audit.total.partial"] == ("bool", False),
          f"{p}: invocation: totals not partial", repr(inv.get("genai_audit.total.partial")))

others = sorted({s["traceId"] for s, _, _ in written} - traces_sent)
check(not others, "no span of another trace is written", repr(others))
with open(counts_path, "w", encoding="utf-8") as f:
    f.write(f"{passes} {failures}\n")
sys.exit(1 if failures else 0)
PY

if [[ -s "$tmp/counts" ]]; then
  read -r checker_passed checker_failed <"$tmp/counts"
  passed=$((passed + checker_passed))
  failures=$((failures + checker_failed))
fi
if [[ $checker_rc -ne 0 && $failures -eq 0 ]]; then
  echo "FAIL: the checker exited $checker_rc"
  failures=1
fi
if [[ $failures -ne 0 ]]; then
  echo "FAIL: $NAME"
  echo "$NAME: $passed passed, $failures failed"
  exit 1
fi
failed=0
echo "PASS: $NAME"
echo "$NAME: $passed passed, $failures failed"
