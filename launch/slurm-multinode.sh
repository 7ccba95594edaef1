#!/bin/bash
# Distil on N nodes x 8 GPUs under SLURM, resubmitted until done (the same command resumes):
#   sbatch launch/slurm-multinode.sh
# One torchrun per node (srun starts them), c10d rendezvous on the first node. With
# data.train=SHARDS (`distilxlsr shard`) each process reads its own shards; the run directory
# must be on a filesystem all nodes share. Memory and hours first: `distilxlsr plan` (docs/scale.md).
#SBATCH --job-name=distil-xlsr
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@300        # SIGTERM 5 minutes before the time limit: a checkpoint, exit 143
#SBATCH --requeue
set -euo pipefail
MAIN_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun torchrun \
    --nnodes "$SLURM_NNODES" --nproc_per_node 8 \
    --rdzv_backend c10d --rdzv_endpoint "$MAIN_HOST:29500" --rdzv_id "$SLURM_JOB_ID" \
    -m distilxlsr distill --config xlsr300m-half \
    data.train=manifests/en out=runs/xlsr300m-half
