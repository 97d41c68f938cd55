#!/usr/bin/env bash
# Shared set-up: a virtualenv in .venv with lockbridge installed editable, plus the given extras.
# Installs Debian's python3-venv first when the machine lacks it (a fresh Debian 12 does).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  # Install Debian packages only when a command they provide is missing.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "lockbridge needs Python 3.11 or newer as \$PYTHON or python3" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    apt_install python3-venv
    "$PY" -m venv .venv
  fi
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-${extras//,/_}"
needs_compiler() {
  # python-miio (the `miio` extra, and the tests' miIO lock simulator) pulls netifaces, which
  # has no wheel for Python 3.11 and is built from source: a C compiler and Python's headers.
  case ",$extras," in *,miio,*|*,test,*) ;; *) return 1 ;; esac
  command -v cc >/dev/null 2>&1 || return 0
  ! "$PY" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
}
if [ ! -f "$stamp" ]; then
  if needs_compiler; then
    echo "installing a C compiler and Python headers (to build netifaces for python-miio) ..." >&2
    apt_install gcc python3-dev
  fi
  echo "installing lockbridge${extras:+[$extras]} into .venv ..." >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
