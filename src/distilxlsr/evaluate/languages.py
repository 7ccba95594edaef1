"""The evaluation's data: each language's train split and scored split (test, valid or dev),
its phone vocabulary and tier (docs/design.md, "Evaluation")."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from distilxlsr.asr.metrics import WORD_DELIMITER, normalise_text
from distilxlsr.conventions import BLANK, SAMPLE_RATE
from distilxlsr.data.corpora import cuts_file, load_cuts
from distilxlsr.data.loader import load_mono
from distilxlsr.errors import UserError

TEST_SPLITS = ("test", "valid", "dev")


@dataclass
class Utterances:
    ids: list[str]
    speakers: list[str]
    waves: list[np.ndarray]
    phones: list[list[str]]
    """Each utterance's target symbols: its phones, or with `targets="chars"` the characters of
    its normalised transcript with `|` between words (asr.vocab's spelling)."""

    @property
    def seconds(self) -> float:
        return sum(len(w) for w in self.waves) / SAMPLE_RATE


@dataclass
class LanguageData:
    lang: str
    train: Utterances
    test: Utterances
    test_split: str
    vocab: list[str]  # index 0 is the CTC blank
    skipped: int

    @cached_property
    def _index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.vocab)}

    def encode(self, phones: list[str]) -> list[int]:
        return [self._index[p] for p in phones if p in self._index]

    def decode(self, ids: list[int]) -> list[str]:
        return [self.vocab[i] for i in ids]

    @property
    def unseen_test_phones(self) -> int:
        known = set(self.vocab)
        return sum(1 for seq in self.test.phones for p in seq if p not in known)


def check_split(split: str | None) -> None:
    if split is not None and split not in TEST_SPLITS:
        raise UserError(f"--split '{split}' must be one of {', '.join(TEST_SPLITS)}.")


def find_languages(
    data: str | Path, langs: list[str] | None, split: str | None = None
) -> list[tuple[str, Path]]:
    """(language, directory) pairs: `data` is one language directory or a root holding several.
    A language needs a train split and a split to score on: `split` if given, else any of
    TEST_SPLITS. One without it is skipped with a printed note, or is an error when `langs`
    asked for it."""
    check_split(split)
    wanted = f"{split} split" if split else "test, valid or dev split"
    root = Path(data)
    if not root.is_dir():
        raise UserError(f"--data '{data}' is not a directory; pass a corpus directory.")
    if cuts_file(root, "train") is not None:
        found = [(root.name, root)]
    else:
        found = [
            (d.name, d) for d in sorted(root.iterdir()) if d.is_dir() and cuts_file(d, "train")
        ]
    if langs:
        present = {name for name, _ in found}
        missing = [x for x in langs if x not in present]
        if missing:
            raise UserError(
                f"language '{missing[0]}' has no train split (cuts_train.jsonl.gz) under '{data}'; "
                f"present: {', '.join(sorted(present)) or 'none'}."
            )
        found = [(name, d) for name, d in found if name in langs]
        untestable = [name for name, d in found if scored_split(d, split) is None]
        if untestable:
            raise UserError(f"language '{untestable[0]}' has no {wanted} under '{data}'.")
    else:
        skipped = [name for name, d in found if scored_split(d, split) is None]
        if skipped:  # e.g. English, which a distillation corpus holds for training only
            print(f"evaluate: skipping {', '.join(skipped)}: no {wanted}")
        found = [(name, d) for name, d in found if scored_split(d, split) is not None]
    if not found:
        raise UserError(f"'{data}' holds no language with a train split and a {wanted}.")
    return found


def target_symbols(cut, targets: str = "phones") -> list[str]:
    """A cut's target symbols: its supervisions' phones, or (`chars`) the characters of their
    normalised text, `|` for each space."""
    if targets == "chars":
        text = " ".join((s.text or "") for s in cut.supervisions)
        return [WORD_DELIMITER if c == " " else c for c in normalise_text(text)]
    return [p for sup in cut.supervisions for p in (sup.custom or {}).get("phones", [])]


def load_utterances(
    lang_dir: Path, split: str, sample_rate: int = SAMPLE_RATE, targets: str = "phones"
) -> tuple[Utterances, int]:
    """All utterances of a split with their target symbols (`target_symbols`); those without
    any are counted."""
    ids, speakers, waves, phones = [], [], [], []
    skipped = 0
    for cut in load_cuts(lang_dir, split):
        seq = target_symbols(cut, targets)
        if not seq:
            skipped += 1
            continue
        ids.append(cut.id)
        speakers.append(cut.supervisions[0].speaker or "")
        waves.append(load_mono(cut, sample_rate))
        phones.append(seq)
    return Utterances(ids, speakers, waves, phones), skipped


def scored_split(lang_dir: Path, split: str | None = None) -> str | None:
    """The split a language is scored on: `split` if present, by default the first present of
    TEST_SPLITS; None if there is none."""
    candidates = (split,) if split else TEST_SPLITS
    return next((s for s in candidates if cuts_file(lang_dir, s) is not None), None)


def load_language(
    lang: str, lang_dir: Path, split: str | None = None, targets: str = "phones"
) -> LanguageData:
    """A language's train split and the split it is scored on: `split`, or by default the first
    present of TEST_SPLITS; `targets` phones or chars (`target_symbols`)."""
    check_split(split)
    train, skipped = load_utterances(lang_dir, "train", targets=targets)
    requested = split
    split = scored_split(lang_dir, split)
    if split is None:
        raise UserError(
            f"language '{lang}' in '{lang_dir}' has no "
            f"{requested or ' or '.join(TEST_SPLITS)} split."
        )
    test, skipped_test = load_utterances(lang_dir, split, targets=targets)
    if not train.ids or not test.ids:
        what = "text" if targets == "chars" else "custom['phones']"
        raise UserError(
            f"language '{lang}': no utterance with a {targets[:-1]} transcript in its "
            f"{'train' if not train.ids else split} split (supervision {what})."
        )
    vocab = [BLANK] + sorted({p for seq in train.phones for p in seq})
    return LanguageData(lang, train, test, split, vocab, skipped + skipped_test)


def train_subset(n: int, limit: int = 200) -> list[int]:
    """Training utterances scored for train PER (a fixed subset, the same for every model)."""
    return list(range(0, n, max(1, n // limit)))[:limit]
