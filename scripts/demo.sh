#!/usr/bin/env bash
# Set up the environment and run the main job: `polydiff demo` on the bundled defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/polydiff demo --out "${1:-demo-out}"
