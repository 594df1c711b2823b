#!/usr/bin/env bash
# Runs every Chorus test: formatting and lints, unit and property tests, the
# end-to-end suites (real `chorus` and `mock-upstream` processes on
# 127.0.0.1), and the official OpenAI and Anthropic Python SDKs against a node.
#
# Installs what it needs when missing (Debian packages when run as root, the
# SDK into a venv). Set CARGO_TARGET_DIR to keep builds outside the clone:
# the first build compiles RocksDB's C++ and takes tens of minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

source deploy/prereqs.sh
need_command cc build-essential
python3 -c 'import ensurepip, venv' 2>/dev/null || needed_packages+=(python3-venv)
# RocksDB's bindings are generated with bindgen, which loads libclang.
need_libclang
# The status page is checked in headless Chromium.
need_command chromium chromium
# Cluster tests run nodes behind a real L4 balancer.
need_command haproxy haproxy
# The metrics test checks the exposition with promtool.
need_command promtool prometheus
install_needed
command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo build (binaries the end-to-end tests start)"
cargo build --workspace --bins --quiet
echo "== cargo test"
# The status page test leaves a screenshot here for a person to look at.
export CHORUS_TEST_ARTIFACTS="${CHORUS_TEST_ARTIFACTS:-${TMPDIR:-/tmp}/chorus-test-artifacts}"
cargo test --workspace --quiet
echo "status page screenshot: $CHORUS_TEST_ARTIFACTS/status-page.png"

echo "== the official OpenAI and Anthropic Python SDKs against a node"
venv="$target_dir/sdk-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
CHORUS_BIN_DIR="$target_dir/debug" "$venv/bin/python" -m pytest -q tests/sdk
