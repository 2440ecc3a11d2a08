#!/usr/bin/env bash
# Builds llama.cpp's llama-perplexity from the llama-cpp-python source
# distribution on PyPI (the llama.cpp release the comparisons use), for
# scripts/check-kld-archs.sh where ../shared/anchor/ is not at hand (CI).
#
# Usage: build-llama-perplexity.sh [CACHE_DIR]   (default: ~/.cache/rbench-anchor)
# Prints the bin directory on its last line. Needs cmake, g++ and pip;
# about 5 minutes on 2 cores, then cached.
#
# Where the CPU advertises AMX, it is built without it: llama.cpp 0.25.3's
# native build died with SIGILL in its AMX matmul on a Sapphire Rapids VM.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${1:-$HOME/.cache/rbench-anchor}"
SRC="$CACHE/llama.cpp-$VERSION"
BIN="$SRC/build/bin"
FLAGS=""
grep -qw amx_tile /proc/cpuinfo 2>/dev/null && FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
if [[ -x "$BIN/llama-perplexity" && "$(cat "$SRC/build/.rbench-flags" 2>/dev/null)" == "$FLAGS" ]]; then
  echo "$BIN"; exit 0
fi
mkdir -p "$CACHE"
if [[ ! -d "$SRC" ]]; then
  # pip prepares the sdist's metadata, with its build backend fetched from PyPI.
  python3 -m pip download -q --no-deps --no-binary :all: \
    -d "$CACHE/sdist" "llama-cpp-python==$VERSION" >&2
  tar xzf "$CACHE/sdist/llama_cpp_python-$VERSION.tar.gz" -C "$CACHE" \
    "llama_cpp_python-$VERSION/vendor/llama.cpp"
  mv "$CACHE/llama_cpp_python-$VERSION/vendor/llama.cpp" "$SRC"
  rm -rf "$CACHE/llama_cpp_python-$VERSION"
fi
cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DGGML_NATIVE=ON "-DCMAKE_C_FLAGS=$FLAGS" "-DCMAKE_CXX_FLAGS=$FLAGS" >&2
cmake --build "$SRC/build" -j"$(nproc)" --target llama-perplexity >&2
echo "$FLAGS" > "$SRC/build/.rbench-flags"
echo "$BIN"
