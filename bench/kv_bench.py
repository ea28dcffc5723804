#!/usr/bin/env python3
"""Key-value benchmark: the embedded, Redis and NATS JetStream backends side by side, from
inside a function (wasi:keyvalue) and through the REST API, plus redis-benchmark against the
same Redis server as the anchor (what a bare KV server does on this machine). Usage:

    python3 bench/kv_bench.py [--duration 10] [--connections 64] [--only embedded,redis,nats]

From a function: the C guest guests/c/kvbench times each wasi:keyvalue call with the monotonic
clock (one call after another, 100-byte values) and reports p50/p99 — the cost of one call as
the guest sees it, which bounds the host-side time from above.
Through REST: wrk (2 threads) GETs and PUTs one key with 100-byte values over keep-alive
connections carrying the API token.
Builds Nimbus (release) and the guest first. Needs wrk and redis-benchmark (Debian packages).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

from serve_bench import NIMBUS, ROOT, Nimbus, machine, run, wrk

BACKENDS = {
    "embedded": "embedded",
    "redis": "redis://127.0.0.1:6379",
    "nats": "nats://127.0.0.1:4222",
}


def build():
    run(["cargo", "build", "--release", "--locked", "-p", "nimbus-cli"], cwd=ROOT)
    run(["bash", "scripts/setup-toolchains.sh"], cwd=ROOT)
    out = os.path.join(ROOT, "target", "bench-guests", "kvbench.wasm")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    run(["bash", "guests/c/build.sh", "kvbench", out, "nimbus-guest"], cwd=ROOT)
    return out


def get_json(url):
    with urllib.request.urlopen(url, timeout=600) as r:
        return json.loads(r.read())


def rest_put(nimbus, key, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{nimbus.api_port}/v1/kv/bench/{key}", data=body, method="PUT",
        headers={"Authorization": f"Bearer {nimbus.token()}"})
    with urllib.request.urlopen(req) as r:
        r.read()


def redis_anchor(connections):
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", "6379", "-t", "get,set", "-n", "200000",
           "-c", str(connections), "-d", "100", "--csv"]
    print("+", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines()[1:]:
        cells = [c.strip('"') for c in line.split(",")]
        rows[cells[0]] = {"rps": float(cells[1]), "p50_ms": float(cells[4]), "p99_ms": float(cells[6])}
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--only", default="embedded,redis,nats")
    ap.add_argument("--calls", type=int, default=20000, help="reads timed inside the function")
    ap.add_argument("--writes", type=int, default=2000, help="writes timed inside the function")
    args = ap.parse_args()
    guest = build()

    print(f"\nmachine: {machine()}")
    print(f"nimbus: {NIMBUS}\n")
    inside, rest = [], []
    lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lua.write('wrk.method = "PUT"\nwrk.body = string.rep("x", 100)\n')
    lua.close()
    for name in args.only.split(","):
        nimbus = Nimbus(extra_args=["--kv", BACKENDS[name]]).start()
        try:
            nimbus.deploy(guest, "/kvbench", 'key_value_stores = ["bench"]\ntimeout_ms = 600000')
            base = f"http://127.0.0.1:{nimbus.port}/kvbench"
            for op, n in (("get", args.calls), ("set", args.writes), ("increment", args.writes)):
                print(f"+ GET {base}?op={op}&n={n}&size=100", flush=True)
                inside.append((name, op, get_json(f"{base}?op={op}&n={n}&size=100")))
            rest_put(nimbus, "rest-key", b"x" * 100)
            auth = [f"Authorization: Bearer {nimbus.token()}"]
            url = f"http://127.0.0.1:{nimbus.api_port}/v1/kv/bench/rest-key"
            get = wrk(url, args.duration, args.connections, threads=2, headers=auth)
            put = wrk(url, args.duration, args.connections, threads=2, headers=auth, script=lua.name)
            rest.append((name, get, put))
        finally:
            nimbus.stop()
    os.unlink(lua.name)
    anchor = redis_anchor(args.connections) if "redis" in args.only else {}

    print("\nFrom inside a function (C guest, one call after another, 100-byte values):\n")
    print("| backend | op | calls | p50 µs | p99 µs | mean µs |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, op, r in inside:
        print(f"| {name} | {op} | {r['n']} | {r['p50_ns'] / 1000:.1f} | {r['p99_ns'] / 1000:.1f} | {r['mean_ns'] / 1000:.1f} |")
    print(f"\nThrough the REST API (wrk -t2 -c{args.connections} -d{args.duration}s, keep-alive, token auth, 100-byte values):\n")
    print("| backend | GET ops/s | GET p50 ms | GET p99 ms | PUT ops/s | PUT p50 ms | PUT p99 ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, g, p in rest:
        errors = g["non2xx"] + p["non2xx"]
        sockets = " ".join(x for x in (g["socket_errors"], p["socket_errors"]) if x)
        print(f"| {name} | {g['rps']:,.0f} | {g['p50_ms']:.2f} | {g['p99_ms']:.2f} | {p['rps']:,.0f} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | {errors} {sockets} |")
    if anchor:
        print(f"\nAnchor: redis-benchmark -c {args.connections} -d 100 against the same Redis (no HTTP, no auth, no durability):\n")
        print("| op | ops/s | p50 ms | p99 ms |")
        print("| --- | ---: | ---: | ---: |")
        for op, r in anchor.items():
            print(f"| {op} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
