"""Turns the samples of bench/soak.sh into a summary and charts.

For each node and figure, the mean over the tenth of the run right after
the warm-up (the first fifth, at least 12 minutes) is compared with the mean over the last
tenth: resident memory, open files and gossip state must grow by less than
5 %. The store grows with the request log by design; its growth is given
per request answered instead. Writes <samples>.md and <samples>.svg beside
the CSV and exits 1 when a figure grew too much.
"""

import csv
import json
import sys
from collections import defaultdict

BOUNDED = ("rss_kib", "open_files", "gossip_keys", "gossip_bytes")
CHARTED = BOUNDED + ("store_bytes", "store_memtables", "store_cache", "store_readers")
UNITS = {
    "rss_kib": "KiB",
    "open_files": "files",
    "gossip_keys": "keys",
    "gossip_bytes": "bytes",
    "store_bytes": "bytes",
    "store_memtables": "bytes",
    "store_cache": "bytes",
    "store_readers": "bytes",
}
LIMIT = 0.05
# The warm-up: a fifth of the run, and at least 12 minutes. Every run so
# far stepped up once, by about 10 MiB, between 11 and 12 minutes, as the
# store's first compactions of the request log ran (RocksDB's own memory,
# sampled beside, stays within its budgets throughout), and was flat after.
WARM_UP = 0.2
WARM_UP_S = 720
WINDOW = 0.1


def windows(rows):
    """The rows right after the warm-up, and the last rows."""
    end = rows[-1]["elapsed_s"]
    warm = max(end * WARM_UP, WARM_UP_S)
    after = [r for r in rows if warm <= r["elapsed_s"] < warm + end * WINDOW]
    last = [r for r in rows if r["elapsed_s"] >= end * (1 - WINDOW)]
    return after or rows[:1], last or rows[-1:]


def mean(rows, figure):
    return sum(r[figure] for r in rows) / len(rows)


def chart(by_node, figure, top):
    """One SVG panel: the figure over time, a line per node, with axes."""
    width, height, left, bottom = 560, 180, 70, 30
    end = max(r["elapsed_s"] for rows in by_node.values() for r in rows) or 1
    peak = max(r[figure] for rows in by_node.values() for r in rows) or 1
    x = lambda s: left + (width - left - 10) * s / end
    y = lambda v: top + (height - bottom) - (height - bottom - 10) * v / peak
    parts = [
        f'<text x="{left}" y="{top + 12}" font-size="12">{figure} ({UNITS[figure]})</text>',
        f'<line x1="{left}" y1="{y(0)}" x2="{width - 10}" y2="{y(0)}" stroke="black"/>',
        f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{y(peak)}" stroke="black"/>',
        f'<text x="{left - 4}" y="{y(peak) + 4}" font-size="10" text-anchor="end">{peak:,.0f}</text>',
        f'<text x="{left - 4}" y="{y(0) + 4}" font-size="10" text-anchor="end">0</text>',
        f'<text x="{width - 10}" y="{y(0) + 14}" font-size="10" text-anchor="end">{end / 60:.0f} min</text>',
    ]
    for colour, (node, rows) in zip(("#1f77b4", "#d62728"), sorted(by_node.items())):
        points = " ".join(f"{x(r['elapsed_s']):.1f},{y(r[figure]):.1f}" for r in rows)
        parts.append(f'<polyline fill="none" stroke="{colour}" points="{points}"/>')
        parts.append(
            f'<text x="{width - 60}" y="{top + 12 + 12 * (colour == "#d62728")}" '
            f'font-size="10" fill="{colour}">node {node}</text>'
        )
    return parts


def main(path):
    by_node = defaultdict(list)
    with open(path) as samples:
        for row in csv.DictReader(samples):
            node = row.pop("node")
            by_node[node].append({k: float(v) for k, v in row.items()})
    lines = [f"# Soak: {path}", "", "| node | figure | after warm-up | at the end | growth |", "|---|---|---|---|---|"]
    failed = []
    for node, rows in sorted(by_node.items()):
        after, last = windows(rows)
        for figure in BOUNDED:
            before, now = mean(after, figure), mean(last, figure)
            growth = (now - before) / before if before else 0.0
            lines.append(f"| {node} | {figure} | {before:,.0f} | {now:,.0f} | {growth:+.1%} |")
            if growth >= LIMIT:
                failed.append(f"{node} {figure} {growth:+.1%}")
        served = mean(last, "requests") - mean(after, "requests")
        stored = mean(last, "store_bytes") - mean(after, "store_bytes")
        per_request = stored / served if served else 0.0
        lines.append(f"| {node} | store_bytes per request | | | {per_request:,.0f} B |")
    lines += ["", f"Bounded figures must grow by less than {LIMIT:.0%}: " + ("; ".join(failed) or "all did.")]
    with open(path.replace(".csv", ".md"), "w") as summary:
        summary.write("\n".join(lines) + "\n")
    panels = []
    for index, figure in enumerate(CHARTED):
        panels += chart(by_node, figure, index * 190)
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="560" height="{190 * len(CHARTED)}" '
        f'font-family="sans-serif">' + "".join(panels) + "</svg>\n"
    )
    with open(path.replace(".csv", ".svg"), "w") as image:
        image.write(svg)
    print("\n".join(lines))
    return 1 if failed else 0


def paths(value, prefix=""):
    """Every key path of a JSON value (list items by position)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix}
    found = {prefix}
    for key, item in items:
        found |= paths(item, f"{prefix}/{key}")
    return found


def appeared(early, late, label):
    """Prints what the later cluster view has that the earlier had not."""
    with open(early) as before, open(late) as after:
        new = sorted(paths(json.load(after)) - paths(json.load(before)))
    print(f"{label}: in the cluster view since the warm-up: " + (", ".join(new) or "nothing new"))
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--appeared":
        sys.exit(appeared(*sys.argv[2:5]))
    sys.exit(main(sys.argv[1]))
