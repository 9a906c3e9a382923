#!/usr/bin/env python3
"""Turns the measurements of bench/compare.sh into one Markdown table.

Input: TSV lines `scenario peer rep requests duration_us p50_us p99_us errors cpu_us`.
Each (scenario, peer) cell is the median over the repetitions. Throughput ratios are to the
direct upstream, nginx and HAProxy of the same scenario; the rotating-token scenarios have
no direct or nginx runs (those do not look at tokens), so they use the repeated-token
scenario of the same algorithm for those two.
"""

import statistics
import sys
from collections import OrderedDict, defaultdict

LABELS = {
    "direct": "upstream directly",
    "nginx": "nginx proxy_pass, no auth",
    "floor": "hyper floor (hyper-util client), no auth",
    "floor-lean": "hyper floor (scopegate's pool), no auth",
    "haproxy": "HAProxy jwt_verify",
    "envoy": "Envoy jwt_authn + RBAC",
    "envoy-cache": "Envoy, jwt_cache_config",
    "scopegate": "scopegate, cache on",
    "scopegate-1": "scopegate, 1-entry cache",
    "scopegate-base": "scopegate (--baseline), cache on",
}


def main(path):
    runs = defaultdict(list)
    order = OrderedDict()
    with open(path) as f:
        for line in f:
            scenario, peer, _rep, requests, micros, p50, p99, errors, cpu_us = line.rstrip("\n").split("\t")
            order.setdefault(scenario, []).append(peer) if peer not in order.get(scenario, []) else None
            requests, micros = int(requests), int(micros)
            runs[(scenario, peer)].append(
                {
                    "rps": requests / (micros / 1e6) if micros else 0.0,
                    "p50": int(p50) / 1000.0,
                    "p99": int(p99) / 1000.0,
                    "errors": int(errors),
                    "cpu": int(cpu_us) / requests if requests else float("nan"),
                }
            )

    def cell(scenario, peer, key):
        values = [run[key] for run in runs.get((scenario, peer), [])]
        return statistics.median(values) if values else None

    def baseline(scenario, peer):
        value = cell(scenario, peer, "rps")
        if value is None and "rotating" in scenario:
            alg = scenario.split()[-2]
            for other in order:
                if "repeated" in other and alg in other:
                    value = cell(other, peer, "rps")
        return value

    def ratio(value, base):
        return f"{value / base:.2f}" if base else "—"

    print("| scenario | peer | req/s | × direct | × nginx | × HAProxy | p50 ms | p99 ms | CPU µs/req | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scenario, peers in order.items():
        direct, nginx, haproxy = (baseline(scenario, p) for p in ("direct", "nginx", "haproxy"))
        for peer in peers:
            rps = cell(scenario, peer, "rps")
            print(
                f"| {scenario} | {LABELS.get(peer, peer)} | {rps:,.0f} | {ratio(rps, direct)} | {ratio(rps, nginx)} | "
                f"{ratio(rps, haproxy)} | {cell(scenario, peer, 'p50'):.3f} | {cell(scenario, peer, 'p99'):.3f} | "
                f"{cell(scenario, peer, 'cpu'):.1f} | {sum(r['errors'] for r in runs[(scenario, peer)])} |"
            )


if __name__ == "__main__":
    main(sys.argv[1])
