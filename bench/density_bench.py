#!/usr/bin/env python3
"""Density benchmark: many deployed functions on one Nimbus. Usage (from the repository root):

    python3 bench/density_bench.py [--functions 10000] [--components 10] [--per-app 100] \
        [--nimbus-args '--queues nats://127.0.0.1:4222']

Deploys --functions functions (each with its own route, --per-app per app) built from
--components distinct components: the minimal C hello, made distinct by a custom section
carrying an index (same code, different SHA-256, so each is compiled and cached separately).
Nimbus runs with `--keep-alive 0s`, so once deployed every function scales to zero. Prints
the deploy time, the server's RSS before deploying, with everything deployed, and once every
function is released, the idle memory per function, and the first-byte latency of calls to
randomly chosen released functions (each activates its function) against a warm repeat.
Builds Nimbus (release) and the guest first.
"""

import argparse
import http.client
import os
import random
import shutil
import subprocess
import time

from activation_bench import first_byte_ms, pct, rss_mib
from serve_bench import NIMBUS, ROOT, Nimbus, machine, run


def leb(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def variant(base, index):
    """The component with a custom section `nimbus-density` holding `index` appended."""
    name = b"nimbus-density"
    payload = leb(len(name)) + name + str(index).encode()
    return base + b"\x00" + leb(len(payload)) + payload


def deploy_app(nimbus, app, functions):
    """functions: [(name, component bytes)]."""
    path = os.path.join(nimbus.data, "apps", app)
    os.makedirs(path, exist_ok=True)
    manifest = [f'[app]\nname = "{app}"\n']
    for name, wasm in functions:
        with open(os.path.join(path, f"{name}.wasm"), "wb") as f:
            f.write(wasm)
        manifest.append(f'[[function]]\nname = "{name}"\ncomponent = "{name}.wasm"\n'
                        f'routes = ["/{app}/{name}"]\n')
    with open(os.path.join(path, "nimbus.toml"), "w") as f:
        f.write("\n".join(manifest))
    subprocess.run([NIMBUS, "deploy", "--no-build", "--json", path], env=nimbus.env, check=True,
                   capture_output=True, text=True)


def resident_count(nimbus, apps):
    token = nimbus.token()
    total = 0
    conn = http.client.HTTPConnection("127.0.0.1", nimbus.api_port, timeout=60)
    for app in apps:
        conn.request("GET", f"/v1/apps/{app}/functions", headers={"Authorization": f"Bearer {token}"})
        import json
        total += sum(1 for f in json.loads(conn.getresponse().read()) if f.get("resident"))
    conn.close()
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--functions", type=int, default=10_000)
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--per-app", type=int, default=100)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--nimbus-args", default="",
                        help="extra server flags, e.g. '--queues nats://127.0.0.1:4222' (each "
                             "function's async-invocation queue on JetStream)")
    parser.add_argument("--settle", type=int, default=0,
                        help="seconds to wait after the deploys before measuring, for work the "
                             "deploys start in the background (JetStream consumers)")
    args = parser.parse_args()
    run(["cargo", "build", "--release", "--locked", "-p", "nimbus-cli"], cwd=ROOT)
    out = os.path.join(ROOT, "target", "bench-guests")
    os.makedirs(out, exist_ok=True)
    hello = os.path.join(out, "hello-c.wasm")
    run(["bash", "guests/c/build.sh", "hello", hello], cwd=ROOT)
    with open(hello, "rb") as f:
        base = f.read()
    print(f"machine: {machine()}")
    print(f"command: python3 bench/density_bench.py --functions {args.functions} "
          f"--components {args.components} --per-app {args.per_app} "
          f"--nimbus-args '{args.nimbus_args}' --settle {args.settle}")

    nimbus = Nimbus(extra_args=["--keep-alive", "0s", *args.nimbus_args.split()]).start()
    try:
        time.sleep(1)
        base_rss = rss_mib(nimbus.proc.pid)
        components = [variant(base, i) for i in range(args.components)]
        apps = []
        started = time.time()
        n = 0
        while n < args.functions:
            app = f"a{len(apps)}"
            batch = [(f"f{n + i}", components[(n + i) % args.components])
                     for i in range(min(args.per_app, args.functions - n))]
            deploy_app(nimbus, app, batch)
            apps.append((app, [name for name, _ in batch]))
            n += len(batch)
        deploy_s = time.time() - started
        time.sleep(args.settle)
        deployed_rss = rss_mib(nimbus.proc.pid)
        deadline = time.time() + 120
        while resident_count(nimbus, [a for a, _ in apps]) > 0:
            if time.time() > deadline:
                raise RuntimeError("functions were not released within 120 s")
            time.sleep(1)
        idle_rss = rss_mib(nimbus.proc.pid)

        rng = random.Random(1)
        cold, warm = [], []
        for _ in range(args.samples):
            app, names = rng.choice(apps)
            path = f"/{app}/{rng.choice(names)}"
            cold.append(first_byte_ms(nimbus, path))
            warm.append(first_byte_ms(nimbus, path))
    finally:
        nimbus.stop()

    per_fn_kib = (idle_rss - base_rss) * 1024 / args.functions
    print()
    print(f"| functions | distinct components | deploy time | RSS empty | RSS all deployed | "
          f"RSS all released | idle KiB per function | released → first byte p50 / p90 | "
          f"warm repeat p50 |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {args.functions} | {args.components} | {deploy_s:.1f} s | {base_rss:.0f} MiB | "
          f"{deployed_rss:.0f} MiB | {idle_rss:.0f} MiB | {per_fn_kib:.1f} | "
          f"{pct(cold, 50):.2f} / {pct(cold, 90):.2f} ms | {pct(warm, 50):.2f} ms |")


if __name__ == "__main__":
    main()
