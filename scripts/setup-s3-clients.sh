#!/usr/bin/env bash
# Installs the real S3 clients the object-storage tests drive — boto3 and the aws CLI (PyPI) —
# into a venv at ${XDG_CACHE_HOME:-~/.cache}/nimbus/s3-clients. Idempotent: a second run only
# checks. Prints one line per step; non-zero exit if a step fails.
set -euo pipefail
venv="${XDG_CACHE_HOME:-$HOME/.cache}/nimbus/s3-clients"
BOTO3_SERIES="1.40"
AWSCLI_SERIES="1.42"

step() { printf 'setup: %-22s %s\n' "$1" "$2"; }

if [ -x "$venv/bin/aws" ] && "$venv/bin/python" -c "import boto3" 2>/dev/null; then
  step "s3 clients" "ok ($("$venv/bin/python" -c 'import boto3; print("boto3", boto3.__version__)'), $("$venv/bin/aws" --version 2>&1 | cut -d' ' -f1))"
  exit 0
fi
step "s3 clients" "creating $venv (boto3 $BOTO3_SERIES.*, awscli $AWSCLI_SERIES.*)"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "boto3==$BOTO3_SERIES.*" "awscli==$AWSCLI_SERIES.*"
"$venv/bin/python" -c "import boto3" && [ -x "$venv/bin/aws" ] || { step "s3 clients" "FAILED"; exit 1; }
step "s3 clients" "installed"
