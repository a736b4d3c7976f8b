#!/usr/bin/env bash
# Set up, then run every check: lint, types, the JavaScript specs, the Python suite.
# Python tools run from the project's .venv (made by scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"  # anything a test starts by name finds the venv first
py=.venv/bin/python

echo "== ruff"
"$py" -m ruff check src tests examples bench
"$py" -m ruff format --check src tests examples bench
echo "== mypy"
"$py" -m mypy
echo "== node --test js/test"
node --test js/test/
echo "== pytest"
"$py" -m pytest "$@"
