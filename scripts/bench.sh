#!/usr/bin/env bash
# Installs lockbridge into .venv (when needed) and runs every benchmark scenario; prints a table
# and writes bench/results/latest.json. Extra arguments go to `python -m bench.run` (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m bench.run "$@"
