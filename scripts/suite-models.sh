#!/usr/bin/env bash
# Prints the representative model suite, one GGUF path per line, writing the
# synthetic members on first use (rbench synth, a few seconds each, 4 GB in
# all): the real test model, then synthetic Llama-3.2-1B, Qwen2-1.5B and
# Qwen3-0.6B shapes at Q4_K_M (Q4_K / Q6_K: what typical files are made of),
# and Llama-1B at Q8_0 and Q4_0. No speed claim should rest on one of them.
#
#   scripts/suite-models.sh [CACHE_DIR]     (default: ~/.cache/rbench-models/suite)
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${1:-$HOME/.cache/rbench-models/suite}"
mkdir -p "$cache"
cargo build --release --quiet
rbench="${CARGO_TARGET_DIR:-target}/release/rbench"

scripts/fetch-test-model.sh | tail -n 1
for member in llama:1b:q4_k_m qwen2:1.5b:q4_k_m qwen3:0.6b:q4_k_m llama:1b:q8_0 llama:1b:q4_0; do
  IFS=: read -r arch size ftype <<<"$member"
  path="$cache/$arch-$size-$ftype.gguf"
  if [[ ! -s "$path" ]]; then
    "$rbench" synth --arch "$arch" --size "$size" --ftype "$ftype" -o "$path.part" -q >&2
    mv "$path.part" "$path"
  fi
  echo "$path"
done
