#!/usr/bin/env bash
# Runs `rbench bench` and llama.cpp's `llama-bench` on the same model and flags,
# interleaved (rbench, llama-bench, rbench, llama-bench, ...), and prints the
# rbench / llama.cpp ratio of each test per round. Timings drift between runs
# on shared machines: only the ratios of one run mean anything.
#
#   scripts/compare-llama-bench.sh [MODEL | --suite] [-p 512] [-n 128] [-t 2] [-r 3] [--rounds 2]
#
# MODEL defaults to the test model (scripts/fetch-test-model.sh); --suite runs
# each model of scripts/suite-models.sh in turn (real and synthetic shapes). llama-bench
# is built once by ../shared/anchor/build-llamacpp.sh (about 4 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

suite=0 model="" p=512 n=128 t="$(nproc)" r=3 rounds=2
while (($#)); do
  case "$1" in
    -p) p="$2"; shift 2 ;;
    -n) n="$2"; shift 2 ;;
    -t) t="$2"; shift 2 ;;
    -r) r="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --suite) suite=1; shift ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
    -*) echo "unknown flag $1" >&2; exit 2 ;;
    *) model="$1"; shift ;;
  esac
done
if ((suite)); then
  mapfile -t models < <(scripts/suite-models.sh)
else
  [[ -n "$model" ]] || model="$(scripts/fetch-test-model.sh | tail -n 1)"
  models=("$model")
fi

anchor="../shared/anchor/build-llamacpp.sh"
[[ -x "$anchor" ]] || { echo "error: $anchor not found (it sits beside the project)" >&2; exit 1; }
bin="$("$anchor" | tail -n 1)"
# RBENCH=/path/to/rbench compares another build (e.g. before a change).
if [[ -z "${RBENCH:-}" ]]; then
  cargo build --release --quiet
  RBENCH="${CARGO_TARGET_DIR:-target}/release/rbench"
fi
rbench="$RBENCH"

compare() {
  local model="$1" out
  out="$(mktemp -d)"
  for round in $(seq 1 "$rounds"); do
    echo "round $round/$rounds: rbench" >&2
    "$rbench" bench -m "$model" -p "$p" -n "$n" -t "$t" -r "$r" -o json > "$out/rbench-$round.json"
    echo "round $round/$rounds: llama-bench" >&2
    "$bin/llama-bench" -m "$model" -p "$p" -n "$n" -t "$t" -r "$r" -o json > "$out/llama-$round.json" 2>/dev/null
  done

  python3 - "$out" "$rounds" <<'PY'
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(path):
    rows = json.load(open(path))
    return {("pp%d" % r["n_prompt"]) if r["n_gen"] == 0 else ("tg%d" % r["n_gen"]) if r["n_prompt"] == 0
            else "pp%d+tg%d" % (r["n_prompt"], r["n_gen"]): r["avg_ts"] for r in rows}
print("| round | test | rbench t/s | llama-bench t/s | rbench / llama.cpp |")
print("|---|---|---|---|---|")
ratios = {}
for i in range(1, rounds + 1):
    a, b = load(f"{out}/rbench-{i}.json"), load(f"{out}/llama-{i}.json")
    for test in a:
        if test in b:
            ratio = a[test] / b[test]
            ratios.setdefault(test, []).append(ratio)
            print(f"| {i} | {test} | {a[test]:.2f} | {b[test]:.2f} | {ratio:.3f} |")
for test, rs in ratios.items():
    print(f"| all | {test} | | | {sum(rs) / len(rs):.3f} (min {min(rs):.3f}, max {max(rs):.3f}) |")
PY
  rm -rf "$out"
}

for model in "${models[@]}"; do
  ((${#models[@]} == 1)) || printf '\n### %s\n\n' "$(basename "$model")"
  compare "$model"
done
