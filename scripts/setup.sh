#!/usr/bin/env bash
# Install everything bullet_py's demo and tests need, on a fresh Debian machine or again.
# Python packages go into .venv in the project, never into the system Python (a stock
# Debian or Ubuntu refuses that: PEP 668); the other scripts run .venv/bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    echo "setup: apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# tests/deploy start their own nginx (own config and prefix, free ports; never the system
# service) and make a throwaway TLS certificate with openssl.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt_install "${need_apt[@]}"
fi
# The interpreter .venv is made from: $BULLET_PYTHON when set; else the system's
# /usr/bin/python3 when it is 3.11 or newer, since a distribution builds CPython with
# profile-guided and link-time optimisation while pyenv and plain source builds, by
# default, do not (on the 2-core test machine Debian's 3.11 ran a Python loop 1.6x
# and the server's long-poll POST 1.2x as fast as pyenv's 3.11.7,
# docs/benchmarks.md); else python3 on PATH.
is_311() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
if [ -n "${BULLET_PYTHON:-}" ]; then
    python=$BULLET_PYTHON
elif [ -x /usr/bin/python3 ] && is_311 /usr/bin/python3; then
    python=/usr/bin/python3
else
    python=python3
fi
is_311 "$python" \
    || { echo "setup: bullet_py needs Python 3.11 or newer ($python)" >&2; exit 1; }
home_of() { "$1" -c 'import os, sys; print(os.path.dirname(os.path.realpath(sys.executable)))'; }

# .venv: made once, again if it no longer runs (its python3 was removed or upgraded) or
# was made from another interpreter than the one chosen above.
made_from=$(sed -n 's/^home = //p' .venv/pyvenv.cfg 2>/dev/null || true)
if ! .venv/bin/python -m pip --version >/dev/null 2>&1 \
    || [ "$(realpath -m "${made_from:-/nonexistent}")" != "$(home_of "$python")" ]; then
    rm -rf .venv
    echo "setup: .venv from $python ($("$python" -V 2>&1))"
    if ! "$python" -m venv .venv >/dev/null 2>&1; then
        # Debian and Ubuntu ship venv's pip bootstrap (ensurepip) separately.
        rm -rf .venv
        apt_install python3-venv
        "$python" -m venv .venv
    fi
fi

# The project, editable, with the test and lint tools; again when pyproject.toml changed
# or the environment points at another checkout of the project.
stamp=.venv/.bullet_py-installed
here=$(pwd -P)
if [ ! "$stamp" -nt pyproject.toml ] || ! .venv/bin/python -c '
import sys, bullet_py
sys.exit(not bullet_py.__file__.startswith(sys.argv[1] + "/src/"))' "$here" >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
        | grep -v -E '^(WARNING|DEPRECATION)' || true
    touch "$stamp"
fi
.venv/bin/python -c 'import bullet_py, aiohttp, erlastic, playwright, pytest_aiohttp, build, gunicorn' \
    || { rm -f "$stamp"; echo "setup: python packages missing in .venv" >&2; exit 1; }

# Browser libraries from npm, never vendored: the Backbone demo page's (examples/backbone)
# and the browser tests' (jQuery 1.x and 3.x, Backbone, Underscore, the original BERT-JS).
# Installed from the lock file, again only when the lock file is newer than the install.
for dir in examples/backbone tests/browser; do
    if [ -f "$dir/package-lock.json" ] && [ ! "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
        (cd "$dir" && npm ci --silent --no-audit --no-fund >/dev/null)
    fi
done
