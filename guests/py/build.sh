#!/usr/bin/env bash
# Builds a Python app directory (with app.py) into a wasi:http/proxy component.
#   bash guests/py/build.sh <app dir> <out.wasm>
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
app="$(cd "$1" && pwd)"; out="$(realpath -m "$2")"
cd "$app"
componentize-py -d "$here/../wit" -w wasi:http/proxy@0.2.12 componentize app -o "$out"
