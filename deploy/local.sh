#!/usr/bin/env bash
# Builds Chorus and starts a local node on the built-in mock providers: no
# upstream and no API keys needed. Prints a curl to try; Ctrl-C stops it.
#
#   CHORUS_PORT      port to listen on (default 4000)
#   CHORUS_DEV_KEY   the gateway key clients send (default sk-chorus-local)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
if ! command -v cc >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q build-essential
fi

port="${CHORUS_PORT:-4000}"
export CHORUS_DEV_KEY="${CHORUS_DEV_KEY:-sk-chorus-local}"
export CHORUS_LISTEN_ADDR="127.0.0.1:$port"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

echo "building chorus (release; the first build takes a few minutes)..."
cargo build --release --quiet -p chorus-node
"$target_dir/release/chorus" serve --config deploy/local.toml &
node_pid=$!
trap 'kill "$node_pid" 2>/dev/null; wait "$node_pid" 2>/dev/null; echo; echo "chorus stopped"' EXIT
trap 'exit 0' INT TERM

for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  kill -0 "$node_pid" 2>/dev/null || { echo "chorus failed to start" >&2; exit 1; }
  sleep 0.1
done

cat <<MSG

Chorus is running at http://127.0.0.1:$port (models: fast, smart; built-in mock providers).
Health: http://127.0.0.1:$port/v1/health

Try it:

  curl -N http://127.0.0.1:$port/v1/chat/completions \\
    -H "Authorization: Bearer $CHORUS_DEV_KEY" -H "Content-Type: application/json" \\
    -d '{"model":"fast","stream":true,"messages":[{"role":"user","content":"Hello, Chorus"}]}'

Or with the OpenAI SDK: base_url="http://127.0.0.1:$port/v1", api_key="$CHORUS_DEV_KEY".
Logs follow; Ctrl-C stops the node.

MSG
wait "$node_pid"
