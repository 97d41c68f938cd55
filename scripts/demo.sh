#!/usr/bin/env bash
# Installs lockbridge into .venv and runs the daemon on the embedded demo: simulated locks,
# SQLite state in ./state/demo, and the reference upstream server (`lockbridge upstream-dev`)
# on 127.0.0.1:8788 so the sync can be watched too. Nothing from the internet. Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
state=state/demo
mkdir -p "$state"
chmod 700 "$state"
# The beach house's sample booking feed (config/demo.yaml, docs/ical.md), dated from today.
.venv/bin/python scripts/demo_feed.py "$state/beach-house.ics"
token="$state/upstream.token"
if [ ! -s "$token" ]; then
  (umask 077; .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$token")
fi
.venv/bin/lockbridge upstream-dev --listen 127.0.0.1:8788 --db "$state/upstream.db" \
    --token-file "$token" --log-level warning &
upstream=$!
trap 'kill "$upstream" 2>/dev/null || true; wait "$upstream" 2>/dev/null || true' EXIT
cat >&2 <<MSG
lockbridge demo; open http://127.0.0.1:8787/status in a browser, or in another terminal:
  .venv/bin/lockbridge status -c config/demo.yaml              # locks and codes (PINs masked)
  .venv/bin/lockbridge runs -c config/demo.yaml                # reservations becoming codes
  .venv/bin/lockbridge upstream-send --bridge demo-bridge --token-file $token \\
      '{"action": "snapshot"}'                                  # a command from "the cloud"
MSG
.venv/bin/lockbridge run -c "${1:-config/demo.yaml}"
