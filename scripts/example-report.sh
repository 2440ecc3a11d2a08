#!/usr/bin/env bash
# Regenerates docs/example-report/: a saved bench of the built-in synthetic
# default model and the Markdown report (with SVG charts) made from it.
#   scripts/example-report.sh [extra bench flags, e.g. -t 2]
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/example-report
mkdir -p "$out"
cargo build --release -q
bin=target/release/rbench
[[ -n "${CARGO_TARGET_DIR:-}" ]] && bin="$CARGO_TARGET_DIR/release/rbench"
"$bin" bench -r 3 "$@" --save "$out/bench.json"
"$bin" parallel --workers 1,2,4,8 -p 64 -n 64 "$@" --save "$out/parallel.json" > /dev/null
"$bin" report "$out/bench.json" "$out/parallel.json" -o "$out/report.md"
echo "wrote $out/report.md"
