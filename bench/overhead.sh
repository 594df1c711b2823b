#!/usr/bin/env bash
# The overhead benchmark: the same load against mock-upstream directly,
# through HAProxy in HTTP mode (the floor for any HTTP proxy), and through
# one Chorus node as it runs in production (clustered, gossiping, counting
# into its store), in one run, on this machine. Release builds only.
#
#   bash bench/overhead.sh [SECONDS_PER_RUN]      (default 10)
#
#   CHORUS_BASELINE_BIN  another `chorus` binary (an earlier build, say) run
#                        the same way as another target, `baseline`, so a
#                        change is compared with what it changed in one run
#   CHORUS_BASELINE_STORAGE  lines added to the baseline's [storage] section,
#                        e.g. `request_log_days = 0` to run the same build
#                        without its request log
#
# Chorus runs twice per scenario: with a bootstrap key (`chorus`), and with
# a virtual key held to every kind of limit, all set too high to refuse
# (`limited`): what admission, reservations and settling cost.
#
# Prints a markdown table (also saved to bench/results/overhead-<date>.md)
# and keeps the raw JSON lines beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/prereqs.sh
need_command haproxy haproxy
need_command curl curl
install_needed
duration="${1:-10}"
source bench/processes.sh

# Two upstreams: one with no delays (throughput, pure overhead), one with a
# 20 ms time to first token and 2 ms between tokens (streaming TTFT).
start mock-fast "$bin/mock-upstream" --listen 127.0.0.1:0 --threads 1
start mock-paced "$bin/mock-upstream" --listen 127.0.0.1:0 --threads 1 --ttft-ms 20 --token-delay-ms 2
fast_upstream="$(address_of mock-fast)"
paced_upstream="$(address_of mock-paced)"
# HAProxy in HTTP mode, keep-alive both ways: what any HTTP proxy costs.
haproxy_port="$(free_port tcp)"
cat >"$work/haproxy.cfg" <<CFG
global
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    option http-no-delay
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend bench
    bind 127.0.0.1:$haproxy_port
    use_backend paced if { path_beg /paced/ }
    default_backend fast
backend fast
    server mock $fast_upstream
backend paced
    http-request replace-path /paced(/.*) \1
    server mock $paced_upstream
CFG
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$haproxy_port") 2>/dev/null && break; sleep 0.05; done

gossip_port="$(free_port udp)"
cat >"$work/chorus.toml" <<TOML
[storage]
path = "$work/store"
[cluster]
node_id = "bench-1"
listen = "127.0.0.1:$gossip_port"
secret = "overhead-bench-secret-0123456789"
[server]
admin_token = "overhead-bench-admin-0123456789"
[[providers]]
name = "fast"
format = "openai"
base_url = "http://$fast_upstream/v1"
[[providers]]
name = "paced"
format = "openai"
base_url = "http://$paced_upstream/v1"
[[providers]]
name = "claude-fast"
format = "anthropic"
base_url = "http://$fast_upstream/v1"
[[models]]
alias = "fast"
deployments = [{ provider = "fast", model = "mock" }]
[[models]]
alias = "paced"
deployments = [{ provider = "paced", model = "mock" }]
[[models]]
alias = "claude-fast"
deployments = [{ provider = "claude-fast", model = "mock" }]
[[keys]]
name = "bench"
key = "sk-bench"
TOML
start chorus "$bin/chorus" serve --config "$work/chorus.toml" --listen 127.0.0.1:0
node="$(address_of chorus)"
limited_key="$(create_limited_key "$node" overhead-bench-admin-0123456789)"
baseline=""
if [ -n "${CHORUS_BASELINE_BIN:-}" ]; then
  baseline_gossip="$(free_port udp)"
  sed -e "s|$work/store|$work/baseline-store|" -e "s|127.0.0.1:$gossip_port|127.0.0.1:$baseline_gossip|" \
    -e 's|node_id = "bench-1"|node_id = "bench-baseline"|' "$work/chorus.toml" > "$work/baseline.toml"
  if [ -n "${CHORUS_BASELINE_STORAGE:-}" ]; then
    python3 - "$work/baseline.toml" "$CHORUS_BASELINE_STORAGE" <<'PY'
import sys
path, extra = sys.argv[1], sys.argv[2]
text = open(path).read()
open(path, "w").write(text.replace("[storage]\n", "[storage]\n" + extra + "\n", 1))
PY
  fi
  start baseline "$CHORUS_BASELINE_BIN" serve --config "$work/baseline.toml" --listen 127.0.0.1:0
  baseline="$(address_of baseline)"
fi

results="$work/results.jsonl"
load() { # label target-addr model key extra-args...; $path is the endpoint
  local label="$1" addr="$2" model="$3" key="$4"; shift 4
  "$bin/chorus-load" --url "http://$addr${path:-/v1/chat/completions}" --model "$model" \
    --header "Authorization: Bearer $key" --duration "$duration" --warmup 2 \
    --label "$label" --json "$@" >>"$results"
}
trio() { # scenario upstream-addr haproxy-prefix model extra-args...
  local scenario="$1" upstream="$2" prefix="$3" model="$4"; shift 4
  echo "running: $scenario" >&2
  load "$scenario|direct" "$upstream" "$model" sk-bench "$@"
  load "$scenario|haproxy" "127.0.0.1:$haproxy_port$prefix" "$model" sk-bench "$@"
  load "$scenario|chorus" "$node" "$model" sk-bench "$@"
  load "$scenario|limited" "$node" "$model" "$limited_key" "$@"
  if [ -n "$baseline" ]; then load "$scenario|baseline" "$baseline" "$model" sk-bench "$@"; fi
}

trio "sequential" "$fast_upstream" "" fast --mode sequential
trio "closed-32" "$fast_upstream" "" fast --mode closed --connections 32
trio "rate-2000" "$fast_upstream" "" fast --mode rate --rate 2000 --connections 64
trio "sequential-stream" "$fast_upstream" "" fast --mode sequential --stream
trio "closed-32-stream" "$fast_upstream" "" fast --mode closed --connections 32 --stream
trio "rate-500-stream-paced" "$paced_upstream" "/paced" paced --mode rate --rate 500 --connections 128 --stream
trio "sequential-stream-paced" "$paced_upstream" "/paced" paced --mode sequential --stream
# Anthropic's Messages API to an `anthropic` deployment: passed through
# since 2026-12 (translated both ways before, as a baseline build shows).
messages=(--body-format messages --header "anthropic-version: 2023-06-01")
path=/v1/messages trio "sequential-messages" "$fast_upstream" "" claude-fast --mode sequential "${messages[@]}"
path=/v1/messages trio "closed-32-messages" "$fast_upstream" "" claude-fast --mode closed --connections 32 "${messages[@]}"
path=/v1/messages trio "closed-32-messages-stream" "$fast_upstream" "" claude-fast --mode closed --connections 32 --stream "${messages[@]}"

mkdir -p bench/results
stamp="$(date -u +%Y-%m-%dT%H%MZ)"
cp "$results" "bench/results/overhead-$stamp.jsonl"
python3 bench/report.py "$results" --duration "$duration" | tee "bench/results/overhead-$stamp.md"
