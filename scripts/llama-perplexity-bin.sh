#!/usr/bin/env bash
# Prints the directory holding llama.cpp's llama-perplexity for the KL-divergence
# checks: $LLAMA_BIN when set, else ../shared/anchor/'s build when that script
# is at hand, else one built by scripts/build-llama-perplexity.sh (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${LLAMA_BIN:-}" ]]; then
  echo "$LLAMA_BIN"
elif [[ -x ../shared/anchor/build-llamacpp.sh ]]; then
  ../shared/anchor/build-llamacpp.sh | tail -n 1
else
  scripts/build-llama-perplexity.sh | tail -n 1
fi
