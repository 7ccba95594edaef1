"""Label-free teachers: languages chosen by code or tier on corpus v2's `pretrain` split, the
tier protocol enforced, HuBERT's next iteration (units on a layer of an earlier teacher) and the
HuBERT family."""

from __future__ import annotations

import json
import shutil

import pytest
import soundfile as sf
import transformers
from safetensors.torch import load_file, save_file

from distilxlsr.conventions import frames_of
from distilxlsr.data.corpora import select_languages
from distilxlsr.data.toy import make_toy_corpus
from distilxlsr.errors import UserError
from distilxlsr.pretraining.pretrain import check_tiers, pretrain_teacher
from distilxlsr.pretraining.recipe import load_pretrain_config
from distilxlsr.pretraining.units import LayerFeatures, UnitLabeler
from distilxlsr.provenance import read_provenance
from tests.helpers import TINY_TEACHER

TINY = [
    *TINY_TEACHER,
    "loader.num_workers=0",
    "loader.max_seconds=2.0",
    "train.batch_seconds=6.0",
    "train.log_every=2",
    "train.checkpoint_every=4",
    "split=pretrain",
    "stage2.steps=0",
]


@pytest.fixture(scope="module")
def tiered(tmp_path_factory):
    """A corpus v2-like root: one language per tier, on the `pretrain` split (and en's train)."""
    root = tmp_path_factory.mktemp("tiered")
    for seed, (lang, tier) in enumerate(
        [("en", "english"), ("es", "label"), ("it", "heard"), ("sw", "unheard")]
    ):
        make_toy_corpus(root, lang, "pretrain", num_utterances=6, seed=seed, tier=tier)
    make_toy_corpus(root, "en", "train", num_utterances=4, seed=9, tier="english")
    return root


def _config(root, out, *extra):
    return load_pretrain_config(
        "pretrain-tiny-teacher", [f"data={root}", f"out={out}", *TINY, *extra]
    )


def test_languages_are_chosen_by_code_or_tier(tiered):
    def chosen(*wanted):
        return [(lang, tier) for _, lang, tier in select_languages(tiered, "pretrain", wanted)]

    assert chosen() == [("en", "english"), ("es", "label"), ("it", "heard"), ("sw", "unheard")]
    assert chosen("english", "label") == [("en", "english"), ("es", "label")]
    assert chosen("it", "english") == [("en", "english"), ("it", "heard")]
    with pytest.raises(UserError, match="'fr' names no language or tier.*present: en, english"):
        chosen("fr")
    # en is the only language with a train split
    assert [lang for _, lang, _ in select_languages(tiered, "train")] == ["en"]


def test_the_tier_protocol_is_enforced_before_the_run_starts(tiered, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="sw belong.*unheard tier"):
        pretrain_teacher(_config(tiered, out, "stage1.steps=2"))
    with pytest.raises(UserError, match="phone labels of it .tier heard"):
        pretrain_teacher(
            _config(tiered, out, "languages=[english,heard]", "stage1.steps=2", "stage2.steps=2")
        )
    with pytest.raises(UserError, match="split=test is held out"):
        pretrain_teacher(_config(tiered, out, "split=test", "languages=[english]"))
    assert not out.exists()  # nothing claimed
    # Labels of the label and english tiers are allowed; corpora without tiers are not checked.
    check_tiers({"en": "english", "es": "label"}, phone_labels=True)
    check_tiers({"xx": None, "yy": None}, phone_labels=True)


@pytest.fixture(scope="module")
def first_iteration(tiered, tmp_path_factory):
    out = tmp_path_factory.mktemp("it1") / "run"
    return pretrain_teacher(
        _config(tiered, out, "languages=[english,label,heard]", "stage1.steps=2")
    )


def test_a_label_free_teacher_says_what_it_heard(first_iteration):
    card = (first_iteration / "README.md").read_text()
    assert (
        "**Heard:** the pretrain split of 3 language(s): en (english), es (label), it (heard)."
        in card
    )
    assert "**Labels seen:** none: self-supervised only" in card
    assert "HuBERT's first iteration" in card
    assert "# Tiny multilingual wav2vec 2.0 teacher" in card
    assert "sw" not in card.split("## Config")[0]
    assert json.loads((first_iteration / "provenance.json").read_text()) == {
        "heard": {"en": "english", "es": "label", "it": "heard"},
        "labels": [],
        "tier_protocol": True,
        "unknown": [],
    }


def test_next_iteration_clusters_a_layer_of_the_first_and_can_be_a_hubert(
    tiered, first_iteration, tmp_path
):
    # The units of a waveform: one per model frame, from the earlier teacher's layer 1.
    features = LayerFeatures(str(first_iteration), layer=1)
    wave = sf.read(sorted((tiered / "en" / "audio" / "pretrain").glob("*.flac"))[0])[0]
    frames = features(wave)
    assert frames.shape == (1, frames_of(len(wave)), 32)
    centroids = frames[0][:3].clone()
    units = UnitLabeler(centroids, features)(wave)
    assert units.shape == (frames_of(len(wave)),) and units[:3].tolist() == [0, 1, 2]

    out = tmp_path / "it2"
    model_dir = pretrain_teacher(
        _config(
            tiered,
            out,
            "languages=[english,label]",
            "model.family=hubert",
            f"units.source={first_iteration}",
            "units.layer=2",
            "stage1.steps=2",
            "train.seed=1",
            "loader.static_shapes=true",  # a group-norm CNN must not see padding
        )
    )
    model = transformers.AutoModel.from_pretrained(model_dir)
    assert type(model) is transformers.HubertModel
    assert not model.config.do_stable_layer_norm and model.config.feat_extract_norm == "group"
    assert load_file(out / "units.safetensors")["centroids"].shape == (8, 32)  # 8 units, width 32
    card = (model_dir / "README.md").read_text()
    assert "HuBERT's next iteration" in card and "layer 2 of model" in card
    assert "post-LN HuBERT" in card and "en (english), es (label)" in card
    # It heard it (heard) only through its units, and no model on the way read a label.
    assert (
        "**Heard:** the pretrain split of 2 language(s): en (english), es (label). Through its "
        f"units source `{first_iteration}`: also it (heard)." in card
    )
    assert (
        "**Labels seen:** none: self-supervised only, and so were the models it was built from"
        in card
    )
    provenance = read_provenance(model_dir)
    assert provenance.heard == {"en": "english", "es": "label", "it": "heard"}
    assert provenance.labels == [] and provenance.tier_protocol and provenance.unknown == []
    assert "family: hubert" in (out / "config.yaml").read_text()
    extractor = json.loads((model_dir / "preprocessor_config.json").read_text())
    assert extractor["return_attention_mask"] is False  # HF's convention for group norm


def test_units_of_a_changed_source_model_are_refused_on_resume(tiered, first_iteration, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(first_iteration, source)
    args = [
        "languages=[en]",
        f"units.source={source}",
        "units.layer=1",
        "stage1.steps=2",
        "train.checkpoint_every=1",
    ]
    pretrain_teacher(_config(tiered, tmp_path / "run", *args))
    weights = load_file(source / "model.safetensors")
    weights = {k: v + 0.01 for k, v in weights.items()}
    save_file(weights, source / "model.safetensors")  # the earlier teacher trained further
    with pytest.raises(UserError, match="not the model the units .* were fitted on"):
        pretrain_teacher(_config(tiered, tmp_path / "run", *args[:-2], "stage1.steps=3"))


def test_next_iteration_settings_are_checked(tiered, first_iteration, tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(UserError, match="units.layer=5 is not a layer"):
        pretrain_teacher(
            _config(
                tiered, out, "languages=[en]", f"units.source={first_iteration}", "units.layer=5"
            )
        )
    with pytest.raises(UserError, match="set units.layer"):
        pretrain_teacher(_config(tiered, out, "languages=[en]", f"units.source={first_iteration}"))
    with pytest.raises(UserError, match="model.family 'conformer'"):
        pretrain_teacher(_config(tiered, out, "languages=[en]", "model.family=conformer"))
    assert not out.exists()


def test_a_labelled_upper_bound_turns_the_protocol_off_and_says_so(tiered, tmp_path):
    model_dir = pretrain_teacher(
        _config(tiered, tmp_path / "run", "tier_protocol=false", "stage1.steps=1", "stage2.steps=1")
    )
    card = (model_dir / "README.md").read_text()
    assert "sw (unheard)" in card and "**Tier protocol off**" in card
    assert "**Labels seen:** phone transcripts of the pretrain split" in card
    provenance = read_provenance(model_dir)
    assert provenance.labels == ["en", "es", "it", "sw"] and not provenance.tier_protocol
    # A run with the tier protocol cannot build on it, and says why before it starts.
    out = tmp_path / "next"
    with pytest.raises(UserError) as err:
        pretrain_teacher(
            _config(tiered, out, "languages=[en]", f"units.source={model_dir}", "units.layer=1")
        )
    assert str(err.value) == (
        f"units source '{model_dir}' heard sw of the unheard tier, which no teacher may hear, "
        "even through a source model; set tier_protocol=false for a labelled upper bound."
    )
    assert not out.exists()


def _source_with(first_iteration, root, **changes):
    """A copy of the first iteration whose provenance.json says something else."""
    source = root / "source"
    shutil.copytree(first_iteration, source)
    record = json.loads((source / "provenance.json").read_text()) | changes
    (source / "provenance.json").write_text(json.dumps(record))
    return source


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"labels": ["it"]},
            "was trained on the phone labels of it (tier heard); only label and english "
            "languages' labels may train a teacher, also through a source model.",
        ),
        (
            {"tier_protocol": False},
            "was made with tier_protocol=false (a labelled upper bound); a run with the tier "
            "protocol cannot build on it.",
        ),
        (None, "has no provenance.json, so what it heard cannot be checked against the tier "),
    ],
)
def test_a_source_model_is_held_to_the_tier_protocol(
    tiered, first_iteration, tmp_path, changes, message
):
    if changes is None:
        source = tmp_path / "source"
        shutil.copytree(first_iteration, source)
        (source / "provenance.json").unlink()
    else:
        source = _source_with(first_iteration, tmp_path, **changes)
    for option in (f"units.source={source}", f"init_from={source}"):
        extra = ["units.layer=1"] if option.startswith("units") else []
        with pytest.raises(UserError) as err:
            pretrain_teacher(_config(tiered, tmp_path / "run", "languages=[en]", option, *extra))
        role = "units source" if option.startswith("units") else "initialised from"
        assert str(err.value).startswith(f"{role} '{source}' {message}")
    assert not (tmp_path / "run").exists()


def test_labels_that_reached_a_teacher_through_its_source_are_on_its_card(
    tiered, first_iteration, tmp_path
):
    # The first iteration as if it had been trained on es's labels (allowed: the label tier).
    source = _source_with(first_iteration, tmp_path, labels=["es"])
    model_dir = pretrain_teacher(
        _config(tiered, tmp_path / "run", "languages=[en]", f"init_from={source}", "stage1.steps=1")
    )
    card = (model_dir / "README.md").read_text()
    assert (
        "**Labels seen:** none directly (self-supervised only); through the models it was built "
        "from, the phone labels of es (label)." in card
    )
    assert (
        f"Through the model it was initialised from, `{source}`: also es (label), it (heard)."
        in card
    )
    assert read_provenance(model_dir).labels == ["es"]
