import json

import pytest
import torch
import transformers

from distilxlsr.errors import UserError
from distilxlsr.models.loading import load_teacher
from distilxlsr.models.presets import tiny_config


def test_loads_frozen_eval_model(teacher_dir):
    teacher = load_teacher(str(teacher_dir))
    assert isinstance(teacher, transformers.Wav2Vec2Model)
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())


def test_ctc_checkpoint_loads_its_base_model(tmp_path):
    torch.manual_seed(0)
    ctc = transformers.Wav2Vec2ForCTC(_ctc_config())
    ctc.save_pretrained(tmp_path)
    teacher = load_teacher(str(tmp_path))
    assert type(teacher) is transformers.Wav2Vec2Model
    torch.testing.assert_close(
        teacher.encoder.layers[1].attention.k_proj.weight,
        ctc.wav2vec2.encoder.layers[1].attention.k_proj.weight,
    )


def _ctc_config():
    config = tiny_config("wav2vec2")
    config.vocab_size = 12
    return config


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_teacher(str(tmp_path / "no" / "such" / "dir"))


def test_directory_without_config(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load_teacher(str(tmp_path))


def test_unsupported_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(UserError, match="'whisper' is not supported"):
        load_teacher(str(tmp_path))


def test_hub_id_without_network_is_a_clear_error():
    # conftest sets HF_HUB_OFFLINE=1, as on a machine with no network.
    with pytest.raises(UserError, match="hub"):
        load_teacher("facebook/wav2vec2-xls-r-300m")


def test_config_without_weights(tmp_path):
    tiny_config("wav2vec2").save_pretrained(tmp_path)
    with pytest.raises(UserError, match="could not load weights"):
        load_teacher(str(tmp_path))
