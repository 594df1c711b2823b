#!/usr/bin/env bash
# The overhead benchmark: the same load against mock-upstream directly and
# through one Chorus node, in one run, on this machine. Release builds only.
#
#   bash bench/overhead.sh [SECONDS_PER_RUN]      (default 10)
#
# Prints a markdown table (also saved to bench/results/overhead-<date>.md)
# and keeps the raw JSON lines beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
bin="$target_dir/release"
cargo build --release --quiet --workspace --bins

work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Starts a process that prints "... listening on http://ADDR" and echoes ADDR.
start() {
  local log="$work/$1.out"; shift
  "$@" >"$log" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 1 100); do
    if grep -q "http://" "$log" 2>/dev/null; then sed -n 's|.*http://||p' "$log" | head -1; return; fi
    sleep 0.05
  done
  echo "failed to start: $*" >&2; exit 1
}

# Two upstreams: one with no delays (throughput, pure overhead), one with a
# 20 ms time to first token and 2 ms between tokens (streaming TTFT).
fast_upstream="$(start mock-fast "$bin/mock-upstream" --listen 127.0.0.1:0 --threads 1)"
paced_upstream="$(start mock-paced "$bin/mock-upstream" --listen 127.0.0.1:0 --threads 1 --ttft-ms 20 --token-delay-ms 2)"
cat >"$work/chorus.toml" <<TOML
[[providers]]
name = "fast"
format = "openai"
base_url = "http://$fast_upstream/v1"
[[providers]]
name = "paced"
format = "openai"
base_url = "http://$paced_upstream/v1"
[[models]]
alias = "fast"
deployments = [{ provider = "fast", model = "mock" }]
[[models]]
alias = "paced"
deployments = [{ provider = "paced", model = "mock" }]
[[keys]]
name = "bench"
key = "sk-bench"
TOML
node="$(start chorus "$bin/chorus" serve --config "$work/chorus.toml" --listen 127.0.0.1:0)"

results="$work/results.jsonl"
load() { # label target-addr model extra-args...
  local label="$1" addr="$2" model="$3"; shift 3
  "$bin/chorus-load" --url "http://$addr/v1/chat/completions" --model "$model" \
    --header "Authorization: Bearer sk-bench" --duration "$duration" --warmup 2 \
    --label "$label" --json "$@" >>"$results"
}
pair() { # scenario upstream-addr model extra-args...
  local scenario="$1" upstream="$2" model="$3"; shift 3
  echo "running: $scenario" >&2
  load "$scenario|direct" "$upstream" "$model" "$@"
  load "$scenario|chorus" "$node" "$model" "$@"
}

pair "sequential" "$fast_upstream" fast --mode sequential
pair "closed-32" "$fast_upstream" fast --mode closed --connections 32
pair "rate-2000" "$fast_upstream" fast --mode rate --rate 2000 --connections 64
pair "sequential-stream" "$fast_upstream" fast --mode sequential --stream
pair "closed-32-stream" "$fast_upstream" fast --mode closed --connections 32 --stream
pair "rate-500-stream-paced" "$paced_upstream" paced --mode rate --rate 500 --connections 128 --stream
pair "sequential-stream-paced" "$paced_upstream" paced --mode sequential --stream

mkdir -p bench/results
stamp="$(date -u +%Y-%m-%dT%H%MZ)"
cp "$results" "bench/results/overhead-$stamp.jsonl"
python3 bench/report.py "$results" --duration "$duration" | tee "bench/results/overhead-$stamp.md"
