#!/usr/bin/env python3
"""Streams a chat completion from an OpenAI-compatible server with the
official `openai` client (pip install openai), then asks once more without
streaming, and checks what came back: text in the stream, a final usage
chunk, and the same text both ways at temperature 0.

Usage: openai-chat.py BASE_URL [--model ID] [--api-key KEY]
  e.g. openai-chat.py http://127.0.0.1:8080/v1
"""

import argparse
import sys

from openai import OpenAI


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base_url")
    p.add_argument("--model", default=None)
    p.add_argument("--api-key", default="none")
    args = p.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    model = args.model or client.models.list().data[0].id
    messages = [
        {"role": "system", "content": "You answer in one sentence."},
        {"role": "user", "content": "Why do people run language models on their own computers?"},
    ]
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=32, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    parts, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
                print(choice.delta.content, end="", flush=True)
            finish = choice.finish_reason or finish
    print()
    streamed = "".join(parts)
    whole = client.chat.completions.create(
        model=model, messages=messages, max_tokens=32, temperature=0,
    )
    text = whole.choices[0].message.content
    print(f"model {model} | {len(parts)} chunks | finish {finish} | usage {usage}", file=sys.stderr)
    problems = []
    if usage is None or usage.completion_tokens < 1:
        problems.append("no usage chunk")
    if finish not in ("stop", "length"):
        problems.append(f"finish_reason {finish!r}")
    if streamed != text:
        problems.append(f"streamed {streamed!r} but non-streamed {text!r}")
    if whole.usage.prompt_tokens_details is None:
        problems.append("no prompt_tokens_details")
    if problems:
        sys.exit("openai client check failed: " + "; ".join(problems))
    print("openai client: ok", file=sys.stderr)


if __name__ == "__main__":
    main()
