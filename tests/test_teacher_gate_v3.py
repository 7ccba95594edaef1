"""The v3 teacher gate's verdict and its model-card section (experiments/teacher_gate_v3.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import script_module

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "teacher_gate_v3.py"
LANGS = ["eu", "ia", "ka", "sw", "tt"]


@pytest.fixture(scope="module")
def gate():
    with script_module(SCRIPT) as module:
        yield module


def results(teacher: dict, logmel: dict, diff: float, ci: list[float]) -> dict:
    """What evaluate() returns, in the fields the verdict reads."""
    models = [
        {"name": name, "path": f"/m/{name}", "per": per, "per_mean": sum(per.values()) / 5}
        for name, per in (("T", teacher), ("logmel", logmel))
    ]
    return {
        "models": models,
        "comparisons": [{"a": "logmel", "b": "T", "diff": diff, "ci": ci}],
        "languages": LANGS,
        "split": "dev",
        "seeds": [0, 1, 2],
    }


@pytest.mark.parametrize(
    ("teacher_per", "diff", "ci", "passed"),
    [
        (0.2, 0.25, [0.12, 0.35], True),  # every bar met
        (0.2, 0.25, [0.08, 0.35], False),  # the interval's lower end below 10 points
        (0.2, 0.18, [0.12, 0.25], False),  # the gain below 20 points
    ],
)
def test_verdict(gate, teacher_per, diff, ci, passed):
    logmel = dict.fromkeys(LANGS, 0.45)
    teacher = dict.fromkeys(LANGS, teacher_per)
    g = gate.verdict("T", results(teacher, logmel, diff, ci), gate.DEFAULT_BAR)
    assert g["passed"] is passed and g["languages_beaten"] == LANGS


def test_verdict_needs_four_languages(gate):
    logmel = dict.fromkeys(LANGS, 0.45)
    teacher = dict.fromkeys(LANGS, 0.1) | {"ka": 0.5, "tt": 0.5}
    g = gate.verdict("T", results(teacher, logmel, 0.25, [0.12, 0.35]), gate.DEFAULT_BAR)
    assert g["languages_beaten"] == ["eu", "ia", "sw"] and not g["passed"]


def test_the_card_records_the_gate_once(gate, tmp_path):
    (tmp_path / "README.md").write_text("# T\n\n**Heard:** English\n\n## Use\n\ntext\n")
    logmel = dict.fromkeys(LANGS, 0.48)
    g = gate.verdict(
        "T", results(dict.fromkeys(LANGS, 0.47), logmel, 0.01, [-0.05, 0.08]), gate.DEFAULT_BAR
    )
    gate.write_card(tmp_path, g, "cmd A")
    gate.write_card(tmp_path, g | {"gain": 0.02}, "cmd B")  # a later gate replaces it
    text = (tmp_path / "README.md").read_text()
    assert text.count(gate.CARD_SECTION) == 1 and "## Use\n\ntext\n" in text
    assert "a gain of +2.0 points [-5.0, +8.0]" in text and "(`cmd B`)" in text
    assert "lower than log-mel on 5 of 5" in text and "**failed**" in text
    gate.write_card(tmp_path / "none", g, "cmd")  # no card: nothing written, no error
    # A card that ends with its citation keeps it last.
    (tmp_path / "README.md").write_text("# T\n\n## Citation\n\ncite\n")
    gate.write_card(tmp_path, g, "cmd C")
    text = (tmp_path / "README.md").read_text()
    assert text.index(gate.CARD_SECTION) < text.index("## Citation") and text.endswith("cite\n")


@pytest.fixture(scope="module")
def levers():
    with script_module(SCRIPT.with_name("teacher_levers.py")) as module:
        yield module


def test_each_family_s_teacher_is_its_candidate_with_the_lowest_dev_per(levers, tmp_path):
    models = {}
    for name in ("shipped", "cont-logmel", "T2", "T-EN", "T-EN-cont"):
        models[name] = tmp_path / name
        models[name].mkdir()

    def entry(name: str, per: float, passed: bool = False) -> dict:
        return {"path": str(models[name]), "macro_per": {"teacher": per}, "passed": passed}

    gate = {
        "T1": entry("shipped", 0.47),
        "cont-logmel": entry("cont-logmel", 0.44),
        "T2": entry("T2", 0.30, passed=True),  # another family: never T1
        "T-EN": entry("T-EN", 0.50),
        "T-EN-cont": entry("T-EN-cont", 0.52),  # worse than its start: not chosen
        "_meta": {"command": "c"},
    }
    runs, chosen = tmp_path / "runs", tmp_path / "chosen.json"
    record = levers.choose_all(gate, runs, chosen)
    assert {f: c["candidate"] for f, c in record.items()} == {
        "T1": "cont-logmel",
        "T2": "T2",
        "T-EN": "T-EN",
    }
    assert not record["T1"]["passed"] and record["T2"]["passed"]
    link = runs / levers.CHOSEN / "T1" / "model"
    assert link.resolve() == models["cont-logmel"].resolve()
    assert json.loads(chosen.read_text()) == record
    gate["T1"] = entry("shipped", 0.40)  # a later gate that turns the choice: the link follows
    assert levers.choose_all(gate, runs, chosen)["T1"]["candidate"] == "T1"
    assert link.resolve() == models["shipped"].resolve()


def test_t_en_s_candidates_keep_its_bar(gate):
    assert gate.bar_of("T-EN") == gate.bar_of("T-EN-cont") == (0.10, 0.03)
    assert gate.bar_of("T2-cont") == gate.bar_of("cont-logmel") == gate.DEFAULT_BAR


def test_shipping_copies_the_chosen_t1_into_the_package_with_a_note(levers, tmp_path):
    chosen = tmp_path / "cand" / "model"
    chosen.mkdir(parents=True)
    for name in levers.SHIPPED_FILES:
        (chosen / name).write_text(name)
    (chosen / "README.md").write_text("# T\n\n**Heard:** en\n**Labels seen:** none.\n\n## More\n")
    runs = tmp_path / "runs"
    link = runs / levers.CHOSEN / "T1" / "model"
    link.parent.mkdir(parents=True)
    link.symlink_to(chosen)
    package = tmp_path / "package"
    package.mkdir()
    (package / "iteration1.md").write_text("the previous teacher's")
    (package / "model.safetensors").write_text("old weights")
    assert levers.ship(runs, package) == chosen.resolve()
    assert sorted(p.name for p in package.iterdir()) == sorted(levers.SHIPPED_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cand", "package", "runs"]
    assert (package / "model.safetensors").read_text() == "model.safetensors"
    card = (package / "README.md").read_text()
    assert card.startswith("# T\n\n**Heard:** en\n**Labels seen:** none.\n\n**Shipped** inside")
    assert levers.PREVIOUS_T1 in card and card.endswith("## More\n")
    with pytest.raises(levers.UserError, match="no chosen T1"):
        levers.ship(tmp_path / "nothing", package)
    link.unlink()
    link.symlink_to(package)  # the package's own teacher chosen: refused, nothing deleted
    with pytest.raises(levers.UserError, match="is the package's teacher already"):
        levers.ship(runs, package)
    assert (package / "model.safetensors").read_text() == "model.safetensors"


def test_each_family_s_continuation_builds_its_family_s_architecture(levers, tmp_path):
    """A continuation starts from its family's teacher (init_from must have model.*'s shape):
    T2's is HuBERT's post-LN model, as label_free_teachers.py makes T2."""
    from distilxlsr.pretraining.recipe import load_pretrain_config

    with script_module(SCRIPT.with_name("label_free_teachers.py")) as made:
        for family, levers_of in levers.FAMILY_LEVERS.items():
            for name, overrides in levers_of.items():
                config = load_pretrain_config(
                    "pretrain-tiny-teacher", [*overrides, f"out={tmp_path / name}"]
                )
                assert config.model.family == made.TEACHERS[family]["family"], name


def test_the_previous_t1_is_gated_only_where_its_record_is_missing_or_elsewhere(levers):
    again = [f"T1={levers.PREVIOUS_T1}"]
    assert levers.previous_t1({}) == again
    assert levers.previous_t1({"T1": {"path": levers.PREVIOUS_T1}}) == []
    # made when T1 was the package's teacher: that directory holds another model now
    assert levers.previous_t1({"T1": {"path": str(levers.PACKAGE_TEACHER)}}) == again


def test_only_trains_any_lever_alone_and_no_gate_stops_before_the_gate(levers, monkeypatch):
    trained, ran = [], []
    monkeypatch.setattr(levers, "train", lambda runs, name, overrides: trained.append(name))
    monkeypatch.setattr(levers.subprocess, "run", lambda *a, **k: ran.append(a))
    monkeypatch.setattr(
        levers.sys, "argv", ["teacher_levers.py", "--only", "T-EN-cont-2x", "--no-gate"]
    )
    levers.main()
    assert trained == ["T-EN-cont-2x"] and ran == []  # no family made, no gate run
    assert "init_from=runs/teachers_v3/T-EN-cont/model" in levers.LEVERS["T-EN-cont-2x"]
    assert "model.family=hubert" in levers.LEVERS["T2-cont-2x"]  # T2's architecture
