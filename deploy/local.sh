#!/usr/bin/env bash
# Builds Chorus and starts a local cluster on the built-in mock providers —
# no upstream and no API keys needed: N node processes on 127.0.0.1 that
# find each other by authenticated gossip, each with its own store, behind
# HAProxy in TCP mode (an L4 balancer, installed when missing). Prints the
# balancer URL, each node's status page and a curl to try; Ctrl-C stops all.
#
#   bash deploy/local.sh [--nodes N]        (default 3)
#
#   CHORUS_PORT      the balancer's port (default 4000); nodes use the next N
#   CHORUS_DEV_KEY   the gateway key clients send (default sk-chorus-local)
#   CHORUS_ADMIN_TOKEN  the admin token of the status pages (default: made
#                    once, kept in the data directory)
#   CHORUS_DATA      where node stores and configs go (default ~/.local/share/chorus/local-cluster)
#   CHORUS_GOSSIP_PORT  first node's gossip UDP port (default 7946); nodes use the next N
#   CHORUS_BIN       a chorus binary to run instead of building one (the tests use it)
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=3
while (($#)); do
  case "$1" in
    --nodes) nodes="$2"; shift 2 ;;
    *) echo "usage: bash deploy/local.sh [--nodes N]" >&2; exit 2 ;;
  esac
done

source deploy/prereqs.sh
need_command haproxy haproxy
if [ -z "${CHORUS_BIN:-}" ]; then
  command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs (or set CHORUS_BIN)" >&2; exit 1; }
  need_command cc build-essential
  need_libclang
fi
install_needed

port="${CHORUS_PORT:-4000}"
export CHORUS_DEV_KEY="${CHORUS_DEV_KEY:-sk-chorus-local}"
# Stores and the cluster secret are user data: never under target/, where a
# `cargo clean` would wipe them.
data="${CHORUS_DATA:-${XDG_DATA_HOME:-$HOME/.local/share}/chorus/local-cluster}"
mkdir -p "$data"
# A random secret, made once and readable by this user only.
secret() { # file
  [ -s "$1" ] || (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$1")
  cat "$1"
}
export CHORUS_CLUSTER_SECRET="$(secret "$data/cluster-secret")"
if [ -n "${CHORUS_ADMIN_TOKEN:-}" ]; then
  token_hint="the one in CHORUS_ADMIN_TOKEN"
else
  export CHORUS_ADMIN_TOKEN="$(secret "$data/admin-token")"
  token_hint="it is in $data/admin-token"
fi

chorus="${CHORUS_BIN:-}"
if [ -z "$chorus" ]; then
  echo "building chorus (release; the first build compiles RocksDB and takes a while)..."
  cargo build --release --quiet -p chorus-node
  chorus="${CARGO_TARGET_DIR:-$PWD/target}/release/chorus"
fi
gossip_base="${CHORUS_GOSSIP_PORT:-7946}"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo; echo "local cluster stopped"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

wait_for_port() { # port pid
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

servers=""
for i in $(seq 1 "$nodes"); do
  http_port=$((port + i))
  gossip_port=$((gossip_base + i - 1))
  config="$data/node-$i.toml"
  {
    sed "s/\${CHORUS_LISTEN_ADDR}/127.0.0.1:$http_port/" deploy/local.toml
    printf '\n[storage]\npath = "%s"\n' "$data/node-$i"
    printf '\n[cluster]\nnode_id = "node-%s"\nlisten = "127.0.0.1:%s"\nseeds = ["127.0.0.1:%s"]\n' "$i" "$gossip_port" "$gossip_base"
    printf 'gossip_interval_ms = 200\nsecret = "${CHORUS_CLUSTER_SECRET}"\n'
  } > "$config"
  "$chorus" serve --config "$config" >/dev/null 2>"$data/node-$i.log" &
  pids+=($!)
  wait_for_port "$http_port" "$!" || { echo "node-$i failed to start; see $data/node-$i.log" >&2; exit 1; }
  servers+="    server node-$i 127.0.0.1:$http_port check inter 500ms fall 2 rise 1"$'\n'
done

# TCP (L4) balancing, as in production. A node that refuses connections
# (killed) costs a client nothing: the connection is retried on another
# node at once (`redispatch`). One that accepts but does not answer
# (stopped, wedged) is taken out by the HTTP check on /health/ready
# within two seconds, and put back once it answers again.
cat > "$data/haproxy.cfg" <<CFG
global
    maxconn 4096
defaults
    mode tcp
    retries 3
    option redispatch 1
    timeout connect 500ms
    timeout check 500ms
    timeout client 10m
    timeout server 10m
frontend chorus
    bind 127.0.0.1:$port
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
$servers
CFG
haproxy -db -f "$data/haproxy.cfg" >"$data/haproxy.log" 2>&1 &
pids+=($!)
wait_for_port "$port" "$!" || { echo "haproxy failed to start; see $data/haproxy.log" >&2; exit 1; }

echo
echo "Chorus cluster of $nodes nodes behind HAProxy (TCP): http://127.0.0.1:$port"
echo "Models: fast, smart (built-in mock providers). Logs and stores: $data"
echo
for i in $(seq 1 "$nodes"); do
  echo "  node-$i  status page  http://127.0.0.1:$((port + i))/status"
done
echo "  (each page asks once for the admin token: $token_hint)"
cat <<MSG

Try it:

  curl -N http://127.0.0.1:$port/v1/chat/completions \\
    -H "Authorization: Bearer $CHORUS_DEV_KEY" -H "Content-Type: application/json" \\
    -d '{"model":"fast","stream":true,"messages":[{"role":"user","content":"Hello, Chorus"}]}'

Or with the OpenAI SDK: base_url="http://127.0.0.1:$port/v1", api_key="$CHORUS_DEV_KEY".
Ctrl-C stops the cluster.
MSG
wait
