#!/usr/bin/env python3
"""Overload benchmark: goodput and rejections when more load is offered than a function may
take. Usage (from the repository root):

    python3 bench/overload_bench.py [--duration 10] [--concurrency 16] [--sleep-ms 10]
    python3 bench/overload_bench.py --work-k 1000 --concurrency 4

The function (guests/c/sleep: each request waits --sleep-ms on a timer, so the function's
capacity is concurrency / sleep time; or, with --work-k, guests/c/work: each request does a
fixed amount of CPU work, so the machine's cores are the capacity) has `max_concurrency =
--concurrency` and no wait queue.
Peak:
wrk with exactly that many connections (closed loop: the offered load is what the function can
take). Overload: 2× and 16× as many connections; the excess is rejected with 429. Goodput =
2xx responses per second; a Python probe meanwhile sends single requests on fresh connections
and times the 429s it gets (how fast a rejection is answered). The probe shares the two cores
with wrk and the server, so its times include its own wait for a core after the answer came;
--probe-nice -10 raises its thread's priority (the server's and wrk's stay as they are), so
that what it times is the server's answer rather than its own scheduling. Builds Nimbus
(release) first.
Needs wrk (Debian).
"""

import argparse
import http.client
import os
import re
import shutil
import subprocess
import threading
import time

from serve_bench import NIMBUS, ROOT, Nimbus, machine, run


def wrk_counts(url, duration, connections, header):
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-H", header, url]
    print("+", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rejected = int(non2xx.group(1)) if non2xx else 0
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out)
    value, unit = float(p99.group(1)), p99.group(2)
    p99_ms = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return {"goodput": (total - rejected) / duration, "rejected": rejected / duration,
            "p99_ms": p99_ms}


def probe(port, header, stop, rejections, served, nice):
    name, value = header.split(": ", 1)
    if nice:
        # Linux: a thread id as PRIO_PROCESS sets that thread's priority alone.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    while not stop.is_set():
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/hello", headers={name: value})
        response = conn.getresponse()
        response.read()
        took = (time.perf_counter() - started) * 1000
        conn.close()
        (rejections if response.status == 429 else served).append(took)
        time.sleep(0.01)


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sleep-ms", type=int, default=10)
    parser.add_argument("--work-k", type=int, default=0,
                        help="CPU-bound instead: thousands of hash rounds per request")
    parser.add_argument("--nimbus-args", default="",
                        help="extra `nimbus up` arguments, e.g. '--guest-threads 2'")
    parser.add_argument("--probe-nice", type=int, default=0,
                        help="the 429 probe thread's nice value (negative needs root)")
    args = parser.parse_args()
    run(["cargo", "build", "--release", "--locked", "-p", "nimbus-cli"], cwd=ROOT)
    out = os.path.join(ROOT, "target", "bench-guests")
    os.makedirs(out, exist_ok=True)
    guest = "work" if args.work_k else "sleep"
    header = f"x-work-k: {args.work_k}" if args.work_k else f"x-sleep-ms: {args.sleep_ms}"
    what = (f"{args.work_k}k hash rounds of CPU work" if args.work_k
            else f"{args.sleep_ms} ms of waiting")
    hello = os.path.join(out, f"{guest}-c.wasm")
    run(["bash", "guests/c/build.sh", guest, hello], cwd=ROOT)
    print(f"machine: {machine()}")
    print(f"command: python3 bench/overload_bench.py --duration {args.duration} "
          f"--concurrency {args.concurrency} " +
          (f"--work-k {args.work_k}" if args.work_k else f"--sleep-ms {args.sleep_ms}") +
          (f" --nimbus-args '{args.nimbus_args}'" if args.nimbus_args else "") +
          (f" --probe-nice {args.probe_nice}" if args.probe_nice else ""))
    nimbus = Nimbus(extra_args=args.nimbus_args.split()).start()
    rows = []
    try:
        app = os.path.join(nimbus.data, "app")
        os.makedirs(app, exist_ok=True)
        shutil.copy(hello, os.path.join(app, "f.wasm"))
        with open(os.path.join(app, "nimbus.toml"), "w") as f:
            f.write(f'[app]\nname = "o"\n\n[[function]]\nname = "f"\ncomponent = "f.wasm"\n'
                    f'routes = ["/hello"]\nmax_concurrency = {args.concurrency}\n')
        subprocess.run([NIMBUS, "deploy", "--no-build", "--json", app], env=nimbus.env,
                       check=True, capture_output=True, text=True)
        url = f"http://127.0.0.1:{nimbus.port}/hello"
        for factor in (1, 2, 16):
            stop, rejections, served = threading.Event(), [], []
            thread = threading.Thread(target=probe, args=(nimbus.port, header, stop, rejections, served,
                                                          args.probe_nice))
            thread.start()
            result = wrk_counts(url, args.duration, args.concurrency * factor, header)
            stop.set()
            thread.join()
            rows.append((factor, result, rejections, served))
    finally:
        nimbus.stop()
    peak = rows[0][1]["goodput"]
    print()
    print(f"max_concurrency = {args.concurrency}, {what} per request, no wait queue; "
          f"wrk -t2, {args.duration} s per row")
    print()
    print("| offered (connections) | goodput req/s | vs peak | rejected req/s | p99 (all responses) | "
          "429 answered in p50 / p99 (probe) | probe requests served |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for factor, r, rejections, served in rows:
        print(f"| {factor}× ({args.concurrency * factor}) | {r['goodput']:.0f} | "
              f"{100 * r['goodput'] / peak:.0f}% | {r['rejected']:.0f} | {r['p99_ms']:.2f} ms | "
              f"{pct(rejections, 50):.2f} / {pct(rejections, 99):.2f} ms ({len(rejections)}) | "
              f"{len(served)} |")


if __name__ == "__main__":
    main()
