"""What the SDK suites share: starting `mock-upstream` and a `chorus` node
(or a cluster of them) from CHORUS_BIN_DIR on ephemeral ports, with a
config naming the upstream."""

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import tempfile
import time
import urllib.request

BIN_DIR = pathlib.Path(os.environ.get("CHORUS_BIN_DIR", "target/debug"))
ADMIN_TOKEN = "sdk-admin-token-0123456789"


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


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def upstream_and_cluster(config_for, node_ids):
    """A mock upstream and one clustered node per id, each storing under a
    temporary directory and gossiping with the others, whose config
    `config_for(upstream_addr)` begins; yields the nodes' base URLs
    (ending in /v1), in the order of `node_ids`, once each sees every
    other alive, and the upstream address."""
    upstream, upstream_addr = start([str(BIN_DIR / "mock-upstream"), "--listen", "127.0.0.1:0"])
    processes = [upstream]
    ports = [free_udp_port() for _ in node_ids]
    with tempfile.TemporaryDirectory() as data:
        try:
            urls = []
            for node_id, port in zip(node_ids, ports):
                seeds = ", ".join(f'"127.0.0.1:{other}"' for other in ports if other != port)
                path = pathlib.Path(data) / f"{node_id}.toml"
                path.write_text(config_for(upstream_addr) + f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[storage]
path = "{data}/{node_id}"

[cluster]
node_id = "{node_id}"
listen = "127.0.0.1:{port}"
seeds = [{seeds}]
gossip_interval_ms = 100
secret = "sdk-cluster-secret-0123456789"
""")
                chorus, address = start([str(BIN_DIR / "chorus"), "serve", "--config", str(path), "--listen", "127.0.0.1:0"])
                processes.append(chorus)
                urls.append(f"http://{address}/v1")
            for url in urls:
                wait_for_members(url, len(node_ids))
            yield urls, upstream_addr
        finally:
            for process in processes:
                process.kill()
                process.wait()


def wait_for_members(url, count):
    """Waits until the node at `url` sees `count` live members."""
    cluster = urllib.request.Request(
        url.replace("/v1", "/v1/cluster"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(cluster) as response:
            members = json.load(response)["members"]
        if sum(1 for member in members if member["alive"]) == count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} never saw {count} live members")
