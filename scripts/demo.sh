#!/usr/bin/env bash
# Installs lockbridge into .venv and runs the daemon on the embedded demo: simulated locks,
# SQLite state in ./state/demo, nothing from the internet. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "lockbridge demo: in another terminal run  .venv/bin/lockbridge status -c config/demo.yaml" >&2
exec .venv/bin/lockbridge run -c "${1:-config/demo.yaml}"
