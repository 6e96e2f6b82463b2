#!/usr/bin/env bash
# Create or refresh .venv from the pinned requirements; a no-op when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
stamp=.venv/.glowai-installed
want="$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "setting up .venv (first run: a few minutes)..." >&2
    [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements-dev.txt
    .venv/bin/python -m pip install --quiet --no-deps -e .
    .venv/bin/python -m pip check
    echo "$want" > "$stamp"
fi
# The default model's fast path (the ONNX export on a CPU without bf16) is made here, once per
# model and user, never during someone's first analysis.
models_stamp=.venv/.glowai-models
models="$(cat weights/registry.json | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$models_stamp" || "$(cat "$models_stamp")" != "$models" ]]; then
    if HF_HUB_OFFLINE=1 .venv/bin/glowai weights prepare; then
        echo "$models" > "$models_stamp"
    else  # not fatal: the first analysis makes it instead (and says why, if it cannot)
        echo "warning: the model's fast path was not prepared; the first analysis will try again" >&2
    fi
fi
