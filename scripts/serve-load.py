#!/usr/bin/env python3
"""Drive an OpenAI-compatible /v1/completions endpoint with N concurrent
streams and print what a client sees (standard library only, so every
server gets the same client).

Each request sends PROMPT random token ids (a list of ints, which rbench
serve, llama-server and vLLM all accept) and asks for exactly N_PREDICT
tokens (ignore_eos). Reported:

- gen_tps: tokens received per second while all streams were generating
  (from the last stream's first token to the first stream's last token):
  the client-side counterpart of `rbench parallel`'s generation t/s and
  llama-batched-bench's S_TG.
- output_tps: all completion tokens over the whole wall time.
- ttft_ms mean / max.

Usage: serve-load.py URL [--concurrency 8] [--prompt 128] [--n-predict 128]
       [--vocab 32000] [--rounds 1] [--seed 0] [--json]
"""

import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
import urllib.parse


def one_request(url, body, out, index):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    sent = time.perf_counter()
    conn.request("POST", "/v1/completions", body=json.dumps(body),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        out[index] = {"error": f"HTTP {resp.status}: {resp.read()[:200]!r}"}
        return
    chunks = []  # arrival time of every chunk that carried text
    usage = None
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        msg = json.loads(data)
        if msg.get("usage"):
            usage = msg["usage"]
        for c in msg.get("choices") or []:
            if c.get("text"):
                chunks.append(time.perf_counter())
    conn.close()
    out[index] = {"sent": sent, "chunks": chunks, "usage": usage,
                  "end": time.perf_counter()}


def run_round(url, args, rng, model):
    bodies = []
    for _ in range(args.concurrency):
        prompt = [rng.randrange(100, args.vocab) for _ in range(args.prompt)]
        body = {"prompt": prompt, "max_tokens": args.n_predict, "temperature": 0,
                "ignore_eos": True, "stream": True,
                "stream_options": {"include_usage": True}}
        if model:
            body["model"] = model
        bodies.append(body)
    out = [None] * args.concurrency
    threads = [threading.Thread(target=one_request, args=(url, b, out, i))
               for i, b in enumerate(bodies)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    errors = [o["error"] for o in out if "error" in o]
    if errors:
        sys.exit(f"requests failed: {errors[:3]}")
    start = max(o["chunks"][0] for o in out)
    end = min(o["chunks"][-1] for o in out)
    in_window = sum(1 for o in out for c in o["chunks"] if start < c <= end)
    tokens = sum((o["usage"] or {}).get("completion_tokens", len(o["chunks"])) for o in out)
    ttft = [(o["chunks"][0] - o["sent"]) * 1000 for o in out]
    return {
        "gen_tps": in_window / (end - start) if end > start else 0.0,
        "output_tps": tokens / wall,
        "completion_tokens": tokens,
        "ttft_ms_mean": statistics.mean(ttft),
        "ttft_ms_max": max(ttft),
        "wall_s": wall,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--n-predict", type=int, default=128)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rng = random.Random(args.seed)
    rounds = [run_round(args.url, args, rng, args.model) for _ in range(args.rounds)]
    best = max(rounds, key=lambda r: r["gen_tps"])
    if args.json:
        print(json.dumps({"rounds": rounds, "best": best}))
    else:
        for i, r in enumerate(rounds):
            print(f"round {i + 1}: gen {r['gen_tps']:.1f} t/s | output {r['output_tps']:.1f} t/s"
                  f" | ttft mean {r['ttft_ms_mean']:.0f} ms, max {r['ttft_ms_max']:.0f} ms"
                  f" | {r['completion_tokens']} tokens in {r['wall_s']:.2f} s")


if __name__ == "__main__":
    main()
