#!/usr/bin/env bash
# Builds a Python app directory into a wasi:http/proxy@0.2.12 component with componentize-py.
#   bash guests/py/build.sh <app dir> <out.wasm> [world]
# world: `http-guest` (default: plain wasi:http/proxy) or `nimbus-guest` (plus wasi:keyvalue;
# see guests/wit/world.wit).
# The app dir holds `app.py` (the module componentize-py is told to build: `componentize app`)
# defining `class IncomingHandler(exports.IncomingHandler)` with `handle(request, response_out)`;
# other modules/packages in the app dir can be imported from it.
set -euo pipefail
[ $# -eq 2 ] || [ $# -eq 3 ] || { echo "usage: $0 <app dir> <out.wasm> [world]" >&2; exit 2; }
world="nimbus:guest/${3:-http-guest}"
here="$(cd "$(dirname "$0")" && pwd)"
app="$(cd "$1" && pwd)"; out="$(realpath -m "$2")"
[ -f "$app/app.py" ] || { echo "no app.py in $app" >&2; exit 2; }
command -v componentize-py >/dev/null || { echo "componentize-py missing: run scripts/setup-toolchains.sh" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
cd "$app"
componentize-py -d "$here/../wit" -w "$world" componentize app -o "$out.tmp"
mv "$out.tmp" "$out"
