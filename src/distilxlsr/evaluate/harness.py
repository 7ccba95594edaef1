"""`distilxlsr evaluate`: every model gets the same data, steps, batches and seeds; per language
a CTC phone recogniser is trained on the train split and scored by PER on the test split."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from distilxlsr.conventions import BLANK, FRAME_HOP, SAMPLE_RATE
from distilxlsr.data.corpora import cuts_file, load_cuts
from distilxlsr.data.loader import load_mono
from distilxlsr.errors import UserError
from distilxlsr.evaluate.ctc import (
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
from distilxlsr.evaluate.per import phone_error_rate
from distilxlsr.evaluate.report import write_reports

TEST_SPLITS = ("test", "valid", "dev")


@dataclass
class Utterances:
    ids: list[str]
    speakers: list[str]
    waves: list[np.ndarray]
    phones: list[list[str]]

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


def find_languages(data: str | Path, langs: list[str] | None) -> list[tuple[str, Path]]:
    """(language, directory) pairs: `data` is one language directory or a root holding several."""
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
        untestable = [name for name, d in found if not _has_test_split(d)]
        if untestable:
            raise UserError(
                f"language '{untestable[0]}' has no test, valid or dev split under '{data}'."
            )
    else:
        skipped = [name for name, d in found if not _has_test_split(d)]
        if skipped:  # e.g. English, which a distillation corpus holds for training only
            print(f"evaluate: skipping {', '.join(skipped)}: no test, valid or dev split")
        found = [(name, d) for name, d in found if _has_test_split(d)]
    if not found:
        raise UserError(
            f"'{data}' holds no language with a train split and a test, valid or dev split."
        )
    return found


def _has_test_split(lang_dir: Path) -> bool:
    return any(cuts_file(lang_dir, s) is not None for s in TEST_SPLITS)


def distinct_names(specs: list[ModelSpec], args: list[str]) -> list[ModelSpec]:
    """Models whose names collide (two runs both called `student`) are named by the path given;
    the same model twice is an error."""
    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec.name] = counts.get(spec.name, 0) + 1
    named = [
        replace(spec, name=arg) if counts[spec.name] > 1 else spec
        for spec, arg in zip(specs, args, strict=True)
    ]
    seen: set[str] = set()
    for spec in named:
        if spec.name in seen:
            raise UserError(f"--model '{spec.name}' is given twice; give each model once.")
        seen.add(spec.name)
    return named


def load_utterances(
    lang_dir: Path, split: str, sample_rate: int = SAMPLE_RATE
) -> tuple[Utterances, int]:
    """All utterances of a split with their phone transcripts; those without phones are counted."""
    ids, speakers, waves, phones = [], [], [], []
    skipped = 0
    for cut in load_cuts(lang_dir, split):
        seq = [p for sup in cut.supervisions for p in (sup.custom or {}).get("phones", [])]
        if not seq:
            skipped += 1
            continue
        ids.append(cut.id)
        speakers.append(cut.supervisions[0].speaker or "")
        waves.append(load_mono(cut, sample_rate))
        phones.append(seq)
    return Utterances(ids, speakers, waves, phones), skipped


def load_language(lang: str, lang_dir: Path) -> LanguageData:
    train, skipped = load_utterances(lang_dir, "train")
    split = next((s for s in TEST_SPLITS if cuts_file(lang_dir, s) is not None), None)
    if split is None:
        raise UserError(f"language '{lang}' in '{lang_dir}' has no test, valid or dev split.")
    test, skipped_test = load_utterances(lang_dir, split)
    if not train.ids or not test.ids:
        raise UserError(
            f"language '{lang}': no utterance with a phone transcript in its "
            f"{'train' if not train.ids else split} split (supervision custom['phones'])."
        )
    vocab = [BLANK] + sorted({p for seq in train.phones for p in seq})
    return LanguageData(lang, train, test, split, vocab, skipped + skipped_test)


def _train_subset(n: int, limit: int = 200) -> list[int]:
    """Training utterances scored for train PER (a fixed subset, the same for every model)."""
    return list(range(0, n, max(1, n // limit)))[:limit]


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
) -> dict:
    """Evaluate `models` (the first is the reference) on every language; write the reports."""
    if mode not in ("probe", "finetune"):
        raise UserError(f"--mode '{mode}' must be probe or finetune.")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    probe = probe or ProbeConfig()
    finetune_config = finetune_config or FinetuneConfig()
    specs = distinct_names([resolve_model(m) for m in models], list(models))
    if mode == "finetune" and any(s.kind == "logmel" for s in specs):
        raise UserError("logmel has no network to fine-tune; use it with --mode probe.")
    languages = find_languages(data, langs)
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
            "runs": {},
        }
        for s in specs
    }
    similarity_table: dict = {}
    progress = tqdm(total=len(specs) * len(languages), desc=f"evaluate ({mode})", unit="model·lang")
    for lang, lang_dir in languages:
        data_l = load_language(lang, lang_dir)
        train_labels = [data_l.encode(p) for p in data_l.train.phones]
        subset = _train_subset(len(data_l.train.ids))
        cache: dict[str, dict[str, list[torch.Tensor]]] = {}
        for spec in specs:
            progress.set_postfix(model=spec.name, lang=lang)
            features = loaded[spec.name]
            run = {
                "phones": sum(len(p) for p in data_l.test.phones),
                "unseen_phones": data_l.unseen_test_phones,
                "test_split": data_l.test_split,
                "train_seconds": data_l.train.seconds,
                "test_seconds": data_l.test.seconds,
                "skipped": data_l.skipped,
                "per": [],
                "train_per": [],
                "seconds": [],
                "steps": 0,
            }
            if mode == "probe":
                start = time.perf_counter()
                feats = {
                    "train": _extract(features, data_l.train.waves),
                    "test": _extract(features, data_l.test.waves),
                }
                run["feature_seconds"] = time.perf_counter() - start
                cache[spec.name] = feats
            for seed in seeds:
                if mode == "probe":
                    head, info = train_probe(
                        feats["train"], train_labels, len(data_l.vocab), _with_seed(probe, seed)
                    )
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
                        _with_seed(finetune_config, seed),
                        features.normalize,
                        device,
                    )
                    test_hyp = finetune_decode(model, data_l.test.waves, features.normalize, device)
                    train_hyp = finetune_decode(
                        model, [data_l.train.waves[i] for i in subset], features.normalize, device
                    )
                run["per"].append(
                    phone_error_rate(data_l.test.phones, [data_l.decode(h) for h in test_hyp])
                )
                run["train_per"].append(
                    phone_error_rate(
                        [data_l.train.phones[i] for i in subset],
                        [data_l.decode(h) for h in train_hyp],
                    )
                )
                run["seconds"].append(info["seconds"])
                run["steps"] = info["steps"]
            rows[spec.name]["runs"][lang] = run
            progress.update(1)
        if similarity and mode == "probe":
            table = _similarity(specs, loaded, cache)
            if table:
                similarity_table[lang] = table
    progress.close()
    results = _summarise(mode, [lang for lang, _ in languages], list(seeds), specs, rows)
    results["config"] = asdict(probe) if mode == "probe" else asdict(finetune_config)
    if similarity_table:
        results["similarity"] = similarity_table
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_reports(results, out_dir)
    return results


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


def _summarise(
    mode: str, langs: list[str], seeds: list[int], specs: list[ModelSpec], rows: dict
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
    reference = models[0]["per_mean"]
    for entry in models:
        entry["rel_gap"] = entry["per_mean"] / reference - 1 if reference > 0 else float("nan")
    return {"mode": mode, "languages": langs, "seeds": seeds, "models": models}
