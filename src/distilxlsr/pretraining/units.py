"""Targets of teacher pretraining: k-means units on log-mel frames or on a layer of an earlier
teacher (stage 1, HuBERT's first or next iteration) and phone label ids of possibly cropped cuts
(stage 2), and the loader dataset that returns them (docs/design.md, "Teacher pretraining")."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np
import soxr
import torch
from lhotse import CutSet
from lhotse.cut import Cut
from torch import nn
from tqdm.auto import tqdm

from distilxlsr.conventions import BLANK, FRAME_HOP, FRAME_WINDOW, SAMPLE_RATE
from distilxlsr.data.loader import AudioBatches, BatchRef, collate, cut_rng, load_mono
from distilxlsr.data.logmel import LogMel
from distilxlsr.errors import UserError
from distilxlsr.models.layers import LayerTap
from distilxlsr.models.loading import load_model
from distilxlsr.training.checkpoint import weights_sha256

# --------------------------------------------------------------------------- stage-1 units


def kmeans(
    x: torch.Tensor, k: int, iterations: int, seed: int = 0
) -> tuple[torch.Tensor, list[float]]:
    """Lloyd's k-means after greedy k-means++ initialisation (each new seed is the best of
    2 + log k candidates drawn with probability proportional to the squared distance), seeded.
    Returns the centroids (k, D) and the inertia (mean squared distance to the nearest centroid)
    before each update and at the end."""
    x = x.float()
    n = len(x)
    if n < k:
        raise UserError(
            f"k-means needs at least units.clusters={k} frames but the sample has {n}; raise "
            "units.sample_seconds or lower units.clusters."
        )
    generator = torch.Generator().manual_seed(seed)
    tries = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    closest = (x - x[first]).square().sum(1)
    for _ in range(1, k):
        if closest.sum() > 0:
            weights = closest / closest.sum()
            candidates = torch.multinomial(weights, tries, generator=generator)
        else:  # fewer distinct frames than clusters: duplicates, harmless
            candidates = torch.randint(n, (tries,), generator=generator)
        options = torch.minimum(closest[None], torch.cdist(x[candidates], x).square())
        best = int(options.sum(1).argmin())
        chosen.append(int(candidates[best]))
        closest = options[best]
    centroids = x[chosen].clone()
    history = []
    for _ in range(iterations):
        assign, dist = nearest(x, centroids)
        history.append(float(dist.mean()))
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        centroids = torch.where(
            counts[:, None] > 0, sums / counts.clamp(min=1)[:, None].float(), centroids
        )
        empty = (counts == 0).nonzero().flatten()
        if len(empty):  # re-seed empty clusters at the frames farthest from their centroid
            centroids[empty] = x[dist.topk(len(empty)).indices]
    history.append(float(nearest(x, centroids)[1].mean()))
    return centroids, history


def nearest(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536):
    """Index of and squared distance to the nearest centroid for every row of x."""
    c_sq = centroids.square().sum(1)
    assign, dist = [], []
    for rows in x.split(chunk):
        d = rows.square().sum(1, keepdim=True) - 2 * rows @ centroids.T + c_sq[None, :]
        best = d.min(1)
        assign.append(best.indices)
        dist.append(best.values.clamp(min=0))
    return torch.cat(assign), torch.cat(dist)


def unit_features() -> LogMel:
    """The features units are defined on: 80-band log-mel at the model's 320-sample hop (a
    400-sample window inside a 512-point frame: frame i starts at sample 320*i, as the model's)."""
    return LogMel(sample_rate=SAMPLE_RATE, n_mels=80, stride=FRAME_HOP, win=FRAME_WINDOW)


class LayerFeatures:
    """The representations of one layer of a trained model (HuBERT's next-iteration features):
    (1, frames, hidden) for a waveform, normalised as the model's feature extractor does. The
    model loads on first use, so that a copy sent to a loader worker carries only its path."""

    def __init__(self, model_dir: str, layer: int):
        self.model_dir = str(model_dir)
        self.layer = layer
        self.description = f"layer {layer} of {Path(self.model_dir).name}"
        self._tap: LayerTap | None = None

    def load(self) -> LayerTap:
        """The model's layer tap (loaded once); a missing or too shallow model is an error."""
        if self._tap is None:
            model = load_model(self.model_dir).eval()
            depth = model.config.num_hidden_layers
            if not 1 <= self.layer <= depth:
                raise UserError(
                    f"units.layer={self.layer} is not a layer of '{self.model_dir}' (1..{depth})."
                )
            tap = LayerTap(model)
            tap.drop_layers_after(self.layer)
            self._tap = tap
        return self._tap

    def weights_sha256(self) -> str:
        """SHA-256 over the source model's weight files (name and SHA-256 of each): what the
        units were fitted on."""
        return weights_sha256(self.model_dir) or hashlib.sha256(b"").hexdigest()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tap": None}

    def __call__(self, wave: np.ndarray) -> torch.Tensor:
        tap = self.load()
        x = np.asarray(wave, dtype=np.float32)
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        with torch.inference_mode():
            reps, _ = tap(torch.from_numpy(x)[None], None, [self.layer])
        return reps[0].float()


class UnitLabeler:
    """A waveform's k-means unit per model frame: frames of `features` (default log-mel) ->
    nearest centroid. The count equals the model's frame count or is one less (padded with
    -100 where it is used)."""

    def __init__(self, centroids: torch.Tensor, features=None):
        self.features = features or unit_features()
        self.centroids = centroids.float()

    def __call__(self, wave: np.ndarray) -> torch.Tensor:
        return nearest(self.features(wave)[0].float(), self.centroids)[0]


def fit_units(
    cuts: CutSet,
    clusters: int,
    sample_seconds: float,
    iterations: int,
    seed: int,
    min_seconds: float,
    total_seconds: float,
    say=print,
    features: LayerFeatures | None = None,
) -> tuple[torch.Tensor, dict]:
    """k-means centroids on frames of about `units.sample_seconds` of training audio
    (utterances drawn with a seeded per-cut coin, so the sample spans speakers and languages;
    several languages arrive interleaved from `load_cuts`): log-mel frames, or the frames of
    `features` (a layer of an earlier teacher)."""
    start = time.perf_counter()
    # A little above the exact share, so that the sample is full before the corpus ends.
    fraction = min(1.0, 1.25 * sample_seconds / max(total_seconds, 1e-9))
    logmel = features or unit_features()
    feats, seconds = [], 0.0
    bar = tqdm(total=round(min(sample_seconds, total_seconds)), unit="s")
    bar.set_description("k-means sample (audio s)")
    for cut in cuts:
        if seconds >= sample_seconds:
            break
        if cut.duration < min_seconds:
            continue
        if cut_rng(seed, 0, cut.id, "kmeans").random() >= fraction:
            continue
        feats.append(logmel(load_mono(cut, SAMPLE_RATE))[0].float())
        seconds += cut.duration
        bar.update(min(round(seconds), bar.total) - bar.n)
    bar.close()
    x = torch.cat(feats) if feats else torch.zeros(0, 80)
    centroids, history = kmeans(x, clusters, iterations, seed)
    kind = (
        features.description
        if features is not None
        else "log-mel, 80 bands, 400-sample window, 320-sample hop, per-utterance CMVN"
    )
    info = {
        "clusters": clusters,
        "features": kind,
        **({"source_sha256": features.weights_sha256()} if features is not None else {}),
        "sample_utterances": len(feats),
        "sample_seconds": round(seconds, 1),
        "frames": len(x),
        "inertia_first": history[0],
        "inertia_last": history[-1],
        "seconds": round(time.perf_counter() - start, 1),
    }
    say(
        f"k-means: {clusters} units on {len(x):,} frames of {kind.split(',')[0]} ({seconds:.0f} s of "
        f"audio, {len(feats)} utterances); inertia {history[0]:.2f} -> {history[-1]:.2f}"
    )
    return centroids, info


# --------------------------------------------------------------------------- stage-2 phones


def phone_vocabulary(cuts: CutSet) -> list[str]:
    """The CTC vocabulary: blank, then the union of every supervision's `custom["phones"]`."""
    phones = set()
    for cut in cuts:
        for sup in cut.supervisions:
            phones.update((sup.custom or {}).get("phones", []))
    return [BLANK, *sorted(phones)]


def cut_phones(cut: Cut, index: dict[str, int]) -> list[int]:
    """The phone label ids of a (possibly cropped) cut: the transcripts of supervisions that lie
    inside it, else the aligned phones whose midpoint lies inside the crop ([] without them)."""
    ids: list[int] = []
    for sup in cut.supervisions:
        phones = (sup.custom or {}).get("phones", [])
        if sup.start >= -1e-3 and sup.end <= cut.duration + 1e-3:
            ids += [index[p] for p in phones if p in index]
            continue
        # alignment times are relative to the recording; the crop starts at cut.start in it
        for item in (sup.alignment or {}).get("phone", []):
            middle = item.start + item.duration / 2 - cut.start
            if 0.0 <= middle < cut.duration and item.symbol in index:
                ids.append(index[item.symbol])
    return ids


def speed_perturb(
    audio: np.ndarray, units: torch.Tensor, factor: float, rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, torch.Tensor]:
    """`audio` played `factor` times as fast (resampled: pitch and formants scale with it), and
    its frame units stretched to the new frame count (frame j of the result takes the unit of
    frame round(j * factor) of the original)."""
    faster = soxr.resample(audio, round(rate * factor), rate).astype(np.float32)
    frames = max(1, round(len(units) / factor))  # the frame rate is the labeler's, unchanged
    source = torch.clamp(torch.round(torch.arange(frames) * factor).long(), max=len(units) - 1)
    return faster, units[source]


class PretrainBatches(AudioBatches):
    """`AudioBatches` that also returns each stage's targets: `units` (B, frames; -100 on
    padding) from a `UnitLabeler`, or `labels` (concatenated phone ids) and `label_lengths`."""

    def __init__(
        self,
        labeler: UnitLabeler | None = None,
        phone_index: dict[str, int] | None = None,
        speed_range: list[float] | tuple[float, ...] = (),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.labeler = labeler
        self.phone_index = phone_index
        self.speed_range = tuple(speed_range)

    def __getitem__(self, ref: BatchRef) -> dict:
        cuts = list(ref.cuts)
        waves = [self.load(cut, ref.epoch) for cut in cuts]
        if ref.samples:  # static shapes: every row exactly this long, as the model sees it
            waves = [np.pad(w[: ref.samples], (0, max(0, ref.samples - len(w)))) for w in waves]
        units = [self.labeler(w) for w in waves] if self.labeler is not None else None
        if self.speed_range and units is not None:
            pairs = [
                self.perturb(w, u, cut, ref.epoch)
                for w, u, cut in zip(waves, units, cuts, strict=True)
            ]
            waves, units = [w for w, _ in pairs], [u for _, u in pairs]
        batch = collate(waves, self.normalize, ref.samples)
        batch |= {"epoch": ref.epoch, "index": ref.index}
        if units is not None:
            batch["units"] = nn.utils.rnn.pad_sequence(units, batch_first=True, padding_value=-100)
        if self.phone_index is not None:
            labels = [cut_phones(cut, self.phone_index) for cut in cuts]
            batch["labels"] = torch.tensor([i for seq in labels for i in seq], dtype=torch.long)
            batch["label_lengths"] = torch.tensor([len(seq) for seq in labels], dtype=torch.long)
        return batch

    def perturb(self, audio: np.ndarray, units: torch.Tensor, cut: Cut, epoch: int):
        """One utterance's speed perturbation, its factor drawn from (seed, epoch, cut id)."""
        rng = cut_rng(self.seed, epoch, cut.id, "speed")
        return speed_perturb(audio, units, float(rng.uniform(*self.speed_range)), self.sample_rate)
