"""Static-shape batches (`data.static_shapes`): every batch has one of K fixed shapes, so that
compiled graphs (and CUDA graphs) are built once per shape and reused.

Each cut is assigned to the longest of the crop lengths L_1 < ... < L_K that it fills, cropped
to exactly that length (the random window of `crop_window`: the same seeded draw as the dynamic
loader's crop) and batched with other cuts of that length, n_k = floor(batch_seconds / L_k) to a
batch. Every row is real audio: the attention masks are all true, and the training step runs
the taps without one (`Distiller`), which keeps SDPA's flash kernel also in compiled graphs.

- Cuts shorter than L_1 are skipped (padding them would bring the masks back); counted.
- An epoch's last, partial batch of each length is dropped (every batch is full), and with
  several processes the last batches that do not make a whole round over all ranks: every rank
  gets the same number of batches. Counted; the dropped cuts differ from epoch to epoch.
- The order: the cuts shuffled by (seed, epoch) (a buffered shuffle for lazily read manifests,
  as the dynamic sampler's), batches emitted as their length's queue fills; batch j of the
  epoch's global sequence goes to rank j mod world_size. The data stays a pure function of
  (seed, epoch, batch index): a resume fast-forwards without reading audio.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from lhotse import CutSet
from lhotse.cut import Cut

from distilxlsr.config import resolve_crop_lengths
from distilxlsr.conventions import SAMPLE_RATE
from distilxlsr.data.loader import BatchPlan, _LongerThan, crop_window
from distilxlsr.errors import UserError

SHUFFLE_BUFFER = 4000
"""Cuts held by the buffered shuffle of a lazily read manifest (the dynamic sampler's buffer)."""


@dataclass
class StaticStats:
    """What the static shapes make of a corpus; the same every epoch (per length, the number of
    cuts depends on durations only)."""

    lengths: list[float]
    per_batch: list[int]
    """Utterances per batch of each length."""
    cuts: list[int]
    """Cuts of each length per epoch."""
    skipped_short: int
    """Usable cuts (at least min_seconds) shorter than the shortest length: never trained on."""
    skipped_short_seconds: float
    seconds_before: float
    """Audio of the usable cuts, each cropped to max_seconds (what the dynamic loader trains
    on)."""
    seconds_kept: float
    """Audio of the static crops, partial batches included."""
    world_size: int = 1

    @property
    def batches(self) -> int:
        """Full batches per epoch, all ranks together, before the rank rounding."""
        return sum(c // n for c, n in zip(self.cuts, self.per_batch, strict=True))

    @property
    def partial_cuts(self) -> int:
        """Cuts dropped with the last, partial batch of each length, every epoch."""
        return sum(c % n for c, n in zip(self.cuts, self.per_batch, strict=True))

    @property
    def batches_per_rank(self) -> int:
        return self.batches // self.world_size

    @property
    def rank_dropped_batches(self) -> int:
        """Whole batches dropped at an epoch's end so that every rank gets as many."""
        return self.batches % self.world_size

    @property
    def shapes(self) -> str:
        """The K batch shapes, as utterances x seconds."""
        pairs = zip(self.lengths, self.per_batch, strict=True)
        return ", ".join(f"{n} x {length:g} s" for length, n in pairs)

    @property
    def kept(self) -> float:
        """The share of the audio (cropped to max_seconds) that the static crops keep."""
        return self.seconds_kept / self.seconds_before if self.seconds_before else 0.0

    def summary(self) -> str:
        text = f"static shapes {self.shapes}; the crops keep {self.kept:.1%} of the audio"
        if self.skipped_short:
            text += (
                f"; {self.skipped_short} cuts ({self.skipped_short_seconds / 3600:.2f} h) shorter "
                f"than {self.lengths[0]:g} s skipped"
            )
        text += (
            f"; {self.batches_per_rank} batches per epoch and process, each epoch dropping "
            f"{self.partial_cuts} cuts of partial batches"
        )
        if self.rank_dropped_batches:
            text += f" and {self.rank_dropped_batches} batches left over by the ranks"
        return text


class StaticBatchPlan(BatchPlan):
    """A `BatchPlan` whose batches have one of K fixed shapes (`data.static_shapes`)."""

    def __init__(
        self,
        cuts: CutSet,
        batch_seconds: float,
        crop_lengths: list[float],
        max_seconds: float,
        min_seconds: float,
        seed: int,
        sample_rate: int = SAMPLE_RATE,
        world_size: int = 1,
        rank: int = 0,
    ):
        lengths = resolve_crop_lengths(crop_lengths, max_seconds, min_seconds, batch_seconds)
        usable = cuts.filter(_LongerThan(min_seconds))
        self.lengths = lengths
        # The tolerance: a cut of 1.9999999 s fills a 2 s crop (durations are float sums).
        self.tolerance = 0.5 / sample_rate
        self.cuts = usable.filter(_LongerThan(lengths[0] - self.tolerance))
        self.per_batch = [math.floor(batch_seconds / x + 1e-9) for x in lengths]
        self.samples = [round(x * sample_rate) for x in lengths]
        self.max_seconds = max_seconds
        self.seed = seed
        self.world_size = world_size
        self.rank = rank
        self.epoch = 0
        self.skip = 0
        self.stats = self._scan(usable)
        if self.stats.batches_per_rank == 0:
            raise UserError(
                f"static shapes: the training data fill no whole batch per process (shapes "
                f"{self.stats.shapes}; {sum(self.stats.cuts)} cuts, {world_size} process(es)); "
                "lower train.batch_seconds or add shorter data.crop_lengths."
            )

    def length_index(self, duration: float) -> int:
        """The longest length a cut of `duration` fills (-1: none)."""
        return int(np.searchsorted(self.lengths, duration + self.tolerance, side="right")) - 1

    def _scan(self, usable: CutSet) -> StaticStats:
        """One pass over the usable cuts' durations (no audio)."""
        counts = [0] * len(self.lengths)
        short, short_seconds, before, kept = 0, 0.0, 0.0, 0.0
        for cut in usable:
            before += min(cut.duration, self.max_seconds)
            k = self.length_index(cut.duration)
            if k < 0:
                short += 1
                short_seconds += cut.duration
                continue
            counts[k] += 1
            kept += self.lengths[k]
        return StaticStats(
            self.lengths,
            self.per_batch,
            counts,
            short,
            short_seconds,
            before,
            kept,
            self.world_size,
        )

    def crop(self, cut: Cut, epoch: int) -> tuple[Cut, int]:
        """The cut cropped to its length (the seeded window), and the length's index."""
        k = self.length_index(cut.duration)
        return crop_window(cut, min(self.lengths[k], cut.duration), self.seed, epoch), k

    def epoch_order(self, epoch: int) -> CutSet:
        """The usable cuts in the order of `epoch`: the same on every rank."""
        key = [self.seed, epoch, zlib.crc32(b"static-order")]
        rng = random.Random(int(np.random.default_rng(key).integers(2**63)))
        return self.cuts.shuffle(rng, buffer_size=SHUFFLE_BUFFER)

    def epoch_batches(self, epoch: int) -> Iterator[tuple[CutSet, int]]:
        queues: list[list[Cut]] = [[] for _ in self.lengths]
        round_: list[tuple[CutSet, int]] = []
        for cut in self.epoch_order(epoch):
            cropped, k = self.crop(cut, epoch)
            queue = queues[k]
            queue.append(cropped)
            if len(queue) < self.per_batch[k]:
                continue
            round_.append((CutSet.from_cuts(queue), self.samples[k]))
            queues[k] = []
            if len(round_) == self.world_size:
                yield round_[self.rank]
                round_ = []
