"""A recogniser's output vocabulary (docs/design.md, "Downstream ASR"): characters of the
normalised training transcripts with a word delimiter, or phones; saved as the `vocab.json` of a
Hugging Face CTC tokenizer, so that the exported recogniser decodes with `transformers` alone.

Index 0 is the CTC blank (`<pad>`: Hugging Face's CTC models use the pad token as the blank),
1 is `<unk>` (a character of a test transcript that no training transcript holds), and with
characters 2 is the word delimiter `|` (wav2vec 2.0's convention for the space).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from distilxlsr.asr.metrics import WORD_DELIMITER, normalise_text
from distilxlsr.errors import UserError

BLANK = "<pad>"
UNKNOWN = "<unk>"
TARGETS = ("chars", "phones")


@dataclass(frozen=True)
class Vocabulary:
    """Tokens by index; `targets` is `chars` or `phones`."""

    tokens: tuple[str, ...]
    targets: str = "chars"

    @classmethod
    def from_transcripts(cls, texts: list[str]) -> Vocabulary:
        """The characters of the normalised `texts` (sorted, so the same texts in any order give
        the same vocabulary); the space becomes the word delimiter."""
        chars = {c for text in texts for c in normalise_text(text) if c != " "}
        if not chars:
            raise UserError(
                "no character in the training transcripts (supervision text); a character "
                "recogniser needs transcripts, or use targets=phones."
            )
        return cls((BLANK, UNKNOWN, WORD_DELIMITER, *sorted(chars)), "chars")

    @classmethod
    def from_phones(cls, sequences: list[list[str]]) -> Vocabulary:
        phones = {p for seq in sequences for p in seq}
        if not phones:
            raise UserError(
                "no phone in the training transcripts (supervision custom['phones']); use "
                "targets=chars."
            )
        return cls((BLANK, UNKNOWN, *sorted(phones)), "phones")

    @property
    def blank(self) -> int:
        return 0

    @property
    def unknown(self) -> int:
        return 1

    @property
    def delimiter(self) -> int | None:
        return 2 if self.targets == "chars" else None

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def symbols(self, text_or_phones: str | list[str]) -> list[str]:
        """What a transcript is spelt with: normalised characters (a space is the delimiter),
        or the phones themselves."""
        if self.targets == "phones":
            return list(text_or_phones)
        return [WORD_DELIMITER if c == " " else c for c in normalise_text(text_or_phones)]

    def encode(self, text_or_phones: str | list[str]) -> list[int]:
        """Token ids; a symbol outside the vocabulary is `<unk>`."""
        index = self.index
        return [index.get(s, self.unknown) for s in self.symbols(text_or_phones)]

    def decode(self, ids: list[int]) -> str | list[str]:
        """Ids of a collapsed CTC path (no blank) back to text (the delimiter a space, spaces
        trimmed) or to a phone list."""
        symbols = [self.tokens[i] for i in ids if i != self.blank]
        if self.targets == "phones":
            return symbols
        return " ".join("".join(symbols).replace(WORD_DELIMITER, " ").split())

    def save(self, directory: str | Path) -> Path:
        """DIR/vocab.json, the token-to-id map a Hugging Face CTC tokenizer reads."""
        path = Path(directory) / "vocab.json"
        path.write_text(json.dumps(self.index, ensure_ascii=False, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path, targets: str = "chars") -> Vocabulary:
        path = Path(directory) / "vocab.json"
        try:
            index = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"could not read the vocabulary {path} ({err}).") from None
        tokens = sorted(index, key=index.get)
        if [index[t] for t in tokens] != list(range(len(tokens))) or tokens[:2] != [
            BLANK,
            UNKNOWN,
        ]:
            raise UserError(
                f"{path} is not a CTC vocabulary of this toolkit: ids must run 0..N-1 with "
                f"{BLANK} at 0 and {UNKNOWN} at 1."
            )
        return cls(tuple(tokens), targets)

    def tokenizer(self, directory: str | Path):
        """The Hugging Face tokenizer of this vocabulary, saved in `directory` (with vocab.json)."""
        import transformers  # noqa: PLC0415

        vocab_file = self.save(directory)
        common = {"unk_token": UNKNOWN, "pad_token": BLANK, "bos_token": None, "eos_token": None}
        if self.targets == "phones":
            tok = transformers.Wav2Vec2PhonemeCTCTokenizer(
                str(vocab_file), do_phonemize=False, **common
            )
        else:
            tok = transformers.Wav2Vec2CTCTokenizer(
                str(vocab_file), word_delimiter_token=WORD_DELIMITER, **common
            )
        tok.save_pretrained(directory)
        return tok
