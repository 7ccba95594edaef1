#!/usr/bin/env bash
# One GPU: an XLS-R-300M-shaped teacher (random weights, nothing downloaded) distilled into a
# 12-layer student on synthetic 15 s batches (8 per step, 120 s of audio): fp32, bf16 with the
# old hook-based layer taps (reference), bf16 with the explicit taps, and bf16 with both
# explicit taps torch.compiled (one graph each); prints audio-seconds/s, fraction of the
# measured matmul peak and peak memory, the explicit/hook and compiled/eager ratios, and writes
# bench-gpu.json. Target: >= 4,000 audio-s/s in bf16 on one H100. < 8 min.
#
# SECTIONS=gpu-shapes: batch shapes instead, in bf16: the dynamic bucketing loader's batches
# (120 s each, padded) eager and compiled, and the static-shape loader's (data.static_shapes:
# 3/6/9/12/15 s crops, 5 shapes, full rows, no mask) eager and compiled (one static graph per
# shape); 24 batches of each loader's epoch over LibriSpeech-like durations, timed after a
# warm-up that compiles every shape (its seconds are printed). Prints audio-s/s, the share of
# real samples, graphs compiled while timed, and the static/dynamic ratio. Compilation of the
# 5 + 2 shapes dominates its time: about 5-8 min (not yet measured).
#
# gpu-sweep: the bf16 step at 4, 8, 16, 32, 64 utterances of 15 s until out of memory (audio-s/s,
# share of peak, peak memory; the fastest size). gpu-split: one bf16 step of 8 x 15 s cut into
# teacher CNN, teacher layers, student forward + loss, backward, clipping + AdamW (time between
# synchronisations, FLOPs, share of peak per phase: what bounds the step), and the CNN alone in
# fp32, bf16, bf16 with cuDNN's autotuner, and bf16 with transformers' CNN layers instead of the
# channels-last ones. Both together about 2 min (estimate).
#
#   bash benchmarks/gpu.sh [OUT.json] [SECTIONS]    (from the repository root; sets up .venv
#                                  if needed; SECTIONS default gpu,gpu-split,gpu-sweep,inference)
#   bash benchmarks/gpu.sh bench-gpu-shapes.json gpu-shapes
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/distilxlsr ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet torch==2.13.0 -r requirements.txt
  .venv/bin/pip install --quiet --no-deps -e .
fi
.venv/bin/python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
timeout 540 .venv/bin/distilxlsr bench --sections "${2:-gpu,gpu-split,gpu-sweep,inference}" --out "${1:-bench-gpu.json}"
