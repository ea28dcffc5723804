#!/usr/bin/env python3
"""HTTP benchmark: Nimbus vs `wasmtime serve` 48.0.8 vs native hyper, same machine, same run.

For each guest (minimal C, JS, Python hello) it serves the same component with Nimbus and with
`wasmtime serve`, drives each with the same wrk load, and prints requests/s and latency
percentiles side by side, plus cold-start numbers. Usage (from the repository root):

    python3 bench/serve_bench.py [--duration 10] [--connections 16] [--only c,js,py]
    python3 bench/serve_bench.py --baseline OLD/nimbus --rounds 3 --no-anchor   # A/B two builds

Builds what it needs: Nimbus (release), native-hello (release), the guests, and wasmtime-cli
48.0.8 into ~/.cache/nimbus-bench (about 8 minutes, once). Needs wrk (Debian package).
"""

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.expanduser("~/.cache/nimbus-bench")
WASMTIME_VERSION = "48.0.8"
WASMTIME = os.path.join(CACHE, f"wasmtime-{WASMTIME_VERSION}", "bin", "wasmtime")
# NIMBUS_BIN=/path/to/nimbus runs another build (an A/B against an older binary).
NIMBUS = os.environ.get("NIMBUS_BIN") or os.path.join(ROOT, "target", "release", "nimbus")
NATIVE = os.path.join(ROOT, "target", "release", "native-hello")


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return
        except Exception:
            time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.platform()}, commit {commit}"


def build(only, anchor=False):
    """Builds Nimbus (release) and the guests in `only`; with `anchor`, also installs the
    `wasmtime serve` this benchmark compares with (a long build, so only when it is used)."""
    run(["cargo", "build", "--release", "--locked", "-p", "nimbus-cli", "-p", "native-hello"], cwd=ROOT)
    if anchor and not os.path.exists(WASMTIME):
        run(["cargo", "install", "--locked", "wasmtime-cli", "--version", WASMTIME_VERSION,
             "--root", os.path.dirname(os.path.dirname(WASMTIME))])
    run(["bash", "scripts/setup-toolchains.sh"], cwd=ROOT)
    out = os.path.join(ROOT, "target", "bench-guests")
    os.makedirs(out, exist_ok=True)
    guests = {}
    if "c" in only:
        guests["c"] = (os.path.join(out, "hello-c.wasm"), "/hello", "minimal C hello")
        run(["bash", "guests/c/build.sh", "hello", guests["c"][0]], cwd=ROOT)
    if "js" in only:
        guests["js"] = (os.path.join(out, "hello-js.wasm"), "/hello", "JS hello (componentize-js 0.23)")
        if not os.path.exists(guests["js"][0]):
            run(["node", "guests/js/componentize.mjs", "guests/js/hello.js", guests["js"][0]], cwd=ROOT)
    if "py" in only:
        guests["py"] = (os.path.join(out, "hello-py.wasm"), "/hello", "Python hello (componentize-py 0.25)")
        if not os.path.exists(guests["py"][0]):
            run(["bash", "guests/py/build.sh", "guests/py/hello", guests["py"][0]], cwd=ROOT)
    return guests


def pace_script(delay_ms):
    """A wrk script that makes each connection wait `delay_ms` between its requests: a victim
    with a steady load well below the machine's capacity, rather than one saturating it by
    itself. None for 0 (back to back, wrk's default)."""
    if not delay_ms:
        return None
    path = os.path.join(tempfile.gettempdir(), f"nimbus-bench-pace-{delay_ms}ms.lua")
    with open(path, "w") as f:
        f.write(f"function delay()\n  return {delay_ms}\nend\n")
    return path


def wrk(url, duration, connections, threads=1, headers=(), script=None):
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for header in headers:
        cmd += ["-H", header]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    print("+", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        lat[pct] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"],
            "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


class Nimbus:
    """A `nimbus up` process on free ports with its own data dir and client config."""

    def __init__(self, data_dir=None, extra_args=(), binary=None):
        self.binary = binary or NIMBUS
        self.data = data_dir or tempfile.mkdtemp(prefix="nimbus-bench-")
        self.extra_args = list(extra_args)
        self.port, self.api_port = free_port(), free_port()
        self.env = dict(os.environ, NIMBUS_CONFIG=os.path.join(self.data, "client.json"),
                        NIMBUS_LOG="warn")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "up", "--data-dir", self.data, "--listen", f"127.0.0.1:{self.port}",
             "--api-listen", f"127.0.0.1:{self.api_port}", *self.extra_args],
            env=self.env, stdout=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.api_port}/v1/health")
        return self

    def token(self):
        with open(self.env["NIMBUS_CONFIG"]) as f:
            return json.load(f)["token"]

    def deploy(self, component, route, extra=""):
        app = os.path.join(self.data, "app")
        os.makedirs(app, exist_ok=True)
        shutil.copy(component, os.path.join(app, "f.wasm"))
        with open(os.path.join(app, "nimbus.toml"), "w") as f:
            f.write(f'[app]\nname = "bench"\n\n[[function]]\nname = "f"\ncomponent = "f.wasm"\n'
                    f'routes = ["{route}"]\nmax_concurrency = 1000\n{extra}\n')
        out = subprocess.run([self.binary, "deploy", "--no-build", "--json", app], env=self.env,
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


def serve_wasmtime(component):
    port = free_port()
    proc = subprocess.Popen([WASMTIME, "serve", "-Scli", "--addr", f"127.0.0.1:{port}", component],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/hello")
    return proc, port


def rss_mib(pid):
    """Peak resident memory of a process so far (VmHWM), MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def first_request_ms(url):
    start = time.perf_counter()
    with urllib.request.urlopen(url) as r:
        r.read()
    return (time.perf_counter() - start) * 1000


def measure_nimbus(binary, component, route, args):
    """wrk against `binary` serving `component`, then its cold-start numbers: (wrk result,
    (compile ms, deploy → first ms, first ms, first after restart ms, second after restart ms,
    redeploy cache hit))."""
    nimbus = Nimbus(binary=binary).start()
    try:
        t0 = time.perf_counter()
        deployed = nimbus.deploy(component, route)
        url = f"http://127.0.0.1:{nimbus.port}{route}"
        first = first_request_ms(url)
        deploy_to_first = (time.perf_counter() - t0) * 1000
        compile_ms = deployed["components"][0]["load_ms"]
        result = wrk(url, args.duration, args.connections)
        result["rss_mib"] = rss_mib(nimbus.proc.pid)
    finally:
        nimbus.stop()
    # Restart on the same data dir: the artifact cache is warm.
    nimbus = Nimbus(nimbus.data, binary=binary).start()
    try:
        restart_first = first_request_ms(f"http://127.0.0.1:{nimbus.port}{route}")
        restart_second = first_request_ms(f"http://127.0.0.1:{nimbus.port}{route}")
        redeploy = nimbus.deploy(component, route)["components"][0]
    finally:
        nimbus.stop()
    shutil.rmtree(nimbus.data, ignore_errors=True)
    return result, (compile_ms, deploy_to_first, first, restart_first, restart_second,
                    redeploy["cache_hit"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--only", default="c,js,py")
    ap.add_argument("--baseline", help="an older nimbus binary, measured alternately with this one")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each build per guest")
    ap.add_argument("--no-anchor", action="store_true", help="skip wasmtime serve")
    args = ap.parse_args()
    only = args.only.split(",")
    guests = build(only, anchor=not args.no_anchor)
    if args.baseline:
        print(f"baseline: {args.baseline}")

    print(f"\nmachine: {machine()}")
    print(f"load: wrk -t1 -c{args.connections} -d{args.duration}s, loopback, fresh instance per request\n")
    rows = []

    port = free_port()
    native = subprocess.Popen([NATIVE, f"127.0.0.1:{port}"])
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        rows.append(("native hyper hello (ceiling)", "-", wrk(f"http://127.0.0.1:{port}/", args.duration, args.connections)))
    finally:
        native.terminate()

    # With a baseline the two builds alternate, `rounds` times each, in one sitting.
    builds = [("nimbus", NIMBUS)]
    if args.baseline:
        builds.append(("nimbus baseline", args.baseline))
    cold = []
    for key, (component, route, label) in guests.items():
        for _ in range(args.rounds):
            for server, binary in builds:
                result, startup = measure_nimbus(binary, component, route, args)
                rows.append((label, server, result))
                cold.append((f"{label} ({server})", *startup))
        if args.no_anchor:
            continue
        proc, port = serve_wasmtime(component)
        try:
            result = wrk(f"http://127.0.0.1:{port}{route}", args.duration, args.connections)
            result["rss_mib"] = rss_mib(proc.pid)
            rows.append((label, f"wasmtime serve {WASMTIME_VERSION}", result))
        finally:
            proc.terminate()
            proc.wait()

    print("\n| component | server | req/s | p50 ms | p99 ms | peak RSS MiB | non-2xx | socket errors |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, server, r in rows:
        rss = f"{r['rss_mib']:.0f}" if "rss_mib" in r else "-"
        print(f"| {label} | {server} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {rss} | {r['non2xx']} | {r['socket_errors'] or '-'} |")
    by = {}
    for label, server, r in rows:
        by.setdefault(label, {})[server] = r
    print("\n| component | nimbus / wasmtime serve throughput | p99 nimbus vs wasmtime |")
    print("| --- | ---: | --- |")
    for label, servers in by.items():
        n, w = servers.get("nimbus"), servers.get(f"wasmtime serve {WASMTIME_VERSION}")
        if n and w:
            print(f"| {label} | {n['rps'] / w['rps']:.2f}x | {n['p99_ms']:.2f} vs {w['p99_ms']:.2f} ms |")
    print("\n| component | compile (cache miss) ms | deploy → first response ms | first request ms | first request after restart ms | second request after restart ms | redeploy compiles nothing |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, compile_ms, d2f, first, rfirst, rsecond, hit in cold:
        print(f"| {label} | {compile_ms} | {d2f:.0f} | {first:.1f} | {rfirst:.1f} | {rsecond:.1f} | {'yes' if hit else 'NO'} |")


if __name__ == "__main__":
    sys.exit(main())
