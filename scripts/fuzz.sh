#!/usr/bin/env bash
# Coverage-guided fuzzing of the GGUF reader with AFL++ (stable toolchain).
#
#   scripts/fuzz.sh [SECONDS]     default 600; needs `cargo install cargo-afl`
#
# Writes the seed corpus (compact synthetic models and, when the test model is
# present, its compacted header) to fuzz/seeds, builds the instrumented target
# in fuzz/target, and runs afl-fuzz into fuzz/out (resumed when it exists).
# It runs at the lowest priority and does not pin a core: the build machines
# are shared. Findings land in fuzz/out/default/crashes; each one becomes a
# regression test in tests/hostile_gguf.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
root=$PWD

RBENCH_FUZZ_SEEDS="$root/fuzz/seeds" nice -n 19 cargo test --release --test hostile_gguf \
    fuzz_seeds_are_small_valid_models -- --exact --quiet
# The fuzz crate is its own workspace with its own target dir, whatever
# CARGO_TARGET_DIR the caller uses for rbench.
(cd fuzz && CARGO_TARGET_DIR="$root/fuzz/target" nice -n 19 cargo afl build --release)

export AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_AUTORESUME=1
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
nice -n 19 cargo afl fuzz -V "$seconds" -i fuzz/seeds -o fuzz/out \
    fuzz/target/release/gguf_reader
echo "corpus: $(ls fuzz/out/default/queue | wc -l) inputs;" \
    "crashes: $(ls fuzz/out/default/crashes | grep -vc README || true);" \
    "hangs: $(ls fuzz/out/default/hangs | wc -l)"
