# Sourced by the benchmark scripts: release binaries built, a scratch
# directory $work, and background processes started in it and stopped on
# exit.
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
bin="$target_dir/release"
cargo build --release --quiet --workspace --bins

work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Starts a process in the background, its output in $work/NAME.out. Not in
# a subshell: its pid must reach the cleanup.
start() { # name command...
  local name="$1"; shift
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
}

# Echoes the ADDR of the "... listening on http://ADDR" line NAME printed.
address_of() { # name
  for _ in $(seq 1 100); do
    if grep -q "http://" "$work/$1.out" 2>/dev/null; then sed -n 's|.*http://||p' "$work/$1.out" | head -1; return; fi
    sleep 0.05
  done
  echo "failed to start: $1" >&2; cat "$work/$1.err" >&2 2>/dev/null; exit 1
}

# Echoes a free port on 127.0.0.1: UDP for gossip, TCP otherwise.
free_port() { # udp|tcp
  local kind="SOCK_STREAM"; [ "$1" = udp ] && kind="SOCK_DGRAM"
  python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.$kind); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}

# Echoes a new virtual key made on the node at ADDR, held to every kind of
# limit, each set too high to refuse: what admission, reservations and
# settling cost.
create_limited_key() { # addr admin_token
  curl -sf "http://$1/admin/keys" -H "Authorization: Bearer $2" -H "Content-Type: application/json" \
    -d '{"name": "limited", "rpm": 100000000, "tpm": 1000000000000, "max_parallel": 100000,
         "budget_daily_usd": 1000000, "budget_monthly_usd": 1000000}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])'
}
