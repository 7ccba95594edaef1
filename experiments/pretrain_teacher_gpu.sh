#!/usr/bin/env bash
# Train the shipped tiny teacher on one GPU within a wall-clock budget.
#
#   bash experiments/pretrain_teacher_gpu.sh RUN_DIR [BUDGET_SECONDS [KEY=VALUE ...]]
#
# (from the repository root; KEY=VALUE overrides go to both pretrain-teacher runs)
#
# 1. synthesizes the teacher's corpus (train splits only: 60 min of English, 30 min of each of
#    the 15 evaluation languages; set ENGLISH_MINUTES, LANG_MINUTES to change) in $DATA
#    (default data/teacher-corpus), with one job per core;
# 2. times 40 steps of stage 1 in a scratch run (same config) to learn the seconds per step;
# 3. sizes both stages to fill what is left of BUDGET_SECONDS (default 300; stage 1 gets
#    $STAGE1_SHARE of it, default 0.4) and trains RUN_DIR with the shipped config pretrain-tiny-teacher,
#    reusing the scratch run's k-means units (same seed, data and settings: the same
#    files). The teacher lands in RUN_DIR/model with its card. RESERVE_SECONDS (default 60) is
#    kept back for start-up, the loader's restart between the stages, export and card.
#
# The step counts are the only thing the budget decides; they are recorded on the card, so the
# run is reproducible with the printed command on any machine. PYTHON (default python3) must be
# an interpreter that imports distilxlsr and its dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RUN=${1:?usage: experiments/pretrain_teacher_gpu.sh RUN_DIR [BUDGET_SECONDS]}
BUDGET=${2:-300}
shift $(($# < 2 ? $# : 2))
DATA=${DATA:-data/teacher-corpus}
SHARE=${STAGE1_SHARE:-0.4}
CONFIG=pretrain-tiny-teacher
START=$(date +%s)
CORES=$(nproc)
WORKERS=$((CORES > 6 ? CORES - 4 : 1))

$PY -m distilxlsr synth --langs en --minutes "${ENGLISH_MINUTES:-60}" --split train --out "$DATA" --jobs "$CORES"
LANGS=$($PY -c "from distilxlsr.data.synthetic import EVAL_LANGUAGES as L; print(','.join(L))")
$PY -m distilxlsr synth --langs "$LANGS" --minutes "${LANG_MINUTES:-30}" --split train \
  --out "$DATA" --jobs "$CORES"

SCRATCH_ROOT=$(mktemp -d)
trap 'rm -rf "$SCRATCH_ROOT"' EXIT
SCRATCH=$SCRATCH_ROOT/calibration
$PY -m distilxlsr pretrain-teacher --config "$CONFIG" data="$DATA" out="$SCRATCH" \
  stage1.steps=40 stage2.steps=0 train.log_every=10 loader.num_workers="$WORKERS" "$@"

STEPS=$($PY - "$SCRATCH/metrics.jsonl" "$BUDGET" "$START" "$SHARE" "${RESERVE_SECONDS:-60}" <<'EOF'
import json, sys, time
metrics, (budget, start, share, reserve) = sys.argv[1], map(float, sys.argv[2:6])
per_step = [json.loads(line) for line in open(metrics)][-1]["seconds_per_step"]
# Reserve: start-up, the loader's restart between the stages, export and card. The margin:
# on one H100 the loader-bound steps varied from 0.1 to 0.35 s, and 40 calibration steps
# underestimated the whole run's mean step time by 27% (0.115 vs 0.146 s).
left = budget - (time.time() - start) - reserve
if left < 10:
    sys.exit(f"only {left:.0f} s of the budget left after calibration; raise BUDGET_SECONDS")
steps = left / (per_step * 1.35)
print(int(steps * share), int(steps * (1 - share)))
print(f"{per_step:.3f} s/step measured; {left:.0f} s left -> {int(steps)} steps", file=sys.stderr)
EOF
)
read -r STEPS1 STEPS2 <<<"$STEPS"
mkdir -p "$RUN"
cp "$SCRATCH/units.safetensors" "$RUN/"
$PY -m distilxlsr pretrain-teacher --config "$CONFIG" data="$DATA" out="$RUN" \
  stage1.steps="$STEPS1" stage2.steps="$STEPS2" loader.num_workers="$WORKERS" "$@"
echo "teacher trained in $(($(date +%s) - START)) s (budget $BUDGET s): $RUN/model"
