"""Random state that belongs to one call, not to the process."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np


@contextmanager
def numpy_global_rng(seed: int | Sequence[int]) -> Iterator[None]:
    """Seed numpy's global RNG for the block and put the caller's state back afterwards.

    transformers draws SpecAugment's time and feature masks (`_compute_mask_indices`) from
    numpy's global RNG; seeding it here makes such a block a function of `seed` alone, whatever
    ran before it in the process."""
    saved = np.random.get_state()
    try:
        np.random.seed(seed if isinstance(seed, int) else [int(s) for s in seed])
        yield
    finally:
        np.random.set_state(saved)
