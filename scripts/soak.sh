#!/usr/bin/env bash
# The chaos soak (docs/reliability.md): every fault at once against a real daemon, then the
# invariants. Usage: bash scripts/soak.sh [--minutes N] [--seed S] [--workdir DIR] [--skip FAULT]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  bash scripts/setup.sh test,mqtt,zwave
fi
source scripts/peers.sh
exec .venv/bin/python -m tests.soak "$@"
