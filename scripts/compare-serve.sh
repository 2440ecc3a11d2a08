#!/usr/bin/env bash
# Serving overhead: N concurrent streams of -p prompt tokens and -n generated
# tokens through `rbench serve`, through llama.cpp's `llama-server`, and the
# same shape in `rbench parallel` (no HTTP), interleaved round by round; one
# client for both servers (scripts/serve-load.py). Prints generation t/s as
# the client saw it while all streams generated, and the ratios. Timings
# drift between runs on shared machines: only the ratios of one run mean anything.
#
#   scripts/compare-serve.sh [MODEL] [-c 8] [-p 128] [-n 128] [-t 2] [--rounds 2]
#
# MODEL defaults to the test model (scripts/fetch-test-model.sh); llama-server is
# built by ../shared/anchor/build-llamacpp.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

model="" conc=8 p=128 n=128 t="$(nproc)" rounds=2
while (($#)); do
  case "$1" in
    -c) conc="$2"; shift 2 ;;
    -p) p="$2"; shift 2 ;;
    -n) n="$2"; shift 2 ;;
    -t) t="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    -*) echo "unknown flag $1" >&2; exit 2 ;;
    *) model="$1"; shift ;;
  esac
done
[[ -n "$model" ]] || model="$(scripts/fetch-test-model.sh | tail -n 1)"
anchor="../shared/anchor/build-llamacpp.sh"
[[ -x "$anchor" ]] || { echo "error: $anchor not found (it sits beside the project)" >&2; exit 1; }
bin="$("$anchor" | tail -n 1)"
if [[ -z "${RBENCH:-}" ]]; then
  cargo build --release --quiet
  RBENCH="${CARGO_TARGET_DIR:-target}/release/rbench"
fi
vocab="$("$RBENCH" info -m "$model" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["n_vocab"])')"
port=18080
ctx=$(( (p + n + 255) / 256 * 256 ))
out="$(mktemp -d)"
pid=""
trap '[[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$out"' EXIT

wait_ready() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "error: the server did not become ready" >&2; exit 1
}

serve_round() {
  local name="$1" round="$2"; shift 2
  "$@" >"$out/$name-$round.log" 2>&1 &
  pid=$!
  wait_ready
  # A warm-up round, then the measured one.
  python3 scripts/serve-load.py "http://127.0.0.1:$port" --concurrency "$conc" --prompt "$p" \
    --n-predict "$n" --vocab "$vocab" --seed 99 --json >/dev/null
  python3 scripts/serve-load.py "http://127.0.0.1:$port" --concurrency "$conc" --prompt "$p" \
    --n-predict "$n" --vocab "$vocab" --seed "$round" --json >"$out/$name-$round.json"
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds: rbench parallel" >&2
  "$RBENCH" parallel -m "$model" --workers "$conc" --requests "$conc" -p "$p" -n "$n" -t "$t" -o json >"$out/parallel-$round.json" 2>/dev/null
  echo "round $round/$rounds: rbench serve" >&2
  serve_round rbench "$round" "$RBENCH" serve -m "$model" --port "$port" --parallel "$conc" -c "$ctx" -t "$t" --no-log-requests
  echo "round $round/$rounds: llama-server" >&2
  serve_round llama "$round" "$bin/llama-server" -m "$model" --port "$port" --parallel "$conc" \
    -c "$((ctx * conc))" -t "$t" -fa on --no-webui
done

python3 - "$out" "$rounds" "$conc" "$p" "$n" <<'EOF'
import json, sys
out, rounds, conc, p, n = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
print(f"{conc} streams, -p {p} -n {n}: generation t/s (client side for the servers)")
print("| round | rbench parallel | rbench serve | llama-server | serve / parallel | serve / llama-server |")
print("|---|---|---|---|---|---|")
for r in range(1, rounds + 1):
    par = json.load(open(f"{out}/parallel-{r}.json"))
    par_tps = par["runs"][0]["gen_tps"]
    rb = json.load(open(f"{out}/rbench-{r}.json"))["best"]
    ll = json.load(open(f"{out}/llama-{r}.json"))["best"]
    print(f"| {r} | {par_tps:.1f} | {rb['gen_tps']:.1f} | {ll['gen_tps']:.1f} | "
          f"{rb['gen_tps'] / par_tps:.2f} | {rb['gen_tps'] / ll['gen_tps']:.2f} |")
    print(f"|   | ttft mean (ms) | {rb['ttft_ms_mean']:.0f} | {ll['ttft_ms_mean']:.0f} | | |")
EOF
