#!/usr/bin/env bash
# Installs everything the tests need (Python deps, and Debian or npm peers only when missing),
# then runs the linters and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,mqtt,zwave,nats,fleet
source scripts/peers.sh
.venv/bin/ruff check .
.venv/bin/mypy
# Two worker processes, each test file kept on one (its module fixtures, a peer it starts once).
.venv/bin/python -m pytest -n 2 --dist loadfile --durations=20 "$@"
