"""`export`: which directory a run's student comes from, what lands in the export, and the card,
on a run directory assembled by hand (no distillation needed)."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest
import torch
import transformers
import yaml

from distilxlsr.config import save_config
from distilxlsr.distill.recipe import load_distill_config
from distilxlsr.errors import UserError
from distilxlsr.export import (
    export_hf,
    find_student,
    model_card,
    model_provenance,
    push_to_hub,
    student_info,
)
from distilxlsr.models.layers import parse_layer_map
from distilxlsr.models.student import STUDENT_INFO, StudentInfo, build_student
from distilxlsr.provenance import (
    PROVENANCE_FILE,
    Provenance,
    describe,
    read_provenance,
    student_provenance,
    write_provenance,
)
from distilxlsr.training import checkpoint as ckpt
from distilxlsr.training.rundir import RunDir
from tests.helpers import tiny_model

RUN_STATE = {"step": 40, "audio_seconds": 7200.0, "bad_steps": 3}


def _student():
    teacher = tiny_model("wav2vec2", layers=4)
    layer_map = parse_layer_map("jump:2", 4)
    return build_student(teacher, layer_map).eval(), layer_map


def _checkpoint(run, student, step: int, run_state: dict | None = None):
    tmp = ckpt.temporary_dir(run, step)
    tmp.mkdir(parents=True)
    ckpt.save_model(student, student.config, tmp)
    state = {"run_state": run_state or RUN_STATE | {"step": step}}
    (tmp / "trainer_state.json").write_text(json.dumps(state))
    ckpt.write_manifest(tmp)
    return ckpt.commit(tmp, run, step, keep=5)


@pytest.fixture
def run(tmp_path):
    """A run directory as `distill` leaves it: config, student_init, metrics, two checkpoints."""
    run = tmp_path / "run"
    student, layer_map = _student()
    config = load_distill_config(
        None,
        ["teacher=my/teacher", "data.train=corpus/en", "shuffle.mode=word", "shuffle.p=0.5"],
    )
    run.mkdir()
    save_config(config, run / "config.yaml")
    init = run / "student_init"
    student.config.save_pretrained(init)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(init)
    StudentInfo("my/teacher", "jump:2", [2, 4], [2, 4], 4, 1000, 520).write(init)
    (run / "metrics.jsonl").write_text(
        json.dumps({"step": 20, "loss": 2.0})
        + "\n"
        + json.dumps({"step": 40, "loss": 1.23456})
        # a trailing blank line, as an interrupted writer may leave
        + "\n\n"
    )
    _checkpoint(run, student, 20)
    with torch.no_grad():
        student.encoder.layers[0].attention.q_proj.weight.add_(1.0)  # the newer weights
    _checkpoint(run, student, 40)
    return run


def test_find_student_picks_the_newest_checkpoint_of_a_run(run, tmp_path):
    found, of = find_student(run)
    assert found == run / "checkpoints" / "step-0000040" and of.path == run
    # A checkpoint directory is its own student; its run is found from its path.
    model_dir = run / "checkpoints" / "step-0000020"
    found, of = find_student(model_dir)
    assert found == model_dir and of.path == run
    # A plain model directory has no run.
    plain = tmp_path / "plain"
    ckpt.save_model(_student()[0], _student()[0].config, plain)
    assert find_student(plain) == (plain, None)
    # A run that has not written a checkpoint yet.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "config.yaml").write_text("teacher: x\n")
    with pytest.raises(UserError, match="no intact checkpoint"):
        find_student(fresh)
    (fresh / "config.yaml").unlink()
    (fresh / "checkpoints").mkdir()
    with pytest.raises(UserError, match="no intact checkpoint"):
        find_student(fresh)
    with pytest.raises(UserError, match="does not exist"):
        find_student(tmp_path / "missing")
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")  # weights missing
    with pytest.raises(UserError, match="neither a run directory"):
        find_student(half)


def test_student_info_beside_the_model_or_in_the_run(run, tmp_path):
    model_dir = run / "checkpoints" / "step-0000040"
    from_run = student_info(model_dir)  # found through the checkpoint's run
    assert from_run.layer_map == "jump:2" and from_run.targets == [2, 4]
    assert student_info(tmp_path) is None
    beside = StudentInfo("t", "first:2", [1, 2], [2, 4], 4, 10, 5)
    beside.write(model_dir)
    assert student_info(model_dir) == beside


def test_export_of_a_run(run, tmp_path):
    out = export_hf(run, tmp_path / "out")
    assert out == tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
            STUDENT_INFO,
            "README.md",
        ]
    )
    newest = run / "checkpoints" / "step-0000040"
    for name in ("config.json", "model.safetensors"):
        assert (out / name).read_bytes() == (newest / name).read_bytes()
    assert (out / "preprocessor_config.json").read_bytes() == (
        run / "student_init" / "preprocessor_config.json"
    ).read_bytes()
    assert json.loads((out / STUDENT_INFO).read_text()) == json.loads(
        (run / "student_init" / STUDENT_INFO).read_text()
    )
    assert transformers.AutoModel.from_pretrained(out).config.num_hidden_layers == 2
    # A run from before distill wrote a student's provenance: the export claims none.
    assert model_provenance(newest) is None and not (out / PROVENANCE_FILE).exists()
    card = (out / "README.md").read_text()
    assert card == model_card(newest, RunDir(run), None, out)
    assert "## Evaluation" not in card


def test_model_card_lines(run, tmp_path):
    card = model_card(run / "checkpoints" / "step-0000040", RunDir(run), None, tmp_path / "mine")
    lines = card.splitlines()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "transformers" and meta["base_model"] == "my/teacher"
    assert meta["pipeline_tag"] == "feature-extraction" and "distillation" in meta["tags"]
    assert "# DistilXLSR student (wav2vec2)" in lines
    assert 'model = AutoModel.from_pretrained("mine")' in lines
    expected = [
        "| architecture | Wav2Vec2Model, 2 layers, hidden 32 |",
        "| teacher | `my/teacher` (4 layers, 1,000 parameters) |",
        "| layer map | `jump:2`: student layers copied from teacher layers [2, 4], distilled "
        "towards [2, 4] |",
        "| parameters | 520 (52.0% of the teacher) |",
        "| phoneme shuffling | mode `word`, p = 0.5 |",
        "| alignments read | the training data's phone alignments, only to place the shuffle's "
        "cuts (never a training target) |",
        "| loss | L1 + λ·(−log σ(cos)), λ = 1.0 |",
        "| training | 40 steps, 2.000 h of audio, peak lr 0.0002, 3 skipped steps |",
        "| final loss | 1.2346 |",
    ]
    table = [line for line in lines if line.startswith("| ") and "---" not in line]
    assert table == ["| | |"] + expected
    assert "with randomly shuffled phonemes (word level)" in card


def test_a_student_carries_what_its_teacher_heard_and_its_own_data(run, tmp_path):
    """The record distill writes into student_init/: the student's data with its tiers, and all
    its teacher carries (labels, unknown sources, the tier protocol); the export and its card
    carry it with no local path; a damaged record is an error naming the file."""
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    write_provenance(
        teacher,
        Provenance(
            heard={"en": "english", "es": "label"},
            labels=["es"],
            tier_protocol=False,
            unknown=["org/units-model"],
        ),
    )
    record = student_provenance(str(teacher), {"en": "english", "xx": None})
    assert record == Provenance(
        heard={"en": "english", "es": "label", "xx": None},
        labels=["es"],
        tier_protocol=False,
        unknown=["org/units-model"],
    )
    # Data without tiers (a prepared corpus): the teacher's tier for a language it heard too.
    assert student_provenance(str(teacher), {"en": None}).heard == {"en": "english", "es": "label"}
    write_provenance(run / "student_init", record)
    newest = run / "checkpoints" / "step-0000040"
    assert model_provenance(newest) == record
    out = export_hf(run, tmp_path / "out")
    assert read_provenance(out) == record and model_provenance(out) == record
    line = (
        "heard en (english), es (label), xx; labels: phone labels of es (label); what came "
        "through org/units-model is not recorded; tier protocol off (a labelled upper bound)"
    )
    assert describe(record) == line
    card = (out / "README.md").read_text().splitlines()
    assert f"| heard, and labels (its teacher's included) | {line} |" in card
    # A teacher without a record, given as a local directory: unknown, named without its path.
    bare = tmp_path / "somewhere" / "bare-teacher"
    write_provenance(run / "student_init", student_provenance(str(bare), {"en": None}))
    out = export_hf(run, tmp_path / "out2")
    assert read_provenance(out).unknown == ["bare-teacher"]
    text = (out / "README.md").read_text() + (out / PROVENANCE_FILE).read_text()
    assert "what came through bare-teacher is not recorded" in text and str(bare) not in text
    (run / "student_init" / PROVENANCE_FILE).write_text("{not json")
    with pytest.raises(UserError, match="student_init/provenance.json' is not a provenance"):
        model_provenance(newest)
    (teacher / PROVENANCE_FILE).write_text("[]")
    with pytest.raises(UserError, match="is not a provenance record"):
        student_provenance(str(teacher), {"en": None})


def test_model_card_of_a_plain_model_directory(run, tmp_path):
    """Without a run: no data, loss or training lines; an mse run names its loss."""
    student, _ = _student()
    plain = tmp_path / "plain"
    ckpt.save_model(student, student.config, plain)
    results = {
        "mode": "probe",
        "models": [
            {"path": "t", "per": {"sw": 0.1}, "per_mean": 0.1},
            {"path": str(plain), "per": {"sw": 0.25}, "per_mean": 0.25},
        ],
    }
    card = model_card(plain, None, results)
    assert "| architecture | Wav2Vec2Model, 2 layers, hidden 32 |" in card
    assert "| teacher |" not in card and "| training |" not in card
    assert (
        "## Evaluation (probe, phone error rate %)" in card and "| **mean** | 25.0 | 10.0 |" in card
    )
    config = load_distill_config(run / "config.yaml", ["loss.kind=mse", "loss.cos_weight=0.5"])
    save_config(config, run / "config.yaml")
    (run / "metrics.jsonl").write_text("")
    card = model_card(run / "checkpoints" / "step-0000040", RunDir(run), None)
    assert "| loss | MSE, λ = 0.5 |" in card and "final loss" not in card
    (run / "metrics.jsonl").unlink()
    assert "final loss" not in model_card(run / "checkpoints" / "step-0000040", RunDir(run), None)


def _results(per: float) -> dict:
    return {
        "mode": "probe",
        "models": [
            {"path": "teacher", "per": {"sw": 0.1}, "per_mean": 0.1},
            {"path": "student", "per": {"sw": per}, "per_mean": per},
        ],
    }


def test_export_takes_results_from_the_run_or_a_file(run, tmp_path):
    (run / "results.json").write_text(json.dumps(_results(0.5)))
    card = (export_hf(run, tmp_path / "a") / "README.md").read_text()
    assert "| **mean** | 50.0 | 10.0 |" in card
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_results(0.75)))
    card = (export_hf(run, tmp_path / "b", other) / "README.md").read_text()
    assert "| **mean** | 75.0 | 10.0 |" in card and "50.0" not in card


def test_export_of_a_model_directory_and_refusals(run, tmp_path):
    model_dir = tmp_path / "plain"
    student, _ = _student()
    ckpt.save_model(student, student.config, model_dir)
    out = export_hf(model_dir, tmp_path / "m")
    # No run: nothing but the model and its card (no extractor, no layer-map record).
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    with pytest.raises(UserError, match="is the source itself"):
        export_hf(model_dir, model_dir)
    # Into a directory that does not exist yet, two levels deep; then again into the same one.
    nested = tmp_path / "exports" / "v1" / "student"
    assert export_hf(model_dir, nested) == nested
    (nested / "README.md").write_text("stale")
    export_hf(model_dir, nested)
    assert (nested / "README.md").read_text() == model_card(model_dir, None, None, nested)


def test_unreadable_weights_of_a_model_directory_are_one_line_naming_the_file(tmp_path):
    model_dir = tmp_path / "plain"
    student, _ = _student()
    ckpt.save_model(student, student.config, model_dir)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(UserError) as err:
        export_hf(model_dir, tmp_path / "m")
    assert str(err.value).startswith(f"'{weights}' is not a readable safetensors file (")
    assert not (tmp_path / "m").exists()


def test_refusals_name_the_source_and_what_to_do(run, tmp_path):
    fresh = tmp_path / "fresh"
    (fresh / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError) as err:
        find_student(fresh)
    assert str(err.value) == (
        f"run directory '{fresh}' has no intact checkpoint; let `distill` run until its first "
        "checkpoint (train.checkpoint_every)."
    )
    half = tmp_path / "half"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"")  # config.json missing
    with pytest.raises(UserError) as err:
        find_student(half)
    assert str(err.value) == (
        f"'{half}' is neither a run directory (with checkpoints/) nor a Hugging Face model "
        "directory (config.json + model.safetensors)."
    )


def test_a_damaged_checkpoint_given_directly_is_refused_naming_its_run(run, tmp_path):
    older = run / "checkpoints" / "step-0000020"
    state = older / "trainer_state.json"
    data = state.read_bytes()
    assert b'"step": 20' in data
    state.write_bytes(data.replace(b'"step": 20', b'"step": 21'))  # same size, other bytes
    with pytest.raises(UserError) as err:
        export_hf(older, tmp_path / "out")
    assert str(err.value) == (
        f"checkpoint '{older}' is damaged (trainer_state.json does not match its checksum); "
        f"export its run directory '{run}' to take the newest intact checkpoint."
    )
    assert not (tmp_path / "out").exists()
    # The run itself still exports, from its newest (intact) checkpoint.
    assert find_student(run)[0] == run / "checkpoints" / "step-0000040"


def test_card_of_a_config_without_model_type_or_architectures(tmp_path):
    plain = tmp_path / "plain"
    student, _ = _student()
    ckpt.save_model(student, student.config, plain)
    config = json.loads((plain / "config.json").read_text())
    del config["model_type"], config["architectures"]
    (plain / "config.json").write_text(json.dumps(config))
    lines = model_card(plain, None, None).splitlines()
    assert "# DistilXLSR student (?)" in lines
    assert "| architecture | ?, 2 layers, hidden 32 |" in lines


def test_card_takes_the_layer_map_from_the_run_it_is_given(run, tmp_path):
    """A model directory outside the run (say a copy of a checkpoint) with its run named."""
    plain = tmp_path / "plain"
    student, _ = _student()
    ckpt.save_model(student, student.config, plain)
    card = model_card(plain, RunDir(run), None)
    assert "| teacher | `my/teacher` (4 layers, 1,000 parameters) |" in card.splitlines()
    assert "| teacher |" not in model_card(plain, None, None)


def test_a_teacher_given_as_a_local_directory_is_no_base_model(run, tmp_path):
    init = run / "student_init"
    StudentInfo("/data/teachers/xlsr-300m", "jump:2", [2, 4], [2, 4], 4, 1000, 520).write(init)
    card = model_card(run / "checkpoints" / "step-0000040", RunDir(run), None)
    meta = yaml.safe_load(card.split("---\n")[1])
    assert "base_model" not in meta
    assert "| teacher | `xlsr-300m` (4 layers, 1,000 parameters) |" in card.splitlines()


def test_card_license_and_languages_from_the_run_facts(run):
    newest = run / "checkpoints" / "step-0000040"
    card = model_card(newest, RunDir(run), None)
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["license"] == "other" and "language" not in meta
    assert "License: the teacher's; check it before publishing this model." in card.splitlines()
    RunDir(run).write_facts({"languages": {"sw": 0.25, "en": 1.5}, "teacher_license": None})
    meta = yaml.safe_load(model_card(newest, RunDir(run), None).split("---\n")[1])
    assert meta["license"] == "other"
    RunDir(run).write_facts({"languages": {"sw": 0.25, "en": 1.5}, "teacher_license": "mit"})
    card = model_card(newest, RunDir(run), None)
    lines = card.splitlines()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["license"] == "mit" and meta["language"] == ["en", "sw"]
    assert "| training data | en 1.50 h, sw 0.25 h |" in lines
    assert "License: the teacher's; check it before publishing this model." not in lines
    assert "distilled on en, sw speech with randomly shuffled phonemes (word level)" in card


def test_final_loss_is_the_last_logged_one(run):
    RunDir(run).append_metrics({"step": 50, "loss": 0.5})
    card = model_card(run / "checkpoints" / "step-0000040", RunDir(run), None)
    assert "| final loss | 0.5000 |" in card.splitlines()


@pytest.mark.parametrize("named", ["checkpoint", "run", "out"])
def test_export_picks_its_own_entry_of_a_results_file_by_path(run, tmp_path, named):
    """An evaluation of several models: the student's entry is the one naming its checkpoint,
    its run, or the export folder."""
    out = tmp_path / "out"
    path = {"checkpoint": run / "checkpoints" / "step-0000040", "run": run, "out": out}[named]
    results = {
        "mode": "probe",
        "models": [
            {"path": "teacher", "per": {"sw": 0.1}, "per_mean": 0.1},
            {"path": str(path), "per": {"sw": 0.3}, "per_mean": 0.3},
            {"path": "another", "per": {"sw": 0.9}, "per_mean": 0.9},
        ],
    }
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(results))
    card = (export_hf(run, out, results_file) / "README.md").read_text()
    assert "| **mean** | 30.0 | 10.0 |" in card.splitlines()


class _FakeHub:
    """huggingface_hub.HfApi's two calls used by push_to_hub, with their real signatures,
    recording what would be created and uploaded (no network)."""

    def __init__(self, error: Exception | None = None):
        self.error, self.calls = error, []

    def create_repo(self, repo_id, *, token=None, private=None, repo_type=None, exist_ok=False):
        if self.error is not None:
            raise self.error
        self.calls.append(("create_repo", repo_id, exist_ok))

    def upload_folder(self, *, repo_id, folder_path, path_in_repo=None, commit_message=None):
        files = sorted(p.name for p in Path(folder_path).iterdir())
        self.calls.append(("upload_folder", repo_id, folder_path, files))


def test_push_to_hub_creates_the_repository_and_uploads_the_export(run, tmp_path, monkeypatch):
    hub = _FakeHub()
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: hub)
    out = export_hf(run, tmp_path / "out")
    assert push_to_hub(out, "me/distil-student") == "https://huggingface.co/me/distil-student"
    assert hub.calls == [
        ("create_repo", "me/distil-student", True),
        (
            "upload_folder",
            "me/distil-student",
            str(out),
            sorted(
                [
                    "README.md",
                    "config.json",
                    "model.safetensors",
                    "preprocessor_config.json",
                    STUDENT_INFO,
                ]
            ),
        ),
    ]


@pytest.mark.parametrize(
    "error, detail",
    [
        (OSError("no token found\nrun huggingface-cli login"), "OSError: no token found"),
        (ConnectionError(), "ConnectionError: no detail"),
    ],
)
def test_a_failed_upload_is_one_line_naming_folder_and_repository(
    tmp_path, monkeypatch, error, detail
):
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: _FakeHub(error))
    with pytest.raises(UserError) as err:
        push_to_hub(tmp_path, "me/student")
    assert str(err.value) == (
        f"could not upload '{tmp_path}' to the hub repository 'me/student' ({detail}); "
        "check the network and `huggingface-cli login`, or upload the folder yourself."
    )
    assert err.value.__cause__ is None and err.value.__suppress_context__
