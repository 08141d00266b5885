#!/usr/bin/env bash
# The paper-scale benchmark in one GPU call (the device tool's `run`, with carry [".whl"]):
#   bash scripts/gpu_paper_run.sh [BUDGET_SECONDS]
# installs the carried wheels, runs `python -m benchmark main --preset paper --device cuda
# --time-budget BUDGET` (default 540 s: data on the GPU, lite, moderate, U-Net, small, medium as
# time allows, evaluation, report) and packs the results into $OUT (at most 60 MiB).
# A rerun on the same machine continues from the saved state; a fresh machine starts over.
set -uo pipefail
BUDGET="${1:-540}"
OUT="${OUT:-outputs/gpu-out}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" || exit 3
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true) > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, numba; print('torch', torch.__version__, 'numba', numba.__version__)" >> "$OUT/gpu.txt" 2>&1
python3 -m benchmark main --preset paper --device cuda --time-budget "$BUDGET" 2>&1 | tee "$OUT/main.log"
status=${PIPESTATUS[0]}
python3 -m benchmark pack outputs/paper --max-mib 60 --out "$OUT/paper.pack.tar.gz" 2>&1 | tee -a "$OUT/main.log"
exit "$status"
