"""The exported student's card says what ran, in Hugging Face's metadata and in words."""

from __future__ import annotations

import gzip
import json

import pytest
import yaml

from distilxlsr.cli import main
from distilxlsr.provenance import read_provenance
from distilxlsr.student_card import StudentFacts, pick_results, render_student_card, teacher_name
from tests.helpers import distill_args


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _distill(tmp_path, teacher_dir, toy_corpus, *extra):
    out = tmp_path / "run"
    assert main(distill_args(teacher_dir, toy_corpus, out, "train.max_steps=2", *extra)) == 0
    return out


def test_card_of_a_shuffled_run(tmp_path, teacher_dir, toy_corpus, capsys):
    run = _distill(tmp_path, teacher_dir, toy_corpus)
    said = capsys.readouterr()
    startup = said.out + said.err
    assert "shuffle.mode=utterance (p=1)" in startup and "en 0.0" in startup
    results = {
        "mode": "probe",
        "models": [
            {"name": "teacher", "path": str(teacher_dir), "per": {"sw": 0.1}, "per_mean": 0.1},
            {"name": "student", "path": "elsewhere", "per": {"sw": 0.2}, "per_mean": 0.2},
        ],
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    out = tmp_path / "my-student"
    assert (
        main(["export", str(run), "--out", str(out), "--results", str(tmp_path / "results.json")])
        == 0
    )
    card = (out / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["pipeline_tag"] == "feature-extraction" and meta["license"] == "other"
    assert meta["language"] == ["en", "sw"]  # trained on en, evaluated on sw
    assert "base_model" not in meta  # a local teacher is not a hub model
    per = meta["model-index"][0]["results"][0]["metrics"][0]
    assert per["value"] == 20.0 and "sw" in per["name"]
    assert 'AutoModel.from_pretrained("my-student")' in card
    assert "randomly shuffled phonemes (utterance level)" in card
    assert str(teacher_dir) not in card and f"`{teacher_dir.name}`" in card
    # distill recorded what the student heard (its English, and its teacher, which has no
    # record here); the export carries the record with the teacher named, not its path.
    recorded = read_provenance(run / "student_init")
    assert recorded.heard == {"en": None} and recorded.unknown == [str(teacher_dir)]
    assert read_provenance(out).unknown == [teacher_dir.name]
    assert f"heard en; labels: none recorded; what came through {teacher_dir.name} is" in card


def test_card_of_an_unshuffled_run_says_so(tmp_path, teacher_dir, toy_corpus):
    run = _distill(tmp_path, teacher_dir, toy_corpus, "shuffle.mode=none")
    assert main(["export", str(run), "--out", str(tmp_path / "plain")]) == 0
    card = (tmp_path / "plain" / "README.md").read_text()
    assert "without phoneme shuffling" in card and "shuffled phonemes" not in card
    assert "model-index" not in card


def test_facts_render_hub_teacher_and_license():
    facts = StudentFacts(
        folder="s",
        model_type="wav2vec2",
        architecture="Wav2Vec2Model",
        layers=12,
        hidden=1024,
        teacher=teacher_name("facebook/wav2vec2-xls-r-300m"),
        teacher_is_hub_id=True,
        license="apache-2.0",
        shuffle_mode="segment",
        data_languages={"en": 960.0},
    )
    card = render_student_card(facts)
    meta = _front_matter(card)
    assert meta["base_model"] == "facebook/wav2vec2-xls-r-300m"
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en"]
    assert "permuted 40-120 ms segments" in card and "check it before publishing" not in card
    assert teacher_name("/home/me/models/my-teacher/") == "my-teacher"


def test_results_of_this_student_are_picked():
    results = {
        "mode": "probe",
        "models": [
            {"path": "/t", "per": {"a": 0.1}, "per_mean": 0.1},
            {"path": "/s1", "per": {"a": 0.2}, "per_mean": 0.2},
            {"path": "/s2", "per": {"a": 0.3}, "per_mean": 0.3},
        ],
    }
    assert pick_results(results, ["/s2"])["per_mean"] == 0.3
    assert pick_results(results, ["/elsewhere"]) is None  # three models: no guess


def test_push_to_hub_offline_is_one_line(tmp_path, teacher_dir, toy_corpus, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = _distill(tmp_path, teacher_dir, toy_corpus)
    capsys.readouterr()
    code = main(["export", str(run), "--out", str(tmp_path / "s"), "--push-to-hub", "me/student"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not upload" in err[0]


@pytest.mark.parametrize("mode", ["utterance", "word"])
def test_shuffling_that_needs_alignments_refuses_data_without_them(
    tmp_path, teacher_dir, mode, capsys
):
    from distilxlsr.data.toy import make_toy_corpus

    corpus = tmp_path / "corpus"
    make_toy_corpus(corpus, "en", "train", num_utterances=4, seed=0)
    manifest = corpus / "en" / "cuts_train.jsonl.gz"
    with gzip.open(manifest, "rt") as f:
        cuts = [json.loads(line) for line in f]
    for cut in cuts:
        for sup in cut["supervisions"]:
            sup.pop("alignment", None)
    with gzip.open(manifest, "wt") as f:
        f.write("".join(json.dumps(c) + "\n" for c in cuts))
    args = [
        "distill",
        "--config",
        "tiny-cpu",
        f"teacher={teacher_dir}",
        f"data.train={corpus / 'en'}",
        f"out={tmp_path / 'run'}",
        f"shuffle.mode={mode}",
    ]
    assert main(args) == 2
    assert "4 of 4 cuts" in capsys.readouterr().err
    assert not (tmp_path / "run" / "config.yaml").exists()
