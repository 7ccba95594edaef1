"""`distilxlsr evaluate`: every model gets the same data, steps, batches and seeds; per language
a CTC phone recogniser is trained on the train split and scored by PER on the test split, with
hierarchical bootstrap statistics over seeds, test voices and utterances (evaluate/stats.py).

The orchestrator: an `EvaluationConfig` (evaluate/recipe.py) in; the models named
(evaluate/naming.py) and loaded; the results an earlier run stored reused (evaluate/store.py);
the rest computed language by language (evaluate/task.py); everything summarised
(evaluate/summary.py) into results.json (evaluate/records.py) and the reports."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from distilxlsr.asr.recipe import FinetuneRecipe
from distilxlsr.conventions import FRAME_HOP
from distilxlsr.data.corpora import read_tier
from distilxlsr.errors import UserError
from distilxlsr.evaluate.ctc import FLOOR_PROBE, ProbeConfig
from distilxlsr.evaluate.features import ModelFeatures, ModelSpec
from distilxlsr.evaluate.languages import find_languages, scored_split
from distilxlsr.evaluate.naming import (
    parse_comparisons,
    provenance_line,
    resolve_models,
    split_label,
)
from distilxlsr.evaluate.recipe import EvaluationConfig, evaluation_finetune
from distilxlsr.evaluate.records import LanguageRun
from distilxlsr.evaluate.report import write_reports
from distilxlsr.evaluate.stats import RESAMPLES
from distilxlsr.evaluate.store import LanguageStore
from distilxlsr.evaluate.summary import ModelInfo, group_tiers, summarise
from distilxlsr.evaluate.superb import SuperbConfig
from distilxlsr.evaluate.task import LanguageTask, in_workers

__all__ = ["evaluate", "provenance_line", "run_evaluation", "split_label"]


def evaluate(
    models: list[str],
    data: str,
    out: str,
    mode: str = "probe",
    langs: list[str] | None = None,
    seeds: list[int] = (0,),
    similarity: bool = False,
    probe: ProbeConfig | None = None,
    finetune_config: FinetuneRecipe | None = None,
    device: str | None = None,
    floor_probe: ProbeConfig | None = None,
    compare: list[str] | list[tuple[str, str]] | None = None,
    split: str | None = None,
    bootstrap: int = RESAMPLES,
    jobs: int = 1,
    superb: SuperbConfig | None = None,
    targets: str = "phones",
) -> dict:
    """Evaluate `models` (the first is the reference) on every language; write the reports.

    A model may carry a label, `NAME=PATH`. `compare` lists the model pairs to test, as
    "A:B" strings or (A, B) pairs of names (default: every model against the reference).
    `split` is the split scored (default: the first present of test, valid, dev per language).
    `bootstrap` is the number of paired resamples behind every interval and p-value. `jobs` > 1
    evaluates languages in that many worker processes on the CPU (same results). `probe` is the
    probe of every network; `floor_probe` that of `logmel` (default: `FLOOR_PROBE` when `probe`
    is not given, else `probe`; the two defaults are each chosen on dev for their kind,
    results/probe_selection.json); `superb` the downstream of `mode="superb"` and
    `finetune_config` the recipe of `mode="finetune"` (default `evaluation_finetune()`: phone
    targets). A model already evaluated in OUT with the
    same settings and data is reused, per language and model.

    The same as `run_evaluation(EvaluationConfig(...))` with these settings.
    """
    config = EvaluationConfig(
        models=list(models),
        data=data,
        out=out,
        mode=mode,
        langs=langs,
        split=split,
        seeds=list(seeds),
        similarity=similarity,
        compare=compare,
        bootstrap=bootstrap,
        jobs=jobs,
        device=device,
        probe=probe or ProbeConfig(),
        floor_probe=floor_probe or (FLOOR_PROBE if probe is None else probe),
        finetune=finetune_config or evaluation_finetune(),
        superb=superb or SuperbConfig(),
        targets=targets,
    )
    return run_evaluation(config)


def run_evaluation(config: EvaluationConfig) -> dict:
    """Run the evaluation `config` describes (`recipe.load_evaluation` reads one from YAML and
    overrides); write OUT/results.json, results.md and per.png; return results.json's dict."""
    config.validate()
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    specs = resolve_models(list(config.models))
    said = {s.name: provenance_line(s) for s in specs}  # a damaged record fails before loading
    pairs = parse_comparisons(config.compare, [s.name for s in specs])
    if config.mode == "finetune" and any(s.kind == "logmel" for s in specs):
        raise UserError("logmel has no network to fine-tune; use it with --mode probe or superb.")
    languages = find_languages(config.data, config.langs, config.split)
    tiers = group_tiers(
        {lang: read_tier(d, scored_split(d, config.split)) for lang, d in languages}
    )
    loaded, stride = load_models(specs, device)
    out_dir = Path(config.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    infos = {
        s.name: ModelInfo(s.path or s.kind, loaded[s.name].parameters, said[s.name]) for s in specs
    }
    task = LanguageTask(
        specs,
        stride,
        config.mode,
        list(config.seeds),
        config.similarity,
        config.probe,
        config.finetune,
        config.split,
        config.floor_probe,
        str(out_dir / "finetune-runs"),
        config.superb,
        config.targets,
    )
    store = LanguageStore(out_dir / "languages", task)
    runs, similarity = evaluate_languages(task, store, languages, loaded, device, config.jobs)
    langs = [lang for lang, _ in languages]
    results = summarise(config, specs, infos, runs, langs, tiers, pairs, similarity).to_dict()
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_reports(results, out_dir)
    return results


def load_models(specs: list[ModelSpec], device: str) -> tuple[dict[str, ModelFeatures], int]:
    """Every model loaded before any training starts, and the frame stride: the networks' (the
    last one's), which log-mel takes so that its frames match theirs."""
    stride = FRAME_HOP
    loaded: dict[str, ModelFeatures] = {}
    for spec in specs:
        if spec.kind != "logmel":
            loaded[spec.name] = ModelFeatures(spec, device=device)
            stride = loaded[spec.name].frame_stride
    for spec in specs:
        if spec.kind == "logmel":
            loaded[spec.name] = ModelFeatures(spec, frame_stride=stride, device=device)
    return loaded, stride


def missing_work(
    task: LanguageTask, languages: list[tuple[str, Path]], kept: dict
) -> list[tuple[str, Path, list[str]]]:
    """(language, directory, models to evaluate) wherever the store lacks a model's result, or
    every model where the similarity table is wanted and missing (it needs every model's
    features)."""
    names = [s.name for s in task.specs]
    wants_table = task.similarity and task.mode == "probe"
    todo = []
    for lang, lang_dir in languages:
        runs, table = kept[lang]
        missing = [name for name in names if name not in runs]
        if (missing and wants_table) or (not missing and wants_table and table is None):
            missing = list(names)
        if missing:
            todo.append((lang, lang_dir, missing))
    return todo


def evaluate_languages(
    task: LanguageTask,
    store: LanguageStore,
    languages: list[tuple[str, Path]],
    loaded: dict[str, ModelFeatures],
    device: str,
    jobs: int,
) -> tuple[dict[str, dict[str, LanguageRun]], dict]:
    """({model name: {language: run}}, {language: similarity table}): what the store keeps,
    the rest computed (in `jobs` worker processes on the CPU) and stored as each language
    finishes."""
    kept = {lang: store.load(lang, d) for lang, d in languages}
    todo = missing_work(task, languages, kept)
    total = len(task.specs) * len(languages)
    reused = total - sum(len(m) for *_, m in todo)
    if reused:
        print(
            f"evaluate: reusing {reused} of {total} (model, language) results from {store.root} "
            "(same model, data and settings)"
        )
    progress = tqdm(
        total=sum(len(m) for *_, m in todo), desc=f"evaluate ({task.mode})", unit="model·lang"
    )
    pooled = jobs > 1 and len(todo) > 1 and device == "cpu"
    if pooled:
        finished = in_workers(task, todo, jobs)
    else:
        finished = (
            task.run(lang, lang_dir, loaded, device, progress, names)
            for lang, lang_dir, names in todo
        )
    for (lang, runs, table), (_, lang_dir, names) in zip(finished, todo, strict=True):
        runs = kept[lang][0] | runs
        table = table if table is not None else kept[lang][1]
        store.save(lang, lang_dir, runs, table)
        kept[lang] = (runs, table)
        if pooled:
            progress.update(len(names))
    progress.close()
    by_model: dict[str, dict[str, LanguageRun]] = {s.name: {} for s in task.specs}
    similarity = {}
    for lang, _ in languages:
        runs, table = kept[lang]
        for name, run in runs.items():
            by_model[name][lang] = run
        if table:
            similarity[lang] = table
    return by_model, similarity
