#!/usr/bin/env bash
# The second demo (docs/drivers/zigbee.md, docs/drivers/miio.md): the daemon with a simulated
# Zigbee radio (two door locks joining it) and a simulated Xiaomi lock on 127.0.0.42, API on
# 127.0.0.1:8789. Installs what the simulators need (the test extra). Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,zigbee,miio
cat >&2 <<MSG
lockbridge radio demo; open http://127.0.0.1:8789/status, or in another terminal:
  .venv/bin/lockbridge status -c config/demo-radios.yaml
MSG
exec env PYTHONPATH=. .venv/bin/python scripts/demo_radios.py "${1:-config/demo-radios.yaml}"
