"""Turns the JSON lines of bench/overhead.sh into markdown tables.

Each scenario has a `direct` run (load straight at mock-upstream), a
`haproxy` run (through HAProxy in HTTP mode, the floor for any HTTP proxy),
a `chorus` run (through one Chorus node), a `limited` run (the same node,
with a virtual key held to every kind of limit) and, when asked for, a
`baseline` run (through another Chorus build). Each proxy's overhead is its difference
from direct at each percentile, and its throughput ratio is proxy / direct;
the summary puts Chorus next to HAProxy (and the baseline).
"""

import argparse
import json

TARGETS = ("direct", "haproxy", "chorus", "limited", "baseline")
PROXIES = ("haproxy", "chorus", "limited", "baseline")


def fmt(value, digits=3):
    return "–" if value is None else f"{value:.{digits}f}"


def overhead(direct, proxy):
    """(latency differences at p50/p90/p99, TTFT difference at p50, rps ratio)."""
    diff = {p: proxy["latency_ms"][p] - direct["latency_ms"][p] for p in ("p50", "p90", "p99")}
    ttft = None
    if direct.get("ttft_ms") and proxy.get("ttft_ms"):
        ttft = proxy["ttft_ms"]["p50"] - direct["ttft_ms"]["p50"]
    ratio = proxy["rps"] / direct["rps"] if direct["rps"] else 0
    return diff, ttft, ratio


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--duration", default="?")
    args = parser.parse_args()
    runs = {}
    order = []
    with open(args.results) as lines:
        for line in lines:
            run = json.loads(line)
            scenario, target = run["label"].split("|")
            if scenario not in runs:
                order.append(scenario)
            runs.setdefault(scenario, {})[target] = run

    print(f"Each run {args.duration} s after a 2 s warm-up; latencies in ms.\n")
    print("| scenario | target | req/s | errors | p50 | p90 | p99 | max | TTFT p50 | TTFT p99 | x-chorus-overhead-ms p50 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = []
    for scenario in order:
        runs_of = runs[scenario]
        for target in TARGETS:
            run = runs_of.get(target)
            if not run:
                continue
            latency = run.get("latency_ms") or {}
            ttft = run.get("ttft_ms") or {}
            header = run.get("overhead_header_ms") or {}
            print(
                f"| {scenario} | {target} | {run['rps']:.0f} | {run['errors']} | "
                f"{fmt(latency.get('p50'))} | {fmt(latency.get('p90'))} | {fmt(latency.get('p99'))} | "
                f"{fmt(latency.get('max'))} | {fmt(ttft.get('p50'))} | {fmt(ttft.get('p99'))} | "
                f"{fmt(header.get('p50'))} |"
            )
        direct = runs_of.get("direct")
        row = {"scenario": scenario}
        for proxy in PROXIES:
            run = runs_of.get(proxy)
            if not (direct and run and direct.get("latency_ms") and run.get("latency_ms")):
                continue
            diff, ttft, ratio = overhead(direct, run)
            row[proxy] = (diff["p50"], ratio)
            print(
                f"| {scenario} | **{proxy} overhead** | **{ratio:.0%}** of direct | | **{fmt(diff['p50'])}** | "
                f"{fmt(diff['p90'])} | {fmt(diff['p99'])} | | {fmt(ttft)} | | |"
            )
        summary.append(row)

    shown = [proxy for proxy in PROXIES if any(proxy in row for row in summary)]
    print("\nSame run: latency each proxy adds at p50 (ms), and the share of the direct rate it keeps.\n")
    print("| scenario | " + " | ".join(f"{p} adds" for p in shown) + " | " + " | ".join(f"{p} keeps" for p in shown) + " |")
    print("|---|" + "---:|" * (2 * len(shown)))
    for row in summary:
        adds = [fmt(row[p][0]) if p in row else "–" for p in shown]
        keeps = [f"{row[p][1]:.0%}" if p in row else "–" for p in shown]
        print(f"| {row['scenario']} | " + " | ".join(adds + keeps) + " |")


if __name__ == "__main__":
    main()
