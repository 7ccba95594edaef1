"""`distilxlsr shard`: a corpus split written as lhotse Shar shards, with the index that
data/shards.py reads (docs/design.md, "Data loading", sharded data)."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from lhotse import CutSet
from lhotse.shar import SharWriter

from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import scan_cuts
from distilxlsr.data.shards import AUDIO_FORMAT, FORMAT, SHAR_DIR, SHARD_INDEX, is_shard_dir
from distilxlsr.errors import UserError


def _write_one(out: str, number: int, cut_dicts: list[dict]) -> tuple[int, int, float]:
    """Shard `number` of `out` (a loader-free worker): (number, cuts, seconds)."""
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
