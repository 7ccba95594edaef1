import pytest
import torch
import transformers

from distilxlsr.models.layers import parse_layer_map
from distilxlsr.models.student import (
    STUDENT_INFO,
    StudentInfo,
    build_student,
    init_student,
    save_student,
)
from tests.helpers import tiny_model

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


@pytest.mark.parametrize(
    "spec, copied_from",
    [("jump:2", [2, 4]), ("first:2", [1, 2]), ("list:1,3", [1, 3]), ("random:2", [None, None])],
)
def test_init_student_copies_each_layer_from_its_teacher_layer(spec, copied_from):
    teacher = tiny_model("wav2vec2", layers=4)
    student, layer_map = init_student(teacher, spec)
    assert layer_map == parse_layer_map(spec, 4, "auto")
    assert list(layer_map.init) == copied_from
    assert student.config.num_hidden_layers == 2
    for i, source in enumerate(copied_from):
        s_layer = _layer_state(student, i)
        if source is None:
            continue
        t_layer = _layer_state(teacher, source - 1)
        assert s_layer.keys() == t_layer.keys()
        assert all(torch.equal(s_layer[k], t_layer[k]) for k in s_layer), f"layer {i + 1}"
    if spec.startswith("random"):
        # Fresh layers come from seed 0 unless another seed is given.
        seeded = {0: student}
        seeded[5] = init_student(teacher, spec, seed=5)[0]
        for seed, model in seeded.items():
            built = build_student(teacher, layer_map, seed=seed).state_dict()
            assert all(torch.equal(v, built[k]) for k, v in model.state_dict().items())


def test_init_student_passes_explicit_targets():
    teacher = tiny_model("wav2vec2", layers=4)
    _, layer_map = init_student(teacher, "first:2", targets="list:3,4")
    assert layer_map.init == (1, 2) and layer_map.targets == (3, 4)


def test_saved_student_records_its_provenance(tmp_path):
    teacher = tiny_model("wav2vec2", layers=4)
    layer_map = parse_layer_map("first:2", 4)
    student = build_student(teacher, layer_map)
    save_student(student, layer_map, "org/teacher", 1234, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        STUDENT_INFO,
        "model.safetensors",
    ]
    parameters = sum(p.numel() for p in student.parameters())
    info = StudentInfo.read(tmp_path)
    assert info == StudentInfo("org/teacher", "first:2", [1, 2], [2, 4], 4, 1234, parameters)
    assert info.ratio == parameters / 1234


def test_student_info_file_is_indented_json(tmp_path):
    info = StudentInfo("t", "jump:2", [2, 4], [2, 4], 4, 10, 5)
    expected = (
        "{\n"
        '  "teacher": "t",\n'
        '  "layer_map": "jump:2",\n'
        '  "init": [\n    2,\n    4\n  ],\n'
        '  "targets": [\n    2,\n    4\n  ],\n'
        '  "teacher_layers": 4,\n'
        '  "teacher_parameters": 10,\n'
        '  "student_parameters": 5\n'
        "}\n"
    )
    info.write(tmp_path)
    assert (tmp_path / STUDENT_INFO).read_text() == expected
    assert StudentInfo.read(tmp_path) == info


def test_build_student_defaults_to_seed_0_and_refuses_a_map_of_another_depth():
    teacher = tiny_model("wav2vec2", layers=4)
    layer_map = parse_layer_map("random:2", 4)
    default = build_student(teacher, layer_map).state_dict()
    seed_0 = build_student(teacher, layer_map, seed=0).state_dict()
    assert all(torch.equal(v, seed_0[k]) for k, v in default.items())
    with pytest.raises(ValueError) as err:
        build_student(teacher, parse_layer_map("jump:2", 6))
    assert str(err.value) == "layer map was parsed for a teacher of another depth"


def test_a_bf16_teacher_gets_a_bf16_student():
    teacher = tiny_model("wav2vec2").to(torch.bfloat16)
    student = build_student(teacher, parse_layer_map("jump:2", 4))
    assert {p.dtype for p in student.parameters()} == {torch.bfloat16}
    layer = student.encoder.layers[0].feed_forward.output_dense.weight
    assert torch.equal(layer, teacher.encoder.layers[1].feed_forward.output_dense.weight)
