#!/usr/bin/env bash
# An A/B of two Chorus builds or settings under saturation: both nodes run
# side by side on the same mock upstream (clustered alone, with a store, as
# in the overhead benchmark), and 32 connections drive each in turn, A then
# B, round after round, so the machine's drift touches both alike. Prints
# each round's req/s and the medians. Release builds only.
#
#   bash bench/ab.sh [ROUNDS] [SECONDS]        (default 6 rounds of 6 s)
#
#   CHORUS_A_BIN, CHORUS_B_BIN          the builds (default: this tree's)
#   CHORUS_A_STORAGE, CHORUS_B_STORAGE  lines added to each node's [storage],
#                                       e.g. `request_log_days = 0`
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-6}"
duration="${2:-6}"
source bench/processes.sh

start mock "$bin/mock-upstream" --listen 127.0.0.1:0 --threads 1
upstream="$(address_of mock)"
for side in a b; do
  if [ "$side" = a ]; then exe="${CHORUS_A_BIN:-$bin/chorus}"; extra="${CHORUS_A_STORAGE:-}"
  else exe="${CHORUS_B_BIN:-$bin/chorus}"; extra="${CHORUS_B_STORAGE:-}"; fi
  cat >"$work/$side.toml" <<TOML
[storage]
path = "$work/store-$side"
$extra
[cluster]
node_id = "ab-$side"
listen = "127.0.0.1:$(free_port udp)"
secret = "ab-bench-secret-0123456789"
[[providers]]
name = "fast"
format = "openai"
base_url = "http://$upstream/v1"
[[models]]
alias = "fast"
deployments = [{ provider = "fast", model = "mock" }]
[[keys]]
name = "bench"
key = "sk-bench"
TOML
  start "$side" "$exe" serve --config "$work/$side.toml" --listen 127.0.0.1:0
done
a="$(address_of a)"
b="$(address_of b)"

rate() { # address
  "$bin/chorus-load" --url "http://$1/v1/chat/completions" --model fast \
    --header "Authorization: Bearer sk-bench" --duration "$duration" --warmup 1 \
    --mode closed --connections 32 --label ab --json |
    python3 -c 'import json, sys; print(round(json.load(sys.stdin)["rps"]))'
}
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
: >"$work/a.rates"; : >"$work/b.rates"
for round in $(seq 1 "$rounds"); do
  rate "$a" >>"$work/a.rates"
  rate "$b" >>"$work/b.rates"
  echo "round $round: A $(tail -1 "$work/a.rates") req/s, B $(tail -1 "$work/b.rates") req/s"
done
median_a="$(median <"$work/a.rates")"
median_b="$(median <"$work/b.rates")"
echo "median: A $median_a req/s, B $median_b req/s, A/B $(python3 -c "print(f'{$median_a / $median_b:.3f}')")"
