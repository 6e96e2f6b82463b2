#!/usr/bin/env bash
# Runs on the lent GPU machine (see scripts/gpu_stage.py): the synthetic set from the prepared
# faces, a training stage from the shipped glowai-seg-v2 until MINUTES are up, and the best
# checkpoint cut into pieces under $OUT. Settings come from the environment; a dry run on this
# machine's CPU: OUT=/tmp/gpu-out DEVICE=cpu WORKERS=2 N=48 EPOCHS=1 MINUTES=20 bash scripts/gpu_stage.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that comes back}"
DEVICE=${DEVICE:-cuda} WORKERS=${WORKERS:-14} N=${N:-2400} EPOCHS=${EPOCHS:-14} MINUTES=${MINUTES:-7.5}
PATCH=${PATCH:-384} BATCH=${BATCH:-32} LR=${LR:-2e-4} INIT=${INIT:-glowai-seg-v2} RUN=${RUN:-runs/gpu}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if ! "$PYTHON" -c "import segmentation_models_pytorch" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/glowai-site .gpu/wheels/*.whl
    export PYTHONPATH=/tmp/glowai-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
log=$OUT/train.log
{
    date -u; command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    start=$(date +%s)
    "$PYTHON" -m apps.cli synth --faces .gpu/faces.npz --n "$N" --out /tmp/glowai-synth --seed 11 \
        --workers "$WORKERS" --quiet | tail -3
    echo "synthetic set: $(( $(date +%s) - start )) s"
    status=0
    timeout "$(awk "BEGIN{print int($MINUTES*60)}")" "$PYTHON" -m apps.cli train --data /tmp/glowai-synth --out "$RUN" \
        --encoder resnet18 --decoder-channels 128,64,32,16,16 --epochs "$EPOCHS" --patches-per-image 2 \
        --batch "$BATCH" --lr "$LR" --loss ce+dice --class-weight 8 --patch "$PATCH" --init "$INIT" \
        --real .gpu/acne04-train --real-share 0.6 --real-val 40 --lesion-head --lesion-weight 2 \
        --name glowai-seg-v2 --license "research-only (ACNE04 terms)" --device "$DEVICE" --workers "$WORKERS" \
        --quiet || status=$?
    [ "$status" = 124 ] && echo "stopped after $MINUTES minutes (best.safetensors is the best finished epoch)"
    [ "$status" != 0 ] && [ "$status" != 124 ] && echo "training failed: exit $status"
    cat "$RUN/metrics.csv"
    echo "all: $(( $(date +%s) - start )) s"
} 2>&1 | tee "$log"
"$PYTHON" scripts/gpu_stage.py split "$RUN/best.safetensors" "$OUT"
cp "$RUN/metrics.csv" "$RUN/config.json" "$OUT/"
