#!/usr/bin/env bash
# Set up, then run the Backbone demo app: open http://127.0.0.1:8080/ in two browser tabs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/backbone/app.py --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}"
