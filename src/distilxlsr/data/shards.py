"""Sharded corpora (docs/design.md, "Sharded data"): a corpus split written as lhotse Shar
shards, and read back with each process taking its own shards.

`write_shards` writes into OUT/shar/, for shard k, `cuts.<k>.jsonl.gz` (the cuts with their supervisions, phone
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
import shutil
import tarfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
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
    """Adds to each cut of one shard where its audio lies in the shard's tar (the offsets are
    read on the first cut, once per shard and process)."""

    def __init__(self, shard: Shard):
        self.shard = shard
        self.offsets: dict[str, tuple[int, int]] | None = None

    def __call__(self, cut: Cut) -> Cut:
        if self.offsets is None:
            self.offsets = member_offsets(self.shard.recording)
        where = self.offsets.get(cut.id)
        if where is None:
            raise UserError(
                f"cut '{cut.id}' of '{self.shard.cuts}' has no audio in '{self.shard.recording}'; "
                "write the shards again with `distilxlsr shard`."
            )
        custom = dict(cut.custom or {})
        custom[POINTER] = [str(self.shard.recording), where[0], where[1]]
        return fastcopy(cut, custom=custom)


def shard_cuts(shard: Shard) -> CutSet:
    """One shard's cuts, lazily, each pointing at its audio."""
    return CutSet.from_jsonl_lazy(shard.cuts).map(_PointAtAudio(shard))


@dataclass
class ShardSet:
    """The shards of a shard directory (the batch plan gives each process its own)."""

    root: Path
    index: dict
    shards: list[Shard]

    def of_shards(self, which: list[int]) -> CutSet:
        """The cuts of the shards numbered `which`, in that order, lazily."""
        return CutSet(LazyIteratorChain(*(shard_cuts(self.shards[i]) for i in which)))


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


# ---- writing -----------------------------------------------------------------------------


def _write_one(out: str, number: int, cut_dicts: list[dict]) -> tuple[int, int, float]:
    """Shard `number` of `out` (a loader-free worker): (number, cuts, seconds)."""
    from lhotse.shar import SharWriter

    cuts = CutSet.from_dicts(cut_dicts)
    with SharWriter(
        out, fields={"recording": AUDIO_FORMAT}, shard_size=None, shard_suffix=f".{number:06d}"
    ) as writer:
        for cut in cuts:
            writer.write(cut)
    return number, len(cut_dicts), float(sum(c.duration for c in cuts))


def shard_names(number: int) -> tuple[str, str]:
    """The cuts manifest and audio tar of shard `number`, relative to the shard directory."""
    return f"{SHAR_DIR}/cuts.{number:06d}.jsonl.gz", f"{SHAR_DIR}/recording.{number:06d}.tar"


def write_shards(
    data: str | Path,
    out: str | Path,
    split: str = "train",
    shard_size: int = 1000,
    seed: int = 0,
    jobs: int = 1,
    say=print,
) -> dict:
    """Write the `split` of corpus `data` (a manifest, ROOT or ROOT/<lang>) as shards of
    `shard_size` cuts into `out`; returns the index (also `out`/shards.json). The cuts are
    shuffled (seeded) first. Resumable: shards finished by an earlier call (listed in
    `out`/shards.partial.json) are kept, the rest written again."""
    from distilxlsr.data.corpora import load_cuts
    from distilxlsr.data.loader import scan_cuts

    if shard_size < 1:
        raise UserError(f"--shard-size must be at least 1 cut (got {shard_size}).")
    out = Path(out)
    if is_shard_dir(out):
        raise UserError(
            f"'{out}' already holds finished shards ({SHARD_INDEX}); choose another --out or "
            "delete it to write them again."
        )
    cuts = load_cuts(data, split)
    stats = scan_cuts(cuts, 0.0, data)  # unreadable manifests, missing audio: one error here
    if stats.cuts == 0:
        raise UserError(f"'{data}' holds no cut in its {split} split; nothing to shard.")
    eager = cuts.to_eager()
    order = np.random.default_rng([seed, 0x5A4D]).permutation(len(eager))
    dicts = [eager[int(i)].to_dict() for i in order]
    chunks = [dicts[i : i + shard_size] for i in range(0, len(dicts), shard_size)]
    (out / SHAR_DIR).mkdir(parents=True, exist_ok=True)
    partial_path = out / "shards.partial.json"
    partial = json.loads(partial_path.read_text()) if partial_path.is_file() else {}
    if partial and (partial.get("seed"), partial.get("shard_size"), partial.get("cuts")) != (
        seed,
        shard_size,
        len(dicts),
    ):
        raise UserError(
            f"'{out}' holds shards of another call (seed, shard size or corpus differ); "
            "choose another --out or delete it."
        )
    done = {int(k): v for k, v in partial.get("done", {}).items()}
    todo = [k for k in range(len(chunks)) if k not in done]
    say(
        f"{stats.cuts} cuts, {stats.hours:.2f} h -> {len(chunks)} shard(s) of up to "
        f"{shard_size} cuts in {out} ({len(done)} written before)"
    )

    def record(number: int, n: int, seconds: float) -> None:
        done[number] = {"num_cuts": n, "seconds": seconds}
        partial_path.write_text(
            json.dumps({"seed": seed, "shard_size": shard_size, "cuts": len(dicts), "done": done})
        )
        say(f"shard {number + 1}/{len(chunks)}: {n} cuts, {seconds / 3600:.3f} h")

    if jobs > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_write_one, str(out / SHAR_DIR), k, chunks[k]) for k in todo]
            for future in futures:
                record(*future.result())
    else:
        for k in todo:
            record(*_write_one(str(out / SHAR_DIR), k, chunks[k]))
    index = {
        "format": FORMAT,
        "fields": {"recording": AUDIO_FORMAT},
        "source": str(data),
        "split": split,
        "seed": seed,
        "shard_size": shard_size,
        "num_cuts": len(dicts),
        "hours": round(sum(v["seconds"] for v in done.values()) / 3600, 4),
        "languages": {k: round(v, 4) for k, v in sorted(stats.languages.items())},
        "shards": [
            {
                "cuts": shard_names(k)[0],
                "recording": shard_names(k)[1],
                **done[k],
            }
            for k in range(len(chunks))
        ],
    }
    _copy_phone_inventories(Path(data), out)
    (out / SHARD_INDEX).write_text(json.dumps(index, indent=1) + "\n")
    partial_path.unlink()
    return index


def _copy_phone_inventories(data: Path, out: Path) -> None:
    """The phone inventories (phones.json) beside the shards: of the corpus directory itself,
    or one per language directory under it (as phones.<lang>.json)."""
    if data.is_file():
        data = data.parent
    if (data / "phones.json").is_file():
        shutil.copyfile(data / "phones.json", out / "phones.json")
        return
    for lang_dir in sorted(p for p in data.iterdir() if p.is_dir()) if data.is_dir() else []:
        if (lang_dir / "phones.json").is_file():
            shutil.copyfile(lang_dir / "phones.json", out / f"phones.{lang_dir.name}.json")
