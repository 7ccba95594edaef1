import pytest
import torch

from distilxlsr.errors import UserError
from distilxlsr.models.layers import LayerTap, parse_layer_map
from tests.helpers import tiny_model


@pytest.mark.parametrize(
    "spec, init, targets",
    [
        ("jump:2", (2, 4, 6, 8), (2, 4, 6, 8)),
        ("jump:4", (4, 8), (4, 8)),
        ("first:4", (1, 2, 3, 4), (2, 4, 6, 8)),
        ("random:2", (None, None), (4, 8)),
        ("list:1,5,8", (1, 5, 8), (1, 5, 8)),
    ],
)
def test_layer_maps(spec, init, targets):
    layer_map = parse_layer_map(spec, 8)
    assert layer_map.init == init
    assert layer_map.targets == targets


def test_explicit_targets():
    assert parse_layer_map("first:2", 8, "list:3,7").targets == (3, 7)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("jump:3", "does not divide"),
        ("jump:0", "at least 1"),
        ("list:2,9", "out of range"),
        ("list:2,2", "more than once"),
        ("list:4,2", "increasing"),
        ("first:9", "only 8 layers"),
        ("half", "is not one of"),
        ("list:a,b", "not a list of integers"),
    ],
)
def test_invalid_layer_maps(spec, message):
    with pytest.raises(UserError, match=message):
        parse_layer_map(spec, 8)


def test_wrong_number_of_targets():
    with pytest.raises(UserError, match="names 3 layers"):
        parse_layer_map("jump:4", 8, "list:2,4,6")


def _batch():
    torch.manual_seed(1)
    x = torch.randn(2, 3200)
    mask = torch.ones(2, 3200, dtype=torch.long)
    mask[1, 2400:] = 0
    return x, mask


def test_pre_ln_representation_is_next_layers_layer_norm():
    model = tiny_model("wav2vec2", pre_ln=True)
    x, mask = _batch()
    # Hand computation: run the encoder stack layer by layer.
    with torch.no_grad():
        features, _ = model.feature_extractor(x).transpose(1, 2), None
        hidden, _ = model.feature_projection(features)
        frame_mask = model._get_feature_vector_attention_mask(hidden.shape[1], mask)
        hidden = hidden.masked_fill(~frame_mask[..., None], 0.0)
        hidden = hidden + model.encoder.pos_conv_embed(hidden)
        h = [hidden]
        bias = torch.zeros(2, 1, hidden.shape[1], hidden.shape[1])
        bias.masked_fill_(~frame_mask[:, None, None, :], torch.finfo(bias.dtype).min)
        for layer in model.encoder.layers:
            h.append(layer(h[-1], attention_mask=bias))
        expected = {
            1: model.encoder.layers[1].layer_norm(h[1]),
            3: model.encoder.layers[3].layer_norm(h[3]),
            4: model.encoder.layer_norm(h[4]),
            0: model.encoder.layers[0].layer_norm(h[0]),  # the same rule: LN_1(h_0)
        }
        reps, frames = LayerTap(model)(x, mask, [0, 1, 3, 4])
    for rep, layer in zip(reps, [0, 1, 3, 4], strict=True):
        got, want = rep[frames], expected[layer][frame_mask]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert frames.tolist() == frame_mask.tolist()
    # The last representation is the model's own final output.
    out = model(x, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(reps[-1][frames], out[frames], atol=1e-5, rtol=1e-5)


def test_residual_mode_gives_raw_layer_outputs():
    model = tiny_model("wav2vec2", pre_ln=True)
    x, mask = _batch()
    with torch.no_grad():
        normed, _ = LayerTap(model)(x, mask, [2])
        raw, _ = LayerTap(model, "residual")(x, mask, [2])
        torch.testing.assert_close(normed[0], model.encoder.layers[2].layer_norm(raw[0]))
    assert not torch.allclose(normed[0], raw[0])


def test_post_ln_representation_is_hidden_state():
    model = tiny_model("wav2vec2", pre_ln=False)
    x, _ = _batch()
    with torch.no_grad():
        states = model(x, output_hidden_states=True).hidden_states
        reps, _ = LayerTap(model)(x, None, [0, 2, 4])
    # For post-LN models transformers' hidden_states[l] is h_l (hidden_states[0] after the
    # encoder's input LayerNorm, which is the input of layer 1).
    for rep, layer in zip(reps, [0, 2, 4], strict=True):
        torch.testing.assert_close(rep, states[layer], atol=1e-5, rtol=1e-5)


def test_truncated_teacher_keeps_its_representations():
    model = tiny_model("wav2vec2", pre_ln=True)
    x, mask = _batch()
    with torch.no_grad():
        full, _ = LayerTap(model)(x, mask, [2])
        tap = LayerTap(model)
        tap.drop_layers_after(2)
        assert len(model.encoder.layers) == 2
        cut, _ = tap(x, mask, [2])
    torch.testing.assert_close(full[0], cut[0])


@pytest.mark.parametrize(
    "spec, message",
    [
        ("list:", "layer map 'list:' names no layers."),
        ("list:1,3,3", "layer map 'list:1,3,3': layer 3 appears more than once."),
        ("jump:x", "layer map 'jump:x': 'x' is not an integer."),
        ("random:0", "layer map 'random:0': the number must be at least 1."),
        ("list:1:2", "layer map 'list:1:2': '1:2' is not a list of integers."),
        ("jump", "layer map 'jump' is not one of jump:K, first:N, random:N or list:i,j,...."),
    ],
)
def test_layer_map_errors_word_for_word(spec, message):
    with pytest.raises(UserError) as err:
        parse_layer_map(spec, 8)
    assert str(err.value) == message


def test_one_layer_maps():
    assert parse_layer_map("first:1", 8).init == (1,)
    assert parse_layer_map("random:1", 8).init == (None,)


def test_keeping_every_layer_leaves_the_tap_as_it_was():
    model = tiny_model("wav2vec2", pre_ln=True)
    tap = LayerTap(model)
    keys = set(tap.state_dict())
    tap.drop_layers_after(len(model.encoder.layers))
    assert set(tap.state_dict()) == keys
    tap.drop_layers_after(2)
    assert {k for k in tap.state_dict() if k.startswith("top_norm.")} == {
        "top_norm.weight",
        "top_norm.bias",
    }


def test_an_unknown_representation_is_one_error():
    with pytest.raises(UserError) as err:
        LayerTap(tiny_model("wav2vec2"), "raw")
    assert str(err.value) == "student.representation 'raw' must be 'auto' or 'residual'."


@pytest.mark.parametrize("pre_ln", [True, False])
def test_asking_for_a_layer_that_layerdrop_dropped_is_one_error(pre_ln):
    model = tiny_model("wav2vec2", pre_ln=pre_ln)
    model.config.layerdrop = 1.0  # every layer dropped in training
    model.train()
    x, mask = _batch()
    with pytest.raises(RuntimeError) as err:
        LayerTap(model, explicit=True)(x, mask, [2])
    assert str(err.value) == (
        "layer 2 was dropped by layerdrop: it has no output this pass (set layerdrop=0 to tap "
        "every layer)"
    )


def test_without_an_attention_mask_every_frame_is_real():
    model = tiny_model("wav2vec2")
    x, _ = _batch()
    with torch.no_grad():
        reps, frames = LayerTap(model)(x, None, [2])
    assert frames.shape == reps[0].shape[:2] and frames.dtype == torch.bool and bool(frames.all())


def test_a_checkpointed_cnn_gives_the_same_features():
    model = tiny_model("wav2vec2")
    x, mask = _batch()
    with torch.no_grad():
        plain, _ = LayerTap(model, explicit=True)(x, mask, [0, 2])
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)()
        assert all(layer.gradient_checkpointing for layer in model.feature_extractor.conv_layers)
        checkpointed, _ = LayerTap(model, explicit=True)(x, mask, [0, 2])
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b)


def test_a_map_records_its_spec_and_teacher_depth():
    layer_map = parse_layer_map("first:8", 8)
    assert (layer_map.spec, layer_map.teacher_layers, layer_map.init) == (
        "first:8",
        8,
        tuple(range(1, 9)),
    )


@pytest.mark.parametrize(
    "targets, message",
    [
        ("list", "student.targets 'list' must be 'auto' or list:i,j,... ."),
        ("every:2", "student.targets 'every:2' must be 'auto' or list:i,j,... ."),
        ("list:1:2", "student.targets 'list:1:2': '1:2' is not a list of integers."),
        ("list:3,3", "student.targets 'list:3,3': layer 3 appears more than once."),
        ("list:4,2", "student.targets 'list:4,2': layers must be increasing."),
        (
            "list:0,2",
            "student.targets 'list:0,2': layer 0 is out of range; the teacher has layers 1..8.",
        ),
        ("list:", "student.targets 'list:' names no layers."),
    ],
)
def test_target_errors_word_for_word(targets, message):
    with pytest.raises(UserError) as err:
        parse_layer_map("first:2", 8, targets)
    assert str(err.value) == message
