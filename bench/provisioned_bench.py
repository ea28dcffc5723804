#!/usr/bin/env python3
"""Provisioned concurrency (min_instances): request latency and throughput of a function whose
instances are pre-instantiated against the same function instantiating one per request.
Usage (from the repository root):

    python3 bench/provisioned_bench.py [--only js,c] [--min-instances 4] [--rounds 3] \
        [--duration 8]

Two Nimbus processes serve the same component, one with `min_instances` set and one without;
every round runs wrk against each (the order alternating round by round): one connection
(sequential requests: the latency an idle function's caller sees) and 16 connections (a
saturated server, where instantiation only moves off the request's path). Builds Nimbus
(release) and the guests first. Needs wrk (Debian).
"""

import argparse
import statistics

from metering_bench import cpu_seconds
from serve_bench import Nimbus, build, machine, wrk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="js,c")
    ap.add_argument("--min-instances", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    args = ap.parse_args()
    guests = build(args.only.split(","))
    print(f"\nmachine: {machine()}")
    print(f"command: python3 bench/provisioned_bench.py --only {args.only} "
          f"--min-instances {args.min_instances} --rounds {args.rounds} --duration {args.duration}\n")
    sides = (f"min_instances = {args.min_instances}", "min_instances = 0")
    table = []
    for key in args.only.split(","):
        path, route, label = guests[key]
        servers = {}
        try:
            for name, extra in zip(sides, (f"min_instances = {args.min_instances}", "")):
                n = Nimbus(extra_args=["--s3-listen", "127.0.0.1:0"]).start()
                servers[name] = n
                n.deploy(path, route, extra)
                wrk(f"http://127.0.0.1:{n.port}{route}", 2, 16)  # warm-up, not counted
            results = {(name, c): [] for name in sides for c in (1, 16)}
            for r in range(args.rounds):
                order = sides if r % 2 == 0 else sides[::-1]
                for connections in (1, 16):
                    for name in order:
                        n = servers[name]
                        before = cpu_seconds(n.proc.pid)
                        res = wrk(f"http://127.0.0.1:{n.port}{route}", args.duration, connections)
                        res["cpu_us"] = ((cpu_seconds(n.proc.pid) - before) * 1e6
                                         / max(res["rps"] * args.duration, 1))
                        results[(name, connections)].append(res)
                        print(f"  {label:<28} round {r + 1} {name:<18} c={connections:<3} "
                              f"{res['rps']:>8.0f} req/s  p50 {res['p50_ms']:.3f} ms  "
                              f"p99 {res['p99_ms']:.3f} ms  {res['cpu_us']:.1f} CPU µs/req",
                              flush=True)
            for (name, connections), runs in results.items():
                med = lambda k: statistics.median(x[k] for x in runs)
                table.append((label, name, connections, med("rps"), med("p50_ms"),
                              med("p99_ms"), med("cpu_us")))
        finally:
            for n in servers.values():
                n.stop()
    print(f"\n| guest | setting | connections | req/s | p50 | p99 | server CPU per request |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for label, name, c, rps, p50, p99, cpu in table:
        print(f"| {label} | {name} | {c} | {rps:,.0f} | {p50 * 1000:.0f} µs | "
              f"{p99 * 1000:.0f} µs | {cpu:.1f} µs |")
    print(f"\n(medians of {args.rounds} rounds of {args.duration} s)")


if __name__ == "__main__":
    main()
