#!/usr/bin/env bash
# Set up the environment and run the default (fast) test suite. Exit code 5 (no tests) fails.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh || exit 1
.venv/bin/ruff check --quiet . || { echo "ruff found problems (see above)" >&2; exit 1; }
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit "$rc"
