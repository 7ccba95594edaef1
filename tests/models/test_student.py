import pytest
import torch
import transformers

from distilxlsr.models.layers import parse_layer_map
from distilxlsr.models.student import build_student, save_student
from tests.conftest import tiny_model

FAMILIES = [
    ("wav2vec2", True),
    ("wav2vec2", False),
    ("hubert", True),
    ("wavlm", False),
    ("data2vec-audio", False),
]


def _layer_state(model, index):
    prefix = f"encoder.layers.{index}."
    return {k[len(prefix) :]: v for k, v in model.state_dict().items() if k.startswith(prefix)}


@pytest.mark.parametrize("model_type, pre_ln", FAMILIES)
@pytest.mark.parametrize("spec", ["jump:2", "first:2", "list:1,4", "random:2"])
def test_map_copies_exactly_the_right_tensors(model_type, pre_ln, spec):
    teacher = tiny_model(model_type, pre_ln=pre_ln, layers=4)
    layer_map = parse_layer_map(spec, 4)
    student = build_student(teacher, layer_map, seed=3)
    assert type(student) is type(teacher)
    assert student.config.num_hidden_layers == 2
    t_state, s_state = teacher.state_dict(), student.state_dict()
    # Everything below the layers is the teacher's.
    below = [k for k in s_state if not k.startswith("encoder.layers.")]
    assert below and all(torch.equal(s_state[k], t_state[k]) for k in below)
    for i, source in enumerate(layer_map.init):
        s_layer = _layer_state(student, i)
        if source is None:
            t_layer = _layer_state(teacher, i)
            differs = [
                k for k in s_layer if k in t_layer and not torch.equal(s_layer[k], t_layer[k])
            ]
            assert differs, "a random layer must not equal the teacher's"
            continue
        t_layer = _layer_state(teacher, source - 1)
        for name, value in s_layer.items():
            # WavLM's relative position bias exists only in layer 0 and comes from there.
            expected = t_layer.get(name, _layer_state(teacher, i).get(name))
            assert torch.equal(value, expected), f"{name} of student layer {i + 1}"


def test_random_init_is_seeded():
    teacher = tiny_model("wav2vec2", layers=4)
    layer_map = parse_layer_map("random:2", 4)
    a = build_student(teacher, layer_map, seed=1).state_dict()
    b = build_student(teacher, layer_map, seed=1).state_dict()
    c = build_student(teacher, layer_map, seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("pre_ln", [True, False])
def test_saved_student_loads_with_plain_transformers(tmp_path, pre_ln):
    teacher = tiny_model("wav2vec2", pre_ln=pre_ln, layers=4)
    layer_map = parse_layer_map("jump:2", 4)
    student = build_student(teacher, layer_map).eval()
    save_student(student, layer_map, "teacher", 1, tmp_path)
    loaded = transformers.AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is transformers.Wav2Vec2Model
    x = torch.randn(1, 4000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).last_hidden_state, student(x).last_hidden_state)
