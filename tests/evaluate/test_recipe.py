"""An evaluation as a config: shipped by name, overridden key by key, checked when loaded; its
results.json written from typed records with a schema version."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from distilxlsr.asr.recipe import FullStage
from distilxlsr.cli import main
from distilxlsr.config import shipped_configs
from distilxlsr.data.toy import make_toy_corpus
from distilxlsr.errors import UserError
from distilxlsr.evaluate.ctc import FLOOR_PROBE, ProbeConfig
from distilxlsr.evaluate.recipe import EvaluationConfig, evaluation_finetune, load_evaluation
from distilxlsr.evaluate.records import SCHEMA_VERSION, LanguageRun, Results

REQUIRED = ["models=[logmel]", "data=corpus", "out=o"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe") / "corpus"
    make_toy_corpus(root, "aa", "train", num_utterances=6, seed=1)
    make_toy_corpus(root, "aa", "test", num_utterances=3, seed=2)
    return root


def test_the_sections_default_to_the_recognisers_own_defaults():
    config = EvaluationConfig()
    assert config.probe == ProbeConfig() and config.finetune == evaluation_finetune()
    assert config.finetune.targets == "phones" and not config.finetune.decoding.lm
    assert config.floor_probe == FLOOR_PROBE and config.floor_probe is not FLOOR_PROBE


def test_shipped_evaluation_configs_load_by_name():
    assert {"eval-probe", "eval-finetune", "eval-tiny-cpu"} <= set(shipped_configs())
    probe = load_evaluation("eval-probe", REQUIRED)
    assert probe.mode == "probe" and probe.split == "test" and probe.seeds == [0, 1, 2]
    assert probe.probe == ProbeConfig() and probe.floor_probe == FLOOR_PROBE
    assert load_evaluation("eval-finetune", REQUIRED).mode == "finetune"
    superb = load_evaluation("eval-superb", REQUIRED)
    assert superb.mode == "superb" and superb.seeds == [0, 1, 2]
    tiny = load_evaluation("eval-tiny-cpu", REQUIRED)
    assert tiny.probe.steps == tiny.floor_probe.steps == 20


def test_overrides_and_values_and_a_section_given_in_part():
    config = load_evaluation(
        "eval-probe",
        [*REQUIRED, "seeds=3,4", "probe.lr=0.01", "floor_probe.steps=9", "finetune.full.steps=7"],
        values={"models": ["a=logmel", "1e-4"], "langs": ["no"], "jobs": 2},
    )
    assert config.models == ["logmel"]  # key=value comes last
    assert config.seeds == [3, 4] and config.langs == ["no"] and config.jobs == 2
    assert config.probe == ProbeConfig(lr=0.01)
    # The floor's section keeps FLOOR_PROBE's values but the one given, not ProbeConfig's.
    assert config.floor_probe == ProbeConfig(**{**asdict(FLOOR_PROBE), "steps": 9})
    assert config.finetune.full.steps == 7 and config.probe.steps == ProbeConfig().steps
    kept = load_evaluation(None, REQUIRED[1:], values={"models": ["1e-4", "x=a"]})
    assert kept.models == ["1e-4", "x=a"]  # options' values are not read as YAML


@pytest.mark.parametrize(
    "override, message",
    [
        ("probe.stepz=3", "unknown key 'stepz'; did you mean 'steps'"),
        ("floor=3", "unknown key 'floor'"),
        ("probe.steps=many", "probe.steps: expected an integer"),
        ("probe.lr=-1", "probe.lr=-1.0 must be positive"),
        ("seeds=a,b", "seeds: expected an integer"),
        ("mode=probx", "--mode 'probx' must be one of probe, superb, finetune"),
        ("split=train", "--split 'train' must be one of test, valid, dev"),
        ("bootstrap=5", "at least 100 resamples"),
        ("jobs=0", "--jobs 0 must be a whole number"),
        ("seeds=[]", "seeds lists no seed"),
        ("probe.optimizer=sgd", "probe.optimizer 'sgd' must be one of adam, lbfgs"),
        ("floor_probe.seed=3", "floor_probe.seed=3: each recogniser's seed is one of `seeds`"),
        ("finetune.train.seed=3", "finetune.train.seed=3: each recogniser's seed is one of"),
        ("out=", "no out given"),
    ],
)
def test_bad_settings_are_refused_when_loaded(override, message):
    with pytest.raises(UserError, match=message):
        load_evaluation("eval-probe", [*REQUIRED, override])


def test_an_evaluation_needs_models():
    with pytest.raises(UserError, match="no models given: set models in the config, or --model"):
        load_evaluation("eval-probe", ["data=d", "out=o"])


def test_evaluate_with_a_shipped_config_and_options_as_shortcuts(tmp_path, corpus, capsys):
    out = tmp_path / "out"
    argv = ["evaluate", "--config", "eval-tiny-cpu", "--model", "logmel", "--model", "b=logmel"]
    argv += ["--data", str(corpus), "--out", str(out), "--steps", "3", "--floor-steps", "4"]
    argv += ["seeds=0,1"]
    assert main(argv) == 0
    assert "results in" in capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    assert saved["schema_version"] == SCHEMA_VERSION
    assert saved["seeds"] == [0, 1] and saved["bootstrap"]["resamples"] == 200
    assert saved["config"]["steps"] == 3  # --steps: the networks' probe in probe mode
    assert saved["floor_config"]["steps"] == 4  # log-mel's own probe: --floor-steps
    assert saved["models"][0]["details"]["aa"]["steps"] == 4
    # results.json reads back into its records and writes out the same.
    results = Results.from_dict(saved)
    assert results.to_dict() == saved
    run = results.models[0].details["aa"]
    stored = saved["models"][0]["details"]["aa"]["utterances"]
    assert isinstance(run, LanguageRun) and [u.edits for u in run.utterances] == [
        u["edits"] for u in stored
    ]
    # A repeat with the same settings reuses every result.
    assert main(argv) == 0
    assert "reusing 2 of 2" in capsys.readouterr().out


def test_results_without_a_version_read_and_a_newer_version_is_refused(tmp_path, corpus):
    from distilxlsr.evaluate.harness import evaluate

    saved = evaluate(["logmel"], str(corpus), str(tmp_path / "o"), probe=ProbeConfig(steps=2))
    old = {k: v for k, v in saved.items() if k != "schema_version"}
    assert Results.from_dict(old).to_dict() == saved
    with pytest.raises(UserError, match="newer than this distilxlsr reads"):
        Results.from_dict({**saved, "schema_version": SCHEMA_VERSION + 1})


def test_the_help_lists_the_evaluation_keys_with_their_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    assert " * models = []" in text and " * data = ''" in text
    assert f"   floor_probe.steps = {FLOOR_PROBE.steps}" in text
    assert f"   probe.steps = {ProbeConfig().steps}" in text
    assert f"   finetune.full.steps = {FullStage().steps}" in text
