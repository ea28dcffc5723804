#!/usr/bin/env python3
"""Where a loaded Nimbus spends its CPU, thread by thread: the runtime's workers, the usage
writer (`nimbus-usage`), the log writer (`nimbus-logs`), the epoch ticker and the rest, each
as CPU µs per request and as a share of the process's CPU. Usage (from the repository root):

    python3 bench/thread_cpu_bench.py [--only c,js] [--duration 10] [--connections 16] \
        [--rounds 3] [--warmup 20] [--nimbus-args '...']

Why this exists: metering's cost is meant to be ≤ 3% of throughput, and the req/s A/B of
`metering_bench.py` cannot resolve that on these VMs (an A/A run of two identical servers
differs by up to 5% between rounds). The writer threads, though, do nothing but metering and
logging, and their CPU time is counted by the kernel per thread (`/proc/PID/task/TID/schedstat`):
their share of the process's CPU is an exact measure of that part of the cost, whatever the
VM's speed that hour. The rest of metering runs on the workers (building and queueing the
record); compare their CPU per request with `--nimbus-args=--no-metering` for that part.
Each round starts a fresh server and loads it for --warmup seconds before measuring, so that
the stores' caches have filled and the writers run as they do in a server that has been up a
while. Builds Nimbus (release) and the guests first. Needs wrk (Debian).
"""

import argparse
import os
import statistics

from serve_bench import Nimbus, build, machine, wrk

def thread_cpu(pid):
    """{thread name: CPU seconds so far}, summed over threads of the same name
    (`/proc/PID/task/TID/schedstat`: nanoseconds on a CPU, where `stat` counts 10 ms ticks)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
        except OSError:
            continue  # the thread ended
        out[name] = out.get(name, 0.0) + ns / 1e9
    return out


def group(name):
    if name.startswith("tokio-r"):  # tokio-rt-worker (names are cut to 15 bytes)
        return "workers"
    if name in ("nimbus-usage", "nimbus-logs", "nimbus-epoch"):
        return name
    return "other"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="c")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--nimbus-args", default="")
    args = ap.parse_args()
    guests = build(args.only.split(","))
    print(f"\nmachine: {machine()}")
    print(f"command: python3 bench/thread_cpu_bench.py --only {args.only} --duration "
          f"{args.duration} --connections {args.connections} --rounds {args.rounds} "
          f"--warmup {args.warmup} "
          f"--nimbus-args '{args.nimbus_args}'")
    groups = ["workers", "nimbus-usage", "nimbus-logs", "nimbus-epoch", "other"]
    print()
    print("| guest | round | req/s | " + " | ".join(f"{g} µs/req" for g in groups)
          + " | total µs/req | usage writer share |")
    print("| --- | ---: | ---: | " + " | ".join("---:" for _ in groups) + " | ---: | ---: |")
    for key, (component, route, label) in guests.items():
        shares = []
        for r in range(args.rounds):
            nimbus = Nimbus(extra_args=["--s3-listen", "127.0.0.1:0",
                                        *args.nimbus_args.split()]).start()
            try:
                nimbus.deploy(component, route)
                url = f"http://127.0.0.1:{nimbus.port}{route}"
                wrk(url, args.warmup, args.connections)  # not counted
                before = thread_cpu(nimbus.proc.pid)
                res = wrk(url, args.duration, args.connections)
                after = thread_cpu(nimbus.proc.pid)
            finally:
                nimbus.stop()
            requests = max(res["rps"] * args.duration, 1)
            per = {g: 0.0 for g in groups}
            for name, cpu in after.items():
                per[group(name)] += cpu - before.get(name, 0.0)
            total = sum(per.values())
            share = per["nimbus-usage"] / total if total else 0.0
            shares.append(share)
            print(f"| {label} | {r + 1} | {res['rps']:.0f} | "
                  + " | ".join(f"{per[g] * 1e6 / requests:.2f}" for g in groups)
                  + f" | {total * 1e6 / requests:.1f} | {share * 100:.2f}% |", flush=True)
        print(f"| {label} | median | | " + " | ".join("" for _ in groups)
              + f" | | {statistics.median(shares) * 100:.2f}% |")


if __name__ == "__main__":
    main()
