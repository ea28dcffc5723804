#!/usr/bin/env python3
"""Deploy-to-live times of a JS app made by `nimbus new`: the first deploy, an unchanged
redeploy and a redeploy after a one-line change, each timed from `nimbus deploy` starting to
the new version answering. Usage (from the repository root):

    python3 bench/deploy_bench.py [--baseline OLD/nimbus] [--rounds 3]

With --baseline, an older build runs the same steps in the same sitting (each build gets its
own server and app directory; npm's cache is shared, so only the very first `npm install` of
the run downloads anything). Builds Nimbus (release) first.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_bench import NIMBUS, ROOT, Nimbus, machine, run  # noqa: E402


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def deploy_until(nimbus, app_dir, url, expect):
    """Seconds from `nimbus deploy` to `url` answering with `expect` in its body; None if the
    deploy failed (its error is printed)."""
    start = time.perf_counter()
    done = subprocess.run([nimbus.binary, "deploy", app_dir], env=nimbus.env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        print(f"deploy failed ({nimbus.binary}): {done.stderr.strip()[-300:]}")
        return None
    while expect not in get(url):
        time.sleep(0.01)
    return time.perf_counter() - start


def one_round(binary):
    nimbus = Nimbus(binary=binary).start()
    work = tempfile.mkdtemp(prefix="nimbus-deploy-bench-")
    try:
        subprocess.run([binary, "new", "benchapp", "--lang", "js", "--dir", work], env=nimbus.env,
                       check=True, stdout=subprocess.DEVNULL)
        app = os.path.join(work, "benchapp")
        url = f"http://127.0.0.1:{nimbus.port}/benchapp"
        first = deploy_until(nimbus, app, url, "Hello from benchapp!")
        unchanged = deploy_until(nimbus, app, url, "Hello from benchapp!")
        source = os.path.join(app, "src", "index.js")
        with open(source) as f:
            text = f.read()
        with open(source, "w") as f:
            f.write(text.replace("Hello from benchapp!", "Hello again from benchapp!"))
        changed = deploy_until(nimbus, app, url, "Hello again from benchapp!")
        return first, unchanged, changed
    finally:
        nimbus.stop()
        subprocess.run(["rm", "-rf", work, nimbus.data])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", help="an older nimbus binary, measured alternately with this one")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    run(["cargo", "build", "--release", "--locked", "-p", "nimbus-cli"], cwd=ROOT)
    run(["bash", "scripts/setup-toolchains.sh"], cwd=ROOT)
    builds = [("nimbus", NIMBUS)] + ([("nimbus baseline", args.baseline)] if args.baseline else [])
    print(f"\nmachine: {machine()}")
    rows = []
    for _ in range(args.rounds):
        for name, binary in builds:
            rows.append((name, *one_round(binary)))
    print("\n| build | first deploy s | unchanged redeploy s | one-line change s |")
    print("| --- | ---: | ---: | ---: |")
    def cell(seconds, digits):
        return "failed" if seconds is None else f"{seconds:.{digits}f}"
    for name, first, unchanged, changed in rows:
        print(f"| {name} | {cell(first, 1)} | {cell(unchanged, 2)} | {cell(changed, 1)} |")


if __name__ == "__main__":
    main()
