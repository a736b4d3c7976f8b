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
if [ $# -eq 0 ]; then
    # bullet_py.web.serve.run serves on uvloop when it is installed (the examples,
    # hence every subprocess server above, do): the in-process servers' tests again
    # on it, where a transport is not an asyncio.Transport.
    echo "== pytest on uvloop"
    BULLET_TEST_LOOP=uvloop "$py" -m pytest tests/web tests/robustness tests/core \
        tests/test_connection.py tests/test_hub.py tests/test_router.py
fi
