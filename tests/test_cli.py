"""The command line helps a newcomer find settings, configs and commands."""

from __future__ import annotations

import pytest

from distilxlsr import __version__
from distilxlsr.cli import main
from tests.helpers import distill_args


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"distilxlsr {__version__}"


def test_a_mistyped_command_or_choice_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit):
        main(["distil"])
    assert "did you mean 'distill'?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", "m", "--data", "d", "--out", "o", "--mode", "probx"])
    assert "did you mean 'probe'?" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command, keys",
    [
        ("distill", [" * teacher = ''", " * data.train = ''", "   train.lr = 0.0002  -- Peak"]),
        ("pretrain-teacher", [" * data = ''", "   stage2.steps = 0"]),
    ],
)
def test_help_lists_every_key_with_its_default_and_doc(capsys, command, keys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    for key in keys:
        assert key in text
    assert "shuffle.mode = utterance" in text or command != "distill"


def test_config_list_show_and_copy(tmp_path, capsys):
    assert main(["config", "list"]) == 0
    listing = capsys.readouterr().out
    assert "tiny-cpu" in listing and "xlsr300m-half" in listing
    assert main(["config", "show", "tiny-cpu"]) == 0
    assert "max_steps: 300" in capsys.readouterr().out
    target = tmp_path / "mine.yaml"
    assert main(["config", "cp", "tiny-cpu", str(target)]) == 0
    assert "max_steps: 300" in target.read_text()
    assert main(["config", "cp", "tiny-cpu", str(target)]) == 2  # never overwrites
    assert main(["config", "show", "tiny-cpux"]) == 2
    assert "shipped configs:" in capsys.readouterr().err


def test_distill_starts_from_an_init_student_directory(tmp_path, teacher_dir, toy_corpus, capsys):
    import torch
    from safetensors.torch import load_file

    init = tmp_path / "init"
    assert main(["init-student", "--teacher", str(teacher_dir), "--out", str(init)]) == 0
    before = load_file(init / "model.safetensors")
    run = tmp_path / "run"
    common = distill_args(
        teacher_dir, toy_corpus, tmp_path / "unused", "train.max_steps=1", f"student.init={init}"
    )
    # the init directory must have been built with this run's layer map
    assert main([*common, f"out={tmp_path / 'other'}", "student.layers=first:2"]) == 2
    assert "was built with layer map jump:2" in capsys.readouterr().err
    # a frozen part (the CNN) comes from the init directory unchanged
    with torch.no_grad():
        for key in before:
            if key.startswith("feature_extractor."):
                before[key].add_(1.0)
    from safetensors.torch import save_file

    save_file(before, init / "model.safetensors", metadata={"format": "pt"})
    assert main([*common, f"out={run}"]) == 0
    after = load_file(run / "checkpoints" / "step-0000001" / "model.safetensors")
    key = "feature_extractor.conv_layers.0.conv.weight"
    assert torch.equal(after[key], before[key])


def test_an_unknown_or_missing_tracker_is_one_line(tmp_path, teacher_dir, toy_corpus, capsys):
    common = distill_args(teacher_dir, toy_corpus, tmp_path / "r")
    assert main([*common, "train.trackers=[tensorbored]"]) == 2
    assert "'tensorbored' is not one of tensorboard, wandb, mlflow" in capsys.readouterr().err


def test_similarity_colours_fit_the_values():
    import numpy as np

    from distilxlsr.evaluate.report import similarity_range

    low, high = similarity_range(np.array([[0.85, 0.96], [0.9, 0.93]]))
    assert 0.8 < low < 0.85 and 0.96 < high < 1.0
    assert similarity_range(np.array([[0.5, 0.5]]))[1] > 0.5  # one value still gets a range


@pytest.mark.parametrize(
    "option, message",
    [
        (["--max-seconds", "nan"], "must be a finite number above 0"),
        (["--max-reject-share", "nan"], "must lie between 0 and 1"),
        (["--jobs", "0"], "must be at least 1"),
        (["--lang", "../escape"], "is not a language code"),
    ],
)
def test_prepare_refuses_bad_options(tmp_path, capsys, option, message):
    with pytest.raises(SystemExit):
        main(["prepare", "commonvoice", str(tmp_path), "--out", str(tmp_path / "o"), *option])
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_labels_split_compare_and_bootstrap(tmp_path, capsys):
    import json

    from distilxlsr.data.toy import make_toy_corpus

    for lang, seed in (("xx", 1), ("yy", 2)):
        make_toy_corpus(tmp_path / "corpus", lang, "train", num_utterances=6, seed=seed)
        make_toy_corpus(tmp_path / "corpus", lang, "test", num_utterances=2, seed=seed + 10)
    make_toy_corpus(tmp_path / "corpus", "xx", "dev", num_utterances=3, seed=20)
    common = ["evaluate", "--data", str(tmp_path / "corpus"), "--out", str(tmp_path / "out")]
    models = ["--model", "ref=logmel", "--model", "other:v1=logmel"]
    argv = [*common, *models, "--split", "dev", "--steps", "2", "--bootstrap", "200"]
    assert main([*argv, "--compare", "other:v1:ref"]) == 0
    printed = capsys.readouterr().out
    assert "skipping yy: no dev split" in printed and "Holm p" in printed
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == ["ref", "other:v1"]
    assert results["split"] == "dev" and results["languages"] == ["xx"]
    assert results["bootstrap"]["resamples"] == 200
    assert [(c["a"], c["b"]) for c in results["comparisons"]] == [("other:v1", "ref")]
    for wrong, message in [
        (["--compare", "ref:nope"], "--compare 'ref:nope' must be A:B"),
        (["--langs", "yy"], "language 'yy' has no dev split"),
        (["--bootstrap", "5"], "at least 100"),
        (["--model", "ref=logmel"], "label 'ref' is given twice"),
    ]:
        assert main([*argv, *wrong]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, *models, "--split", "train"])
    assert "invalid choice: 'train'" in capsys.readouterr().err
