"""What the SDK suites share: starting `mock-upstream` and a `chorus` node
from CHORUS_BIN_DIR on ephemeral ports, with a config naming the upstream."""

import contextlib
import os
import pathlib
import subprocess
import tempfile

BIN_DIR = pathlib.Path(os.environ.get("CHORUS_BIN_DIR", "target/debug"))


def start(args):
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert "http://" in line, f"unexpected start-up line {line!r}"
    return process, line.strip().rsplit("http://", 1)[1]


@contextlib.contextmanager
def upstream_and_node(config_for):
    """A mock upstream and a node whose config `config_for(upstream_addr)`
    writes; yields (node base URL ending in /v1, upstream address)."""
    upstream, upstream_addr = start([str(BIN_DIR / "mock-upstream"), "--listen", "127.0.0.1:0"])
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as file:
        file.write(config_for(upstream_addr))
    chorus, address = start([str(BIN_DIR / "chorus"), "serve", "--config", file.name, "--listen", "127.0.0.1:0"])
    try:
        yield f"http://{address}/v1", upstream_addr
    finally:
        for process in (chorus, upstream):
            process.kill()
            process.wait()
        os.unlink(file.name)
