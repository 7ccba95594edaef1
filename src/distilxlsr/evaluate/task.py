"""What an evaluation does for one language, for every model: train a CTC recogniser per seed
on the train split, score it by PER on the test split (`LanguageTask`), in this process or in
worker processes (`in_workers`); and the per-layer similarity of students to the reference."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from distilxlsr.asr.recipe import FinetuneRecipe
from distilxlsr.conventions import SAMPLE_RATE
from distilxlsr.errors import UserError
from distilxlsr.evaluate.ctc import FLOOR_PROBE, ProbeConfig, probe_decode, train_probe
from distilxlsr.evaluate.features import ModelFeatures, ModelSpec, layer_map_of, linear_cka
from distilxlsr.evaluate.languages import LanguageData, load_language, train_subset
from distilxlsr.evaluate.per import edit_distance, phone_error_rate
from distilxlsr.evaluate.records import LanguageRun, UtteranceRecord
from distilxlsr.evaluate.superb import SuperbConfig, train_superb


@dataclass
class LanguageTask:
    """What `evaluate` does for one language, for every model: the same in a worker process."""

    specs: list[ModelSpec]
    stride: int
    mode: str
    seeds: list[int]
    similarity: bool
    probe: ProbeConfig
    finetune_config: FinetuneRecipe
    split: str | None
    floor_probe: ProbeConfig = field(default_factory=lambda: FLOOR_PROBE)
    work: str = ""
    """Where fine-tuning runs live (OUT/finetune-runs/MODEL/LANG/seed-K: each resumes)."""
    superb: SuperbConfig = field(default_factory=SuperbConfig)
    targets: str = "phones"
    """What the recognisers spell: phones (PER) or characters (CER)."""

    def probe_for(self, spec: ModelSpec) -> ProbeConfig:
        """The floor's probe for log-mel, the networks' probe for every other model."""
        return self.floor_probe if spec.kind == "logmel" else self.probe

    def settings(self, spec: ModelSpec) -> dict:
        """The settings of the recogniser this mode trains on `spec`."""
        if self.mode == "probe":
            return asdict(self.probe_for(spec))
        return asdict(self.superb if self.mode == "superb" else self.finetune_config)

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
    ) -> tuple[str, dict[str, LanguageRun], dict | None]:
        """(lang, {model name: its run}, similarity table or None), for the models `names`
        (default: all)."""
        data_l = load_language(lang, lang_dir, self.split, self.targets)
        cache: dict[str, dict[str, list[torch.Tensor]]] = {}
        runs = {}
        for spec in self.specs:
            if names is not None and spec.name not in names:
                continue
            if progress is not None:
                progress.set_postfix(model=spec.name, lang=lang)
            runs[spec.name] = self._run_model(
                spec, loaded[spec.name], data_l, cache, device, lang_dir
            )
            if progress is not None:
                progress.update(1)
        table = None
        if self.similarity and self.mode == "probe" and len(cache) == len(self.specs):
            table = similarity_table(self.specs, loaded, cache)  # {} when no layer map
        return lang, runs, table

    def _run_model(
        self,
        spec: ModelSpec,
        features: ModelFeatures,
        data_l: LanguageData,
        cache,
        device: str,
        lang_dir: Path,
    ) -> LanguageRun:
        run = new_run(data_l)
        train_labels = [data_l.encode(p) for p in data_l.train.phones]
        subset = train_subset(len(data_l.train.ids))
        frozen = self.mode in ("probe", "superb")
        if frozen:
            start = time.perf_counter()
            cache[spec.name] = {
                "train": extract_features(features, data_l.train.waves),
                "test": extract_features(features, data_l.test.waves),
            }
            run.feature_seconds = time.perf_counter() - start
            run.layer_weights = []
        for seed in self.seeds:
            if frozen:
                feats = cache[spec.name]
                if self.mode == "probe":
                    config = with_seed(self.probe_for(spec), seed)
                    head, info = train_probe(
                        feats["train"], train_labels, len(data_l.vocab), config
                    )
                else:
                    config = with_seed(self.superb, seed)
                    head, info = train_superb(
                        feats["train"], train_labels, len(data_l.vocab), config
                    )
                test_hyp = [data_l.decode(h) for h in probe_decode(head, feats["test"])]
                train_feats = [feats["train"][i] for i in subset]
                train_hyp = [data_l.decode(h) for h in probe_decode(head, train_feats)]
                run.layer_weights.append([round(w, 4) for w in head.layer_weights().tolist()])
            else:
                test_hyp, train_hyp, info = self._finetune(spec, lang_dir, data_l, subset, seed)
            score(run, data_l, test_hyp, train_hyp, subset)
            run.seconds.append(info["seconds"])
            run.steps = info["steps"]
        return run

    def _finetune(self, spec: ModelSpec, lang_dir: Path, data_l: LanguageData, subset, seed: int):
        """(test hypotheses, train-subset hypotheses, training info) of one fine-tuning: the
        `finetune` job (asr/) with phone targets, in its own run directory (it resumes)."""
        from distilxlsr.asr.finetune import finetune  # noqa: PLC0415
        from distilxlsr.asr.recipe import FinetuneConfig  # noqa: PLC0415
        from distilxlsr.asr.recogniser import Recogniser  # noqa: PLC0415

        if spec.kind != "hf":
            raise UserError(f"'{spec.name}' has no pretrained network to fine-tune.")
        recipe = copy.deepcopy(self.finetune_config)
        recipe.train.seed, recipe.targets = seed, self.targets
        out = Path(self.work or "finetune-runs") / spec.name / data_l.lang / f"seed-{seed}"
        config = FinetuneConfig.of(
            recipe, model=spec.path, data=str(lang_dir), out=str(out), eval_split=""
        )
        start = time.perf_counter()
        model_dir = finetune(config, command_line=f"evaluate --mode finetune ({spec.name})")
        recogniser = Recogniser(model_dir, use_lm=False)

        def symbols(waves):  # text becomes characters with `|`, as the references are spelt
            return [recogniser.vocab.symbols(h) for h in recogniser.transcribe(waves)]

        test_hyp = symbols(data_l.test.waves)
        train_hyp = symbols([data_l.train.waves[i] for i in subset])
        info = {
            "seconds": time.perf_counter() - start,
            "steps": recipe.frozen.steps + recipe.full.steps,
        }
        return test_hyp, train_hyp, info


def new_run(data_l: LanguageData) -> LanguageRun:
    """A model's run on a language before any seed: the test split's utterances and sizes."""
    test = data_l.test
    return LanguageRun(
        phones=sum(len(p) for p in test.phones),
        unseen_phones=data_l.unseen_test_phones,
        test_split=data_l.test_split,
        train_seconds=data_l.train.seconds,
        test_seconds=test.seconds,
        skipped=data_l.skipped,
        utterances=[
            UtteranceRecord(i, speaker, len(p))
            for i, speaker, p in zip(test.ids, test.speakers, test.phones, strict=True)
        ],
    )


def score(run: LanguageRun, data_l: LanguageData, test_hyp, train_hyp, subset: list[int]) -> None:
    """One seed's test edits per utterance, test PER and train-subset PER, added to `run`
    (hypotheses as phone lists)."""
    edits = [edit_distance(ref, hyp) for ref, hyp in zip(data_l.test.phones, test_hyp, strict=True)]
    for record, count in zip(run.utterances, edits, strict=True):
        record.edits.append(count)
    run.per.append(sum(edits) / run.phones)  # = phone_error_rate
    run.train_per.append(phone_error_rate([data_l.train.phones[i] for i in subset], train_hyp))


def extract_features(
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


def with_seed(config, seed: int):
    """A copy of a probe or fine-tuning config with another seed."""
    copy_ = type(config)(**asdict(config))
    copy_.seed = seed
    return copy_


def similarity_table(specs: list[ModelSpec], loaded: dict, cache: dict) -> dict:
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


def in_workers(task: LanguageTask, languages: list[tuple[str, Path, list[str]]], jobs: int):
    """Languages evaluated by `jobs` spawned processes, yielded in the given order as they
    finish. A worker runs one torch thread: its results equal a one-thread run in the parent
    (another thread count sums floats in another order)."""
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
