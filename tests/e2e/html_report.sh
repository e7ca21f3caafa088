#!/usr/bin/env bash
# The HTML page of `genai-audit report --html` in a real headless browser (DESIGN §12):
# it loads with no script error and no console error, shows one timeline per trace and
# every finding (against the counts `check --json` gives), and its own self-check
# (`body[data-ok]`) passes.
#
# Chromium comes from the distribution's packages: installed with apt-get when it is
# missing and we are root; where it cannot be, the check is skipped with a message
# starting "SKIPPED:" (exit 0).
#
#   tests/e2e/html_report.sh                          # the check
#   tests/e2e/html_report.sh --screenshot docs/report.png   # also the README's picture
set -euo pipefail
cd "$(dirname "$0")/../.."

screenshot=""
if [[ "${1:-}" == "--screenshot" ]]; then
  screenshot="${2:?--screenshot needs a path}"
fi

find_browser() {
  local name
  for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
  done
  return 1
}

browser=$(find_browser || true)
if [[ -z "$browser" && "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
  echo "html_report: installing chromium from the distribution's packages"
  log=$(mktemp)
  if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; } >"$log" 2>&1; then
    tail -5 "$log" || true
  fi
  rm -f "$log"
  browser=$(find_browser || true)
fi
if [[ -z "$browser" ]]; then
  echo "SKIPPED: the HTML report's browser check: no Chromium here, and it could not be installed (needs root and apt-get)"
  exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "SKIPPED: the HTML report's browser check: python3 is needed to read the page"
  exit 0
fi

cargo build --quiet --features cli
bin="${CARGO_TARGET_DIR:-target}/debug/genai-audit"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

browse() {
  "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d -p "$work")" "$@"
}

# Loads a page, dumps its DOM after its script ran, and checks it against the
# summary `check --json` gives for the same files.
check_page() {
  local name=$1 all=$2
  shift 2
  local html="$work/$name.html" dom="$work/$name.dom.html" console="$work/$name.console.log"
  "$bin" check --json "$@" >"$work/$name.summary.json" || [[ $? == 1 ]]
  "$bin" report --html "$html" $all "$@"
  browse --enable-logging=stderr --v=0 --virtual-time-budget=5000 --dump-dom "file://$html" \
    >"$dom" 2>"$console"
  python3 - "$work/$name.summary.json" "$dom" "$console" "$all" "$name" <<'PY'
import json, re, sys
summary_path, dom_path, console_path, all_flag, name = sys.argv[1:6]
summary = json.load(open(summary_path))
dom = open(dom_path, encoding="utf-8").read()
console = open(console_path, encoding="utf-8", errors="replace").read()
problems = []
if not dom.strip():
    problems.append("the browser dumped no DOM")
for line in console.splitlines():
    if re.search(r"CONSOLE[:(]\d+", line) and re.search(r"uncaught|error", line, re.I):
        problems.append("console: " + line.strip())
body = re.search(r"<body[^>]*>", dom)
body = body.group(0) if body else ""
if 'data-ok="true"' not in body:
    problems.append("the page's self-check did not pass: " + body)
selfcheck = re.search(r'<pre id="selfcheck">([^<]*)</pre>', dom)
check = json.loads(selfcheck.group(1).replace("&quot;", '"')) if selfcheck and selfcheck.group(1) else {}
if check.get("errors"):
    problems.append("script errors: %r" % check["errors"])
timelines = len(re.findall(r'<section class="trace[^"]*" data-trace="[0-9a-f]{32}"', dom))
findings = re.findall(r'<span class="finding" data-finding="([^"]*)" title="([^"]*)"', dom)
traces = summary["traces"]
expected_traces = traces if all_flag == "--all" else min(traces, 20)
if timelines != expected_traces:
    problems.append("%d timelines, expected %d (of %d traces)" % (timelines, expected_traces, traces))
if all_flag == "--all" and len(findings) != summary["findings_total"]:
    problems.append("%d findings shown, check --json counts %d" % (len(findings), summary["findings_total"]))
for code, meaning in findings:
    if not meaning.strip():
        problems.append("finding %s without its meaning" % code)
shown = {}
for code, _ in findings:
    shown[code] = shown.get(code, 0) + 1
if all_flag == "--all":
    for code, n in summary["findings"].items():
        if shown.get(code, 0) != n:
            problems.append("%s: %d shown, %d found" % (code, shown.get(code, 0), n))
if all_flag != "--all" and traces > 20 and "of %d traces shown" % traces not in dom:
    problems.append("the page does not say how many traces were left out")
bars = len(re.findall(r'class="bar[^"]*" style="left:', dom))
if bars == 0:
    problems.append("no timeline bars")
if problems:
    print("html_report %s: FAILED" % name)
    for p in problems:
        print("  " + p)
    sys.exit(1)
print("html_report %s: ok: %d timelines, %d bars, %d findings with their meanings, no console error"
      % (name, timelines, bars, len(findings)))
PY
}

shared=(tests/recordings/otlp/*.json tests/recordings/traces/*.jsonl)
scripts=(tests/it/scripts/contamination/*.jsonl)
check_page recordings --all "${shared[@]}"
check_page with-findings --all "${shared[@]}" "${scripts[@]}"
check_page first-twenty "" "${shared[@]}" "${scripts[@]}"

if [[ -n "$screenshot" ]]; then
  # A representative page: a priced run of three concurrent agents (Vercel AI 7) and
  # one with findings (a step closed early).
  "$bin" report --html "$work/shot.html" tests/it/scripts/contamination/early_close.jsonl \
    tests/recordings/otlp/vercel-ai7-stream-error-fixed.collector-style.otlp.json
  browse --hide-scrollbars --virtual-time-budget=3000 --window-size=1400,1000 \
    --screenshot="$work/shot.png" "file://$work/shot.html" 2>/dev/null
  cp "$work/shot.png" "$screenshot"
  echo "html_report: screenshot $screenshot ($(wc -c <"$screenshot") bytes)"
fi
