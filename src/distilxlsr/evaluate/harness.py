"""`distilxlsr evaluate`: every model gets the same data, steps, batches and seeds; per language
a CTC phone recogniser is trained on the train split and scored by PER on the test split, with
hierarchical bootstrap statistics over seeds, test voices and utterances (evaluate/stats.py)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from distilxlsr.conventions import FRAME_HOP, SAMPLE_RATE
from distilxlsr.data.corpora import TIERS, read_tier
from distilxlsr.errors import UserError
from distilxlsr.evaluate.ctc import (
    FLOOR_PROBE,
    FinetuneConfig,
    ProbeConfig,
    finetune,
    finetune_decode,
    probe_decode,
    train_probe,
)
from distilxlsr.evaluate.features import (
    ModelFeatures,
    ModelSpec,
    layer_map_of,
    linear_cka,
    resolve_model,
)
from distilxlsr.evaluate.languages import (
    _train_subset,
    check_split,
    find_languages,
    load_language,
    scored_split,
)
from distilxlsr.evaluate.per import edit_distance, phone_error_rate
from distilxlsr.evaluate.report import write_reports
from distilxlsr.evaluate.stats import (
    LEVEL,
    REL_GAP_MIN_REFERENCE,
    RESAMPLES,
    SEED,
    bootstrap_per,
    relative_gap,
    statistics,
    voice_of,
)
from distilxlsr.evaluate.store import LanguageStore
from distilxlsr.export import model_provenance
from distilxlsr.provenance import describe

LABEL = re.compile(r"[A-Za-z0-9_.:+-]+")


def split_label(arg: str) -> tuple[str | None, str]:
    """`NAME=PATH` -> (NAME, PATH): a `--model` argument's label, when the text before its first
    '=' is a label (letters, digits, `_.:+-`) and a model follows. An existing path that holds
    '=' (a run called `lr=1e-4`) stays a path."""
    label, sep, rest = arg.partition("=")
    if sep and rest and LABEL.fullmatch(label) and not Path(arg).exists():
        return label, rest
    return None, arg


def resolve_models(args: list[str]) -> list[ModelSpec]:
    """Every `--model` argument resolved and named: its label if it has one, else its model's
    name (distinct_names keeps colliding names apart)."""
    labels, specs, plain = [], [], []
    for arg in args:
        label, model = split_label(arg)
        labels.append(label)
        specs.append(resolve_model(model))
        plain.append(model)
    given = [x for x in labels if x is not None]
    twice = next((x for x in given if given.count(x) > 1), None)
    if twice is not None:
        raise UserError(f"--model label '{twice}' is given twice; give each model its own label.")
    return distinct_names(specs, plain, labels)


def distinct_names(
    specs: list[ModelSpec], args: list[str], labels: list[str | None] | None = None
) -> list[ModelSpec]:
    """A labelled model is named by its label. Unlabelled models whose names collide (two runs
    both called `student`, or a run called like another model's label) are named by the path
    given; the same name twice after that (the same model twice) is an error."""
    labels = labels or [None] * len(specs)
    counts: dict[str, int] = {}
    for spec, label in zip(specs, labels, strict=True):
        name = label or spec.name
        counts[name] = counts.get(name, 0) + 1
    named = [
        replace(spec, name=label)
        if label
        else replace(spec, name=arg)
        if counts[spec.name] > 1
        else spec
        for spec, arg, label in zip(specs, args, labels, strict=True)
    ]
    seen: set[str] = set()
    for spec in named:
        if spec.name in seen:
            raise UserError(
                f"--model '{spec.name}' is given twice; give each model once "
                "(or a label each: --model NAME=PATH)."
            )
        seen.add(spec.name)
    return named


def provenance_line(spec: ModelSpec) -> str | None:
    """What a model heard and which phone labels trained it, its sources' and teacher's included
    (`export.model_provenance`; "not recorded" without a record); None for log-mel, which
    learns nothing. A damaged record is an error naming the file."""
    if spec.kind == "logmel":
        return None
    if spec.kind == "untrained":
        return "nothing: random weights of its architecture"
    return describe(model_provenance(spec.path))


def evaluate(
    models: list[str],
    data: str,
    out: str,
    mode: str = "probe",
    langs: list[str] | None = None,
    seeds: list[int] = (0,),
    similarity: bool = False,
    probe: ProbeConfig | None = None,
    finetune_config: FinetuneConfig | None = None,
    device: str | None = None,
    floor_probe: ProbeConfig | None = None,
    compare: list[str] | list[tuple[str, str]] | None = None,
    split: str | None = None,
    bootstrap: int = RESAMPLES,
    jobs: int = 1,
) -> dict:
    """Evaluate `models` (the first is the reference) on every language; write the reports.

    A model may carry a label, `NAME=PATH`. `compare` lists the model pairs to test, as
    "A:B" strings or (A, B) pairs of names (default: every model against the reference).
    `split` is the split scored (default: the first present of test, valid, dev per language).
    `bootstrap` is the number of paired resamples behind every interval and p-value. `jobs` > 1
    evaluates languages in that many worker processes on the CPU (same results). `probe` is the
    probe of every network; `floor_probe` that of `logmel` (default: `FLOOR_PROBE` when `probe`
    is not given, else `probe`; the two defaults are each chosen on dev for their kind,
    docs/probe_selection.json). A model already evaluated in OUT with the
    same settings and data is reused, per language and model.
    """
    if mode not in ("probe", "finetune"):
        raise UserError(f"--mode '{mode}' must be probe or finetune.")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"--jobs {jobs!r} must be a whole number of processes, at least 1.")
    check_split(split)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 100:
        raise UserError(
            f"--bootstrap {bootstrap!r} must be a whole number of at least 100 resamples "
            f"(default {RESAMPLES}); fewer cannot place a 95% interval's ends."
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    floor_probe = floor_probe or (FLOOR_PROBE if probe is None else probe)
    probe = probe or ProbeConfig()
    finetune_config = finetune_config or FinetuneConfig()
    specs = resolve_models(list(models))
    said = {s.name: provenance_line(s) for s in specs}  # a damaged record fails before loading
    pairs = parse_comparisons(compare, [s.name for s in specs])
    if mode == "finetune" and any(s.kind == "logmel" for s in specs):
        raise UserError("logmel has no network to fine-tune; use it with --mode probe.")
    languages = find_languages(data, langs, split)
    tiers = group_tiers({lang: read_tier(d, scored_split(d, split)) for lang, d in languages})
    # Every model must load before any training starts.
    stride = FRAME_HOP
    loaded: dict[str, ModelFeatures] = {}
    for spec in specs:
        if spec.kind != "logmel":
            loaded[spec.name] = ModelFeatures(spec, device=device)
            stride = loaded[spec.name].frame_stride
    for spec in specs:
        if spec.kind == "logmel":
            loaded[spec.name] = ModelFeatures(spec, frame_stride=stride, device=device)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {
        s.name: {
            "name": s.name,
            "path": s.path or s.kind,
            "params": loaded[s.name].parameters,
            "provenance": said[s.name],
            "runs": {},
        }
        for s in specs
    }
    similarity_table: dict = {}
    task = LanguageTask(
        specs, stride, mode, list(seeds), similarity, probe, finetune_config, split, floor_probe
    )
    store = LanguageStore(out_dir / "languages", task)
    kept = {lang: store.load(lang, d) for lang, d in languages}
    todo = []
    for lang, d in languages:
        runs, table = kept[lang]
        missing = [s.name for s in specs if s.name not in runs]
        if missing and similarity and mode == "probe":
            missing = [s.name for s in specs]  # the similarity table needs every model's features
        elif not missing and similarity and mode == "probe" and table is None:
            missing = [s.name for s in specs]
        if missing:
            todo.append((lang, d, missing))
    reused = len(specs) * len(languages) - sum(len(m) for *_, m in todo)
    if reused:
        print(
            f"evaluate: reusing {reused} of {len(specs) * len(languages)} (model, language) "
            f"results from {store.root} (same model, data and settings)"
        )
    progress = tqdm(
        total=sum(len(m) for *_, m in todo), desc=f"evaluate ({mode})", unit="model·lang"
    )
    if jobs > 1 and len(todo) > 1 and device == "cpu":
        finished = _in_workers(task, todo, jobs)
    else:
        finished = (
            task.run(lang, lang_dir, loaded, device, progress, names)
            for lang, lang_dir, names in todo
        )
    new = {}
    for (lang, runs, table), (_, lang_dir, names) in zip(finished, todo, strict=True):
        runs = kept[lang][0] | runs
        table = table if table is not None else kept[lang][1]
        store.save(lang, lang_dir, runs, table)
        new[lang] = (runs, table)
        if jobs > 1:
            progress.update(len(names))
    progress.close()
    for lang, _ in languages:
        runs, table = new.get(lang, kept[lang])
        for name, run in runs.items():
            rows[name]["runs"][lang] = run
        if table:
            similarity_table[lang] = table
    results = _summarise(
        mode, [lang for lang, _ in languages], list(seeds), specs, rows, tiers, pairs, bootstrap
    )
    splits = {lang: rows[specs[0].name]["runs"][lang]["test_split"] for lang, _ in languages}
    results["split"] = split or (
        next(iter(splits.values())) if len(set(splits.values())) == 1 else None
    )
    results["test_splits"] = splits
    results["config"] = asdict(probe) if mode == "probe" else asdict(finetune_config)
    if mode == "probe" and any(s.kind == "logmel" for s in specs):
        results["floor_config"] = asdict(floor_probe)
    if similarity_table:
        results["similarity"] = similarity_table
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_reports(results, out_dir)
    return results


@dataclass
class LanguageTask:
    """What `evaluate` does for one language, for every model: the same in a worker process."""

    specs: list[ModelSpec]
    stride: int
    mode: str
    seeds: list[int]
    similarity: bool
    probe: ProbeConfig
    finetune_config: FinetuneConfig
    split: str | None
    floor_probe: ProbeConfig = field(default_factory=lambda: FLOOR_PROBE)

    def probe_for(self, spec: ModelSpec) -> ProbeConfig:
        """The floor's probe for log-mel, the networks' probe for every other model."""
        return self.floor_probe if spec.kind == "logmel" else self.probe

    def settings(self, spec: ModelSpec) -> dict:
        return (
            asdict(self.probe_for(spec)) if self.mode == "probe" else asdict(self.finetune_config)
        )

    def load(self, device: str) -> dict[str, ModelFeatures]:
        return {
            spec.name: ModelFeatures(spec, frame_stride=self.stride, device=device)
            if spec.kind == "logmel"
            else ModelFeatures(spec, device=device)
            for spec in self.specs
        }

    def run(
        self,
        lang: str,
        lang_dir: Path,
        loaded: dict[str, ModelFeatures],
        device: str,
        progress=None,
        names: list[str] | None = None,
    ) -> tuple[str, dict[str, dict], dict | None]:
        """(lang, {model name: its run record}, similarity table or None), for the models
        `names` (default: all)."""
        data_l = load_language(lang, lang_dir, self.split)
        train_labels = [data_l.encode(p) for p in data_l.train.phones]
        subset = _train_subset(len(data_l.train.ids))
        cache: dict[str, dict[str, list[torch.Tensor]]] = {}
        runs = {}
        for spec in self.specs:
            if names is not None and spec.name not in names:
                continue
            if progress is not None:
                progress.set_postfix(model=spec.name, lang=lang)
            runs[spec.name] = self._run_model(
                spec, loaded[spec.name], data_l, train_labels, subset, cache, device
            )
            if progress is not None:
                progress.update(1)
        table = None
        if self.similarity and self.mode == "probe" and len(cache) == len(self.specs):
            table = _similarity(self.specs, loaded, cache)  # {} when no model has a layer map
        return lang, runs, table

    def _run_model(self, spec, features, data_l, train_labels, subset, cache, device) -> dict:
        run = {
            "phones": sum(len(p) for p in data_l.test.phones),
            "unseen_phones": data_l.unseen_test_phones,
            "test_split": data_l.test_split,
            "train_seconds": data_l.train.seconds,
            "test_seconds": data_l.test.seconds,
            "skipped": data_l.skipped,
            "per": [],
            "train_per": [],
            "utterances": [
                {"id": i, "speaker": speaker, "phones": len(p), "edits": []}
                for i, speaker, p in zip(
                    data_l.test.ids, data_l.test.speakers, data_l.test.phones, strict=True
                )
            ],
            "seconds": [],
            "steps": 0,
        }
        if self.mode == "probe":
            start = time.perf_counter()
            feats = {
                "train": _extract(features, data_l.train.waves),
                "test": _extract(features, data_l.test.waves),
            }
            run["feature_seconds"] = time.perf_counter() - start
            cache[spec.name] = feats
        for seed in self.seeds:
            if self.mode == "probe":
                config = _with_seed(self.probe_for(spec), seed)
                head, info = train_probe(feats["train"], train_labels, len(data_l.vocab), config)
                test_hyp = probe_decode(head, feats["test"])
                train_hyp = probe_decode(head, [feats["train"][i] for i in subset])
                run.setdefault("layer_weights", []).append(
                    [round(w, 4) for w in head.layer_weights().tolist()]
                )
            else:
                model, info = finetune(
                    spec.path,
                    data_l.train.waves,
                    train_labels,
                    len(data_l.vocab),
                    _with_seed(self.finetune_config, seed),
                    features.normalize,
                    device,
                )
                test_hyp = finetune_decode(model, data_l.test.waves, features.normalize, device)
                train_hyp = finetune_decode(
                    model, [data_l.train.waves[i] for i in subset], features.normalize, device
                )
            edits = [
                edit_distance(ref, data_l.decode(hyp))
                for ref, hyp in zip(data_l.test.phones, test_hyp, strict=True)
            ]
            for record, count in zip(run["utterances"], edits, strict=True):
                record["edits"].append(count)
            run["per"].append(sum(edits) / run["phones"])  # = phone_error_rate
            run["train_per"].append(
                phone_error_rate(
                    [data_l.train.phones[i] for i in subset],
                    [data_l.decode(h) for h in train_hyp],
                )
            )
            run["seconds"].append(info["seconds"])
            run["steps"] = info["steps"]
        return run


_WORKER: dict = {}


def _worker_run(task: LanguageTask, lang: str, lang_dir: Path, names: list[str]):
    """One language in a worker process (one torch thread; models loaded once per worker)."""
    key = (task.specs, task.stride)
    if _WORKER.get("key") != key:
        torch.set_num_threads(1)
        _WORKER.update(key=key, loaded=task.load("cpu"))
    return task.run(lang, lang_dir, _WORKER["loaded"], "cpu", names=names)


def _worker_start(progress_bars: bool) -> None:
    """A spawned worker shows transformers' progress bars ("Loading weights") only where its
    parent does (the command line turns them off)."""
    import transformers  # noqa: PLC0415

    if not progress_bars:
        transformers.logging.disable_progress_bar()


def _in_workers(task: LanguageTask, languages: list[tuple[str, Path, list[str]]], jobs: int):
    """Languages evaluated by `jobs` spawned processes, yielded in the given order as they
    finish (each language's result does not depend on the process that computed it)."""
    import multiprocessing  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    import transformers  # noqa: PLC0415

    context = multiprocessing.get_context("spawn")
    bars = transformers.logging.is_progress_bar_enabled()
    with ProcessPoolExecutor(
        min(jobs, len(languages)), mp_context=context, initializer=_worker_start, initargs=(bars,)
    ) as pool:
        futures = [pool.submit(_worker_run, task, lang, d, names) for lang, d, names in languages]
        for future in futures:
            yield future.result()


def _extract(
    features: ModelFeatures, waves: list[np.ndarray], batch_seconds: float = 60.0
) -> list[torch.Tensor]:
    """Features of every utterance, batched by length (the cache the probe trains on)."""
    order = np.argsort([len(w) for w in waves])
    out: list[torch.Tensor | None] = [None] * len(waves)
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) + 1) * len(waves[i]) / SAMPLE_RATE > batch_seconds:
            for j, f in zip(batch, features([waves[k] for k in batch]), strict=True):
                out[j] = f
            batch = []
        batch.append(int(i))
    if batch:
        for j, f in zip(batch, features([waves[k] for k in batch]), strict=True):
            out[j] = f
    return out  # type: ignore[return-value]


def _with_seed(config, seed: int):
    copy_ = type(config)(**asdict(config))
    copy_.seed = seed
    return copy_


def _similarity(specs: list[ModelSpec], loaded: dict, cache: dict) -> dict:
    """Linear CKA between each student layer and its mapped teacher layer (test utterances).
    The first model is the teacher; students are models with a recorded layer map."""
    teacher = specs[0].name
    table = {}
    for spec in specs[1:]:
        if spec.kind != "hf":
            continue
        info = layer_map_of(spec.path)
        n_student = loaded[spec.name].num_layers - 1
        n_teacher = loaded[teacher].num_layers - 1
        targets = (
            info.targets
            if info
            else [round((i + 1) * n_teacher / n_student) for i in range(n_student)]
        )
        t_feats, s_feats = cache[teacher]["test"], cache[spec.name]["test"]
        scores = []
        for i, t in enumerate(targets):
            xs = torch.cat(
                [
                    s[i + 1, : min(s.shape[1], u.shape[1])]
                    for s, u in zip(s_feats, t_feats, strict=True)
                ]
            )
            ys = torch.cat(
                [u[t, : min(s.shape[1], u.shape[1])] for s, u in zip(s_feats, t_feats, strict=True)]
            )
            scores.append(round(linear_cka(xs[:20000], ys[:20000]), 4))
        table[spec.name] = {"targets": list(targets), "cka": scores}
    return table


def parse_comparisons(
    compare: list[str] | list[tuple[str, str]] | None, names: list[str]
) -> list[tuple[str, str]] | None:
    """The model pairs to compare, checked against the models' names. An "A:B" string is split
    at the one ':' that leaves a model name on both sides (names may hold ':' themselves, as
    `untrained:teacher` does). None: the default, every model against the reference."""
    if compare is None:
        return None
    known = set(names)
    pairs = []
    for item in compare:
        if isinstance(item, str):
            cuts = [
                (item[:i], item[i + 1 :])
                for i, c in enumerate(item)
                if c == ":" and item[:i] in known and item[i + 1 :] in known
            ]
            if len(cuts) != 1:
                raise UserError(
                    f"--compare '{item}' must be A:B with A and B two of the models: "
                    f"{', '.join(names)}."
                )
            a, b = cuts[0]
        else:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise UserError(f"compare item {item!r} must be 'A:B' or a pair (A, B).")
            a, b = item
            for name in (a, b):
                if name not in known:
                    raise UserError(
                        f"--compare names '{name}', which is none of the models: "
                        f"{', '.join(names)}."
                    )
        if a == b:
            raise UserError(f"--compare '{a}:{b}' compares a model with itself.")
        pairs.append((a, b))
    if not pairs:
        raise UserError("--compare lists no pair; give A:B[,C:D] or leave it out.")
    return pairs


def group_tiers(tiers: dict[str, str | None]) -> dict[str, list[str]]:
    """{tier: its languages} from each language's tier (None: in no tier), the synthetic
    corpus's tiers first in their order, others by name. "all" names every language and cannot
    be a tier."""
    groups: dict[str, list[str]] = {}
    for lang, tier in tiers.items():
        if tier == "all":
            raise UserError(
                f"language '{lang}': tier 'all' (cut custom['tier']) is reserved for every "
                "language together; rename the tier."
            )
        if tier is not None:
            groups.setdefault(tier, []).append(lang)
    rank = {tier: k for k, tier in enumerate(TIERS)}
    order = sorted(groups, key=lambda t: (rank.get(t, len(rank)), t))
    return {tier: groups[tier] for tier in order}


def floor_model(specs: list[ModelSpec]) -> str | None:
    """The log-mel floor that gain retained is measured from: the first model of kind (or
    named) logmel, unless it is the reference itself."""
    floor = next((s.name for s in specs if s.kind == "logmel"), None)
    floor = floor or next((s.name for s in specs if s.name == "logmel"), None)
    return floor if floor is not None and floor != specs[0].name else None


def scored_voices(rows: dict, names: list[str], langs: list[str]) -> list[list[str | None] | None]:
    """Each language's test voices (`voice_of` each utterance's speaker), the resampling unit
    above the utterance; None for a language whose stored results name no speaker (results
    stored before speakers were kept, or a corpus without speakers): its utterances are then
    resampled as independent units, and results.json says so."""
    voices = []
    for lang in langs:
        utterances = rows[names[0]]["runs"][lang]["utterances"]
        named = [voice_of(u.get("speaker")) for u in utterances]
        voices.append(named if all(v is not None for v in named) else None)
    return voices


def _summarise(
    mode: str,
    langs: list[str],
    seeds: list[int],
    specs: list[ModelSpec],
    rows: dict,
    tiers: dict[str, list[str]] | None = None,
    compare: list[tuple[str, str]] | None = None,
    bootstrap: int = RESAMPLES,
) -> dict:
    models = []
    for spec in specs:
        row = rows[spec.name]
        per = {lang: float(np.mean(row["runs"][lang]["per"])) for lang in langs}
        train_per = {lang: float(np.mean(row["runs"][lang]["train_per"])) for lang in langs}
        by_seed = [
            np.mean([row["runs"][lang]["per"][k] for lang in langs]) for k in range(len(seeds))
        ]
        entry = {
            "name": spec.name,
            "path": row["path"],
            "params": row["params"],
            "provenance": row.get("provenance"),
            "per": per,
            "per_mean": float(np.mean(by_seed)),
            "train_per": train_per,
            "train_per_mean": float(np.mean(list(train_per.values()))),
            "details": row["runs"],
        }
        if len(seeds) > 1:
            entry["per_std"] = {lang: float(np.std(row["runs"][lang]["per"])) for lang in langs}
            entry["per_mean_std"] = float(np.std(by_seed))
        models.append(entry)
    groups = tiers or {}
    names = [spec.name for spec in specs]
    edits = [
        np.array([[u["edits"] for u in rows[n]["runs"][lang]["utterances"]] for n in names])
        for lang in langs
    ]
    phones = [
        np.array([u["phones"] for u in rows[names[0]]["runs"][lang]["utterances"]])
        for lang in langs
    ]
    per = bootstrap_per(
        edits, phones, resamples=bootstrap, voices=scored_voices(rows, names, langs)
    )
    stats = statistics(names, langs, groups, per, comparisons=compare, floor=floor_model(specs))
    notes = stats["notes"]
    reference = models[0]["per_mean"]
    for entry in models:
        entry.update(stats["models"][entry["name"]])
        entry["abs_gap"] = entry["per_mean"] - reference
        entry["rel_gap"] = relative_gap(entry["per_mean"], reference)
    if len(models) > 1 and models[0]["rel_gap"] is None:
        notes.append(
            f"rel_gap is null: the reference's mean PER ({100 * reference:.1f}%) is below "
            f"{100 * REL_GAP_MIN_REFERENCE:.0f}%, where a ratio to it is unstable; abs_gap "
            "gives the difference."
        )
    return {
        "mode": mode,
        "languages": langs,
        "seeds": seeds,
        "models": models,
        "tiers": groups,
        "comparisons": stats["comparisons"],
        "bootstrap": {
            "resamples": bootstrap,
            "level": LEVEL,
            "seed": SEED,
            "resampling": per.resampling(langs),
        },
        "floor": floor_model(specs),
        "notes": notes,
    }
