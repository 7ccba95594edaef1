"""The files of one language directory of the synthetic corpus: names, atomic writes, and the
cache stamp that lets an unchanged output be reused.

ROOT/<lang>/synth_<split>.json records the arguments' key and the size and digest of every file
the split wrote; a split whose stamp matches the key and whose files are all unchanged is reused,
anything else is written again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from distilxlsr.data.synthetic.texts import asset_path

# Bump whenever the output for the same arguments changes. 2: corpus v2 (speakers held out by
# variant, words by split, the dev and pretrain splits, tiers). 3: corpus v3 (dev and test voices
# are named variants that no training split of any language uses).
GENERATOR_VERSION = 3
CHUNK = 12  # utterances per fresh engine process (part of the output's definition)


def write_jsonl_gz(path: Path, items: Iterable[dict]) -> None:
    """JSON lines, gzip-compressed without a timestamp (same arguments, same bytes)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        for item in items:
            f.write((json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8"))
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_files(lang_dir: Path, split: str) -> list[Path]:
    names = [f"{kind}_{split}.jsonl.gz" for kind in ("recordings", "supervisions", "cuts")]
    return [lang_dir / n for n in names] + [lang_dir / f"phones_{split}.json"]


def package_version(package: str) -> str:
    """An installed Python package's version, "unknown" when it cannot be read (a cache key
    holding it then just changes)."""
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # noqa: BLE001
        return "unknown"


def cache_key(lang: str, split: str, minutes: float, seed: int, lang_dir: Path) -> str:
    args = {
        "generator": GENERATOR_VERSION,
        "chunk": CHUNK,
        "lang": lang,
        "split": split,
        "minutes": float(minutes),
        "seed": int(seed),
        "espeakng_loader": package_version("espeakng-loader"),
        "text": hashlib.sha256(asset_path(lang).read_bytes()).hexdigest(),
        "dir": str(lang_dir.resolve()),
    }
    return hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()


def stamp_path(lang_dir: Path, split: str) -> Path:
    return lang_dir / f"synth_{split}.json"


def is_cached(lang_dir: Path, split: str, key: str) -> bool:
    """Whether ROOT/<lang> holds a complete, unmodified output for this key."""
    try:
        stamp = json.loads(stamp_path(lang_dir, split).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if stamp.get("key") != key or not stamp.get("files"):
        return False
    for rel, (size, digest) in stamp["files"].items():
        path = lang_dir / rel
        try:
            if path.stat().st_size != size:
                return False
        except OSError:
            return False
        if file_digest(path) != digest:
            return False
    return True


def clear_split(lang_dir: Path, split: str) -> Path:
    stamp_path(lang_dir, split).unlink(missing_ok=True)
    for path in split_files(lang_dir, split):
        path.unlink(missing_ok=True)
    audio_dir = lang_dir / "audio" / split
    if audio_dir.exists():
        shutil.rmtree(audio_dir)
    audio_dir.mkdir(parents=True)
    return audio_dir
