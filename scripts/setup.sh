#!/usr/bin/env bash
# Install everything bullet_py's demo and tests need, on a fresh Debian machine or again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v -E '^(WARNING|DEPRECATION)' || true
python3 -c 'import bullet_py, aiohttp, erlastic, playwright, pytest_aiohttp' \
    || { echo "setup: python packages missing" >&2; exit 1; }

# jQuery 1.x and 3.x for the browser tests (pages must work with both).
if [ -f tests/browser/package.json ] && [ ! -d tests/browser/node_modules/jquery1 ]; then
    (cd tests/browser && npm install --silent --no-audit --no-fund >/dev/null)
fi
