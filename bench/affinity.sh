#!/usr/bin/env bash
# Prompt-cache affinity, measured: two Chorus nodes in a cluster, an alias
# over two Anthropic deployments on two mock upstreams (each with its own
# prompt cache: a prefix up to a `cache_control` breakpoint is written the
# first time that upstream sees it and read every time after), routed
# `weighted` — once with `cache_affinity = true` (`sticky`) and once
# without (`loose`). Agent-like sessions, each its own long system prompt
# marked for caching and a growing conversation, send every turn to the
# other node. Prints, per alias, the share of input tokens read from the
# provider's cache and what Chorus charged (from `/v1/stats`), at
# Anthropic's prices (USD 3 / 15 per million in / out; reads 0.1×, writes
# 1.25× input). Release builds.
#
#   bash bench/affinity.sh [SESSIONS] [TURNS]      (default 20 and 6)
set -euo pipefail
cd "$(dirname "$0")/.."
sessions="${1:-20}"
turns="${2:-6}"
source bench/processes.sh

start mock-a "$bin/mock-upstream" --listen 127.0.0.1:0 --threads 1
start mock-b "$bin/mock-upstream" --listen 127.0.0.1:0 --threads 1
mock_a="$(address_of mock-a)"
mock_b="$(address_of mock-b)"
admin="affinity-bench-admin-0123456789"
ports=("$(free_port udp)" "$(free_port udp)")
nodes=()
for index in 0 1; do
  other="${ports[$((1 - index))]}"
  cat >"$work/node-$index.toml" <<TOML
[server]
admin_token = "$admin"
[storage]
path = "$work/store-$index"
[cluster]
node_id = "affinity-$index"
listen = "127.0.0.1:${ports[$index]}"
seeds = ["127.0.0.1:$other"]
gossip_interval_ms = 100
secret = "affinity-bench-secret-0123456789"
[[providers]]
name = "claude-a"
format = "anthropic"
base_url = "http://$mock_a/v1"
[[providers]]
name = "claude-b"
format = "anthropic"
base_url = "http://$mock_b/v1"
[[models]]
alias = "sticky"
cache_affinity = true
deployments = [{ provider = "claude-a", model = "claude", input_per_mtok = 3, output_per_mtok = 15 },
               { provider = "claude-b", model = "claude", input_per_mtok = 3, output_per_mtok = 15 }]
[[models]]
alias = "loose"
deployments = [{ provider = "claude-a", model = "claude", input_per_mtok = 3, output_per_mtok = 15 },
               { provider = "claude-b", model = "claude", input_per_mtok = 3, output_per_mtok = 15 }]
[[keys]]
name = "bench"
key = "sk-affinity-bench"
TOML
  start "node-$index" "$bin/chorus" serve --config "$work/node-$index.toml" --listen 127.0.0.1:0
  nodes+=("$(address_of "node-$index")")
done

python3 - "$sessions" "$turns" "$admin" "${nodes[@]}" <<'PY'
import json, sys, time, urllib.request

sessions, turns, admin, nodes = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]

def post(node, body):
    request = urllib.request.Request(f"http://{node}/v1/messages", data=json.dumps(body).encode(),
        headers={"x-api-key": "sk-affinity-bench", "content-type": "application/json",
                 "anthropic-version": "2023-06-01"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)

def stats(alias):
    """The alias's row of the cluster-wide stats, which any node answers."""
    request = urllib.request.Request(f"http://{nodes[0]}/v1/stats", headers={"Authorization": f"Bearer {admin}"})
    with urllib.request.urlopen(request) as response:
        rows = json.load(response)["by_model"]
    return next((row for row in rows if row["model"] == alias), {})

print(f"{sessions} sessions x {turns} turns, each turn through the other node of two\n")
print("| alias | cache_affinity | input tokens | read from cache | written to cache | cache-read share | cost (USD) |")
print("|---|---|---:|---:|---:|---:|---:|")
for alias, affinity in [("loose", "false"), ("sticky", "true")]:
    for session in range(sessions):
        system = [{"type": "text", "text": f"Session {alias}-{session}. " + "Follow the house rules. " * 120,
                   "cache_control": {"type": "ephemeral"}}]
        history = []
        for turn in range(turns):
            history.append({"role": "user", "content": f"Step {turn} of task {session}."})
            answer = post(nodes[turn % 2], {"model": alias, "max_tokens": 64, "system": system,
                                            "messages": history,
                                            "metadata": {"user_id": f"session-{alias}-{session}"}})
            history.append({"role": "assistant", "content": answer["content"]})
    time.sleep(1)  # the request log is written in batches
    row = stats(alias)
    prompt, read, written = row["prompt_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]
    cost = row["cost_micros"] / 1e6
    print(f"| {alias} | {affinity} | {prompt:,} | {read:,} | {written:,} | {read / prompt:.0%} | {cost:.4f} |")
PY
