"""Turns the JSON lines of bench/overhead.sh into a markdown table.

Each scenario has a `direct` run (load straight at mock-upstream) and a
`chorus` run (the same load through one node); the overhead is their
difference at each percentile, and the throughput ratio is chorus / direct.
"""

import argparse
import json


def fmt(value, digits=3):
    return "–" if value is None else f"{value:.{digits}f}"


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
    for scenario in order:
        pair = runs[scenario]
        for target in ("direct", "chorus"):
            run = pair.get(target)
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
        direct, chorus = pair.get("direct"), pair.get("chorus")
        if direct and chorus and direct.get("latency_ms") and chorus.get("latency_ms"):
            diff = {p: chorus["latency_ms"][p] - direct["latency_ms"][p] for p in ("p50", "p90", "p99")}
            ttft_diff = "–"
            if direct.get("ttft_ms") and chorus.get("ttft_ms"):
                ttft_diff = fmt(chorus["ttft_ms"]["p50"] - direct["ttft_ms"]["p50"])
            ratio = chorus["rps"] / direct["rps"] if direct["rps"] else 0
            print(
                f"| {scenario} | **overhead** | **{ratio:.0%}** of direct | | **{fmt(diff['p50'])}** | "
                f"{fmt(diff['p90'])} | {fmt(diff['p99'])} | | {ttft_diff} | | |"
            )


if __name__ == "__main__":
    main()
