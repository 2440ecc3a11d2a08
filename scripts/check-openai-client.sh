#!/usr/bin/env bash
# The official `openai` Python client (from PyPI, in a venv under
# ~/.cache/rbench-venv-openai) streams a chat completion from `rbench serve`.
#
#   scripts/check-openai-client.sh [MODEL]     (default: the test model)
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-$(scripts/fetch-test-model.sh | tail -n 1)}"
venv="${RBENCH_OPENAI_VENV:-$HOME/.cache/rbench-venv-openai}"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import openai' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet openai
fi
rbench="${RBENCH:-${CARGO_TARGET_DIR:-target}/release/rbench}"
[[ -x "$rbench" ]] || cargo build --release --quiet
log="$(mktemp)"
"$rbench" serve -m "$model" --port 0 --parallel 2 -c 1024 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 600); do
  grep -q "rbench serve: ready" "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.2
done
addr="$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$log")"
"$venv/bin/python" scripts/openai-chat.py "$addr/v1"
echo "openai $("$venv/bin/python" -c 'import openai; print(openai.__version__)') against rbench serve at $addr: ok"
