#!/usr/bin/env bash
# Checks that a refactoring changed no numbers: two rbench binaries (say the
# last commit's and this one's) on the real test model, side by side.
#
#   scripts/check-unchanged.sh OLD_RBENCH NEW_RBENCH [MODEL] [ROUNDS]
#
# Compares, and prints "same"/"DIFFERENT" for, greedy completions of the five
# reference prompts (run), batch mode (run --prompts-file), and perplexity
# (-c 256 on Debian's GPL-3, 4 decimals); then runs `bench -p 512 -n 128 -r 3`
# with the two binaries interleaved for ROUNDS rounds (default 2) and prints
# their t/s, so speed is compared within one sitting.
set -euo pipefail
old="${1:?old rbench binary}"
new="${2:?new rbench binary}"
model="${3:-${RBENCH_TEST_MODEL:-$HOME/.cache/rbench-models/gemma-3-270m-q4_k_m.gguf}}"
rounds="${4:-2}"
text=/usr/share/common-licenses/GPL-3
cd "$(dirname "$0")/.."
threads=$(nproc)
status=0

same() { # label, command with {} for the binary
  local label="$1"; shift
  local a b
  a=$("${@/\{\}/$old}" 2>/dev/null | sha256sum)
  b=$("${@/\{\}/$new}" 2>/dev/null | sha256sum)
  if [[ "$a" == "$b" ]]; then echo "same       $label"; else echo "DIFFERENT  $label"; status=1; fi
}

while IFS= read -r line; do
  # The trailing x keeps a prompt's final newline through $( ).
  prompt=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["prompt"], end="x")' "$line")
  prompt="${prompt%x}"
  same "run: $(printf %q "$prompt")" {} run -m "$model" -p "$prompt" -n 32 --temp 0 -t "$threads"
done < tests/data/greedy-gemma3-270m.jsonl

prompts=$(mktemp)
trap 'rm -f "$prompts"' EXIT
python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.dumps(json.loads(l)["prompt"]))' tests/data/greedy-gemma3-270m.jsonl > "$prompts"
same "run --prompts-file (batch mode, 3 slots)" {} run -m "$model" --prompts-file "$prompts" --parallel 3 -n 32 --temp 0 -t "$threads" -o jsonl

if [[ -f "$text" ]]; then
  for bin in "$old" "$new"; do
    printf '%-10s %s\n' "perplexity" "$("$bin" perplexity -m "$model" -f "$text" -c 256 -t "$threads" 2>/dev/null | head -1) ($bin)"
  done
fi

for r in $(seq 1 "$rounds"); do
  for bin in "$old" "$new"; do
    "$bin" bench -m "$model" -p 512 -n 128 -r 3 -t "$threads" -o jsonl 2>/dev/null |
      python3 -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l)
    test = "pp%d" % r["n_prompt"] if r["n_prompt"] else "tg%d" % r["n_gen"]
    print("round %s  %-6s %8.2f ± %6.2f t/s  (%s)" % (sys.argv[1], test, r["avg_ts"], r["stddev_ts"], sys.argv[2]))' "$r" "$bin"
  done
done
exit $status
