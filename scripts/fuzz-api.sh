#!/usr/bin/env bash
# Property-based fuzzing of the control API: runs schemathesis (PyPI) over the OpenAPI spec
# against a real, throwaway `nimbus up` (fresh data dir, free loopback ports) and fails unless
# every response is in the spec: no 5xx, no undocumented status, content type, header or body.
#
#   scripts/fuzz-api.sh                  # docs/openapi.yaml, target/{release,debug}/nimbus
#
# Environment (all optional):
#   NIMBUS_BIN           server binary [default: target/release/nimbus if present, else target/debug/nimbus]
#   NIMBUS_OPENAPI       the spec to fuzz [default: docs/openapi.yaml]
#   FUZZ_MAX_EXAMPLES    test cases per operation and phase [default: 100]
#   FUZZ_SEED            hypothesis seed, for reproducible runs [default: 1]
#   FUZZ_WORKERS         concurrent schemathesis workers [default: 1, see below]
#   FUZZ_CHECKS          schemathesis checks [default: the five conformance checks below]
#   FUZZ_TIMEOUT         seconds before the schemathesis run is killed [default: 900]
#   FUZZ_REPORT_DIR      if set, keep JUnit + NDJSON reports and the server log there
#
# schemathesis lives in a venv at ${XDG_CACHE_HOME:-~/.cache}/nimbus/schemathesis, installed on
# first use (only PyPI is needed); later runs only check it. Exit status: schemathesis's (non-zero
# on any failure or error), or 2 if the server or the tool could not be set up.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

SCHEMATHESIS_SERIES="4.32" # CLI flags differ between 3.x and 4.x: keep the series pinned
venv="${XDG_CACHE_HOME:-$HOME/.cache}/nimbus/schemathesis"
spec="${NIMBUS_OPENAPI:-docs/openapi.yaml}"
max_examples="${FUZZ_MAX_EXAMPLES:-100}"
seed="${FUZZ_SEED:-1}"
workers="${FUZZ_WORKERS:-1}"
checks="${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance}"

say() { printf 'fuzz-api: %s\n' "$*"; }
die() { printf 'fuzz-api: %s\n' "$*" >&2; exit 2; }

# --- the binary --------------------------------------------------------------------------------
if [ -n "${NIMBUS_BIN:-}" ]; then
  bin="$NIMBUS_BIN"; bin_why="from NIMBUS_BIN"
elif [ -x target/release/nimbus ]; then
  bin="target/release/nimbus"; bin_why="release build"
else
  bin="target/debug/nimbus"; bin_why="debug build (no release build found)"
fi
[ -x "$bin" ] || die "no nimbus binary at $bin (build it, or set NIMBUS_BIN)"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
[ -f "$spec" ] || die "no spec at $spec"
case "$spec" in /*) ;; *) spec="$root/$spec" ;; esac

# --- schemathesis (idempotent install) ---------------------------------------------------------
st_version() { "$venv/bin/python" -c 'from importlib.metadata import version; print(version("schemathesis"))' 2>/dev/null; }
if v="$(st_version)" && [ -x "$venv/bin/st" ] && [[ "$v" == "$SCHEMATHESIS_SERIES".* ]]; then
  say "schemathesis $v already installed in $venv"
else
  say "installing schemathesis $SCHEMATHESIS_SERIES.* into $venv"
  python3 -m venv "$venv" || die "python3 -m venv failed"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_SERIES.*" \
    || die "pip install schemathesis failed"
  v="$(st_version)" || die "schemathesis did not install"
  say "schemathesis $v installed"
fi

# A spec that does not parse would make schemathesis fail with a long trace: say where it is.
"$venv/bin/python" - "$spec" <<'EOF' || die "the spec does not parse: fix it first"
import sys, yaml
try:
    yaml.safe_load(open(sys.argv[1]))
except yaml.YAMLError as e:
    print(f"fuzz-api: {sys.argv[1]}: {e}", file=sys.stderr)
    sys.exit(1)
EOF

# --- a throwaway server ------------------------------------------------------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/nimbus-fuzz.XXXXXX")"
server_pid=""
cleanup() {
  local rc=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "${FUZZ_REPORT_DIR:-}" ] && [ -f "$tmp/server.log" ]; then
    mkdir -p "$FUZZ_REPORT_DIR" && cp "$tmp/server.log" "$FUZZ_REPORT_DIR/server.log" || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api_port="$(free_port)"
mkdir -m 700 "$tmp/data"
bin_built="$(date -u -r "$bin" '+%Y-%m-%d %H:%M:%S UTC')"
say "binary: $bin ($bin_why, built $bin_built)"
say "spec: $spec"
say "work tree: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
say "machine: nproc=$(nproc), kernel $(uname -r), $(uname -m)"
say "starting nimbus up (data dir $tmp/data, control API 127.0.0.1:$api_port)"
NIMBUS_CONFIG="$tmp/config.json" "$bin" up --data-dir "$tmp/data" \
  --listen 127.0.0.1:0 --api-listen "127.0.0.1:$api_port" --s3-listen 127.0.0.1:0 \
  >"$tmp/server.log" 2>&1 &
server_pid=$!

api="" token=""
for _ in $(seq 1 300); do
  kill -0 "$server_pid" 2>/dev/null || { tail -n 40 "$tmp/server.log" >&2; die "nimbus up exited during start"; }
  if [ -s "$tmp/config.json" ]; then
    api="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$tmp/config.json" 2>/dev/null || true)"
    token="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$tmp/config.json" 2>/dev/null || true)"
    if [ -n "$api" ] && [ -n "$token" ] && curl -fsS -o /dev/null --max-time 2 "$api/v1/health" 2>/dev/null; then
      break
    fi
  fi
  api=""
  sleep 0.1
done
[ -n "$api" ] || { tail -n 40 "$tmp/server.log" >&2; die "the control API did not answer /v1/health within 30 s"; }
api="${api%/}"
say "server ready at $api (pid $server_pid)"

# --- the run -----------------------------------------------------------------------------------
# The token goes in through the config file and the environment, not argv (where ps shows it).
# GET /v1/logs?follow=true is an NDJSON stream that never ends (by design): schemathesis reads only
# text/event-stream incrementally, so such a request can only time out. Pin follow=false there;
# everything else about the operation is still fuzzed.
cat >"$tmp/schemathesis.toml" <<'EOF'
headers = { Authorization = "Bearer ${NIMBUS_FUZZ_TOKEN}" }

[[operations]]
include-path = "/v1/logs"
include-method = "GET"
parameters = { "query.follow" = "false" }
EOF
# Run from the temp dir: schemathesis and hypothesis write their state into the working directory.
# One worker: with several, hypothesis calls ast.parse from concurrent threads, which CPython 3.11
# does not survive ("SystemError: AST constructor recursion depth mismatch", a runtime error that
# fails the run); the whole run takes well under a minute on 2 cores anyway (100 examples: ~25 s).
# --continue-on-failure: report every distinct failure of an operation, not only its first.
cmd=("$venv/bin/st" --config-file "$tmp/schemathesis.toml" run "$spec"
  --url "$api"
  --checks "$checks"
  --mode all
  --max-examples "$max_examples"
  --seed "$seed"
  --workers "$workers"
  --continue-on-failure
  --request-timeout 10
  --generation-database none
  --suppress-health-check too_slow,filter_too_much,data_too_large
  --no-color
)
report_dir="${FUZZ_REPORT_DIR:-$tmp/report}"
case "$report_dir" in /*) ;; *) report_dir="$root/$report_dir" ;; esac
cmd+=(--report junit,ndjson --report-dir "$report_dir")

say "command: ${cmd[*]}"
sed 's/^/fuzz-api:   schemathesis.toml| /' "$tmp/schemathesis.toml"
echo
start=$(date +%s)
set +e
# A hard stop, in case the server stops answering without closing connections (exit 124).
# --foreground keeps schemathesis in this process group, so that Ctrl-C reaches it.
(cd "$tmp" && NIMBUS_FUZZ_TOKEN="$token" timeout --foreground -k 10 "${FUZZ_TIMEOUT:-900}" "${cmd[@]}" 2>&1) | sed -e "s/$token/\$NIMBUS_TOKEN/g" | tee "$tmp/st.log"
rc=${PIPESTATUS[0]}
set -e
elapsed=$(( $(date +%s) - start ))

# --- summary -----------------------------------------------------------------------------------
panics=$(grep -c 'panicked' "$tmp/server.log" || true)
echo
say "summary"
say "  schemathesis $v, seed $seed, max examples $max_examples per operation and phase, $workers workers"
say "  machine: nproc=$(nproc), kernel $(uname -r)"
say "  binary: $bin ($bin_why, built $bin_built)"
say "  spec: $spec"
say "  wall time: ${elapsed}s"
say "  server panics logged: $panics"
# schemathesis's own totals: the Failures/Errors blocks of its SUMMARY, the test-case count, the last line.
awk '/^=+ SUMMARY =+$/ {on=1; next} on && /^(Failures|Errors|Test cases):$/ {show=1} on && /^(Warnings|Reports|Seed):/ {show=0}
     on && show && NF {print} on && /^=+ .* in [0-9.]+s =+$/ {print}' "$tmp/st.log" | sed 's/^/fuzz-api:   /' || true
# Every failed check, deduplicated by operation, check, status and content type, from the NDJSON report.
"$venv/bin/python" - "$report_dir" <<'EOF' || true
import base64, glob, json, os, sys
files = sorted(glob.glob(os.path.join(sys.argv[1], "ndjson-*.ndjson")), key=os.path.getmtime)
seen = {}
for line in open(files[-1]) if files else []:
    event = json.loads(line)
    scenario = event.get("ScenarioFinished") or {}
    recorder = scenario.get("recorder") or {}
    for case_id, checks in (recorder.get("checks") or {}).items():
        for check in checks:
            if check.get("status") != "failure":
                continue
            failure = (check.get("failure_info") or {}).get("failure") or {}
            response = (recorder.get("interactions") or {}).get(case_id, {}).get("response") or {}
            content_type = (response.get("headers", {}).get("content-type") or ["-"])[0]
            key = (failure.get("operation") or recorder.get("label"), failure.get("code") or "", check["name"],
                   str(response.get("status_code", "no response")), content_type)
            if key not in seen:
                body = base64.b64decode((response.get("content") or {}).get("$base64") or "").decode("utf-8", "replace")
                seen[key] = [0, " ".join(body.split())[:120]]
            seen[key][0] += 1
print(f"fuzz-api:   distinct failures: {len(seen)}")
for (op, code, check, status, ctype), (count, body) in sorted(seen.items()):
    print(f"fuzz-api:     {op}: {code} {check}, got {status} {ctype} (x{count}){': ' + body if body else ''}")
EOF
if [ -n "${FUZZ_REPORT_DIR:-}" ]; then say "  reports: $report_dir"; fi
if [ "$rc" -eq 0 ] && [ "$panics" -eq 0 ]; then
  say "PASS: no 5xx and no response outside the spec"
else
  [ "$rc" -eq 0 ] && rc=1
  say "FAIL (schemathesis exit $rc): see the failures above"
fi
exit "$rc"
