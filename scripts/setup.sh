#!/usr/bin/env bash
# Creates .venv (CPU torch first, from local disk when available) and installs rollwise with its
# dev tools. Idempotent: a second run re-checks and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.rollwise-setup
want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# CPU build only: never let a dependency resolve torch to a multi-GB CUDA wheel.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
# verl's registries for the verl integration tests (rollwise/rlvr/integrations/verl.py): verl itself without its
# dependencies (they would downgrade transformers and pull GPU-only packages), plus the light ones its registries need.
.venv/bin/python -m pip install --quiet --no-deps "verl==0.9.1" "tensordict==0.10.0" "omegaconf==2.4.0" \
  "pyvers==0.2.3" "codetiming==1.4.0" "orjson==3.13.0" cloudpickle
echo "$want" > "$stamp"
