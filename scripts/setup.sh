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
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "setup: bullet_py needs Python 3.11 or newer as python3" >&2; exit 1; }

# .venv: made once, again if it no longer runs (its python3 was removed or upgraded).
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    rm -rf .venv
    if ! python3 -m venv .venv >/dev/null 2>&1; then
        # Debian and Ubuntu ship venv's pip bootstrap (ensurepip) separately.
        rm -rf .venv
        apt_install python3-venv
        python3 -m venv .venv
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
