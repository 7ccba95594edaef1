"""Sharded corpora (docs/design.md, "Sharded data"): a corpus split written as lhotse Shar
shards, and read back with each process taking its own shards.

`write_shards` (data/shard_writer.py) writes into OUT/shar/, for shard k, `cuts.<k>.jsonl.gz` (the cuts with their supervisions, phone
alignments included) and `recording.<k>.tar` (each cut's audio as `<cut id>.flac`, lossless, with
lhotse's `<cut id>.json` recording record), and OUT/shards.json, the index this module reads,
with the phone inventories beside it. The
cuts are shuffled once (seeded) before they are cut into shards, so every shard mixes languages
and voices as the whole corpus does. lhotse's own reader reads the same files
(`CutSet.from_shar(in_dir=OUT/"shar")`).

The training loader does not stream the tars: when the sampler hands a batch to a loader worker,
each cut carries where its audio lies in its tar (offset and size, read once from the tar's
headers), and the worker reads those bytes. So the batch plan stays a pure function of its
position (epoch, batch index), a resumed run skips batches without reading audio, and the crops,
the phoneme shuffle and the normalisation are those of per-file data; what changes is where the
bytes come from and which cuts a process meets: each epoch the shards are permuted (seeded by
the epoch) and process r takes every (world size)-th of them from position r (`ShardBatchPlan`).
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lhotse import CutSet, fastcopy
from lhotse.audio import AudioSource
from lhotse.cut import Cut
from lhotse.lazy import LazyIteratorChain

from distilxlsr.errors import UserError

SHARD_INDEX = "shards.json"
SHAR_DIR = "shar"
"""The subdirectory of the Shar files (lhotse's reader takes every file of its directory for a
field of the shards: the index and inventories stay outside it)."""
FORMAT = "lhotse-shar"
AUDIO_FORMAT = "flac"
POINTER = "shard_audio"
"""The custom field of a cut read from shards: [tar path, byte offset, byte count] of its audio."""


@dataclass(frozen=True)
class Shard:
    """One shard: its cuts manifest, its audio tar, how many cuts and seconds it holds."""

    cuts: Path
    recording: Path
    num_cuts: int
    seconds: float


def is_shard_dir(path: str | Path) -> bool:
    """Whether `path` is a directory written by `write_shards` (holds shards.json)."""
    return (Path(path) / SHARD_INDEX).is_file()


def read_index(root: str | Path) -> tuple[dict, list[Shard]]:
    """The index of a shard directory and its shards, each file checked to be there."""
    root = Path(root)
    try:
        index = json.loads((root / SHARD_INDEX).read_text())
        shards = [
            Shard(root / s["cuts"], root / s["recording"], int(s["num_cuts"]), float(s["seconds"]))
            for s in index["shards"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"'{root / SHARD_INDEX}' is not a shard index written by `distilxlsr shard` "
            f"({type(err).__name__}: {err}); write the shards again."
        ) from None
    if index.get("format") != FORMAT:
        raise UserError(
            f"'{root / SHARD_INDEX}' names format {index.get('format')!r}; this version reads "
            f"{FORMAT!r} shards written by `distilxlsr shard`."
        )
    missing = [p for s in shards for p in (s.cuts, s.recording) if not p.is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} file(s) of the shards in '{root}' are gone (first: {missing[0]}); "
            "restore them or write the shards again with `distilxlsr shard`."
        )
    if not shards:
        raise UserError(f"'{root}' holds no shard; write them with `distilxlsr shard`.")
    return index, shards


def member_offsets(tar_path: Path) -> dict[str, tuple[int, int]]:
    """Where each audio member of a shard's tar lies: cut id -> (byte offset, byte count), from
    the tar's headers alone (no audio is read)."""
    suffix = f".{AUDIO_FORMAT}"
    offsets = {}
    try:
        with tarfile.open(tar_path, "r:") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(suffix):
                    offsets[member.name[: -len(suffix)]] = (member.offset_data, member.size)
    except (OSError, tarfile.TarError) as err:
        raise UserError(
            f"shard '{tar_path}' is not a readable tar ({type(err).__name__}: {err}); write "
            "the shards again with `distilxlsr shard`."
        ) from None
    return offsets


class _PointAtAudio:
    """Adds to each cut of one shard where its audio lies in the shard's tar. The offsets are
    read on the shard's first cut and kept in `known` (the shard set's, shared by every epoch),
    so each tar's headers are read once per process."""

    def __init__(self, shard: Shard, known: dict[Path, dict[str, tuple[int, int]]]):
        self.shard = shard
        self.known = known

    def __call__(self, cut: Cut) -> Cut:
        offsets = self.known.get(self.shard.recording)
        if offsets is None:
            offsets = self.known[self.shard.recording] = member_offsets(self.shard.recording)
        where = offsets.get(cut.id)
        if where is None:
            raise UserError(
                f"cut '{cut.id}' of '{self.shard.cuts}' has no audio in '{self.shard.recording}'; "
                "write the shards again with `distilxlsr shard`."
            )
        custom = dict(cut.custom or {})
        custom[POINTER] = [str(self.shard.recording), where[0], where[1]]
        return fastcopy(cut, custom=custom)


@dataclass
class ShardSet:
    """The shards of a shard directory (the batch plan gives each process its own)."""

    root: Path
    index: dict
    shards: list[Shard]
    offsets: dict[Path, dict[str, tuple[int, int]]] = field(default_factory=dict)
    """Each tar's member offsets, read on first use."""

    def of_shards(self, which: list[int]) -> CutSet:
        """The cuts of the shards numbered `which`, in that order, lazily."""
        return CutSet(LazyIteratorChain(*(self.cuts_of(i) for i in which)))

    def cuts_of(self, number: int) -> CutSet:
        """One shard's cuts, lazily, each pointing at its audio."""
        shard = self.shards[number]
        return CutSet.from_jsonl_lazy(shard.cuts).map(_PointAtAudio(shard, self.offsets))


def sharded_cuts(root: str | Path) -> CutSet:
    """Every cut of a shard directory, lazily, in shard order; the CutSet carries its
    `ShardSet` (see `shard_set_of`)."""
    index, shards = read_index(root)
    shard_set = ShardSet(Path(root), index, shards)
    cuts = shard_set.of_shards(list(range(len(shards))))
    cuts.shard_set = shard_set  # what the batch plan reads; lhotse's own operations drop it
    return cuts


def shard_set_of(cuts: CutSet) -> ShardSet | None:
    """The shards behind a CutSet from `sharded_cuts`; None for cuts from manifests."""
    return getattr(cuts, "shard_set", None)


def with_shard_audio(cut: Cut) -> Cut:
    """A cut read from shards with its audio bytes attached (read from its tar at the recorded
    offset), so that lhotse loads, crops and resamples it as it does a file; other cuts as they
    are."""
    pointer = (cut.custom or {}).get(POINTER)
    recording = getattr(cut, "recording", None)
    if pointer is None or recording is None or recording.sources[0].type != "shar":
        return cut
    path, offset, size = pointer
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise OSError(f"shard '{path}' ends before the audio of cut '{cut.id}'")
    source = AudioSource(type="memory", channels=recording.sources[0].channels, source=data)
    return fastcopy(cut, recording=fastcopy(recording, sources=[source]))


def shard_order(num_shards: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the shards in `epoch`: a permutation seeded by (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 0x5A4D]).permutation(num_shards)


def shards_of_rank(num_shards: int, seed: int, epoch: int, world_size: int, rank: int) -> list:
    """The shards process `rank` reads in `epoch`: every `world_size`-th of the epoch's order,
    from position `rank`. Each shard goes to exactly one process."""
    return [int(i) for i in shard_order(num_shards, seed, epoch)[rank::world_size]]
