#!/usr/bin/env python3
"""Checks `rbench analyze` against counting each record with `rbench tokenize --no-bos`.

    scripts/verify-analyze.py DATASET PROMPT_FIELD OUTPUT_FIELD [MODEL]

Runs `rbench analyze DATASET -m MODEL --prompt-field ... -o json`, then tokenizes every
record's prompt and output separately through `rbench tokenize -m MODEL -f FILE --no-bos
--ids`, recomputes the statistics (nearest-rank percentiles) and the recommendation rules
here, and exits 1 on any difference. MODEL defaults to RBENCH_TEST_MODEL or the test-model
path; the binary to RBENCH_BIN or target/release/rbench.
"""
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor


def nearest_rank(sorted_values, q):
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def stats(values):
    v = sorted(values)
    n = len(v)
    mean = sum(v) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else 0.0
    out = {"count": n, "mean": mean, "std": std, "min": v[0], "max": v[-1]}
    for q in (50, 75, 90, 95, 99):
        out[f"p{q}"] = nearest_rank(v, q)
    return out


def nearest_power_of_two(v):
    if v <= 1:
        return 1
    low = 1 << (v.bit_length() - 1)
    return low if v * v < 2 * low * low else 2 * low


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    dataset, prompt_field, output_field = sys.argv[1:4]
    model = sys.argv[4] if len(sys.argv) > 4 else os.environ.get(
        "RBENCH_TEST_MODEL",
        os.path.expanduser("~/.cache/rbench-models/gemma-3-270m-q4_k_m.gguf"))
    rbench = os.environ.get("RBENCH_BIN", "target/release/rbench")

    report = json.loads(subprocess.run(
        [rbench, "analyze", dataset, "-m", model, "--prompt-field", prompt_field,
         "--output-field", output_field, "-o", "json"],
        check=True, capture_output=True).stdout)

    opener = gzip.open if dataset.endswith(".gz") else open
    with opener(dataset, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]

    tmp = tempfile.mkdtemp()

    def count(job):
        i, text = job
        path = os.path.join(tmp, f"{i}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        out = subprocess.run([rbench, "tokenize", "-m", model, "-f", path, "--no-bos", "--ids"],
                             check=True, capture_output=True).stdout
        return len(json.loads(out))

    texts = []
    for r in records:
        texts.append(r[prompt_field])
        texts.append(r[output_field])
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        counts = list(pool.map(count, enumerate(texts)))
    prompts = counts[0::2]
    outputs = [c for c, t in zip(counts[1::2], texts[1::2]) if t.strip()]

    failures = []

    def check(name, got, want):
        same = abs(got - want) <= 1e-9 * max(1.0, abs(want)) if isinstance(want, float) else got == want
        if not same:
            failures.append(f"{name}: analyze {got}, tokenize {want}")

    check("records", report["records"], len(records))
    for side, values in (("prompt_tokens", prompts), ("output_tokens", outputs)):
        want = stats(values)
        for key, value in want.items():
            check(f"{side}.{key}", report[side][key], value)
        print(f"{side:14} " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in want.items()))

    p95 = stats(prompts)["p95"]
    check("n_prompt", report["recommendation"]["n_prompt"], max(32, 1 << max(0, (p95 - 1).bit_length())))
    out_stats = stats(outputs)
    for tier, q in zip(report["tiers"], (75, 90, 99)):
        n = nearest_power_of_two(out_stats[f"p{q}"])
        coverage = sum(1 for o in outputs if o <= n) / len(outputs)
        check(f"{tier['name']}.n_predict", tier["n_predict"], n)
        check(f"{tier['name']}.coverage", tier["coverage"], coverage)
        print(f"{tier['name']:14} n_predict={n} coverage={100 * coverage:.1f}% (p{q} = {out_stats[f'p{q}']})")
    rec = report["recommendation"]
    print(f"recommendation -p {rec['n_prompt']} -n {rec['n_predict']} "
          f"(covers {100 * rec['coverage']:.1f}% of outputs, {100 * rec['prompt_coverage']:.1f}% of prompts)")
    if failures:
        print("MISMATCH:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"OK: {len(records)} records, {len(texts)} texts tokenized one by one agree with rbench analyze")


if __name__ == "__main__":
    main()
