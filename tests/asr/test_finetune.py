"""The fine-tuning job: a character CTC recogniser learns a toy language, resumes exactly, and
leaves a directory that `transformers.pipeline` loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from safetensors.torch import load_file

from distilxlsr.asr.finetune import finetune
from distilxlsr.asr.recipe import FinetuneConfig
from distilxlsr.asr.recogniser import Recogniser
from distilxlsr.errors import UserError
from distilxlsr.training.checkpoint import list_checkpoints
from tests.helpers import tiny_model

SR = 16000
TONES = {"s": 500.0, "i": 1300.0, "n": 2600.0, "o": 4200.0}
"""The toy language's letters, each a pure tone; its two words are "si" and "no"."""
WORDS = ("si", "no")


def _speak(words: list[str], rng: np.random.Generator) -> np.ndarray:
    # Silence only between words (where the transcript has its space), none at the ends: the
    # space is as audible as a letter, so a tiny model learns it in a few seconds of CPU.
    pieces = []
    for i, word in enumerate(words):
        if i:
            pieces.append(np.zeros(int(rng.uniform(0.08, 0.12) * SR)))
        for letter in word:
            n = int(rng.uniform(0.07, 0.09) * SR)
            t = np.arange(n) / SR
            pieces.append(0.3 * np.sin(2 * np.pi * TONES[letter] * t) * np.hanning(n))
    wave = np.concatenate(pieces)
    return (wave + 0.003 * rng.standard_normal(len(wave))).astype(np.float32)


def make_two_word_corpus(root: Path, split: str, n: int, seed: int) -> Path:
    """ROOT/tw/cuts_<split>.jsonl.gz: n utterances of one to three words, with transcripts."""
    rng = np.random.default_rng(seed)
    lang = root / "tw"
    (lang / "audio").mkdir(parents=True, exist_ok=True)
    recordings, supervisions = [], []
    for u in range(n):
        words = [WORDS[int(i)] for i in rng.integers(0, 2, size=int(rng.integers(1, 4)))]
        rec_id = f"tw-{split}-{u:03d}"
        path = lang / "audio" / f"{rec_id}.flac"
        sf.write(path, _speak(words, rng), SR)
        recording = Recording.from_file(path, recording_id=rec_id)
        recordings.append(recording)
        supervisions.append(
            SupervisionSegment(
                rec_id,
                rec_id,
                0.0,
                recording.duration,
                text=" ".join(words).upper() + ".",
                language="tw",
                speaker=f"tw-{split}-spk{u % 3}",
            )
        )
    cuts = CutSet.from_manifests(
        recordings=RecordingSet.from_recordings(recordings),
        supervisions=SupervisionSet.from_segments(supervisions),
    )
    cuts.to_file(lang / f"cuts_{split}.jsonl.gz")
    return lang


@pytest.fixture(scope="module")
def two_words(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_words")
    make_two_word_corpus(root, "train", 80, seed=0)  # fewer do not generalise to dev
    return make_two_word_corpus(root, "dev", 8, seed=1)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("base")
    tiny_model("wav2vec2", layers=2).save_pretrained(path)
    return path


def _config(base, data, out, frozen=30, full=600, **changes) -> FinetuneConfig:
    c = FinetuneConfig(model=str(base), data=str(data), out=str(out))
    c.frozen.steps, c.frozen.lr = frozen, 5e-3
    c.full.steps, c.full.lr, c.full.head_lr, c.full.hold_fraction = full, 2e-3, 1e-2, 0.6
    c.masking.time_prob = c.masking.feature_prob = 0.0
    c.loader.min_seconds, c.loader.max_seconds, c.train.batch_seconds = 0.2, 5.0, 8.0
    c.train.checkpoint_every, c.train.keep_checkpoints = 10, 100
    c.decoding.lm_weights, c.decoding.word_bonuses = [0.0, 0.5], [0.0]
    for key, value in changes.items():
        *section, name = key.split(".")
        setattr(getattr(c, section[0]) if section else c, name, value)
    return c


@pytest.fixture(scope="module")
def learned(tmp_path_factory, base_model, two_words):
    out = tmp_path_factory.mktemp("learned") / "run"
    model_dir = finetune(_config(base_model, two_words, out))
    return out, model_dir


def test_a_character_recogniser_learns_a_two_word_language_to_zero_cer(learned):
    out, model_dir = learned
    results = json.loads((out / "results.json").read_text())
    assert results["eval"]["split"] == "dev" and results["eval"]["utterances"] == 8
    assert results["eval"]["greedy"] == {"cer": 0.0, "wer": 0.0}
    assert results["eval"]["lm"] == {"cer": 0.0, "wer": 0.0}
    # the vocabulary: blank, <unk>, the delimiter and the four letters of the normalised texts
    vocab = json.loads((model_dir / "vocab.json").read_text())
    assert sorted(vocab, key=vocab.get) == ["<pad>", "<unk>", "|", "i", "n", "o", "s"]
    card = (model_dir / "README.md").read_text()
    assert "CER" in card and str(Path(out).parent) not in card  # no absolute path exported


def test_the_exported_recogniser_transcribes_a_wav_through_the_transformers_pipeline(
    learned, tmp_path
):
    import transformers

    _, model_dir = learned
    wav = tmp_path / "speech.wav"
    sf.write(wav, _speak(["no", "si", "si"], np.random.default_rng(7)), SR)
    asr = transformers.pipeline("automatic-speech-recognition", model=str(model_dir))
    wave, rate = sf.read(wav, dtype="float32")
    assert asr({"raw": wave, "sampling_rate": rate})["text"] == "no si si"
    # the toolkit's own loader: greedy and with the LM written beside the model
    assert Recogniser(model_dir, use_lm=False).transcribe([wave]) == ["no si si"]
    recogniser = Recogniser(model_dir)
    assert recogniser.beam is not None and recogniser.transcribe([wave]) == ["no si si"]


def test_a_killed_run_resumes_bit_identical_in_either_stage(tmp_path, base_model, two_words):
    straight = tmp_path / "straight"
    finetune(
        _config(base_model, two_words, straight, frozen=4, full=6, **{"train.checkpoint_every": 2})
    )
    final = load_file(list_checkpoints(straight)[-1] / "model.safetensors")
    for kept in ("step-0000002", "step-0000006"):  # a checkpoint of stage 1, one of stage 2
        run = tmp_path / f"from-{kept}"
        shutil.copytree(straight, run)
        shutil.rmtree(run / "model")
        (run / "results.json").unlink()
        for checkpoint in list_checkpoints(run):
            if checkpoint.name > kept:  # what a kill after `kept` would not have written
                shutil.rmtree(checkpoint)
        finetune(
            _config(base_model, two_words, run, frozen=4, full=6, **{"train.checkpoint_every": 2})
        )
        resumed = load_file(list_checkpoints(run)[-1] / "model.safetensors")
        assert resumed.keys() == final.keys()
        assert all(torch.equal(resumed[k], final[k]) for k in final), kept
    assert list_checkpoints(straight)[-1].name == "step-0000010"


def test_masking_is_drawn_the_same_on_resume(tmp_path, base_model, two_words):
    # SpecAugment on: its masks come from numpy's global RNG, seeded per step.
    def config(out):
        return _config(
            base_model,
            two_words,
            out,
            frozen=2,
            full=4,
            **{"train.checkpoint_every": 2, "masking.time_prob": 0.5, "masking.time_length": 2},
        )

    straight = tmp_path / "straight"
    finetune(config(straight))
    run = tmp_path / "resumed"
    shutil.copytree(straight, run)
    shutil.rmtree(run / "model")
    for checkpoint in list_checkpoints(run):
        if checkpoint.name > "step-0000002":
            shutil.rmtree(checkpoint)
    np.random.seed(12345)  # whatever the caller's global state, the masks are the run's own
    finetune(config(run))
    a = load_file(list_checkpoints(straight)[-1] / "model.safetensors")
    b = load_file(list_checkpoints(run)[-1] / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_untranscribed_and_overlong_utterances_are_counted_not_dropped_silently(
    tmp_path, base_model, capsys
):
    lang = make_two_word_corpus(tmp_path / "corpus", "train", 8, seed=3)
    cuts = list(CutSet.from_file(lang / "cuts_train.jsonl.gz"))
    cuts[0].supervisions[0].text = " .. "  # nothing left after normalisation
    CutSet.from_cuts(cuts).to_file(lang / "cuts_train.jsonl.gz")
    longer = sum(cut.duration > 0.3 for cut in cuts[1:])
    assert 0 < longer < 7
    c = _config(base_model, lang, tmp_path / "run", frozen=1, full=1, eval_split="")
    c.loader.min_seconds, c.loader.max_seconds = 0.05, 0.3  # two or three words are longer
    finetune(c)
    said = capsys.readouterr().out
    assert f"{7 - longer} utterances" in said
    assert f"skipped: 1 without a transcript, {longer} longer than loader.max_seconds" in said
    c.loader.max_seconds, c.out = 0.06, str(tmp_path / "none")  # nothing left: one clear error
    with pytest.raises(UserError, match="no utterance to fine-tune on: 1 without a transcript"):
        finetune(c)


def test_held_out_splits_are_refused_for_training(base_model, two_words, tmp_path):
    with pytest.raises(UserError, match="held out"):
        finetune(_config(base_model, two_words, tmp_path / "r", split="dev"))


def test_the_command_line_fine_tunes_by_config_name_and_transcribes(
    tmp_path, base_model, two_words, capsys
):
    from distilxlsr.cli import main

    out = tmp_path / "run"
    args = [f"model={base_model}", f"data={two_words}", f"out={out}", "loader.min_seconds=0.2"]
    assert main(["finetune", "--config", "finetune-tiny-cpu", *args]) == 0
    said = capsys.readouterr().out
    assert f"recogniser: {out / 'model'}" in said
    assert len(list_checkpoints(out)) == 2  # steps 5 and 10 (4 + 6)
    wav = tmp_path / "speech.wav"
    sf.write(wav, _speak(["si"], np.random.default_rng(1)), 8000)  # resampled to 16 kHz
    assert main(["transcribe", "--model", str(out / "model"), str(wav), "--no-lm"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{wav}\t")  # ten steps transcribe something, or nothing
    assert main(["transcribe", "--model", str(tmp_path), str(wav)]) == 2
    assert "is not a recogniser" in capsys.readouterr().err
    (tmp_path / "bad.wav").write_text("not audio")
    assert main(["transcribe", "--model", str(out / "model"), str(tmp_path / "bad.wav")]) == 2
    assert "could not read the audio file" in capsys.readouterr().err


def test_the_shipped_fine_tuning_configs_load_by_name():
    from distilxlsr.asr.recipe import load_finetune_config

    for name in ("finetune-ctc", "finetune-tiny-cpu"):
        config = load_finetune_config(name, ["model=M", "data=D"])
        config.validate()
        assert config.targets == "chars" and config.decoding.lm
    assert load_finetune_config("finetune-tiny-cpu").full.steps == 6
    with pytest.raises(UserError, match="no model given"):
        load_finetune_config("finetune-ctc", ["data=D"]).validate()


def test_the_ctc_model_has_blank_0_scaled_masks_no_layerdrop_and_stages_that_freeze(base_model):
    from distilxlsr.asr.finetune import build_ctc_model, set_stage
    from distilxlsr.asr.vocab import Vocabulary

    c = _config(base_model, "unused", "unused")
    c.masking.time_prob, c.masking.feature_prob, c.masking.feature_length = 0.3, 0.2, 48
    vocab = Vocabulary(("<pad>", "<unk>", "|", "a", "b"))
    model, pristine = build_ctc_model(str(base_model), vocab, c, seed=0)
    cfg = model.config
    assert (cfg.vocab_size, cfg.pad_token_id, cfg.layerdrop) == (5, 0, 0.0)
    assert cfg.apply_spec_augment and cfg.mask_time_prob == 0.3
    assert cfg.mask_feature_length == 2  # 48 channels of 1024 at width 32: 1.5, rounded
    assert pristine.mask_time_prob == 0.3 and pristine._name_or_path == ""  # no path saved
    again, _ = build_ctc_model(str(base_model), vocab, c, seed=0)
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)  # the head is seeded
    set_stage(model, 1)
    learning = {n for n, p in model.named_parameters() if p.requires_grad}
    assert learning == {"lm_head.weight", "lm_head.bias"}
    set_stage(model, 2)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(
        n.startswith("wav2vec2.feature_extractor.") or "masked_spec_embed" in n for n in frozen
    )
    assert any(
        n.startswith("wav2vec2.encoder.") for n, p in model.named_parameters() if p.requires_grad
    )


def test_transcribe_skips_audio_it_cannot_read_counts_it_and_goes_on(learned, tmp_path, capsys):
    from distilxlsr.cli import main

    _, model_dir = learned
    good = tmp_path / "good.wav"
    sf.write(good, _speak(["si", "no"], np.random.default_rng(3)), SR)
    empty, short, broken = tmp_path / "empty.wav", tmp_path / "short.wav", tmp_path / "nan.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    sf.write(short, np.zeros(50, dtype=np.float32), SR)
    sf.write(broken, np.full(SR, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    files = [str(p) for p in (empty, good, short, broken)]
    assert main(["transcribe", "--model", str(model_dir), "--no-lm", *files]) == 2
    said = capsys.readouterr()
    assert said.out == f"{good}\tsi no\n"
    assert "holds no samples" in said.err and "needs at least" in said.err
    assert "NaN or infinite" in said.err and "3 of 4 files skipped" in said.err
