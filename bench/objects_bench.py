#!/usr/bin/env python3
"""Object-storage benchmark: S3 PUT/GET throughput of `nimbus up` against the raw ceiling of the
same machine measured in the same run. Usage (from the repository root):

    python3 bench/objects_bench.py [--big-mib 256] [--small 1000] [--rounds 3]

- Objects of 1 MiB (100 of them, one at a time and 8 at a time) and 256 MiB (one, --rounds times), sent and fetched with curl
  over presigned URLs (curl is C: the client costs little next to the server), one keep-alive
  connection per curl process.
- Small objects (4 KiB): --small PUTs then GETs with `curl --parallel` (16 at once), ops/s.
- Peak RSS of the nimbus process across a 1 GiB upload.
- Ceilings, same run, same disk: `dd ... conv=fsync` (disk write incl. fsync), `dd` read from the
  page cache, and socat over loopback (what one TCP stream carries). The PUT ceiling is the lower
  of disk write and loopback; the GET ceiling the lower of page-cache read and loopback.

Needs curl and socat (Debian) and the boto3 venv of scripts/setup-s3-clients.sh (to presign).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from serve_bench import NIMBUS, ROOT, Nimbus, free_port, machine, rss_mib, run

VENV = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "nimbus", "s3-clients")


def timed(cmd, **kw):
    print("+", " ".join(cmd) if len(" ".join(cmd)) < 300 else " ".join(cmd)[:300] + " …", flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - start


def presign(endpoint, key, pairs):
    """Presigned URLs for (method, bucket, object) triples, via boto3 in the venv."""
    code = r"""
import json, sys, boto3
from botocore.config import Config
endpoint, access, secret = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                  region_name="us-east-1", config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
out = []
for method, bucket, obj in json.load(sys.stdin):
    if method == "create":
        s3.create_bucket(Bucket=bucket)
        out.append(None)
        continue
    op = {"PUT": "put_object", "GET": "get_object"}[method]
    out.append(s3.generate_presigned_url(op, Params={"Bucket": bucket, "Key": obj}, ExpiresIn=3600))
print(json.dumps(out))
"""
    proc = subprocess.run([os.path.join(VENV, "bin", "python"), "-c", code, endpoint,
                           key["access_key_id"], key["secret_access_key"]],
                          input=json.dumps(pairs), capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def curl_config(path, entries):
    """A curl -K file: one transfer per (url, upload file or None)."""
    with open(path, "w") as f:
        for url, upload in entries:
            f.write(f'url = "{url}"\n')
            if upload:
                f.write(f'upload-file = "{upload}"\n')
            f.write('output = "/dev/null"\n')


def mib_s(nbytes, seconds):
    return nbytes / (1 << 20) / seconds


def ceiling(work, mib):
    src = os.path.join(work, "ceiling.bin")
    t = timed(["dd", "if=/dev/zero", f"of={src}", "bs=1M", f"count={mib}", "conv=fsync", "status=none"])
    disk_write = mib / t
    t = timed(["dd", f"if={src}", "of=/dev/null", "bs=1M", "status=none"])
    cache_read = mib / t
    port = free_port()
    sink = subprocess.Popen(["socat", "-u", "-b", "1048576", f"TCP-LISTEN:{port},reuseaddr", "OPEN:/dev/null"])
    time.sleep(0.3)
    t = timed(["socat", "-u", "-b", "1048576", f"FILE:{src}", f"TCP:127.0.0.1:{port}"])
    sink.wait(timeout=30)
    loopback = mib / t
    os.unlink(src)
    return disk_write, cache_read, loopback


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-mib", type=int, default=256)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    run(["cargo", "build", "--release", "--locked", "-p", "nimbus-cli"], cwd=ROOT)
    run(["bash", "scripts/setup-s3-clients.sh"], cwd=ROOT)

    print(f"\nmachine: {machine()}")
    print(f"nimbus: {NIMBUS}\n")
    s3_port = free_port()
    nimbus = Nimbus(extra_args=["--s3-listen", f"127.0.0.1:{s3_port}"]).start()
    work = tempfile.mkdtemp(prefix="nimbus-objbench-", dir=nimbus.data)
    results = {}
    try:
        key = json.loads(subprocess.run([NIMBUS, "keys", "create", "--json"], env=nimbus.env,
                                        check=True, capture_output=True, text=True).stdout)
        endpoint = f"http://127.0.0.1:{s3_port}"
        presign(endpoint, key, [["create", "bench", None]])

        # Peak RSS across a 1 GiB upload, first, in a fresh process (a sparse file: the bytes
        # are zeros, the path through the server is the same).
        before = rss_mib(nimbus.proc.pid)
        gib = os.path.join(work, "1g.bin")
        with open(gib, "wb") as f:
            f.truncate(1 << 30)
        (put_url,) = presign(endpoint, key, [["PUT", "bench", "one-gib"]])
        t = timed(["curl", "-sS", "--fail", "-o", "/dev/null", "-T", gib, put_url])
        results["1GiB"] = (before, rss_mib(nimbus.proc.pid), mib_s(1 << 30, t))
        os.unlink(gib)
        # Ceilings on the same disk (the data dir's) and loopback.
        disk_write, cache_read, loopback = ceiling(work, args.big_mib)
        results["ceiling"] = (disk_write, cache_read, loopback)

        # 1 MiB x 100.
        one = os.path.join(work, "1m.bin")
        with open(one, "wb") as f:
            f.write(os.urandom(1 << 20))
        n = 100
        urls = presign(endpoint, key, [["PUT", "bench", f"m/{i}"] for i in range(n)] +
                       [["GET", "bench", f"m/{i}"] for i in range(n)])
        cfg = os.path.join(work, "1m.put")
        curl_config(cfg, [(u, one) for u in urls[:n]])
        t_put = timed(["curl", "-sS", "--fail", "-K", cfg])
        cfg = os.path.join(work, "1m.get")
        curl_config(cfg, [(u, None) for u in urls[n:]])
        t_get = timed(["curl", "-sS", "--fail", "-K", cfg])
        results["1MiB"] = (mib_s(n << 20, t_put), mib_s(n << 20, t_get), n / t_put, n / t_get)
        # The same, 8 transfers at a time.
        urls = presign(endpoint, key, [["PUT", "bench", f"p/{i}"] for i in range(n)] +
                       [["GET", "bench", f"p/{i}"] for i in range(n)])
        cfg = os.path.join(work, "1m.pput")
        curl_config(cfg, [(u, one) for u in urls[:n]])
        t_put = timed(["curl", "-sS", "--fail", "--parallel", "--parallel-max", "8", "-K", cfg])
        cfg = os.path.join(work, "1m.pget")
        curl_config(cfg, [(u, None) for u in urls[n:]])
        t_get = timed(["curl", "-sS", "--fail", "--parallel", "--parallel-max", "8", "-K", cfg])
        results["1MiB-8"] = (mib_s(n << 20, t_put), mib_s(n << 20, t_get), n / t_put, n / t_get)

        # Big objects.
        big = os.path.join(work, "big.bin")
        with open(big, "wb") as f:
            for _ in range(args.big_mib):
                f.write(os.urandom(1 << 20))
        puts, gets = [], []
        for r in range(args.rounds):
            put_url, get_url = presign(endpoint, key, [["PUT", "bench", f"big/{r}"], ["GET", "bench", f"big/{r}"]])
            puts.append(timed(["curl", "-sS", "--fail", "-o", "/dev/null", "-T", big, put_url]))
            gets.append(timed(["curl", "-sS", "--fail", "-o", "/dev/null", get_url]))
        results["big"] = (mib_s(args.big_mib << 20, min(puts)), mib_s(args.big_mib << 20, min(gets)))
        os.unlink(big)

        # Small objects, 16 at once.
        small = os.path.join(work, "4k.bin")
        with open(small, "wb") as f:
            f.write(os.urandom(4096))
        urls = presign(endpoint, key, [["PUT", "bench", f"s/{i}"] for i in range(args.small)] +
                       [["GET", "bench", f"s/{i}"] for i in range(args.small)])
        cfg = os.path.join(work, "4k.put")
        curl_config(cfg, [(u, small) for u in urls[:args.small]])
        t_put = timed(["curl", "-sS", "--fail", "--parallel", "--parallel-max", "16", "-K", cfg])
        cfg = os.path.join(work, "4k.get")
        curl_config(cfg, [(u, None) for u in urls[args.small:]])
        t_get = timed(["curl", "-sS", "--fail", "--parallel", "--parallel-max", "16", "-K", cfg])
        results["4KiB"] = (args.small / t_put, args.small / t_get)

    finally:
        nimbus.stop()

    disk_write, cache_read, loopback = results["ceiling"]
    put_ceiling, get_ceiling = min(disk_write, loopback), min(cache_read, loopback)
    print("\nCeilings, same run: "
          f"disk write with fsync {disk_write:,.0f} MiB/s, page-cache read {cache_read:,.0f} MiB/s, "
          f"loopback TCP (socat) {loopback:,.0f} MiB/s → PUT ceiling {put_ceiling:,.0f}, GET ceiling {get_ceiling:,.0f} MiB/s\n")
    print("| objects | PUT MiB/s | PUT % of ceiling | GET MiB/s | GET % of ceiling |")
    print("| --- | ---: | ---: | ---: | ---: |")
    p, g, pops, gops = results["1MiB"]
    print(f"| 1 MiB × 100 (sequential, keep-alive) | {p:,.0f} ({pops:,.0f} ops/s) | {100 * p / put_ceiling:.0f}% | {g:,.0f} ({gops:,.0f} ops/s) | {100 * g / get_ceiling:.0f}% |")
    p, g, pops, gops = results["1MiB-8"]
    print(f"| 1 MiB × 100 (8 at a time) | {p:,.0f} ({pops:,.0f} ops/s) | {100 * p / put_ceiling:.0f}% | {g:,.0f} ({gops:,.0f} ops/s) | {100 * g / get_ceiling:.0f}% |")
    p, g = results["big"]
    print(f"| {args.big_mib} MiB (best of {args.rounds}) | {p:,.0f} | {100 * p / put_ceiling:.0f}% | {g:,.0f} | {100 * g / get_ceiling:.0f}% |")
    sp, sg = results["4KiB"]
    print(f"\n4 KiB objects, 16 in parallel: PUT {sp:,.0f} ops/s, GET {sg:,.0f} ops/s")
    before, after, speed = results["1GiB"]
    print(f"1 GiB upload: {speed:,.0f} MiB/s; nimbus peak RSS {before:.0f} MiB before, {after:.0f} MiB after")


if __name__ == "__main__":
    sys.exit(main())
