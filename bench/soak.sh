#!/usr/bin/env bash
# The soak: two clustered nodes with their stores, request logs and the
# response cache on, under steady mixed load for a long time — streams on
# one node, requests held to every kind of limit on the other, and a
# cached alias — sampling each node every 10 s: resident memory, open
# files, store size, what the store holds in memory (memtables, block
# cache, table readers) and gossip state. Release builds only.
#
#   bash bench/soak.sh [MINUTES]        (default 30)
#
# Writes bench/results/soak-<date>.csv (the samples), .svg (one chart per
# figure, both nodes) and .md (the summary). After the warm-up (the first
# fifth of the run, at least 12 minutes: see bench/soak_report.py), resident
# memory, open files and gossip state must not
# grow by 5 % or more (last tenth of the run against the tenth after the
# warm-up), or the script exits 1. The store grows with the request log by
# design: the summary gives its growth per request instead.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/prereqs.sh
need_command curl curl
install_needed
minutes="${1:-30}"
seconds=$((minutes * 60))
source bench/processes.sh

start mock-fast "$bin/mock-upstream" --listen 127.0.0.1:0 --threads 1
start mock-paced "$bin/mock-upstream" --listen 127.0.0.1:0 --threads 1 --ttft-ms 20 --token-delay-ms 2
fast_upstream="$(address_of mock-fast)"
paced_upstream="$(address_of mock-paced)"
admin="soak-admin-token-0123456789"
gossip_a="$(free_port udp)"
gossip_b="$(free_port udp)"
for node in a b; do
  if [ "$node" = a ]; then own="$gossip_a"; seed="$gossip_b"; else own="$gossip_b"; seed="$gossip_a"; fi
  cat >"$work/$node.toml" <<TOML
[server]
admin_token = "$admin"
[storage]
path = "$work/store-$node"
[cluster]
node_id = "soak-$node"
listen = "127.0.0.1:$own"
seeds = ["127.0.0.1:$seed"]
secret = "soak-cluster-secret-0123456789"
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
deployments = [{ provider = "fast", model = "mock", input_per_mtok = 0.15, output_per_mtok = 0.6 }]
[[models]]
alias = "cached"
cache = "always"
deployments = [{ provider = "fast", model = "mock-cached" }]
[[models]]
alias = "streamed"
deployments = [{ provider = "paced", model = "mock" }]
[[keys]]
name = "soak"
key = "sk-soak"
TOML
  start "chorus-$node" "$bin/chorus" serve --config "$work/$node.toml" --listen 127.0.0.1:0
done
node_a="$(address_of chorus-a)"
node_b="$(address_of chorus-b)"
limited_key="$(create_limited_key "$node_a" "$admin")"

load() { # name node rate args...
  local name="$1" node="$2" rate="$3"; shift 3
  start "load-$name" "$bin/chorus-load" --url "http://$node/v1/chat/completions" --mode rate \
    --rate "$rate" --connections 16 --warmup 0 --duration "$seconds" --json "$@"
}
load limited "$node_a" 100 --header "Authorization: Bearer $limited_key"
load cached "$node_a" 50 --model cached --header "Authorization: Bearer sk-soak"
load streamed "$node_b" 20 --stream --model streamed --header "Authorization: Bearer sk-soak"

date="$(date -u +%Y-%m-%dT%H%MZ)"
mkdir -p bench/results
samples="bench/results/soak-$date.csv"
echo "elapsed_s,node,rss_kib,open_files,store_bytes,gossip_keys,gossip_bytes,requests,store_memtables,store_cache,store_readers" >"$samples"
pid_of() { pgrep -f -- "--config $work/$1.toml" | head -1; }
started="$(date +%s)"
while [ $(( $(date +%s) - started )) -lt "$seconds" ]; do
  sleep 10
  elapsed=$(( $(date +%s) - started ))
  for node in a b; do
    pid="$(pid_of "$node")"
    address="$node_a"; [ "$node" = b ] && address="$node_b"
    rss="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
    files="$(ls "/proc/$pid/fd" | wc -l)"
    store="$(du -sb "$work/store-$node" | cut -f1)"
    curl -sf "http://$address/v1/cluster" -H "Authorization: Bearer $admin" >"$work/view-$node.json"
    gossip="$(python3 -c 'import json, sys; g = json.load(sys.stdin)["gossip"]; print(g["state_keys"], g["state_bytes"])' \
      <"$work/view-$node.json")"
    # Routed requests and cache hits (every request the node answered),
    # then the store's memory by part.
    scraped="$(curl -sf "http://$address/metrics" |
      awk '/^chorus_requests_total/ || /^chorus_cache_lookups_total.*result="hit"/ {sum += $NF}
           /^chorus_store_memory_bytes/ {part[$1] = $NF}
           END {printf "%d,%d,%d,%d", sum, part["chorus_store_memory_bytes{part=\"memtables\"}"],
                part["chorus_store_memory_bytes{part=\"block_cache\"}"],
                part["chorus_store_memory_bytes{part=\"table_readers\"}"]}')"
    echo "$elapsed,$node,$rss,$files,$store,${gossip// /,},$scraped" >>"$samples"
    # The cluster view as the warm-up ends, to show what appeared since.
    warm_up=$((seconds / 5 > 720 ? seconds / 5 : 720))
    if [ "$elapsed" -le "$warm_up" ]; then cp "$work/view-$node.json" "$work/early-$node.json"; fi
  done
done
for node in a b; do
  python3 bench/soak_report.py --appeared "$work/early-$node.json" "$work/view-$node.json" "node $node"
done
python3 bench/soak_report.py "$samples"
