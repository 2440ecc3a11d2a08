#!/usr/bin/env python3
"""The prefix-cache sequence of the serving reports, against a fresh
`rbench serve` (standard library only):

1. prompt A (MISS), A again (HIT), a different prompt B (MISS or
   PREFIX_HIT), A again (HIT);
2. 20 requests that share a 256-token system prompt and differ after it:
   the first computes it, the other 19 reuse it (about 19 x 256 tokens saved).

Prints each request's cached tokens and time to first token (streamed,
one at a time), and the server's prefix-cache counters from /metrics.

Usage: serve-prefix-cache.py URL [--n-predict 16]
"""

import argparse
import http.client
import json
import statistics
import time
import urllib.parse

SYSTEM = ("You are a careful assistant for a team that runs language models on their own "
          "machines. Answer in plain words, name the numbers you rely on, say what you do not "
          "know, and keep every answer short enough to read on a phone. ")


def call(url, path, body=None, stream=False):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    method = "GET" if body is None else "POST"
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"{path}: HTTP {resp.status}: {resp.read()[:300]!r}")
    if not stream:
        data = resp.read().decode()
        conn.close()
        return json.loads(data) if path != "/metrics" else data
    return conn, resp


def complete(url, prompt, n_predict):
    """Streams one completion; returns (ttft seconds, usage)."""
    sent = time.perf_counter()
    body = {"prompt": prompt, "max_tokens": n_predict, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    conn, resp = call(url, "/v1/completions", body, stream=True)
    ttft, usage = None, None
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data:") or line == "data: [DONE]":
            continue
        msg = json.loads(line[5:])
        if msg.get("usage"):
            usage = msg["usage"]
        if ttft is None and any(c.get("text") for c in msg.get("choices") or []):
            ttft = time.perf_counter() - sent
    conn.close()
    return ttft, usage


def outcome(usage):
    cached, prompt = usage["prompt_tokens_details"]["cached_tokens"], usage["prompt_tokens"]
    if cached == 0:
        return "MISS"
    return "HIT" if cached >= prompt - 1 else "PREFIX_HIT"


def tokens(url, text, special):
    return call(url, "/tokenize", {"prompt": text, "add_special_tokens": special})["tokens"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--n-predict", type=int, default=16)
    args = p.parse_args()
    url, n = args.url, args.n_predict

    a = tokens(url, "The capital of France is Paris. The capital of Italy is", True)
    b = tokens(url, "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", True)
    print("| request | prompt tokens | cache | cached tokens | TTFT (ms) |")
    print("|---|---|---|---|---|")
    for name, prompt in [("A", a), ("A again", a), ("B", b), ("A again", a)]:
        ttft, usage = complete(url, prompt, n)
        print(f"| {name} | {usage['prompt_tokens']} | {outcome(usage)} | "
              f"{usage['prompt_tokens_details']['cached_tokens']} | {ttft * 1000:.1f} |")

    system = tokens(url, SYSTEM * 8, True)[:256]
    assert len(system) == 256, "the system text is shorter than 256 tokens"
    first, rest, saved = None, [], 0
    for i in range(20):
        question = tokens(url, f"\n\nQuestion {i + 1}: how many workers should request {i + 1} use?", False)
        ttft, usage = complete(url, system + question, n)
        saved += usage["prompt_tokens_details"]["cached_tokens"]
        if i == 0:
            first = (ttft, outcome(usage), usage["prompt_tokens"])
        else:
            rest.append((ttft, outcome(usage)))
    print()
    print(f"20 requests behind a 256-token system prompt: first {first[1]} "
          f"({first[2]} prompt tokens, TTFT {first[0] * 1000:.1f} ms); the other 19: "
          f"{', '.join(sorted(set(o for _, o in rest)))}, TTFT median "
          f"{statistics.median(t for t, _ in rest) * 1000:.1f} ms; cached tokens {saved} "
          f"(19 x 256 = {19 * 256})")
    print()
    metrics = call(url, "/metrics")
    for line in metrics.splitlines():
        if line.startswith("rbench:prefix_cache"):
            print(line)


if __name__ == "__main__":
    main()
