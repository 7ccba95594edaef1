#!/usr/bin/env bash
# Train a tiny teacher on one GPU (or the CPU) within a wall-clock budget.
#
#   bash experiments/pretrain_teacher_gpu.sh RUN_DIR [BUDGET_SECONDS [KEY=VALUE ...]]
#
# (from the repository root; KEY=VALUE overrides go to every pretrain-teacher run)
#
# RECIPE=label-free (the default; issue "label-free teachers", T1): HuBERT-style, no label read.
#   1. synthesizes corpus v2's `pretrain` split (the teachers' own speakers) of English
#      ($ENGLISH_MINUTES, default 60) and of the `label` and `heard` tiers ($LANG_MINUTES each,
#      default 30) in $DATA (default data/teacher-corpus), one job per core; `unheard` is never
#      synthesized for a teacher;
#   2. times 40 steps of masked unit prediction in a scratch run to learn the seconds per step;
#   3. sizes two iterations to fill what is left of BUDGET_SECONDS (default 300; iteration 1 gets
#      $STAGE1_SHARE of it, default 0.5): iteration 1 (RUN_DIR/iteration1) predicts k-means
#      units of log-mel frames (the scratch run's units, reused); iteration 2 (RUN_DIR) predicts
#      k-means units of layer $UNITS_LAYER (default 4, the middle of the default 8 layers) of
#      iteration 1, from a fresh initialisation. The teacher lands in RUN_DIR/model with its card.
# RECIPE=labelled: the recipe of the labelled CTC teacher (results/models/labelled-teacher, the
#   labelled upper bound): the `train` split of English and all 15 evaluation languages,
#   stage 1 then multilingual phone CTC on every language's labels (`tier_protocol=false`,
#   which its card states); stage 1 gets $STAGE1_SHARE (default 0.4) of the budget.
# RECIPE=continue: evidence v3's lever (experiments/teacher_levers.py, `cont-logmel`): the weights
#   of $INIT (default the shipped teacher, src/distilxlsr/assets/teacher) trained further on
#   k-means units of log-mel frames, masked frames weighing twice the unmasked (unmasked weight
#   0.5), lr 3e-4 after a 5% warm-up, on the same `pretrain` split as label-free; the whole
#   budget is one stage.
#
# STEPS="N1 [N2]" skips the calibration and the sizing: the step counts a card printed, to rerun
# a teacher on another machine (N2, iteration 2's or stage 2's, defaults to 0).
#
# RESERVE_SECONDS (default 60) is kept back for start-up, the loader's restarts, k-means, export
# and the card. The step counts are the only thing the budget decides; they are recorded on the
# cards, so a run is reproducible with the printed commands on any machine. PYTHON (default
# python3) must be an interpreter that imports distilxlsr and its dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RUN=${1:?usage: experiments/pretrain_teacher_gpu.sh RUN_DIR [BUDGET_SECONDS]}
BUDGET=${2:-300}
shift $(($# < 2 ? $# : 2))
DATA=${DATA:-data/teacher-corpus}
RECIPE=${RECIPE:-label-free}
CONFIG=pretrain-tiny-teacher
START=$(date +%s)
CORES=$(nproc)
WORKERS=$((CORES > 6 ? CORES - 4 : 1))

case "$RECIPE" in
  label-free)
    SPLIT=pretrain
    SHARE=${STAGE1_SHARE:-0.5}
    LANGS=$($PY -c "from distilxlsr.data.synthetic import TIERS as T; print(','.join(T['label'] + T['heard']))")
    # Stage 1's recipe as experiments/label_free_teachers.py's (chosen on dev by
    # experiments/teacher_recipe_sweep.py); the warm-up is 10% of each iteration's steps.
    COMMON=(split=pretrain "languages=[english,label,heard]" stage2.steps=0 stage1.lr=5e-4
      stage1.unmasked_weight=1.0)
    ;;
  continue)
    SPLIT=pretrain
    SHARE=1
    LANGS=$($PY -c "from distilxlsr.data.synthetic import TIERS as T; print(','.join(T['label'] + T['heard']))")
    COMMON=(split=pretrain "languages=[english,label,heard]" stage2.steps=0 stage1.lr=3e-4
      stage1.unmasked_weight=0.5 units.source=logmel "init_from=${INIT:-src/distilxlsr/assets/teacher}")
    ;;
  labelled)
    SPLIT=train
    SHARE=${STAGE1_SHARE:-0.4}
    LANGS=$($PY -c "from distilxlsr.data.synthetic import EVAL_LANGUAGES as L; print(','.join(L))")
    COMMON=(split=train tier_protocol=false)
    ;;
  *)
    echo "RECIPE=$RECIPE: must be label-free, continue or labelled" >&2
    exit 2
    ;;
esac

$PY -m distilxlsr synth --langs en --minutes "${ENGLISH_MINUTES:-60}" --split "$SPLIT" --out "$DATA" --jobs "$CORES"
$PY -m distilxlsr synth --langs "$LANGS" --minutes "${LANG_MINUTES:-30}" --split "$SPLIT" \
  --out "$DATA" --jobs "$CORES"

SCRATCH_ROOT=$(mktemp -d)
trap 'rm -rf "$SCRATCH_ROOT"' EXIT
SCRATCH=$SCRATCH_ROOT/calibration
if [ -n "${STEPS:-}" ]; then
  read -r STEPS1 STEPS2 <<<"$STEPS"
  STEPS2=${STEPS2:-0}
else
$PY -m distilxlsr pretrain-teacher --config "$CONFIG" data="$DATA" out="$SCRATCH" "${COMMON[@]}" \
  stage1.steps=40 stage2.steps=0 train.log_every=10 loader.num_workers="$WORKERS" "$@"

STEPS=$($PY - "$SCRATCH/metrics.jsonl" "$BUDGET" "$START" "$SHARE" "${RESERVE_SECONDS:-60}" <<'EOF'
import json, sys, time
metrics, (budget, start, share, reserve) = sys.argv[1], map(float, sys.argv[2:6])
per_step = [json.loads(line) for line in open(metrics)][-1]["seconds_per_step"]
# Reserve: start-up, the loader's restart between the stages, export and card. The margin:
# on one H100 the loader-bound steps varied from 0.1 to 0.35 s, and 40 calibration steps
# underestimated the whole run's mean step time by 27% (0.115 vs 0.146 s).
left = budget - (time.time() - start) - reserve
steps = max(left, 0) / (per_step * 1.35)
print(f"{per_step:.3f} s/step measured; {left:.0f} s left -> {int(steps)} steps", file=sys.stderr)
if left < 10 or int(steps * share) < 1:
    sys.exit(f"only {left:.0f} s of the budget left after calibration; raise BUDGET_SECONDS")
print(int(steps * share), int(steps * (1 - share)))
EOF
)
read -r STEPS1 STEPS2 <<<"$STEPS"
fi
copy_units() {  # the calibration's units, where it ran (else the run clusters its own)
  mkdir -p "$1"
  if [ -f "$SCRATCH/units.safetensors" ]; then cp "$SCRATCH/units.safetensors" "$1/"; fi
}
if [ "$RECIPE" = labelled ]; then
  copy_units "$RUN"
  $PY -m distilxlsr pretrain-teacher --config "$CONFIG" data="$DATA" out="$RUN" "${COMMON[@]}" \
    stage1.steps="$STEPS1" stage2.steps="$STEPS2" loader.num_workers="$WORKERS" "$@"
elif [ "$RECIPE" = continue ]; then
  copy_units "$RUN"
  $PY -m distilxlsr pretrain-teacher --config "$CONFIG" data="$DATA" out="$RUN" "${COMMON[@]}" \
    stage1.steps="$STEPS1" stage1.warmup_steps=$((STEPS1 / 20 + 1)) \
    loader.num_workers="$WORKERS" "$@"
else
  copy_units "$RUN/iteration1"
  $PY -m distilxlsr pretrain-teacher --config "$CONFIG" data="$DATA" out="$RUN/iteration1" \
    "${COMMON[@]}" stage1.steps="$STEPS1" stage1.warmup_steps=$((STEPS1 / 10 + 1)) \
    loader.num_workers="$WORKERS" "$@"
  $PY -m distilxlsr pretrain-teacher --config "$CONFIG" data="$DATA" out="$RUN" "${COMMON[@]}" \
    units.source="$RUN/iteration1/model" units.layer="${UNITS_LAYER:-4}" stage1.steps="$STEPS2" \
    stage1.warmup_steps=$((STEPS2 / 10 + 1)) loader.num_workers="$WORKERS" "$@"
fi
echo "teacher trained in $(($(date +%s) - START)) s (budget $BUDGET s, $RECIPE): $RUN/model"
