import re

import pytest

from distilxlsr.config import parse_overrides
from distilxlsr.distill.recipe import load_distill_config
from distilxlsr.errors import UserError


def test_yaml_holds_differences_and_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("teacher: T\ntrain:\n  lr: 0.001\n  max_steps: 10\n")
    config = load_distill_config(
        path, ["train.max_steps=30", "student.layers=list:2,4", "shuffle.p=0.5"]
    )
    assert config.teacher == "T"
    assert config.train.lr == 0.001
    assert config.train.max_steps == 30
    assert config.student.layers == "list:2,4"
    assert config.shuffle.p == 0.5
    assert config.train.batch_seconds == 200.0  # default untouched


def test_int_accepted_for_float_and_list_from_commas(tmp_path):
    config = load_distill_config(None, ["train.lr=1", "loss.layer_weights=1,2"])
    assert isinstance(config.train.lr, float) and config.train.lr == 1.0
    assert load_distill_config(None, ["train.lr=1e-4"]).train.lr == 1e-4  # YAML 1.1 reads a string
    assert config.loss.layer_weights == [1.0, 2.0]


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "unknown key 'lrr'"),
        ("train.max_steps=many", "expected an integer"),
        ("student.freeze_cnn=maybe", "expected true or false"),
        ("nonsense", "key=value"),
        ("bogus.x=1", "unknown key 'bogus'"),
    ],
)
def test_bad_overrides_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        load_distill_config(None, [override])


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="neither a file nor a shipped config"):
        load_distill_config(tmp_path / "nope.yaml")


def test_parse_overrides_nesting():
    assert parse_overrides(["a.b=1", "a.c=x", "d=true"]) == {"a": {"b": 1, "c": "x"}, "d": True}


def test_shipped_configs_load_by_name_from_anywhere(tmp_path, monkeypatch):
    from distilxlsr.config import resolve_config, shipped_configs
    from distilxlsr.errors import UserError

    monkeypatch.chdir(tmp_path)  # outside the repository
    assert {"tiny-cpu", "xlsr300m-half", "xlsr53-half", "pretrain-tiny-teacher"} <= set(
        shipped_configs()
    )
    assert (
        load_distill_config("tiny-cpu").train.max_steps
        == load_distill_config("tiny-cpu.yaml").train.max_steps
    )
    assert resolve_config("configs/tiny-cpu.yaml") == shipped_configs()["tiny-cpu"]
    own = tmp_path / "tiny-cpu.yaml"
    own.write_text("train:\n  lr: 0.5\n")
    assert load_distill_config("tiny-cpu.yaml").train.lr == 0.5  # an existing file wins
    with pytest.raises(UserError, match="shipped configs: .*tiny-cpu"):
        load_distill_config("tiny-cpux")


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=.inf", "train.lr=inf must be a finite number"),
        ("train.lr=.nan", "train.lr=nan must be a finite number"),
        ("loss.layer_weights=[1, .nan]", "loss.layer_weights=nan must be a finite number"),
        ("train.eps=-1e-8", "train.eps=-1e-08 must be positive"),
        ("train.weight_decay=-0.1", "train.weight_decay=-0.1 must not be negative"),
        ("data.num_workers=-1", "data.num_workers=-1 must not be negative"),
        ("data.max_seconds=0", "data.max_seconds=0.0 must be positive"),
        ("data.sample_rate=0", "data.sample_rate=0 must be positive"),
        ("shuffle.p=1.5", "shuffle.p=1.5 must lie between 0 and 1"),
        ("train.betas=[0.9, 1.0]", r"train.betas=1.0 must lie in \[0, 1\)"),
        ("train.max_steps=0", "train.max_steps=0 must be at least 1"),
    ],
)
def test_numeric_settings_are_checked_when_read(override, message):
    with pytest.raises(UserError, match=message):
        load_distill_config(None, ["teacher=T", override])


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "shuffle.mode=utterence",
            "shuffle.mode 'utterence' must be one of none, utterance, "
            "word, segment; did you mean 'utterance'?",
        ),
        ("train.decay=cosin", "train.decay 'cosin' must be one of linear, cosine, constant"),
        ("train.mixed_precision=fp32", "train.mixed_precision 'fp32' must be one of auto, bf16"),
        ("train.extend=keep", "train.extend 'keep' must be one of replan, hold"),
        ("loss.kind=kl", "loss.kind 'kl' must be one of l1_cos, mse"),
        ("student.representation=raw", "student.representation 'raw' must be one of auto"),
        ("student.layers=skip:2", "layer map 'skip:2' is not one of jump:K"),
        ("student.layers=jump:x", "layer map 'jump:x': 'x' is not an integer"),
        ("student.layers=list:4,2", "layer map 'list:4,2': layers must be increasing"),
        ("student.layers=list:0,2", "layer map 'list:0,2': layers are numbered from 1"),
        ("student.targets=every:2", "student.targets 'every:2' must be 'auto' or list"),
    ],
)
def test_closed_choices_and_layer_maps_are_checked_when_read(override, message):
    """A typo in a closed choice fails when the config loads, before any teacher loads."""
    with pytest.raises(UserError, match=re.escape(message)):
        load_distill_config(None, ["teacher=/no/such/teacher", override])


def test_a_pretraining_config_checks_its_closed_choices_when_read():
    from distilxlsr.pretraining.recipe import load_pretrain_config

    with pytest.raises(UserError, match="model.family 'conformer' must be one of wav2vec2, hubert"):
        load_pretrain_config(None, ["data=x", "model.family=conformer"])
    with pytest.raises(UserError, match="train.decay 'cosin' must be one of"):
        load_pretrain_config(None, ["data=x", "train.decay=cosin"])


def test_a_config_built_in_code_is_checked_by_its_validate(tmp_path):
    """`validate()` checks every value as loading does: a config built in Python gets the same
    errors, and distill() refuses it before loading the teacher or claiming the run directory."""
    from distilxlsr.distill.recipe import DistillConfig, ShuffleConfig, StudentConfig
    from distilxlsr.distill.train import distill
    from distilxlsr.pretraining.recipe import PretrainConfig, TeacherShape

    out = tmp_path / "run"
    bad_mode = DistillConfig(
        teacher="/no/such/teacher", out=str(out), shuffle=ShuffleConfig(mode="sentence")
    )
    with pytest.raises(UserError, match="shuffle.mode 'sentence' must be one of"):
        distill(bad_mode)
    assert not out.exists()
    bad_map = DistillConfig(teacher="x", student=StudentConfig(layers="jump"))
    with pytest.raises(UserError, match="layer map 'jump' is not one of"):
        bad_map.validate()
    with pytest.raises(UserError, match="model.family 'conformer'"):
        PretrainConfig(data="x", model=TeacherShape(family="conformer")).validate()


def test_unknown_key_suggests_the_nearest():
    with pytest.raises(UserError, match="did you mean 'max_steps'"):
        load_distill_config(None, ["train.max_step=3"])


def test_resume_accepts_settings_added_since_at_their_defaults(tmp_path):
    from distilxlsr.config import check_resume_compatible, to_dict

    config = load_distill_config(None, ["teacher=T"])
    saved = to_dict(config)
    del saved["student"]["init"]  # a run directory from before student.init existed
    check_resume_compatible(saved, config, tmp_path, set())
    changed = load_distill_config(None, ["teacher=T", "student.init=DIR"])
    with pytest.raises(UserError, match="student.init"):
        check_resume_compatible(saved, changed, tmp_path, set())


def test_only_true_and_false_are_booleans_in_overrides():
    values = parse_overrides(["train.mixed_precision=no", "a=off", "b=true", "c=False", "d=yes"])
    assert values == {
        "train": {"mixed_precision": "no"},
        "a": "off",
        "b": True,
        "c": False,
        "d": "yes",
    }
    config = load_distill_config(None, ["teacher=x", "train.mixed_precision=no"])
    assert config.train.mixed_precision == "no"
    with pytest.raises(UserError, match="expected true or false"):
        load_distill_config(None, ["teacher=x", "data.static_shapes=yes"])
