# Sourced by test.sh: installs the real third-party peers the tests start, only when missing.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
# systemd-analyze checks systemd/lockbridge.service; installing the package does not make systemd
# the init system (that is systemd-sysv), so it is safe on any Debian box.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# The status page is checked in a real browser: Debian's Chromium, run headless.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The soak steps the daemon's wall clock with Debian's libfaketime (LD_PRELOAD).
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need_apt+=(libfaketime)
# The Matter tests' server (the CHIP SDK) links Debian's libnl.
ls /usr/lib/*/libnl-route-3.so.200 >/dev/null 2>&1 || need_apt+=(libnl-3-200 libnl-route-3-200)
# The fleet tests start their own NATS cluster and use PostgreSQL (a database of their own on
# the machine's server when one answers, else initdb in a temp dir).
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need_apt+=(nats-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Z-Wave tests run against the real zwave-js stack, pinned in tests/zwave/package-lock.json:
# `npm ci` only when node_modules is missing or the lock file changed (a stamp names its hash).
if command -v npm >/dev/null 2>&1; then
  zwave_stamp="tests/zwave/node_modules/.lock-$(sha1sum tests/zwave/package-lock.json | cut -c1-12)"
  if [ ! -f "$zwave_stamp" ]; then
    echo "installing the zwave-js test stack (npm ci in tests/zwave) ..." >&2
    (cd tests/zwave && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$zwave_stamp"
  fi
else
  echo "npm is missing: the Z-Wave tests against the real zwave-js stack will be skipped" >&2
fi
# Matter tests run a virtual lock on matter.js (pinned in tests/matter/package-lock.json) and the
# real python-matter-server (the CHIP SDK) in a venv of its own, tests/matter/.venv: a test peer,
# not a lockbridge dependency. The CHIP SDK needs Debian's libnl (above).
if command -v npm >/dev/null 2>&1; then
  matter_stamp="tests/matter/node_modules/.lock-$(sha1sum tests/matter/package-lock.json | cut -c1-12)"
  if [ ! -f "$matter_stamp" ]; then
    echo "installing the matter.js virtual lock (npm ci in tests/matter) ..." >&2
    (cd tests/matter && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$matter_stamp"
  fi
fi
if [ ! -x tests/matter/.venv/bin/matter-server ]; then
  echo "installing python-matter-server into tests/matter/.venv ..." >&2
  python3 -m venv tests/matter/.venv
  tests/matter/.venv/bin/pip install -q 'python-matter-server[server]==7.0.1'
fi
