#!/usr/bin/env bash
# Builds guests/c/<name>/app.c into a wasi:http/proxy component.
#   bash guests/c/build.sh <name> <out.wasm>
# Needs clang-14, wasi-libc, wit-bindgen (cargo) and wasm-tools (pip); scripts/setup-toolchains.sh
# installs them. Bindings are generated per build into a temporary directory.
set -euo pipefail
name="$1"; out="$2"
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/$name/app.c"
[ -f "$src" ] || { echo "no such guest: $src" >&2; exit 2; }
adapter=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/wasi-preview1-component-adapter-provider-48.0.8/artefacts/wasi_snapshot_preview1.reactor.wasm 2>/dev/null | head -n1)
[ -n "$adapter" ] || { echo "reactor adapter missing: run scripts/setup-toolchains.sh" >&2; exit 2; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
wit-bindgen c "$here/../wit" --world http-guest --out-dir "$work/gen" >"$work/bindgen.log" 2>&1 \
  || { cat "$work/bindgen.log" >&2; exit 1; }
clang-14 --target=wasm32-wasi -O2 -mexec-model=reactor -fuse-ld=lld \
  -I "$work/gen" -I "$here/common" \
  "$src" "$here/common/nimbus_http.c" "$work/gen/http_guest.c" "$work/gen/http_guest_component_type.o" \
  -o "$work/app.core.wasm"
wasm-tools component new "$work/app.core.wasm" --adapt "wasi_snapshot_preview1=$adapter" -o "$out"
