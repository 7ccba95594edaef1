"""The training loader: duration-bucketed, rank-aware batches of cuts -> transform (phoneme
shuffle) -> padded, normalised waveforms with an attention mask.

Every random choice about a cut (its crop, its shuffle) draws from an RNG seeded by
(seed, epoch, cut id), and the sampler is seeded by (seed, epoch). The data of a run is therefore
a pure function of its position (epoch, batch index), which is all a checkpoint needs to store,
whatever the number of loader workers.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr
import torch
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.dataset import DynamicBucketingSampler

from distilxlsr.conventions import SAMPLE_RATE
from distilxlsr.data.corpora import find_manifests
from distilxlsr.data.shards import shard_set_of, shards_of_rank, with_shard_audio
from distilxlsr.errors import UserError

# A transform changes one utterance's waveform, e.g. the phoneme shuffle:
# (audio (samples,), cut, rng) -> audio. One with a `sample_rate` attribute must work at the
# loader's rate (AudioBatches checks).
Transform = Callable[[np.ndarray, Cut, np.random.Generator], np.ndarray]


def cut_rng(seed: int, epoch: int, cut_id: str, purpose: str) -> np.random.Generator:
    """An RNG for one random decision about one cut; stable across processes and resumes."""
    return np.random.default_rng(
        [seed, epoch, zlib.crc32(cut_id.encode()), zlib.crc32(purpose.encode())]
    )


@dataclass
class CorpusStats:
    cuts: int
    hours: float
    too_short: int
    languages: dict = field(default_factory=dict)
    """Usable hours per supervision language ("?" where a cut names none)."""
    unaligned: int = 0
    """Usable cuts without a phone alignment (utterance and word shuffling need one)."""
    first_unaligned: str = ""
    tiers: dict = field(default_factory=dict)
    """Each language's corpus tier (custom["tier"] of its first cut that names one; None for a
    corpus without tiers), for the provenance of what is trained on it."""

    def summary(self, min_seconds: float) -> str:
        text = f"{self.cuts} cuts, {self.hours:.2f} h"
        if len(self.languages) > 1 or "?" not in self.languages:
            text += " (" + ", ".join(f"{k} {v:.2f} h" for k, v in sorted(self.languages.items()))
            text += ")"
        if self.too_short:
            text += f"; {self.too_short} shorter than {min_seconds:g} s skipped"
        return text


def scan_cuts(cuts: CutSet, min_seconds: float, source: str | Path = "") -> CorpusStats:
    """One pass over the manifest: counts, hours and cuts that will be skipped. A manifest line
    that cannot be read, or audio files that are gone, are one error here (not a traceback
    from a loader worker later)."""
    n = short = 0
    seconds = 0.0
    missing: list[str] = []
    languages: dict[str, float] = {}
    tiers: dict[str, str | None] = {}
    unaligned, first_unaligned = 0, ""
    try:
        for cut in cuts:
            if cut.duration < min_seconds:
                short += 1
                continue
            n += 1
            seconds += cut.duration
            sup = cut.supervisions[0] if cut.supervisions else None
            lang = (sup.language if sup is not None else None) or "?"
            languages[lang] = languages.get(lang, 0.0) + cut.duration / 3600
            if tiers.get(lang) is None:
                tier = (cut.custom or {}).get("tier")
                tiers[lang] = None if tier is None else str(tier)
            if not any("phone" in (s.alignment or {}) for s in cut.supervisions):
                unaligned += 1
                first_unaligned = first_unaligned or cut.id
            missing += [s for s in _local_sources(cut) if not os.path.isfile(s)]
    except (OSError, EOFError, ValueError, KeyError, TypeError) as err:
        where = _manifests_named(source)
        raise UserError(
            f"{where} could not be read after {n + short} cuts ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}); write it again with "
            "`distilxlsr prepare` / `distilxlsr synth`."
        ) from None
    if missing:
        raise UserError(
            f"{len(missing)} audio file(s) named by the manifests are gone (first: {missing[0]}); "
            "restore them or run `distilxlsr prepare` again."
        )
    return CorpusStats(n, seconds / 3600, short, languages, unaligned, first_unaligned, tiers)


def _manifests_named(source) -> str:
    """The manifest files behind a data path, for an error message."""
    if not source:
        return "a cut manifest"
    try:
        files = find_manifests(source, "train")
    except UserError:
        return f"the cut manifests of '{source}'"
    names = ", ".join(f"'{f}'" for f in files[:3]) + (" ..." if len(files) > 3 else "")
    return f"cut manifest {names}" if len(files) == 1 else f"one of the cut manifests {names}"


def _local_sources(cut: Cut) -> list[str]:
    recording = getattr(cut, "recording", None)
    if recording is None:
        return []
    return [s.source for s in recording.sources if s.type == "file"]


class _LongerThan:
    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(self, cut: Cut) -> bool:
        return cut.duration >= self.seconds


def duration_bins(durations: list[float], num_buckets: int) -> list[float]:
    """Bucket boundaries holding equal total duration (fewer buckets for tiny corpora)."""
    values = np.sort(np.asarray(durations, dtype=np.float64))
    num_buckets = max(1, min(num_buckets, len(values)))
    if num_buckets == 1 or len(values) == 0:
        return []
    cumulative = np.cumsum(values) / values.sum()
    edges = [
        float(values[np.searchsorted(cumulative, q)])
        for q in np.arange(1, num_buckets) / num_buckets
    ]
    return sorted(set(e for e in edges if e > values[0]))


def crop_window(cut: Cut, seconds: float, seed: int, epoch: int) -> Cut:
    """A random window of `seconds` of `cut` (the whole cut if it is not longer), its offset
    drawn from (seed, epoch, cut id, "crop"); in manifest space, so samplers see the cropped
    duration."""
    if cut.duration <= seconds:
        return cut
    rng = cut_rng(seed, epoch, cut.id, "crop")
    offset = float(rng.uniform(0.0, cut.duration - seconds))
    return cut.truncate(offset=offset, duration=seconds, preserve_id=True)


class _Crop:
    """Crop cuts longer than `max_seconds` to a random window (so the sampler sees the cropped
    durations and batches stay full)."""

    def __init__(self, max_seconds: float, seed: int, epoch: int):
        self.max_seconds = max_seconds
        self.seed = seed
        self.epoch = epoch

    def __call__(self, cut: Cut) -> Cut:
        return crop_window(cut, self.max_seconds, self.seed, self.epoch)


@dataclass(frozen=True)
class BatchRef:
    """What the sampler hands a loader worker: the batch's position and its cuts."""

    epoch: int
    index: int
    cuts: CutSet
    samples: int | None = None
    """A static-shape batch's length in samples at the loader's rate (every row exactly this
    long); None: padded to the longest cut."""


class BatchPlan:
    """The infinite, deterministic sequence of this rank's batches, starting at a position."""

    def __init__(
        self,
        cuts: CutSet,
        batch_seconds: float,
        max_seconds: float,
        min_seconds: float,
        num_buckets: int,
        seed: int,
        world_size: int = 1,
        rank: int = 0,
    ):
        if batch_seconds < max_seconds:
            raise UserError(
                f"train.batch_seconds ({batch_seconds:g}) must be at least data.max_seconds "
                f"({max_seconds:g}), or the longest utterances fit no batch."
            )
        self.cuts = cuts.filter(_LongerThan(min_seconds))
        self.batch_seconds = batch_seconds
        self.max_seconds = max_seconds
        self.min_seconds = min_seconds
        self.seed = seed
        self.world_size = world_size
        self.rank = rank
        self.epoch = 0
        self.skip = 0
        durations = [
            min(c.duration, max_seconds) for _, c in zip(range(20000), self.cuts, strict=False)
        ]
        # One bucket still needs a boundary for lhotse (an empty list warns): all fall above it.
        self.duration_bins = duration_bins(durations, num_buckets) or [min(durations or [0.0])]

    def set_position(self, epoch: int, skip: int) -> None:
        """Start at batch `skip` of `epoch` (used when resuming)."""
        self.epoch, self.skip = epoch, skip

    def epoch_cuts(self, epoch: int) -> tuple[CutSet, int, int]:
        """The cuts this process's batches of `epoch` are drawn from, and the (world size, rank)
        the sampler still divides them by: here every cut, divided by the sampler."""
        return self.cuts, self.world_size, self.rank

    def epoch_sampler(self, epoch: int) -> DynamicBucketingSampler:
        cuts, world_size, rank = self.epoch_cuts(epoch)
        cropped = cuts.map(_Crop(self.max_seconds, self.seed, epoch))
        sampler = DynamicBucketingSampler(
            cropped,
            max_duration=self.batch_seconds,
            duration_bins=self.duration_bins,
            shuffle=True,
            drop_last=False,
            seed=self.seed,
            world_size=world_size,
            rank=rank,
            buffer_size=4000,
        )
        sampler.set_epoch(epoch)
        return sampler

    def epoch_batches(self, epoch: int) -> Iterator[tuple[CutSet, int | None]]:
        """This rank's batches of `epoch`: (cuts, fixed length in samples or None)."""
        for batch in self.epoch_sampler(epoch):
            yield batch, None

    def __iter__(self) -> Iterator[BatchRef]:
        epoch, skip = self.epoch, self.skip
        while True:
            empty = True
            for index, (batch, samples) in enumerate(self.epoch_batches(epoch)):
                empty = False
                if index < skip:
                    continue  # resuming: fast-forward over consumed batches (no audio read)
                yield BatchRef(epoch, index, batch, samples)
            if empty:
                raise UserError(
                    "the training data yield no batch; check data.train and data.min_seconds."
                )
            epoch, skip = epoch + 1, 0


class ShardBatchPlan(BatchPlan):
    """The batch plan of sharded data: each epoch, this process reads its own shards (every
    world-size-th of the epoch's seeded shard order, from its rank) and the sampler buckets and
    shuffles their cuts (its buffer spans several shards) for this process alone."""

    def __init__(self, cuts: CutSet, **kwargs):
        shard_set = shard_set_of(cuts)
        if shard_set is None:
            raise ValueError("ShardBatchPlan needs the cuts of a shard directory (load_cuts)")
        world_size = kwargs.get("world_size", 1)
        if len(shard_set.shards) < world_size:
            raise UserError(
                f"'{shard_set.root}' holds {len(shard_set.shards)} shard(s) for {world_size} "
                "processes: "
                "each process reads shards of its own; write at least one per process "
                "(`distilxlsr shard --shard-size` smaller)."
            )
        super().__init__(cuts, **kwargs)
        self.shard_set = shard_set

    def epoch_cuts(self, epoch: int) -> tuple[CutSet, int, int]:
        mine = shards_of_rank(
            len(self.shard_set.shards), self.seed, epoch, self.world_size, self.rank
        )
        return self.shard_set.of_shards(mine).filter(_LongerThan(self.min_seconds)), 1, 0


def load_mono(cut: Cut, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A cut's audio as float32 mono at `sample_rate` (channels averaged, soxr resampling); a
    cut read from shards reads its bytes from its shard."""
    audio = with_shard_audio(cut).load_audio()
    audio = audio.mean(axis=0) if audio.ndim == 2 else audio
    audio = np.asarray(audio, dtype=np.float32)
    if cut.sampling_rate != sample_rate:
        audio = soxr.resample(audio, cut.sampling_rate, sample_rate).astype(np.float32)
    return audio


class AudioBatches(torch.utils.data.Dataset):
    """Turns a BatchRef into a padded batch; runs in loader workers."""

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        normalize: bool = True,
        transform: Transform | None = None,
        transform_p: float = 1.0,
        seed: int = 0,
    ):
        rate = getattr(transform, "sample_rate", None)
        if rate is not None and rate != sample_rate:
            raise ValueError(
                f"the transform works at {rate} Hz but the loader loads audio at {sample_rate} "
                "Hz; build it for the loader's rate: make_transform(..., sample_rate=...)."
            )
        self.sample_rate = sample_rate
        self.normalize = normalize
        self.transform = transform
        self.transform_p = transform_p
        self.seed = seed

    def load(self, cut: Cut, epoch: int) -> np.ndarray:
        try:
            audio = load_mono(cut, self.sample_rate)
        except Exception as err:  # lhotse, soundfile and soxr each raise their own types
            raise UserError(
                f"the audio of cut '{cut.id}' could not be read ({type(err).__name__}: "
                f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no detail'}); "
                "restore the file or run `distilxlsr prepare` again."
            ) from None
        if self.transform is not None:
            rng = cut_rng(self.seed, epoch, cut.id, "transform")
            if rng.random() < self.transform_p:
                audio = self.transform(audio, cut, rng)
        return audio

    def __getitem__(self, ref: BatchRef) -> dict:
        waves = [self.load(cut, ref.epoch) for cut in ref.cuts]
        batch = collate(waves, self.normalize, ref.samples)
        return batch | {"epoch": ref.epoch, "index": ref.index}


def collate(waves: list[np.ndarray], normalize: bool, length: int | None = None) -> dict:
    """Pad to the longest; zero-mean unit-variance per utterance over its real samples (as the
    models' feature extractors do); an attention mask of real samples.

    `length` (static shapes): every row is exactly this many samples, the mask all true. The
    loader cropped each cut to it; a window that comes out a few samples long or short (sample
    rounding of the crop or the resampling) is cut or zero-filled at its end, and counts as
    `length` real samples.

    The mask is bool, one byte per sample, the least to make, pass from the loader workers, pin
    and copy to the GPU (`benchmarks/loader_mask_dtype.py` compares it with int64)."""
    if length is not None:
        waves = [w[:length] for w in waves]
    lengths = [len(w) for w in waves] if length is None else [length] * len(waves)
    batch = np.zeros((len(waves), max(lengths)), dtype=np.float32)
    for row, wave in enumerate(waves):
        if normalize:
            wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
        batch[row, : len(wave)] = wave
    lengths_t = torch.tensor(lengths)
    mask = torch.arange(batch.shape[1])[None, :] < lengths_t[:, None]
    return {
        "input_values": torch.from_numpy(batch),
        "attention_mask": mask,
        "num_samples": int(sum(lengths)),
    }


def make_loader(
    plan: BatchPlan, dataset: AudioBatches, num_workers: int, pin_memory: bool, seed: int = 0
) -> torch.utils.data.DataLoader:
    # An own generator: creating the loader must not draw from the global torch RNG, or a
    # resumed run's dropout would differ from an uninterrupted one.
    return torch.utils.data.DataLoader(
        dataset,
        sampler=plan,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed),
        prefetch_factor=4 if num_workers > 0 else None,
    )
