#!/usr/bin/env bash
# Regenerates the Rust processor's replay of every trace script of the repository,
# under the four policy pairs, for test_replay_equivalence.py:
#   bash bindings/python/tests/golden/regen.sh
# (builds the repository's `replay` example; run it after a change to the engine).
# Only what the audit reads or writes is kept of each span's attributes
# (golden_filter.py): the recordings' prompts and completions stay in the recordings.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
cd "$root"
nice -n 10 cargo build --quiet --example replay
replay="${CARGO_TARGET_DIR:-$root/target}/debug/examples/replay"
rm -f "$here"/*.jsonl
for script in tests/recordings/traces/*.jsonl tests/recordings/python/*/*-concurrent.jsonl; do
  case "$script" in
    tests/recordings/traces/*) name="traces.$(basename "$script" .jsonl)" ;;
    *) name="python.$(basename "$script" .jsonl)" ;;
  esac
  for leak in flag close; do
    for contamination in flag repair; do
      GENAI_AUDIT_LEAK_POLICY=$leak GENAI_AUDIT_CONTAMINATION_POLICY=$contamination \
        "$replay" "$script" | python3 "$here/../golden_filter.py" > "$here/$name.$leak-$contamination.jsonl"
    done
  done
done
echo "wrote $(ls "$here"/*.jsonl | wc -l) files"
