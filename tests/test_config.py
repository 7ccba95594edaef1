import pytest

from distilxlsr.config import load_config, parse_overrides
from distilxlsr.errors import UserError


def test_yaml_holds_differences_and_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("teacher: T\ntrain:\n  lr: 0.001\n  max_steps: 10\n")
    config = load_config(path, ["train.max_steps=30", "student.layers=list:2,4", "shuffle.p=0.5"])
    assert config.teacher == "T"
    assert config.train.lr == 0.001
    assert config.train.max_steps == 30
    assert config.student.layers == "list:2,4"
    assert config.shuffle.p == 0.5
    assert config.train.batch_seconds == 200.0  # default untouched


def test_int_accepted_for_float_and_list_from_commas(tmp_path):
    config = load_config(None, ["train.lr=1", "loss.layer_weights=1,2"])
    assert isinstance(config.train.lr, float) and config.train.lr == 1.0
    assert load_config(None, ["train.lr=1e-4"]).train.lr == 1e-4  # YAML 1.1 reads a string
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
        load_config(None, [override])


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="neither a file nor a shipped config"):
        load_config(tmp_path / "nope.yaml")


def test_parse_overrides_nesting():
    assert parse_overrides(["a.b=1", "a.c=x", "d=true"]) == {"a": {"b": 1, "c": "x"}, "d": True}


def test_shipped_configs_load_by_name_from_anywhere(tmp_path, monkeypatch):
    from distilxlsr.config import load_config, resolve_config, shipped_configs
    from distilxlsr.errors import UserError

    monkeypatch.chdir(tmp_path)  # outside the repository
    assert {"tiny-cpu", "xlsr300m-half", "xlsr53-half", "pretrain-tiny-teacher"} <= set(
        shipped_configs()
    )
    assert load_config("tiny-cpu").train.max_steps == load_config("tiny-cpu.yaml").train.max_steps
    assert resolve_config("configs/tiny-cpu.yaml") == shipped_configs()["tiny-cpu"]
    own = tmp_path / "tiny-cpu.yaml"
    own.write_text("train:\n  lr: 0.5\n")
    assert load_config("tiny-cpu.yaml").train.lr == 0.5  # an existing file wins
    with pytest.raises(UserError, match="shipped configs: .*tiny-cpu"):
        load_config("tiny-cpux")


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
        load_config(None, ["teacher=T", override])


def test_unknown_key_suggests_the_nearest():
    with pytest.raises(UserError, match="did you mean 'max_steps'"):
        load_config(None, ["train.max_step=3"])


def test_resume_accepts_settings_added_since_at_their_defaults(tmp_path):
    from distilxlsr.config import check_resume_compatible, to_dict

    config = load_config(None, ["teacher=T"])
    saved = to_dict(config)
    del saved["student"]["init"]  # a run directory from before student.init existed
    check_resume_compatible(saved, config, tmp_path, set())
    changed = load_config(None, ["teacher=T", "student.init=DIR"])
    with pytest.raises(UserError, match="student.init"):
        check_resume_compatible(saved, changed, tmp_path, set())
