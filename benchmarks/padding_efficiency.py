"""Padding efficiency of the training sampler on a LibriSpeech-like duration distribution.

Padding efficiency = real (non-padding) samples / all samples of the padded batches. No audio
is needed: the sampler only looks at durations, drawn like LibriSpeech's 960 h training set.

    python benchmarks/padding_efficiency.py [--cuts 20000] [--batch-seconds 200] [--max-seconds 15] [--num-buckets 30]
"""

from __future__ import annotations

import argparse
import json

from distilxlsr import tune_malloc
from distilxlsr.bench.common import librispeech_like_durations
from distilxlsr.bench.cpu import padding_efficiency


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cuts", type=int, default=20000)
    parser.add_argument("--batch-seconds", type=float, default=200.0)
    parser.add_argument("--max-seconds", type=float, default=15.0)
    parser.add_argument("--num-buckets", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    d = librispeech_like_durations(args.cuts, args.seed)
    print(f"simulated {len(d)} cuts, {d.sum() / 3600:.1f} h, mean {d.mean():.2f} s")
    result = padding_efficiency(
        args.batch_seconds, args.max_seconds, args.num_buckets, args.cuts, args.seed
    )
    print(json.dumps(result, indent=2))
    print(f"padding efficiency: {result['efficiency']:.2%} (target >= 95%)")


if __name__ == "__main__":
    tune_malloc()
    main()
