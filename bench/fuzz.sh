#!/usr/bin/env bash
# The fuzz run: every bolero target (`fuzz` modules: client bodies,
# upstream answers, the SSE reader, gossip values and datagrams, the
# config) on a million random inputs each, release build, after its
# corpus. `cargo test` runs the same targets for a second each.
#
#   bash bench/fuzz.sh [ITERATIONS]        (default 1000000)
#
# Prints each target's time; exits non-zero on the first failure, with
# the input that failed (bolero prints it, and its seed to replay it with
# BOLERO_RANDOM_SEED).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/prereqs.sh
install_needed
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/chorus/target}"
export BOLERO_RANDOM_ITERATIONS="${1:-1000000}"
for package in chorus-proto chorus-node; do
  cargo test --release -q -p "$package" --no-run
  for target in $(cargo test --release -q -p "$package" -- --list fuzz:: 2>/dev/null | sed -n 's/: test$//p'); do
    started=$(date +%s)
    cargo test --release -q -p "$package" -- --exact "$target" >/dev/null
    echo "$package $target: $BOLERO_RANDOM_ITERATIONS inputs in $(( $(date +%s) - started )) s"
  done
done
