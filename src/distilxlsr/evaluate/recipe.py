"""An evaluation as a typed config (`EvaluationConfig`): the models, the corpus, the seeds and
statistics, and the recognisers' settings (the networks' probe, the log-mel floor's probe and
fine-tuning). Loaded by the config machinery (`distilxlsr.config`), as every task's config: the
defaults, a YAML file (a path or a shipped config's name) holding only the differences, then
`key=value` overrides; validated when loaded. The sections' defaults are those of `ProbeConfig` and
`FLOOR_PROBE` (evaluate/ctc.py) and the `finetune` job's recipe with phone targets
(`evaluation_finetune`, asr/recipe.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from distilxlsr.asr.recipe import DecodingConfig, FinetuneRecipe
from distilxlsr.asr.vocab import TARGETS
from distilxlsr.config import check_fields, closed, load_config
from distilxlsr.errors import UserError
from distilxlsr.evaluate.ctc import FLOOR_PROBE, PROBE_OPTIMIZERS, ProbeConfig
from distilxlsr.evaluate.languages import check_split
from distilxlsr.evaluate.stats import RESAMPLES
from distilxlsr.evaluate.superb import SuperbConfig

MODES = ("probe", "superb", "finetune")
MIN_RESAMPLES = 100
"""Fewer bootstrap resamples cannot place a 95% interval's ends."""
REQUIRED = {"models", "data", "out"}
"""Keys without a usable default: an evaluation must set them."""


def evaluation_finetune() -> FinetuneRecipe:
    """The evaluation's fine-tuning: the `finetune` job's recipe with phone targets, scored by
    PER like the probe, decoded greedily (no LM)."""
    return FinetuneRecipe(targets="phones", decoding=DecodingConfig(lm=False))


@dataclass
class EvaluationConfig:
    """One evaluation: every model gets the same data, seeds and recogniser settings."""

    models: list[str] = field(default_factory=list)
    """The models, the first the reference: HF directories, hub ids, run directories, `shipped`,
    `logmel` or `untrained:M`, each optionally labelled NAME=MODEL (`--model`, repeated)."""
    data: str = ""
    """Corpus directory: ROOT (every language under it) or ROOT/<lang>."""
    out: str = ""
    """Output directory: results.json, results.md, per.png; results kept per language and model
    are reused by a repeat with the same settings."""
    mode: str = "probe"
    """`probe` (a linear CTC probe on the frozen layers), `superb` (the frozen layers' weighted
    sum into a small trained Transformer, the benchmarks' protocol) or `finetune` (the whole
    model fine-tuned)."""
    langs: list[str] | None = None
    """Languages to evaluate (default: every one with a train split and the split scored)."""
    split: str | None = None
    """The split scored: test, valid or dev (default: per language the first present of those)."""
    targets: str = closed("phones", TARGETS)
    """What every recogniser spells: `phones` (the supervisions' phones, scored by PER: the
    instrument of the paper's claims) or `chars` (the normalised transcripts' characters with a
    word delimiter, scored by CER). The fine-tuning's own `finetune.targets` follows it."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """One recogniser per seed and language; the statistics resample the seeds."""
    similarity: bool = False
    """Per-layer CKA of each student with the first model (probe mode)."""
    compare: list[str] | None = None
    """Model pairs A:B whose PER difference is tested, Holm-corrected (default: every model
    against the first)."""
    bootstrap: int = RESAMPLES
    """Paired, hierarchical bootstrap resamples behind every interval and p-value (at least
    100)."""
    jobs: int = 1
    """Worker processes on the CPU, one language each at a time (the same results)."""
    device: str | None = None
    """Where models run: cuda when available, else cpu (default), or a torch device name."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    """The probe of every network (evaluate/ctc.py, `ProbeConfig`)."""
    floor_probe: ProbeConfig = field(default_factory=lambda: replace(FLOOR_PROBE))
    """The log-mel floor's own probe (evaluate/ctc.py, `FLOOR_PROBE`)."""
    superb: SuperbConfig = field(default_factory=SuperbConfig)
    """The downstream of `mode: superb`, the same for every model, log-mel included
    (evaluate/superb.py, `SuperbConfig`)."""
    finetune: FinetuneRecipe = field(default_factory=evaluation_finetune)
    """Fine-tuning (`mode: finetune`): the `finetune` job's recipe (asr/recipe.py,
    `FinetuneRecipe`), phone targets; each run lives in OUT/finetune-runs and resumes."""

    def validate(self) -> None:
        """One-line errors for settings an evaluation cannot run with (before any model loads):
        every value (as when the config loads, for a config built in code), then the rest."""
        check_fields(self)
        for key, option in (
            ("models", "--model MODEL"),
            ("data", "--data DIR"),
            ("out", "--out DIR"),
        ):
            if not getattr(self, key):
                raise UserError(f"no {key} given: set {key} in the config, or {option}.")
        if self.mode not in MODES:
            raise UserError(f"--mode '{self.mode}' must be one of {', '.join(MODES)}.")
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            raise UserError(
                f"--jobs {self.jobs!r} must be a whole number of processes, at least 1."
            )
        check_split(self.split)
        bootstrap = self.bootstrap
        if (
            isinstance(bootstrap, bool)
            or not isinstance(bootstrap, int)
            or bootstrap < MIN_RESAMPLES
        ):
            raise UserError(
                f"--bootstrap {bootstrap!r} must be a whole number of at least "
                f"{MIN_RESAMPLES} resamples (default {RESAMPLES}); fewer cannot place a 95% "
                "interval's ends."
            )
        if not self.seeds:
            raise UserError("seeds lists no seed; give at least one, e.g. --seeds 0.")
        if self.mode == "superb":
            sb = self.superb
            if min(sb.steps, sb.batch_utterances, sb.width, sb.layers, sb.heads, sb.ffn) < 1:
                raise UserError("superb's steps, batch, width, layers, heads and ffn must be >= 1.")
            if sb.width % sb.heads:
                raise UserError(f"superb.width {sb.width} must be a multiple of superb.heads.")
        if self.mode == "finetune":
            if self.finetune.targets not in ("phones", self.targets):
                raise UserError(
                    f"finetune.targets={self.finetune.targets}: an evaluation's recognisers all "
                    f"spell its `targets` ({self.targets}); set targets={self.finetune.targets}."
                )
            self.finetune.validate_recipe()
        for section in ("probe", "floor_probe"):
            optimizer = getattr(self, section).optimizer
            if optimizer not in PROBE_OPTIMIZERS:
                raise UserError(
                    f"{section}.optimizer '{optimizer}' must be one of "
                    f"{', '.join(PROBE_OPTIMIZERS)}."
                )


def load_evaluation(
    path: str | Path | None, overrides: list[str] = (), values: dict | None = None
) -> EvaluationConfig:
    """An evaluation config: the defaults, the YAML file `path` (a file or a shipped config's
    name), the already typed `values` (the command line's options), then `key=value` overrides;
    validated. The recognisers' own seeds are not set here: each is one of `seeds`."""
    config = load_config(EvaluationConfig, path, overrides, values)
    default = EvaluationConfig()
    for section, seed, default_seed in (
        ("probe.seed", config.probe.seed, default.probe.seed),
        ("floor_probe.seed", config.floor_probe.seed, default.floor_probe.seed),
        ("superb.seed", config.superb.seed, default.superb.seed),
        ("finetune.train.seed", config.finetune.train.seed, default.finetune.train.seed),
    ):
        if seed != default_seed:
            raise UserError(
                f"{section}={seed}: each recogniser's seed is one of `seeds`; set seeds instead."
            )
    config.validate()
    return config
