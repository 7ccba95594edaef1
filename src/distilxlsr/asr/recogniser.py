"""A fine-tuned recogniser as a directory, and transcribing with it (docs/design.md,
"Downstream ASR").

`distilxlsr finetune` writes OUT/model: the Hugging Face `*ForCTC` model with its processor
(`transformers.pipeline("automatic-speech-recognition", model=DIR)` decodes greedily), and
beside it `lm.arpa` (a character n-gram of the training transcripts) and `decoding.json` (the
targets, and the LM weight and word bonus chosen on dev) for beam search with the LM.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from distilxlsr.asr.decoding import BeamSearch, BeamSettings, greedy_transcripts
from distilxlsr.asr.vocab import Vocabulary
from distilxlsr.data.loader import collate
from distilxlsr.errors import UserError
from distilxlsr.models.loading import feature_extractor, load_config, model_class

DECODING_FILE = "decoding.json"
LM_FILE = "lm.arpa"


@dataclass
class DecodingChoice:
    """OUT/model/decoding.json: how the recogniser decodes with its LM."""

    targets: str
    lm: str | None
    """The LM's file name in the recogniser's directory (None: greedy only)."""
    settings: BeamSettings
    tuned_on: str | None = None
    """The split `settings` were chosen on."""
    grid: list[dict] | None = None
    """Every (lm_weight, word_bonus) tried there, with its error rate."""

    def save(self, directory: Path) -> None:
        data = asdict(self)
        (Path(directory) / DECODING_FILE).write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, directory: Path) -> DecodingChoice | None:
        path = Path(directory) / DECODING_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(
                data["targets"],
                data.get("lm"),
                BeamSettings(**data["settings"]),
                data.get("tuned_on"),
                data.get("grid"),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path} is damaged ({err}).") from None


@torch.no_grad()
def log_probs(model, waves: list[np.ndarray], normalize: bool, batch: int = 8) -> list[np.ndarray]:
    """Each utterance's CTC log-probabilities (T, V), batched in order of length."""
    model.eval()
    order = np.argsort([len(w) for w in waves], kind="stable")
    out: list[np.ndarray | None] = [None] * len(waves)
    for start in range(0, len(order), batch):
        index = [int(i) for i in order[start : start + batch]]
        data = collate([waves[i] for i in index], normalize)
        mask = data["attention_mask"]
        logits = model(data["input_values"], attention_mask=mask).logits
        lengths = model._get_feat_extract_output_lengths(mask.sum(-1)).tolist()
        lp = torch.log_softmax(logits.float(), -1).cpu().numpy()
        for row, i in enumerate(index):
            out[i] = lp[row, : lengths[row]]
    return out  # type: ignore[return-value]


@contextmanager
def quiet_load_report():
    """Without transformers' load report, whose "MISSING lm_head" table says only what
    fine-tuning intends (the CTC head is new); an error in the weights still raises."""
    import transformers  # noqa: PLC0415

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def ctc_class(model_type: str) -> type:
    """The Hugging Face CTC model of a base model's architecture."""
    import transformers  # noqa: PLC0415

    base = model_class(model_type)
    name = base.__name__.removesuffix("Model") + "ForCTC"
    if not hasattr(transformers, name):
        raise UserError(f"model type '{model_type}' has no CTC head class in transformers.")
    return getattr(transformers, name)


def read_audio(path: str | Path) -> np.ndarray:
    """A file's audio as 16 kHz mono float32 (channels averaged, other rates resampled with
    soxr, as the data loader does)."""
    import soundfile  # noqa: PLC0415
    import soxr  # noqa: PLC0415

    from distilxlsr.conventions import SAMPLE_RATE  # noqa: PLC0415

    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile reports unreadable files as several error types
        raise UserError(f"could not read the audio file '{path}' ({err}).") from None
    audio = audio.mean(axis=1)
    if audio.size == 0:
        raise UserError(f"the audio file '{path}' holds no samples.")
    if not np.isfinite(audio).all():
        raise UserError(f"the audio file '{path}' holds NaN or infinite samples.")
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE)
    return audio.astype(np.float32)


def min_samples(model) -> int:
    """The shortest input (samples) a CTC model's CNN gives one frame for."""
    lengths = model._get_feat_extract_output_lengths(torch.arange(1, 8001))
    return int(torch.nonzero(lengths >= 1)[0]) + 1


def transcribable(model, wave: np.ndarray) -> bool:
    """Whether the model gives `wave` a frame and its samples are finite."""
    return len(wave) >= min_samples(model) and bool(np.isfinite(wave).all())


class Recogniser:
    """A recogniser directory loaded for transcription: greedy, or beam search with its LM."""

    def __init__(self, directory: str | Path, use_lm: bool = True, lm: str | Path | None = None):

        self.directory = Path(directory)
        if not (self.directory / "vocab.json").is_file():
            raise UserError(f"'{directory}' is not a recogniser (no vocab.json); see finetune.")
        choice = DecodingChoice.load(self.directory)
        targets = choice.targets if choice else "chars"
        self.vocab = Vocabulary.load(self.directory, targets)
        config = load_config(str(self.directory))
        with quiet_load_report():
            self.model = ctc_class(config.model_type).from_pretrained(self.directory).eval()
        self.normalize = feature_extractor(str(self.directory), config).do_normalize
        lm_path = Path(lm) if lm else None
        if lm_path is None and choice is not None and choice.lm:
            lm_path = self.directory / choice.lm
        self.beam = None
        if use_lm and lm_path is not None:
            settings = choice.settings if choice else BeamSettings()
            self.beam = BeamSearch(self.vocab, lm_path, settings)

    @property
    def min_samples(self) -> int:
        """The shortest input (16 kHz samples) the model gives a frame for."""
        return min_samples(self.model)

    def check(self, wave: np.ndarray, name: str = "the audio") -> None:
        """One clear error for audio the model cannot transcribe: too short, or not finite."""
        if len(wave) < self.min_samples:
            raise UserError(
                f"{name} is {len(wave)} samples long; the model needs at least "
                f"{self.min_samples} (16 kHz) to give one frame."
            )
        if not np.isfinite(wave).all():
            raise UserError(f"{name} holds NaN or infinite samples.")

    def log_probs(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        for i, wave in enumerate(waves):
            self.check(wave, f"utterance {i}")
        return log_probs(self.model, waves, self.normalize)

    def transcribe(self, waves: list[np.ndarray]) -> list:
        """Transcripts (text, or phone lists) of 16 kHz mono waveforms."""
        lps = self.log_probs(waves)
        return self.beam(lps) if self.beam is not None else greedy_transcripts(self.vocab, lps)
