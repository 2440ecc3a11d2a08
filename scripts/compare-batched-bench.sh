#!/usr/bin/env bash
# Runs `rbench parallel` and llama.cpp's `llama-batched-bench` on the same model,
# prompt/generation lengths and batch sizes, interleaved (rbench, llama.cpp,
# rbench, llama.cpp, ...), and prints rbench / llama.cpp per batch size and round
# for generation (S_TG) and prompt processing (S_PP). Timings drift between runs
# on shared machines: only the ratios of one run mean anything.
#
#   scripts/compare-batched-bench.sh [MODEL | --suite] [-p 128] [-n 128] [-B 1,2,4,8] [-t 2] [--rounds 2]
#
# MODEL defaults to the test model (scripts/fetch-test-model.sh); --suite runs
# each model of scripts/suite-models.sh in turn (real and synthetic shapes). llama.cpp's
# tools are built once by ../shared/anchor/build-llamacpp.sh (about 4 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

suite=0 model="" p=128 n=128 B="1,2,4,8" t="$(nproc)" rounds=2
while (($#)); do
  case "$1" in
    -p) p="$2"; shift 2 ;;
    -n) n="$2"; shift 2 ;;
    -B) B="$2"; shift 2 ;;
    -t) t="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --suite) suite=1; shift ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
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

# llama-batched-bench needs room for its largest batch: B × (p + n) cells.
max_b="$(tr ',' '\n' <<<"$B" | sort -n | tail -n 1)"
ctx=$((max_b * (p + n + 1)))
((ctx >= 4096)) || ctx=4096

compare() {
  local model="$1" out
  out="$(mktemp -d)"
  for round in $(seq 1 "$rounds"); do
    echo "round $round/$rounds: rbench parallel" >&2
    # -n + 1: the first token comes from the prompt's logits, so n + 1 tokens
    # per request take n generation steps, as llama-batched-bench's -ntg n does.
    # B requests at once per batch size B, as llama-batched-bench runs them.
    for b in ${B//,/ }; do
      "$rbench" parallel -m "$model" --workers "$b" --requests "$b" -p "$p" -n "$((n + 1))" \
        -t "$t" -o json > "$out/rbench-$round-$b.json"
    done
    echo "round $round/$rounds: llama-batched-bench" >&2
    "$bin/llama-batched-bench" -m "$model" -npp "$p" -ntg "$n" -npl "$B" -c "$ctx" -t "$t" \
    > "$out/llama-$round.txt" 2>/dev/null
  done

  python3 - "$out" "$rounds" <<'PY'
import glob, json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def llama(path):
    rows = {}
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[2].isdigit():
            rows[int(cells[2])] = (float(cells[5]), float(cells[7]))  # S_PP, S_TG
    return rows
print("| round | B | rbench S_PP | llama S_PP | PP ratio | rbench S_TG | llama S_TG | TG ratio |")
print("|---|---|---|---|---|---|---|---|")
ratios = {}
for i in range(1, rounds + 1):
    ours = {}
    for path in glob.glob(f"{out}/rbench-{i}-*.json"):
        for r in json.load(open(path))["runs"]:
            ours[r["workers"]] = (r["prompt_tps"], r["gen_tps"])
    theirs = llama(f"{out}/llama-{i}.txt")
    for b in sorted(ours):
        if b not in theirs:
            continue
        (pp, tg), (lpp, ltg) = ours[b], theirs[b]
        ratios.setdefault(b, []).append((pp / lpp, tg / ltg))
        print(f"| {i} | {b} | {pp:.1f} | {lpp:.1f} | {pp / lpp:.3f} | {tg:.1f} | {ltg:.1f} | {tg / ltg:.3f} |")
print()
print("| B | mean PP ratio | mean TG ratio |")
print("|---|---|---|")
for b in sorted(ratios):
    pps, tgs = zip(*ratios[b])
    print(f"| {b} | {sum(pps) / len(pps):.3f} | {sum(tgs) / len(tgs):.3f} |")
PY
  rm -rf "$out"
}

for model in "${models[@]}"; do
  ((${#models[@]} == 1)) || printf '\n### %s\n\n' "$(basename "$model")"
  compare "$model"
done
