#!/usr/bin/env bash
# Regenerates tests/data/pretokenizer-ids.json: the ids llama.cpp's
# llama-tokenize gives for tests/data/pretokenizer-text.txt with each
# vocabulary tests/pretokenizers.rs writes (one per pre-tokenizer).
# Needs llama.cpp's tools: ../shared/anchor/build-llamacpp.sh, or LLAMA_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_BIN="${LLAMA_BIN:-$(../shared/anchor/build-llamacpp.sh | tail -n 1)}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
RBENCH_PRETOKENIZER_DIR="$dir" cargo test --release --test pretokenizers -- --ignored write_pretokenizer_vocabularies >&2
python3 - "$dir" "$LLAMA_BIN/llama-tokenize" tests/data/pretokenizer-text.txt > tests/data/pretokenizer-ids.json <<'PY'
import json, subprocess, sys
d, tool, text = sys.argv[1:4]
out = {}
for pre in open(f"{d}/pre.txt").read().split("\n"):
    r = subprocess.run([tool, "-m", f"{d}/{pre}.gguf", "-f", text, "--ids", "--log-disable", "--no-bos"],
                       capture_output=True, text=True, check=True)
    line = [l for l in r.stdout.splitlines() if l.startswith("[")][-1]
    out[pre] = json.loads(line)
print(json.dumps(out, indent=None, separators=(",", ":")))
PY
echo "wrote tests/data/pretokenizer-ids.json" >&2
