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

# Browser libraries from npm, never vendored: the Backbone demo page's (examples/backbone)
# and the browser tests' (jQuery 1.x and 3.x, Backbone, Underscore, the original BERT-JS).
# Installed from the lock file, again only when the lock file is newer than the install.
for dir in examples/backbone tests/browser; do
    if [ -f "$dir/package-lock.json" ] && [ ! "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
        (cd "$dir" && npm ci --silent --no-audit --no-fund >/dev/null)
    fi
done
