#!/usr/bin/env bash
# Runs rnnlab's main entry point. All arguments pass through unchanged:
#   ./launch.sh --config=configs/gru_shakespeare.py --workdir=runs/gru
# Cluster modes (SLURM, TPU VM) come later; today this runs locally.
# PYTHON picks the interpreter (default: the repo's .venv if present).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then PYTHON="$here/.venv/bin/python"
  else PYTHON=python3; fi
fi
exec "$PYTHON" -m rnnlab.main "$@"
