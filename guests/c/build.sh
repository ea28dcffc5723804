#!/usr/bin/env bash
# Builds guests/c/<name>/app.c (+ guests/c/common) into a component exporting
# wasi:http/incoming-handler@0.2.12 (the wasi:http/proxy world of guests/wit).
#   bash guests/c/build.sh <name> <out.wasm> [world]
# world: `http-guest` (default; plain wasi:http/proxy), `nimbus-guest` (plus wasi:keyvalue,
# wasi:config, wasi:blobstore) or `event-guest` (the same imports, exporting
# nimbus:events/handler@0.1.0 instead of wasi:http).
# Needs clang-14 + wasi-libc (apt), wit-bindgen (cargo), wasm-tools (pip) and the wasi preview1
# reactor adapter (crates.io); `bash scripts/setup-toolchains.sh` installs all of them.
# Environment: NIMBUS_ADAPTER=<reactor adapter .wasm> overrides the adapter lookup;
#              CFLAGS are appended to the compiler flags.
set -euo pipefail
[ $# -eq 2 ] || [ $# -eq 3 ] || { echo "usage: $0 <name> <out.wasm> [world]" >&2; exit 2; }
name="$1"; out="$2"; world="${3:-http-guest}"
stem="${world//-/_}" # wit-bindgen names its files and C identifiers after the world
defines=""
[ "$world" = "http-guest" ] || defines="-DNIMBUS_GUEST_WORLD"
common="$(cd "$(dirname "$0")" && pwd)/common/nimbus_http.c"
expected_export="wasi:http/incoming-handler@0.2.12"
if [ "$world" = "event-guest" ]; then
  defines="-DNIMBUS_EVENT_WORLD"
  common="" # the HTTP response helpers need the incoming-handler export
  expected_export="nimbus:events/handler@0.1.0"
fi
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/$name/app.c"
[ -f "$src" ] || { echo "no such guest: $src" >&2; exit 2; }
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

adapter="${NIMBUS_ADAPTER:-}"
if [ -z "$adapter" ]; then
  adapter=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/wasi-preview1-component-adapter-provider-48.0.8/artefacts/wasi_snapshot_preview1.reactor.wasm 2>/dev/null | head -n1 || true)
fi
[ -n "$adapter" ] && [ -f "$adapter" ] || { echo "reactor adapter missing: run scripts/setup-toolchains.sh" >&2; exit 2; }

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
wit-bindgen c "$here/../wit" --world "$world" --out-dir "$work/gen" >"$work/bindgen.log" 2>&1 \
  || { cat "$work/bindgen.log" >&2; exit 1; }
# -mexec-model=reactor: a library whose exports the host calls (no main); debug info stripped
# (the name section stays, so traps still show function names).
# shellcheck disable=SC2086
clang-14 --target=wasm32-wasi -O2 -mexec-model=reactor -fuse-ld=lld -Wall -Wl,--strip-debug \
  -I "$work/gen" -I "$here/common" $defines \
  "$src" $common "$work/gen/$stem.c" "$work/gen/${stem}_component_type.o" \
  ${CFLAGS:-} -o "$work/app.core.wasm"
wasm-tools component new "$work/app.core.wasm" --adapt "wasi_snapshot_preview1=$adapter" -o "$work/app.wasm"
wasm-tools component wit "$work/app.wasm" | grep -q "export $expected_export;" \
  || { echo "built component does not export $expected_export" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
mv "$work/app.wasm" "$out"
