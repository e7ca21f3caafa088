#!/usr/bin/env bash
# The Python binding's tests:  bash bindings/python/test.sh
#
# 1. makes a virtual environment in bindings/python/.venv, installs maturin, pytest and
#    the latest opentelemetry-sdk from PyPI, builds and installs the package from the
#    checkout (`pip install ./bindings/python`, a release build through maturin) and
#    runs every test;
# 2. does the same against opentelemetry-sdk 1.30.0, the oldest supported, in
#    bindings/python/.venv-sdk130 (the same wheel; the tests that need no framework).
#
# Exits 0 with a SKIP line when PyPI cannot be reached (nothing else is skipped that
# way). Builds go to target/python (bindings/python/.cargo/config.toml), niced.
# GENAI_AUDIT_PY_FRAMEWORKS=0 leaves out the live framework harnesses (they install
# each framework from PyPI in a venv of its own, kept in bindings/python/.venv-frameworks).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

if [ ! -c /dev/null ]; then
  echo "test.sh: /dev/null is not a character device; refusing to run" >&2
  exit 1
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "SKIP: python binding tests: no $python on PATH"
  exit 0
fi

venv() { # DIR: a virtual environment with pip, made once
  if [ ! -x "$1/bin/python" ]; then
    "$python" -m venv "$1"
  fi
}

venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! "${pip[@]}" install --upgrade "maturin>=1.5,<2" pytest opentelemetry-sdk >/dev/null 2>.venv/pip.log; then
  if grep -q -i -E "connection|resolve|network|timed out|ProxyError|No matching distribution" .venv/pip.log; then
    echo "SKIP: python binding tests: PyPI cannot be reached ($(tail -n 1 .venv/pip.log))"
    exit 0
  fi
  cat .venv/pip.log >&2
  exit 1
fi

# The wheel, built once (release, abi3), installed in both environments.
rm -rf "$root/target/python/wheels"
nice -n 10 .venv/bin/maturin build --release --quiet --out "$root/target/python/wheels" >/dev/null
wheel="$(ls "$root"/target/python/wheels/genai_audit-*.whl | head -n 1)"
"${pip[@]}" install --force-reinstall --no-deps "$wheel"

# The live framework harnesses: one environment per framework, its pinned requirements
# and the wheel (GENAI_AUDIT_PY_FRAMEWORKS: "all" (default), "0" for none, or names).
frameworks="${GENAI_AUDIT_PY_FRAMEWORKS:-all}"
if [ "$frameworks" != 0 ]; then
  mkdir -p .venv-frameworks
  for dir in "$root"/tests/recordings/python/*/; do
    fw="$(basename "$dir")"
    [ -f "$dir/requirements.txt" ] || continue
    if [ "$frameworks" != all ] && [[ " $frameworks " != *" $fw "* ]]; then continue; fi
    v=".venv-frameworks/$fw"
    venv "$v"
    if ! nice -n 10 "$v/bin/python" -m pip --disable-pip-version-check -q install -r "$dir/requirements.txt" >"$v/pip.log" 2>&1; then
      echo "warning: $fw: its requirements did not install (see bindings/python/$v/pip.log); its live tests skip"
      rm -rf "$v"
      continue
    fi
    "$v/bin/python" -m pip --disable-pip-version-check -q install --force-reinstall --no-deps "$wheel"
  done
fi

echo "== python binding: opentelemetry-sdk $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-sdk"))')"
.venv/bin/python -m pytest -q -p no:cacheprovider tests

venv .venv-sdk130
low=(.venv-sdk130/bin/python -m pip --disable-pip-version-check -q)
"${low[@]}" install pytest "opentelemetry-sdk==1.30.0" "opentelemetry-api==1.30.0"
"${low[@]}" install --force-reinstall --no-deps "$wheel"
echo "== python binding: opentelemetry-sdk 1.30.0"
GENAI_AUDIT_PY_FRAMEWORKS=0 .venv-sdk130/bin/python -m pytest -q -p no:cacheprovider tests
