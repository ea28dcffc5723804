#!/usr/bin/env python3
"""Scale-from-zero benchmark: the first byte of a request to a function whose code has been
released from memory (compiled artifact on disk, nothing in memory), against a request to the
same function warm, in the same run. Usage (from the repository root):

    python3 bench/activation_bench.py [--samples 40] [--only c,js]

Nimbus runs with `--keep-alive 0s`: the reaper (every second) releases a function's code as soon
as it is idle. Each sample waits until the API reports the function released (`resident:
false`), then times a new TCP connection + GET until the response head arrives. The anchor,
in the same run, is the same request to the same function on a second Nimbus with the default
keep-alive, once a few requests have warmed it. The compiled artifact stays in the OS page cache (it is a file
the process maps again); the numbers say so. Also prints the server's RSS with every function
warm and with every function released.

Targets (issue 5): p50 <= 1 ms for the minimal C component, <= 5 ms for the JS hello.
Builds Nimbus (release) and the guests first.
"""

import argparse
import http.client
import json
import os
import shutil
import subprocess
import time

from serve_bench import NIMBUS, ROOT, Nimbus, machine, run


def build(only):
    run(["cargo", "build", "--release", "--locked", "-p", "nimbus-cli"], cwd=ROOT)
    run(["bash", "scripts/setup-toolchains.sh"], cwd=ROOT)
    out = os.path.join(ROOT, "target", "bench-guests")
    os.makedirs(out, exist_ok=True)
    guests = {}
    if "c" in only:
        path = os.path.join(out, "hello-c.wasm")
        run(["bash", "guests/c/build.sh", "hello", path], cwd=ROOT)
        guests["c"] = (path, "minimal C hello")
    if "js" in only:
        path = os.path.join(out, "hello-js.wasm")
        if not os.path.exists(path):
            run(["node", "guests/js/componentize.mjs", "guests/js/hello.js", path], cwd=ROOT)
        guests["js"] = (path, "JS hello (componentize-js)")
    return guests


def rss_mib(pid):
    """Current resident memory of a process (VmRSS), MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def deploy(nimbus, name, component):
    app = os.path.join(nimbus.data, name)
    os.makedirs(app, exist_ok=True)
    shutil.copy(component, os.path.join(app, "f.wasm"))
    with open(os.path.join(app, "nimbus.toml"), "w") as f:
        f.write(f'[app]\nname = "{name}"\n\n[[function]]\nname = "f"\ncomponent = "f.wasm"\n'
                f'routes = ["/{name}/..."]\n')
    subprocess.run([NIMBUS, "deploy", "--no-build", "--json", app], env=nimbus.env, check=True,
                   capture_output=True, text=True)


def resident(nimbus, app):
    conn = http.client.HTTPConnection("127.0.0.1", nimbus.api_port, timeout=10)
    conn.request("GET", f"/v1/apps/{app}/functions",
                 headers={"Authorization": f"Bearer {nimbus.token()}"})
    body = conn.getresponse().read()
    conn.close()
    return json.loads(body)[0].get("resident")


def wait_released(nimbus, app, timeout=10.0):
    deadline = time.time() + timeout
    while resident(nimbus, app) is not False:
        if time.time() > deadline:
            raise RuntimeError(f"{app} was not released within {timeout}s")
        time.sleep(0.05)


def first_byte_ms(nimbus, path):
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", nimbus.port, timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    took = (time.perf_counter() - started) * 1000
    response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status}")
    return took


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--only", default="c,js")
    args = parser.parse_args()
    only = args.only.split(",")
    guests = build(only)
    print(f"machine: {machine()}")
    print(f"command: python3 bench/activation_bench.py --samples {args.samples} --only {args.only}")

    cold = {}
    nimbus = Nimbus(extra_args=["--keep-alive", "0s"]).start()
    try:
        for name, (path, _) in guests.items():
            deploy(nimbus, name, path)
        for name in guests:
            first_byte_ms(nimbus, f"/{name}/hello")
        warm_rss = rss_mib(nimbus.proc.pid)
        for name in guests:
            wait_released(nimbus, name)
        idle_rss = rss_mib(nimbus.proc.pid)
        for name in guests:
            cold[name] = []
            for _ in range(args.samples):
                wait_released(nimbus, name)
                cold[name].append(first_byte_ms(nimbus, f"/{name}/hello"))
    finally:
        nimbus.stop()

    # The anchor: the same requests to functions that stay resident (default keep-alive), after
    # a few requests have warmed their pool slots.
    warm = {}
    nimbus = Nimbus().start()
    try:
        for name, (path, _) in guests.items():
            deploy(nimbus, name, path)
            for _ in range(5):
                first_byte_ms(nimbus, f"/{name}/hello")
            warm[name] = [first_byte_ms(nimbus, f"/{name}/hello") for _ in range(args.samples)]
    finally:
        nimbus.stop()
    rows = [(label, cold[name], warm[name]) for name, (_, label) in guests.items()]

    print()
    print(f"Scale from zero → first byte, {args.samples} samples each (new TCP connection per request)")
    print()
    print("| component | released → first byte p50 | p90 | max | warm p50 | warm p90 | activation cost (p50 difference) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, cold, warm in rows:
        print(f"| {label} | {pct(cold, 50):.2f} ms | {pct(cold, 90):.2f} ms | {max(cold):.2f} ms "
              f"| {pct(warm, 50):.2f} ms | {pct(warm, 90):.2f} ms | {pct(cold, 50) - pct(warm, 50):.2f} ms |")
    print()
    print(f"server RSS: {warm_rss:.0f} MiB with every function warm, {idle_rss:.0f} MiB with every "
          f"function released")


if __name__ == "__main__":
    main()
