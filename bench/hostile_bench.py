#!/usr/bin/env python3
"""Hostile-function benchmark: a victim function under steady load while, one at a time, an
attacker runs beside it; reports the victim's latency and errors against its baseline, what the
attacker got, and the server's memory. Usage (from the repository root):

    python3 bench/hostile_bench.py [--duration 8] [--attackers 16]

Victim: the minimal C hello (its own app), wrk with 1 thread and 4 connections, back to back
(saturating the machine by itself) or, with --victim-delay-ms N, each connection waiting N ms
between its requests (a steady load well below capacity: a tenant that is not itself
saturating the machine). A victim that saturates two cores alone cannot keep its latency when
anything else gets a share of them, hostile or not; the paced one measures isolation.
Attacks (another app, --attackers concurrent clients each):
  neighbour the control: a well-behaved hello world hit by the same clients. What any
            equally loud neighbour costs the victim on this machine (its clients included),
            against which the attacks below are to be read                        → 200
  loop      spins until its CPU budget (cpu_time_ms = 1000) stops it          → 504
  membomb   allocates until its memory cap (memory_mb = 64)                     → capped
  deep      recurses without bound, 1 KiB frames in linear memory (runs out of the
            64 KiB shadow stack)                                                → 500 (trap)
  overflow  recurses without bound on wasm's own call stack (runs out of the
            engine's native stack, max_wasm_stack)                              → 500 (trap)
  burn      burns 2 ms of CPU and answers: short CPU-heavy requests that end
            before their first epoch tick                                        → 200
  firehose  streams a response forever (max_response_bytes = 16 MiB)            → cut off
  tablebomb grows a table until table.grow fails (100,000 elements)             → 200
  outflood  starts 200 outbound requests at once to a local upstream
            (max_outbound_requests = 50, max_outbound_connections = 6)          → 200, 150 refused
  slowloris clients that send a header byte every second (gateway-level)       → closed at 10 s
  endless   clients that stream a chunked request body forever to the victim
            route's sibling (max_body_bytes = 6 MiB)                            → 413 / aborted
Builds Nimbus (release) and the guests first. Needs wrk (Debian).
"""

import argparse
import os
import shutil
import socket
import subprocess
import threading
import time

from activation_bench import rss_mib
from serve_bench import NIMBUS, ROOT, Nimbus, machine, pace_script, run, wrk

def attacks_for(upstream_port):
    """name → (guest, manifest lines, request headers)."""
    return {
        "neighbour": ("hello", "", ""),
        "loop": ("loop", "timeout_ms = 2000\ncpu_time_ms = 1000", ""),
        "membomb": ("membomb", "memory_mb = 64", ""),
        "deep": ("deep", "", ""),
        "overflow": ("overflow", "", ""),
        "firehose": ("firehose", "max_response_bytes = 16777216", ""),
        "tablebomb": ("tablebomb", "", ""),
        "burn": ("burn", "", "x-burn-us: 2000\r\n"),
        "outflood": ("outflood",
                     f'allowed_outbound_hosts = ["http://127.0.0.1:{upstream_port}"]\n'
                     "max_outbound_requests = 50\nmax_outbound_connections = 6",
                     f"x-target: http://127.0.0.1:{upstream_port}/\r\nx-count: 200\r\n"),
    }


def upstream():
    """A local HTTP server answering every GET with `ok` after 5 ms (the outflood target)."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(0.005)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        # The default backlog of 5 drops SYNs under the flood, and the kernel's SYN retries
        # (1 s, 3 s, …) would be measured as Nimbus being slow.
        request_queue_size = 1024
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def build():
    run(["cargo", "build", "--release", "--locked", "-p", "nimbus-cli"], cwd=ROOT)
    out = os.path.join(ROOT, "target", "bench-guests")
    os.makedirs(out, exist_ok=True)
    guests = {}
    for name in ("hello", "echo", "loop", "membomb", "deep", "overflow", "firehose", "tablebomb",
                 "outflood", "burn"):
        path = os.path.join(out, f"{name}-c.wasm")
        run(["bash", "guests/c/build.sh", name, path], cwd=ROOT)
        guests[name] = path
    return guests


def deploy(nimbus, app, functions):
    path = os.path.join(nimbus.data, app)
    os.makedirs(path, exist_ok=True)
    manifest = [f'[app]\nname = "{app}"\n']
    for name, component, extra in functions:
        shutil.copy(component, os.path.join(path, f"{name}.wasm"))
        manifest.append(f'[[function]]\nname = "{name}"\ncomponent = "{name}.wasm"\n'
                        f'routes = ["/{app}/{name}"]\nmax_concurrency = 1000\n{extra}\n')
    with open(os.path.join(path, "nimbus.toml"), "w") as f:
        f.write("\n".join(manifest))
    subprocess.run([NIMBUS, "deploy", "--no-build", "--json", path], env=nimbus.env, check=True,
                   capture_output=True, text=True)


class Sampler(threading.Thread):
    """Samples the server's RSS every 100 ms; keeps the maximum."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.1)


ATTACKER_NICE = 0


def lower_priority():
    """Runs the calling attack thread at `--attacker-nice` (Linux: per thread)."""
    if ATTACKER_NICE:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ATTACKER_NICE)


def function_attack(port, path, clients, stop, counts, headers=""):
    """Clients that call `path` in a loop, reading whatever comes back."""
    def client():
        lower_priority()
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}"
                              "Connection: close\r\n\r\n".encode())
                    head = s.recv(64)
                    status = head.split(b" ")[1].decode() if head.startswith(b"HTTP/1.1") else "?"
                    while s.recv(65536):
                        pass
            except OSError:
                status = "reset"
            counts[status] = counts.get(status, 0) + 1
    return [threading.Thread(target=client, daemon=True) for _ in range(clients)]


def slowloris(port, clients, stop, counts):
    def client():
        lower_priority()
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                    s.sendall(b"GET /victim/hello HTTP/1.1\r\nHost: x\r\n")
                    while not stop.is_set():
                        s.sendall(b"X")
                        time.sleep(1)
            except OSError:
                counts["closed"] = counts.get("closed", 0) + 1
    return [threading.Thread(target=client, daemon=True) for _ in range(clients)]


def endless_body(port, clients, stop, counts):
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)

    def client():
        lower_priority()
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                    s.sendall(b"POST /attacker/echo HTTP/1.1\r\nHost: x\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n")
                    while not stop.is_set():
                        s.sendall(chunk)
            except OSError:
                counts["cut off"] = counts.get("cut off", 0) + 1
    return [threading.Thread(target=client, daemon=True) for _ in range(clients)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--attackers", type=int, default=16)
    parser.add_argument("--only", default="", help="comma-separated attacks (default: all)")
    parser.add_argument("--victim-delay-ms", type=int, default=0,
                        help="each victim connection waits this long between requests "
                             "(0: back to back)")
    parser.add_argument("--attacker-nice", type=int, default=0,
                        help="nice value of the attack clients' threads: with 19 their own CPU "
                             "use competes less with the server and the victim's client, "
                             "closer to attackers on another machine")
    parser.add_argument("--nimbus-args", default="",
                        help="extra server flags, e.g. '--cpu-slots-per-app 100000' (fair "
                             "sharing off, for an A/B run)")
    args = parser.parse_args()
    global ATTACKER_NICE
    ATTACKER_NICE = args.attacker_nice
    guests = build()
    print(f"machine: {machine()}")
    print(f"command: python3 bench/hostile_bench.py --duration {args.duration} "
          f"--attackers {args.attackers} --victim-delay-ms {args.victim_delay_ms} "
          f"--attacker-nice {args.attacker_nice} "
          f"--nimbus-args '{args.nimbus_args}'")
    pace = pace_script(args.victim_delay_ms)
    nimbus = Nimbus(extra_args=args.nimbus_args.split()).start()
    target = upstream()
    attack_table = attacks_for(target.server_address[1])
    rows = []
    try:
        deploy(nimbus, "victim", [("hello", guests["hello"], "")])
        deploy(nimbus, "attacker",
               [(name, guests[guest], extra) for name, (guest, extra, _) in attack_table.items()]
               + [("echo", guests["echo"], "")])
        victim = f"http://127.0.0.1:{nimbus.port}/victim/hello"
        sampler = Sampler(nimbus.proc.pid)
        sampler.start()
        wrk(victim, 2, 4, script=pace)  # warm-up, not counted: the first row was cold
        baseline = wrk(victim, args.duration, 4, script=pace)
        rows.append(("none (baseline)", baseline, {}, sampler.peak))
        attacks = [(name, lambda stop, counts, n=name, h=headers: function_attack(
            nimbus.port, f"/attacker/{n}", args.attackers, stop, counts, h))
            for name, (_, _, headers) in attack_table.items()]
        attacks.append(("slowloris", lambda stop, counts: slowloris(
            nimbus.port, args.attackers * 8, stop, counts)))
        attacks.append(("endless body", lambda stop, counts: endless_body(
            nimbus.port, args.attackers, stop, counts)))
        if args.only:
            attacks = [a for a in attacks if a[0] in args.only.split(",")]
        for name, start in attacks:
            stop, counts = threading.Event(), {}
            threads = start(stop, counts)
            for t in threads:
                t.start()
            time.sleep(1)
            sampler.peak = 0.0
            result = wrk(victim, args.duration, 4, script=pace)
            peak = sampler.peak
            stop.set()
            for t in threads:
                t.join(timeout=15)
            rows.append((name, result, dict(counts), peak))
            time.sleep(1)
    finally:
        nimbus.stop()

    base = rows[0][1]
    print()
    paced = (f", each waiting {args.victim_delay_ms} ms between requests"
             if args.victim_delay_ms else ", back to back")
    print(f"Victim: C hello, wrk 1 thread × 4 connections{paced}, {args.duration} s per row; "
          f"attackers: {args.attackers} clients (slowloris: {args.attackers * 8})")
    print()
    neighbour = next((r for name, r, _, _ in rows if name == "neighbour"), None)
    print("| attack | victim p50 / p99 | p99 vs baseline | p99 vs neighbour | victim req/s | "
          "victim errors | attacker outcomes | server peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for name, r, counts, peak in rows:
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "—"
        vs_neighbour = f"{r['p99_ms'] / neighbour['p99_ms']:.1f}x" if neighbour else "—"
        print(f"| {name} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms | "
              f"{r['p99_ms'] / base['p99_ms']:.1f}x | {vs_neighbour} | {r['rps']:.0f} | "
              f"{r['non2xx']}{' ' + r['socket_errors'] if r['socket_errors'] else ''} | "
              f"{outcomes} | {peak:.0f} MiB |")


if __name__ == "__main__":
    main()
