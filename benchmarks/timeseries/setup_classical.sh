#!/usr/bin/env bash
# The statsforecast environment of the time-series benchmark's classical baselines (MSTL + AutoETS trend,
# AutoETS, AutoARIMA). statsforecast 2.1 pins pandas < 3, so it gets its own virtual environment rather than
# downgrading polydiff's; run.py calls classical.py with this environment's python. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv-classical/bin/python ] || "$PY" -m venv .venv-classical
.venv-classical/bin/python -m pip install -q 'statsforecast==2.1.1' 2>&1 | grep -v "^WARNING: Location" || true
.venv-classical/bin/python -c "import statsforecast; print('statsforecast', statsforecast.__version__)"
