#!/usr/bin/env python3
"""Fairness benchmark: a victim app's latency alone and while an aggressor app saturates the
machine, with Nimbus's per-app CPU slots (the default) and with them effectively off
(`--cpu-slots-per-app 100000`), in the same run. Usage (from the repository root):

    python3 bench/fairness_bench.py [--duration 10] [--aggressors 64]

Victim: the minimal C hello, driven by wrk (1 thread, 4 connections), back to back or, with
--victim-delay-ms N, each connection waiting N ms between requests (a steady load below the
machine's capacity; see hostile_bench.py). Aggressor: a C guest that
spins until its CPU budget (1 s) stops it, driven by wrk with --aggressors connections (each
request burns a second of CPU and gets 504). The victim run starts 2 s after the flood.
Builds Nimbus (release) and the guests first. Needs wrk (Debian).
"""

import argparse
import os
import shutil
import subprocess
import threading
import time

from serve_bench import NIMBUS, ROOT, Nimbus, machine, pace_script, run, wrk


def build():
    run(["cargo", "build", "--release", "--locked", "-p", "nimbus-cli"], cwd=ROOT)
    out = os.path.join(ROOT, "target", "bench-guests")
    os.makedirs(out, exist_ok=True)
    guests = {}
    for name in ("hello", "loop"):
        path = os.path.join(out, f"{name}-c.wasm")
        run(["bash", "guests/c/build.sh", name, path], cwd=ROOT)
        guests[name] = path
    return guests


def deploy(nimbus, app, component, route, extra=""):
    path = os.path.join(nimbus.data, app)
    os.makedirs(path, exist_ok=True)
    shutil.copy(component, os.path.join(path, "f.wasm"))
    with open(os.path.join(path, "nimbus.toml"), "w") as f:
        f.write(f'[app]\nname = "{app}"\n\n[[function]]\nname = "f"\ncomponent = "f.wasm"\n'
                f'routes = ["{route}"]\nmax_concurrency = 1000\n{extra}\n')
    subprocess.run([NIMBUS, "deploy", "--no-build", "--json", path], env=nimbus.env, check=True,
                   capture_output=True, text=True)


def measure(guests, extra_args, duration, aggressors, pace):
    nimbus = Nimbus(extra_args=extra_args).start()
    try:
        deploy(nimbus, "victim", guests["hello"], "/hello")
        deploy(nimbus, "aggressor", guests["loop"], "/spin",
               "timeout_ms = 5000\ncpu_time_ms = 1000")
        base = f"http://127.0.0.1:{nimbus.port}"
        alone = wrk(f"{base}/hello", duration, 4, script=pace)
        flood = {}
        thread = threading.Thread(
            target=lambda: flood.update(wrk(f"{base}/spin", duration + 4, aggressors)))
        thread.start()
        time.sleep(2)
        attacked = wrk(f"{base}/hello", duration, 4, script=pace)
        thread.join()
        return alone, attacked, flood
    finally:
        nimbus.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--aggressors", type=int, default=64)
    parser.add_argument("--victim-delay-ms", type=int, default=0)
    args = parser.parse_args()
    pace = pace_script(args.victim_delay_ms)
    guests = build()
    print(f"machine: {machine()}")
    print(f"command: python3 bench/fairness_bench.py --duration {args.duration} "
          f"--aggressors {args.aggressors} --victim-delay-ms {args.victim_delay_ms}")
    rows = []
    cores = os.cpu_count() or 1
    for label, extra in ((f"per-app CPU slots, default (cores − 1 = {max(1, cores - 1)})", []),
                         ("default slots, CPU-bound guests' threads at nice 5 "
                          "(--cpu-nice 5)", ["--cpu-nice", "5"]),
                         (f"one slot per core (--cpu-slots-per-app {cores})",
                          ["--cpu-slots-per-app", str(cores)]),
                         ("fair sharing off (--cpu-slots-per-app 100000)",
                          ["--cpu-slots-per-app", "100000"])):
        alone, attacked, flood = measure(guests, extra, args.duration, args.aggressors, pace)
        rows.append((label, alone, attacked, flood))
    print()
    paced = (f", each waiting {args.victim_delay_ms} ms between requests"
             if args.victim_delay_ms else ", back to back")
    print(f"Victim (C hello, 4 connections{paced}) alone and during a flood of {args.aggressors} "
          f"connections of 1-second CPU spins on another app")
    print()
    print("| Nimbus | victim alone p50 / p99 | victim attacked p50 / p99 | p99 ratio | victim req/s "
          "alone → attacked | victim errors | aggressor 504s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, alone, attacked, flood in rows:
        print(f"| {label} | {alone['p50_ms']:.2f} / {alone['p99_ms']:.2f} ms "
              f"| {attacked['p50_ms']:.2f} / {attacked['p99_ms']:.2f} ms "
              f"| {attacked['p99_ms'] / alone['p99_ms']:.1f}x "
              f"| {alone['rps']:.0f} → {attacked['rps']:.0f} "
              f"| {attacked['non2xx']} {attacked['socket_errors']} | {flood.get('non2xx', '?')} |")


if __name__ == "__main__":
    main()
