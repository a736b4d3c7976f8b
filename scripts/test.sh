#!/usr/bin/env bash
# Set up, then run every check: lint, types, the JavaScript specs, the Python suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== ruff"
ruff check src tests examples bench
ruff format --check src tests examples bench
echo "== mypy"
mypy
echo "== node --test js/test"
node --test js/test/
echo "== pytest"
python3 -m pytest "$@"
