#!/usr/bin/env python3
"""Event benchmark: queue latency (send → handler start) and end-to-end queue throughput with a
trivial handler, on the embedded and the NATS JetStream queue backends side by side, and cron
firing jitter. Usage:

    python3 bench/events_bench.py [--latency-messages 2000] [--rate 200] [--duration 10]
                                  [--only embedded,nats]

Latency: a Python client sends messages one at a time over a keep-alive connection at --rate
per second; each body carries the sender's wall clock (ns) just before the send. The C guest
guests/c/eventbench reads the wall clock first thing in the handler and stores the difference in
the key-value store; the script reads them all back. Sender and server share the clock. The
anchor in the same run is the send's own round trip (HTTP + durable commit); AWS's published
SQS→Lambda figures are quoted for reference.
Throughput: wrk (2 threads, 32 connections) POSTs messages for --duration seconds to a queue
whose trigger runs the same guest in "noop" mode; end-to-end rate = accepted messages / time
from the first send until the queue is empty again.
Cron jitter: the nightly-report example on a one-second schedule for --cron-seconds; each run
records the tick and when it started (ms).
Builds Nimbus (release) and the guests first. Needs wrk (Debian).
"""

import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from serve_bench import NIMBUS, ROOT, Nimbus, free_port, machine, run


def build():
    run(["cargo", "build", "--release", "--locked", "-p", "nimbus-cli"], cwd=ROOT)
    run(["bash", "scripts/setup-toolchains.sh"], cwd=ROOT)
    out = os.path.join(ROOT, "target", "bench-guests")
    os.makedirs(out, exist_ok=True)
    guest = os.path.join(out, "eventbench.wasm")
    run(["bash", "guests/c/build.sh", "eventbench", guest, "event-guest"], cwd=ROOT)
    report = os.path.join(out, "report.wasm")
    run(["node", "guests/js/componentize.mjs", "examples/nightly-report/src/report.js", report,
         "event-guest"], cwd=ROOT)
    return guest, report


class Api:
    def __init__(self, nimbus):
        self.base = f"127.0.0.1:{nimbus.api_port}"
        self.headers = {"Authorization": f"Bearer {nimbus.token()}"}
        self.conn = http.client.HTTPConnection(self.base, timeout=60)

    def call(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
        return data

    def kv_keys(self, store, prefix=""):
        keys, cursor = [], None
        while True:
            q = {"prefix": prefix, "limit": "1000"}
            if cursor:
                q["cursor"] = cursor
            page = json.loads(self.call("GET", f"/v1/kv/{store}?{urllib.parse.urlencode(q)}"))
            keys += page["keys"]
            cursor = page.get("cursor")
            if not cursor:
                return keys

    def queue(self, app, queue):
        return json.loads(self.call("GET", f"/v1/apps/{app}/queues/{queue}"))


def deploy(nimbus, name, component, manifest):
    app = os.path.join(nimbus.data, name)
    os.makedirs(app, exist_ok=True)
    shutil.copy(component, os.path.join(app, "f.wasm"))
    with open(os.path.join(app, "nimbus.toml"), "w") as f:
        f.write(manifest)
    subprocess.run([NIMBUS, "deploy", "--no-build", "--json", app], env=nimbus.env, check=True,
                   capture_output=True, text=True)


QUEUE_APP = """[app]
name = "events"

[[function]]
name = "f"
component = "f.wasm"
key_value_stores = ["bench"]
timeout_ms = 5000

[[queue]]
name = "q"

[[trigger.queue]]
function = "f"
queue = "q"
batch_size = 10
concurrency = 32
"""

CRON_APP = """[app]
name = "cron"

[[function]]
name = "f"
component = "f.wasm"
key_value_stores = ["orders"]

[[trigger.cron]]
function = "f"
schedule = "* * * * * *"
"""


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def latency(nimbus, messages, rate):
    api = Api(nimbus)
    sends = []
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for i in range(messages):
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        started = time.perf_counter()
        api.call("POST", "/v1/apps/events/queues/q/messages", f"{time.time_ns()} record")
        sends.append((time.perf_counter() - started) * 1000)
    deadline = time.time() + 120
    while len(api.kv_keys("bench")) < messages:
        if time.time() > deadline:
            raise RuntimeError("not every latency sample arrived")
        time.sleep(0.2)
    samples = [int(api.call("GET", f"/v1/kv/bench/{key}")) / 1e6 for key in api.kv_keys("bench")]
    return samples, sends


def throughput(nimbus, duration):
    lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lua.write('wrk.method = "POST"\nwrk.body = "0 noop"\n')
    lua.close()
    url = f"http://127.0.0.1:{nimbus.api_port}/v1/apps/events/queues/q/messages"
    cmd = ["wrk", "-t2", "-c32", f"-d{duration}s", "-H", f"Authorization: Bearer {nimbus.token()}",
           "-s", lua.name, url]
    print("+", " ".join(cmd), flush=True)
    started = time.time()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    os.unlink(lua.name)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rejected = int(m.group(1)) if m else 0
    sent_rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    api = Api(nimbus)
    while True:
        if time.time() - started > 600:
            raise RuntimeError("the queue did not drain within 10 minutes")
        q = api.queue("events", "q")
        if q["ready"] + q["delayed"] + q["in_flight"] == 0:
            break
        time.sleep(0.01)
    elapsed = time.time() - started
    accepted = requests - rejected
    return {"accepted": accepted, "rejected": rejected, "send_rps": sent_rps,
            "seconds": elapsed, "e2e_rps": accepted / elapsed}


def cron_jitter(nimbus, seconds):
    time.sleep(seconds)
    api = Api(nimbus)
    late = []
    for key in api.kv_keys("orders", "report:2"):
        report = json.loads(api.call("GET", f"/v1/kv/orders/{urllib.parse.quote(key)}"))
        tick = datetime.datetime.fromisoformat(report["tick"])
        ran = datetime.datetime.fromisoformat(report["ranAt"])
        late.append((ran - tick).total_seconds() * 1000)
    return late


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-messages", type=int, default=2000)
    ap.add_argument("--rate", type=int, default=200, help="latency run: messages per second")
    ap.add_argument("--duration", type=int, default=10, help="throughput run: seconds of sending")
    ap.add_argument("--cron-seconds", type=int, default=20)
    ap.add_argument("--only", default="embedded,nats")
    args = ap.parse_args()
    backends = {"embedded": "embedded", "nats": "nats://127.0.0.1:4222"}
    guest, report = build()
    print(f"\nmachine: {machine()}")
    print(f"nimbus: {NIMBUS}\n")

    results = {}
    late = []
    for name in args.only.split(","):
        nimbus = Nimbus(extra_args=["--s3-listen", f"127.0.0.1:{free_port()}",
                                    "--queues", backends[name]]).start()
        try:
            deploy(nimbus, "events", guest, QUEUE_APP)
            samples, sends = latency(nimbus, args.latency_messages, args.rate)
            tput = throughput(nimbus, args.duration)
            results[name] = (samples, sends, tput)
            if not late:
                deploy(nimbus, "cron", report, CRON_APP)
                late = cron_jitter(nimbus, args.cron_seconds)
        finally:
            nimbus.stop()
            shutil.rmtree(nimbus.data, ignore_errors=True)

    for name, (samples, sends, tput) in results.items():
        print(f"\n[{name}] queue latency, send → handler start ({len(samples)} messages at "
              f"{args.rate}/s, C handler):")
        print(f"  p50 {pct(samples, 50):.2f} ms   p99 {pct(samples, 99):.2f} ms   "
              f"max {max(samples):.2f} ms   mean {statistics.mean(samples):.2f} ms")
        print(f"  anchor, same run — the send's own round trip (HTTP + durable write): "
              f"p50 {pct(sends, 50):.2f} ms   p99 {pct(sends, 99):.2f} ms")
        print(f"[{name}] end-to-end throughput, trivial handler (wrk -t2 -c32 -d{args.duration}s, "
              f"trigger concurrency 32, batch 10):")
        print(f"  {tput['accepted']} accepted ({tput['rejected']} rejected), sent at "
              f"{tput['send_rps']:.0f}/s; drained after {tput['seconds']:.1f} s → "
              f"{tput['e2e_rps']:.0f} events/s end to end")
    print("\nreference (AWS, published): SQS → Lambda 16 ms p50 / 105 ms p99")
    print(f"\ncron jitter ('* * * * * *', JS handler, {len(late)} ticks): "
          f"p50 {pct(late, 50):.1f} ms   p99 {pct(late, 99):.1f} ms   max {max(late):.1f} ms")


if __name__ == "__main__":
    main()
