#!/usr/bin/env python3
"""How much of a pool slot stays resident between requests (--keep-resident-kib) against
throughput, CPU and page faults per request. Usage (from the repository root):

    python3 bench/resident_bench.py [--only js,c] [--kib 8192,16384,32768] [--rounds 2]

One Nimbus per setting and round; wrk (1 thread, 16 connections): 2 s warm-up, then 8 s
measured. Server CPU (utime + stime) and minor faults from /proc/PID/stat; RSS after the run.
Builds Nimbus (release) and the guests first. Needs wrk (Debian).
"""

import argparse
import os

from serve_bench import Nimbus, build, machine, wrk


def stat(pid):
    """(CPU seconds, minor faults) of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7])


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) // 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="js,c")
    parser.add_argument("--kib", default="8192,16384,32768")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    guests = build(args.only.split(","))
    print(f"machine: {machine()}")
    print(f"command: python3 bench/resident_bench.py --only {args.only} --kib {args.kib} "
          f"--rounds {args.rounds}")
    print()
    print("| guest | keep resident | req/s | server CPU per request | minor faults per request | RSS after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for key in args.only.split(","):
        path, route, label = guests[key]
        for _ in range(args.rounds):
            for kib in args.kib.split(","):
                n = Nimbus(extra_args=["--s3-listen", "127.0.0.1:0", "--keep-resident-kib", kib]).start()
                try:
                    n.deploy(path, route)
                    url = f"http://127.0.0.1:{n.port}{route}"
                    wrk(url, 2, 16)
                    cpu0, faults0 = stat(n.proc.pid)
                    res = wrk(url, 8, 16)
                    cpu1, faults1 = stat(n.proc.pid)
                    requests = max(res["rps"] * 8, 1)
                    print(f"| {label} | {int(kib) // 1024} MiB | {res['rps']:,.0f} | "
                          f"{(cpu1 - cpu0) * 1e6 / requests:.0f} µs | "
                          f"{(faults1 - faults0) / requests:.1f} | {rss_mib(n.proc.pid)} MiB |",
                          flush=True)
                finally:
                    n.stop()


if __name__ == "__main__":
    main()
