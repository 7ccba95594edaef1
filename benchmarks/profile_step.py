"""Profile one distillation step at the CPU benchmark's mid-size config (XLS-R's CNN, width 512,
8 -> 4 layers, 2 x 5 s): where the time goes, by operator.

    python benchmarks/profile_step.py [--share-cnn false]
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from distilxlsr import tune_malloc
from distilxlsr.bench.common import audio_batch, model_pair


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="cpu-mid")
    parser.add_argument("--share-cnn", default="true")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    device = torch.device("cpu")
    _, student, distiller = model_pair(args.shape, "jump:2", device, args.share_cnn == "true")
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], fused=True)
    batch = audio_batch(2, 5.0, device)

    def step():
        loss, _ = distiller(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    tune_malloc()
    main()
