#!/usr/bin/env python3
"""Metering overhead: the same guest served by two Nimbus processes, one metering every
invocation (the default) and one started with --no-metering, driven in alternating rounds by the
same wrk load in one run (these machines are noisy; alternating spreads the noise over both).
Usage (from the repository root):

    python3 bench/metering_bench.py [--duration 10] [--rounds 3] [--connections 16] \
        [--only c,js,log,trace] [--together] [--fresh] [--aa]

`log` is the C `env` guest, which writes a line to stdout and one to stderr per request, so
the log store is exercised too (--no-metering turns off usage records, metrics and the log
store). `trace` is the C hello with tracing on (--otlp-endpoint, every trace sampled, to an
OTLP receiver in this script that reads and discards the exports, on the same machine) against
tracing off, both metered. Reports each round, the median requests/s and server CPU per request of each side, and the
median of the per-round CPU differences; target: <= 3% for metering.
Also checks that the metered side recorded every request it served. Builds Nimbus (release)
and the guests first. Needs wrk (Debian).

--together loads both sides at the same time instead (one wrk each, started together, both
servers saturated and sharing the cores): whatever the VM's neighbours do to one side's round
they do to the other's, so the CPU per request of the two sides compares under the same
conditions. Alternating rounds cannot do that: on a noisy day consecutive 10 s rounds of the
same binary differed by up to 25%.

--fresh starts both servers anew for every round: if two processes of one binary differ for
reasons of their own (where their memory landed, huge pages or not), a run with one pair of
processes measures that difference every round; fresh pairs turn it into noise that the
median over rounds averages out.
"""

import argparse
import json
import statistics
import subprocess
import time
import urllib.request

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serve_bench import NIMBUS, ROOT, Nimbus, build, machine, run, wrk


def cpu_seconds(pid):
    """User + system CPU time of a process so far (/proc/<pid>/stat, clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def usage_total(nimbus):
    req = urllib.request.Request(
        f"http://127.0.0.1:{nimbus.api_port}/v1/usage?since=1d&by=app",
        headers={"Authorization": f"Bearer {nimbus.token()}"})
    with urllib.request.urlopen(req) as r:
        body = json.load(r)
    return body["total"]["invocations"], body["metering"]


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that reads each export and answers 200 (empty response)."""
    received = 0

    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        self.rfile.read(n)
        Sink.received += n
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def otlp_sink():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def measure(order, route, args, together):
    """One round: wrk against each (name, nimbus) of `order`, one after the other or all at
    once; yields (name, nimbus, wrk result with the server's CPU µs per request)."""
    def one(n, out):
        cpu_before = cpu_seconds(n.proc.pid)
        res = wrk(f"http://127.0.0.1:{n.port}{route}", args.duration, args.connections)
        # Server CPU per request: steadier than req/s when the VM's neighbours take cycles
        # (it counts only what this process used).
        requests = res["rps"] * args.duration
        res["cpu_us"] = (cpu_seconds(n.proc.pid) - cpu_before) * 1e6 / max(requests, 1)
        out.append(res)

    if not together:
        for name, n in order:
            out = []
            one(n, out)
            yield name, n, out[0]
        return
    outs = [[] for _ in order]
    threads = [threading.Thread(target=one, args=(n, out)) for (_, n), out in zip(order, outs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (name, n), out in zip(order, outs):
        yield name, n, out[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--only", default="c,js,log")
    ap.add_argument("--together", action="store_true",
                    help="load both sides at once in every round instead of one after the other")
    ap.add_argument("--fresh", action="store_true",
                    help="start both servers anew for every round instead of once per guest")
    ap.add_argument("--aa", action="store_true",
                    help="A/A run: both sides with metering off, to see the bench's own noise")
    args = ap.parse_args()
    only = args.only.split(",")
    guests = build([g for g in only if g not in ("log", "trace")])
    if "log" in only:
        path = os.path.join(ROOT, "target", "bench-guests", "env-c.wasm")
        run(["bash", "guests/c/build.sh", "env", path], cwd=ROOT)
        guests["log"] = (path, "/hello", "C env (2 log lines per request)")
    if "trace" in only:
        guests["trace"] = (build(["c"])["c"][0], "/hello", "C hello, traces on vs off")
    print(f"\nmachine: {machine()}")
    how = "both sides at once" if args.together else "one side after the other, alternating"
    print(f"load: wrk -t1 -c{args.connections} -d{args.duration}s per round, {args.rounds} rounds "
          f"per side, {how}\n")
    summary = []
    for key, (component, route, label) in guests.items():
        # Both on free ports, S3 included (its default 9000 can be bound only once).
        if key == "trace":
            on_args, off_args = ["--otlp-endpoint", otlp_sink()], []
            names = ("traces on", "traces off")
        else:
            on_args, off_args = [], ["--no-metering"]
            names = ("metering on", "metering off")
            if args.aa:
                on_args, names = ["--no-metering"], ("off (A)", "off (B)")
        def start_pair(plain_first=False):
            """Both servers started, the guest deployed and warmed up, the metered side's
            usage count taken. Which one is started, deployed and warmed up first alternates
            with --fresh: an A/A run found the side always set up first 3.5%
            slower in req/s over 10 rounds (5.3% more CPU per request, paired), which a fixed
            order adds to the cost."""
            sides = [Nimbus(extra_args=["--s3-listen", "127.0.0.1:0", *a])
                     for a in (on_args, off_args)]
            first_to_last = sides[::-1] if plain_first else sides
            for n in first_to_last:
                n.start()
            metered, plain = sides
            for n in first_to_last:
                n.deploy(component, route)
                urllib.request.urlopen(f"http://127.0.0.1:{n.port}{route}").read()
            # One short warm-up round each, not counted.
            for n in first_to_last:
                wrk(f"http://127.0.0.1:{n.port}{route}", 2, args.connections)
            time.sleep(0.5)  # let the warm-up's records land first
            before, _ = usage_total(metered) if metered_api else (0, None)
            return metered, plain, before

        def stop_pair(metered, plain, before):
            """Stops both; returns how many invocations the metered side recorded since
            `before`, and its loss counters."""
            try:
                time.sleep(0.5)  # the meter's flush window
                after, counts = usage_total(metered) if metered_api else (0, {"lost": 0})
                return after - before, counts
            finally:
                metered.stop()
                plain.stop()

        metered_api = not (args.aa and key != "trace")
        pair_state = None if args.fresh else start_pair()
        recorded, lost = 0, 0
        try:
            served = 0
            results = {names[0]: [], names[1]: []}
            for r in range(args.rounds):
                if args.fresh:
                    # Every 4 rounds see each start order with each measuring order.
                    pair_state = start_pair(plain_first=(r // 2) % 2 == 1)
                metered, plain, _ = pair_state
                # Which side goes first alternates: an A/A run showed the side that always
                # went first using up to 8% more CPU per request on a noisy day.
                pair = ((names[0], metered), (names[1], plain))
                order = pair if r % 2 == 0 else pair[::-1]
                for name, n, res in measure(order, route, args, together=args.together):
                    results[name].append(res)
                    if n is metered:
                        served += round(res["rps"] * args.duration)
                    print(f"  {label:<34} round {r + 1} {name:<13} {res['rps']:>9.0f} req/s  "
                          f"{res['cpu_us']:6.1f} CPU µs/req  "
                          f"p50 {res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms", flush=True)
                if args.fresh:
                    state, pair_state = pair_state, None
                    n_rec, counts = stop_pair(*state)
                    recorded, lost = recorded + n_rec, lost + counts["lost"]
            if pair_state is not None:
                state, pair_state = pair_state, None
                n_rec, counts = stop_pair(*state)
                recorded, lost = recorded + n_rec, lost + counts["lost"]
            on = statistics.median(x["rps"] for x in results[names[0]])
            off = statistics.median(x["rps"] for x in results[names[1]])
            cpu_on = statistics.median(x["cpu_us"] for x in results[names[0]])
            cpu_off = statistics.median(x["cpu_us"] for x in results[names[1]])
            # Each round's two sides ran back to back, under much the same neighbours' load:
            # the median of the per-round differences is steadier than the difference of the
            # medians.
            paired = statistics.median(
                (a["cpu_us"] - b["cpu_us"]) / b["cpu_us"] * 100
                for a, b in zip(results[names[0]], results[names[1]]))
            summary.append((label, on, off, cpu_on, cpu_off, paired, recorded, served, lost))
        finally:
            if pair_state is not None:
                stop_pair(*pair_state)

    print(f"\n{'guest':<34} {'on req/s':>10} {'off req/s':>10} {'cost':>7}  "
          f"{'CPU µs/req on':>14} {'off':>6} {'cost':>7} {'paired':>7}   records / ~served  lost")
    for label, on, off, cpu_on, cpu_off, paired, recorded, served, lost in summary:
        cost = (off - on) / off * 100
        cpu_cost = (cpu_on - cpu_off) / cpu_off * 100
        print(f"{label:<34} {on:>10.0f} {off:>10.0f} {cost:>6.1f}%  {cpu_on:>14.1f} {cpu_off:>6.1f} "
              f"{cpu_cost:>6.1f}% {paired:>6.1f}%   {recorded} / ~{served}  {lost}")
    print("\ncost: of the median req/s; CPU cost: of the median server CPU per request; paired: "
          "median over rounds of that round's CPU difference")
    if Sink.received:
        print(f"\nOTLP receiver got {Sink.received} bytes of exports")
    print(f"\nbinary: {NIMBUS}")


if __name__ == "__main__":
    main()
