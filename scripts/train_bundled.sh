#!/usr/bin/env bash
# Reproduce the bundled kronos-nano pair (kronos/bundled/kronos-nano/) from scratch.
#
# Trained ONLY on SYNTHETIC candles: 12 generate_market series (seeds 100-111; 1h, 4h, 15m,
# 30m and 1d bars) plus the first 80% of the bundled synthetic BTCUSDT-1h sample. The sample's
# last 20% stays unseen, so `kronos-trader evaluate` (whose default hold-out it is) is honest.
# Data-parallel over 2 CPU processes (gloo); about 12 minutes on 2 CPU cores (more when they are busy).
#
# Usage: scripts/train_bundled.sh [OUT_DIR]   (default: kronos/bundled/kronos-nano)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
OUT="${1:-kronos/bundled/kronos-nano}"
RUNS="${RUNS_DIR:-build/kronos-nano-runs}"
NPROC="${NPROC:-2}"
export OMP_NUM_THREADS=1
start=$(date +%s)
python -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m kronos_trader.cli train all \
  --out "$OUT" --run-dir "$RUNS" --overwrite --init nano \
  --sample --synthetic 12 --synthetic-bars 8760 --synthetic-seed 100 \
  --lookback 256 --horizon 32 --max-context 512 --val-fraction 0.1 --max-val-windows 256 \
  --tokenizer-steps 1500 --tokenizer-lr 1e-3 --predictor-steps 600 --predictor-lr 8e-4 \
  --batch-size 16 --grad-accum 1 --warmup 50 --weight-decay 0.05 --clip-grad 1.0 \
  --eval-every 150 --log-every 25 --seed 0 --device cpu
echo "trained in $(( $(date +%s) - start ))s -> $OUT (runs and metrics in $RUNS)"
