"""The pretrained teacher's model card, rendered from a plain record of facts.

`TeacherFacts` holds what the card states (what the teacher heard, which labels it saw, how it
was trained, on what machine); `render_card` only formats it, so the facts can be checked
without parsing Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distilxlsr.provenance import Provenance, with_tier
from distilxlsr.student_card import CITATION


@dataclass
class StageFacts:
    steps: int
    lr: float
    mask_prob: float
    mask_length: int
    final: dict = field(default_factory=dict)
    """The stage's last logged metrics (loss, accuracy, ...)."""


@dataclass
class TeacherFacts:
    model_dir_name: str
    parameters: int
    size_mb: float
    shape: dict
    """The model section of the config (layers, hidden, heads, ffn, conv_channels, ...)."""
    conv_kernel: list[int]
    conv_stride: list[int]
    commands: list[str]
    data_path: str
    languages: list[str]
    data_summary: str
    batch_seconds: float
    max_seconds: float
    audio_hours: float
    seed: int
    total_steps: int
    wall_seconds: float
    train_seconds: float
    bad_steps: int
    machine: str
    versions: str
    config_yaml: str
    clusters: int
    units: dict = field(default_factory=dict)
    """k-means facts: sample_seconds, frames, inertia_first, inertia_last."""
    unmasked_weight: float = 0.0
    stage1: StageFacts | None = None
    stage2: StageFacts | None = None
    phones: int = 0
    """Phones in the stage-2 vocabulary (blank excluded)."""
    freeze_cnn: bool = True
    family: str = "wav2vec2"
    split: str = "train"
    tiers: dict = field(default_factory=dict)
    """Each language's tier in the corpus (corpus v2), where it has one."""
    tier_protocol: bool = True
    """False: the run was allowed to hear `unheard` languages and read `heard` ones' labels."""
    sources: list[tuple[str, str]] = field(default_factory=list)
    """(role, path) of the models the run built on: its units source, its initialisation."""
    provenance: Provenance | None = None
    """What the teacher heard and which labels trained it, its sources included."""

    @property
    def labels_seen(self) -> str:
        own = (
            f"phone transcripts of the {self.split} split of every language above (stage 2, "
            "multilingual phone CTC)"
            if self.stage2 is not None
            else None
        )
        p = self.provenance
        inherited = sorted(set(p.labels) - set(self.languages if own else [])) if p else []
        unknown = p.unknown if p else []
        if own is None and not inherited and not unknown:
            if self.sources:
                return (
                    "none: self-supervised only, and so were the models it was built from "
                    "(no transcript or alignment was read)"
                )
            return "none: self-supervised only (no transcript or alignment was read)"
        parts = [own or "none directly (self-supervised only)"]
        if inherited:
            parts.append(
                "through the models it was built from, the phone labels of "
                + ", ".join(with_tier(lang, p.heard) for lang in inherited)
            )
        if unknown:
            parts.append(f"unknown for {', '.join(unknown)} (no provenance recorded)")
        return "; ".join(parts)

    @property
    def heard_through_sources(self) -> str:
        """Languages heard only through the source models, e.g. " Through ...: el (heard)."."""
        p = self.provenance
        if p is None or not self.sources:
            return ""
        extra = [lang for lang in p.heard if lang not in self.languages]
        phrase = {
            "units source": "its units source `{}`",
            "initialised from": "the model it was initialised from, `{}`",
        }
        roles = " and ".join(
            phrase.get(role, role + " `{}`").format(path) for role, path in self.sources
        )
        if not extra:
            return f" Through {roles}: no other language."
        return f" Through {roles}: also {', '.join(with_tier(x, p.heard) for x in extra)}."

    @property
    def heard(self) -> str:
        """The languages with their tiers, e.g. "en (english), es (label)"."""
        return ", ".join(with_tier(lang, self.tiers) for lang in self.languages)


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def _stage_lines(f: TeacherFacts) -> list[str]:
    lines = []
    if f.stage1 is not None:
        s, u, final = f.stage1, f.units, f.stage1.final
        source = u.get("features", "80-band log-mel")
        iteration = "first iteration" if source.startswith("log-mel") else "next iteration"
        lines.append(
            f"- **Stage 1, self-supervised (ran, {s.steps} steps):** HuBERT's {iteration}. "
            f"{f.clusters} k-means units on frames of {source.split(',')[0]} at the model's 20 ms "
            f"hop ({u.get('sample_seconds', '?')} s of training audio, "
            f"{u.get('frames', '?')} frames; inertia {u.get('inertia_first', 0):.3f}"
            f" -> {u.get('inertia_last', 0):.3f}); masked prediction with spans of "
            f"{s.mask_length} frames (span-start probability {s.mask_prob}), a linear head on "
            f"the last layer, cross-entropy on masked frames (unmasked weight {f.unmasked_weight}); "
            f"AdamW, peak lr {s.lr:g}. Final loss {final.get('loss', float('nan')):.3f}, masked-"
            f"frame unit accuracy {final.get('accuracy', float('nan')):.3f}."
        )
    else:
        lines.append("- **Stage 1, self-supervised:** not run (stage1.steps=0).")
    if f.stage2 is not None:
        s = f.stage2
        lines.append(
            f"- **Stage 2, multilingual phone CTC (ran, {s.steps} steps):** one vocabulary of "
            f"{f.phones} phones (the union over all languages) + blank, a temporary linear "
            f"head on the last layer (dropped: not in this directory), CNN "
            f"{'frozen' if f.freeze_cnn else 'trained'}, time masking {s.mask_prob}; AdamW, "
            f"peak lr {s.lr:g}. Final CTC loss {s.final.get('loss', float('nan')):.3f}."
        )
    else:
        lines.append("- **Stage 2, multilingual phone CTC:** not run (stage2.steps=0).")
    return lines


def _architecture(f: TeacherFacts) -> tuple[str, str]:
    """(title words and tags, the paragraph's description) of the model's family."""
    m = f.shape
    sizes = (
        f"({f.parameters:,} parameters, {f.size_mb:.1f} MB): {m['layers']} transformer layers, "
        f"hidden {m['hidden']}, {m['heads']} heads, FFN {m['ffn']}"
    )
    if f.family == "hubert":
        return "HuBERT", (
            "A small post-LN HuBERT model, scaled down, made by `distilxlsr pretrain-teacher`. "
            f"It is a plain Hugging Face `HubertModel` {sizes}, `do_stable_layer_norm=False`, "
            f"group-norm CNN without bias, {m['conv_channels']} channels"
        )
    return "wav2vec 2.0", (
        "A small pre-LN wav2vec 2.0 model with XLS-R's architecture, scaled down, made by "
        "`distilxlsr pretrain-teacher` as a teacher of distilxlsr's offline pipeline. It is a "
        f"plain Hugging Face `Wav2Vec2Model` {sizes}, `do_stable_layer_norm=True`, layer-norm "
        f"CNN with bias, {m['conv_channels']} channels"
    )


def _protocol_line(f: TeacherFacts) -> str:
    if f.tier_protocol or not f.tiers:
        return ""
    return (
        "\n**Tier protocol off** (`tier_protocol=false`): a labelled upper bound, which may hear "
        "the `unheard` tier and read every language's labels; not a label-free teacher."
    )


def render_card(f: TeacherFacts) -> str:
    s1 = f.stage1.steps if f.stage1 else 0
    s2 = f.stage2.steps if f.stage2 else 0
    name, description = _architecture(f)
    tags = "hubert" if f.family == "hubert" else "wav2vec2, xls-r"
    scope = "multilingual" if len(f.languages) > 1 else f"{', '.join(f.languages)}-only"
    return f"""---
library_name: transformers
license: apache-2.0
pipeline_tag: feature-extraction
tags: [speech, {tags}, {"multilingual" if len(f.languages) > 1 else "monolingual"}, distilxlsr]
---

# Tiny {scope} {name} teacher (distilxlsr)

{description}, kernels {f.conv_kernel}, strides {f.conv_stride} (20 ms frames, 16 kHz
input, normalised per utterance).

**Heard:** the {f.split} split of {len(f.languages)} language(s): {f.heard}.{f.heard_through_sources}
**Labels seen:** {f.labels_seen}.{_protocol_line(f)}

```python
from transformers import AutoFeatureExtractor, AutoModel

model = AutoModel.from_pretrained("{f.model_dir_name}")
extractor = AutoFeatureExtractor.from_pretrained("{f.model_dir_name}")
```

## How it was made

Command line(s) (a resumed run lists every invocation):

```
{chr(10).join(f.commands) or "(unknown)"}
```

{chr(10).join(_stage_lines(f))}
- **Data:** `{f.data_path}`, {f.split} split of {len(f.languages)}
  language(s): {", ".join(f.languages)}; {f.data_summary}.
  Batches of {f.batch_seconds:g} s of audio per process, crops of at most
  {f.max_seconds:g} s; {f.audio_hours:.2f} h of audio seen in all.
- **Seed:** {f.seed}. **Steps:** {f.total_steps} ({s1} + {s2}).
- **Wall time:** {duration(f.wall_seconds)} (training steps {duration(f.train_seconds)}).
- **Machine:** {f.machine}; {f.versions}.
- **Skipped steps (non-finite gradient):** {f.bad_steps}.

Scores are not measured by this command: run `distilxlsr evaluate --model DIR --data CORPUS --out OUT`.
It was trained on the data named above only; it is a small model for pipeline tests and demos,
not a substitute for XLS-R.

## Config

```yaml
{f.config_yaml.rstrip()}
```

## Citation

Made by distilxlsr as a teacher for the distillation method of:

```bibtex
{CITATION}
```
"""
