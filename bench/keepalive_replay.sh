#!/usr/bin/env bash
# Keep-alive replay: a synthetic week shaped like the Azure Functions 2019 trace
# (../shared/data/azure2019-cdfs) through the keep-alive policies the engine runs
# (crates/scaling). Prints the machine, the command and, per policy, cold starts and idle memory.
# Usage (from the repository root): bash bench/keepalive_replay.sh [--apps 2000] [--seed 1] ...
set -euo pipefail
cd "$(dirname "$0")/.."
data="${NIMBUS_TRACE_DATA:-../shared/data/azure2019-cdfs}"
cargo build --release --locked -q -p nimbus-scaling --example keepalive_replay
echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -sr), commit $(git rev-parse --short HEAD)"
echo "command: target/release/examples/keepalive_replay --data $data $*"
target/release/examples/keepalive_replay --data "$data" "$@"
