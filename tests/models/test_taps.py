"""The explicit (hook-free, compilable) LayerTap against the hook-based one it replaces: the same
representations, frame masks, RNG draws and gradients, bit for bit (fp32, CPU), with
transformers' CNN layers (`channels_last_cnn=False`); the channels-last CNN the explicit tap runs
by default equals them to float rounding."""

import pytest
import torch

from distilxlsr.models.layers import LayerTap, _is_layer_norm_conv, run_cnn
from tests.helpers import tiny_model

FAMILIES = [
    ("wav2vec2", True),
    ("wav2vec2", False),
    ("hubert", True),
    ("hubert", False),
    ("wavlm", True),
    ("wavlm", False),
    ("data2vec-audio", False),
]


def _batch(padded: bool = True):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3200, generator=generator)
    if not padded:
        return x, None
    mask = torch.ones(3, 3200, dtype=torch.bool)
    mask[1, 2400:] = False
    mask[2, 1700:] = False
    x[~mask] = 0.0
    return x, mask


def _run(tap, x, mask, layers, seed=0):
    """Representations, frame mask and the RNG state after the call, from `seed`."""
    torch.manual_seed(seed)
    reps, frames = tap(x, mask, layers)
    return reps, frames, torch.get_rng_state()


def _assert_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x, y)


@pytest.mark.parametrize("model_type, pre_ln", FAMILIES)
@pytest.mark.parametrize("padded", [True, False])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_explicit_tap_equals_hooks_in_eval(model_type, pre_ln, padded, attention):
    model = tiny_model(model_type, pre_ln=pre_ln)
    if model_type != "wavlm":  # WavLM has one attention of its own
        model.set_attn_implementation(attention)
    explicit, hooked = LayerTap(model, channels_last_cnn=False), LayerTap(model, explicit=False)
    assert explicit.explicit and not hooked.explicit
    x, mask = _batch(padded)
    layers = [0, 1, 2, 3, 4]
    with torch.inference_mode():
        want, want_frames, _ = _run(hooked, x, mask, layers)
        got, got_frames, _ = _run(explicit, x, mask, layers)
    _assert_equal(got, want)
    assert torch.equal(got_frames, want_frames)
    if padded:
        assert not got_frames.all()
    # The last representation is the model's own output (it ran at all).
    with torch.inference_mode():
        out = model(x, attention_mask=mask).last_hidden_state
    if pre_ln:
        assert torch.equal(got[-1], out)


@pytest.mark.parametrize("model_type, pre_ln", FAMILIES)
@pytest.mark.parametrize("padded", [True, False])
def test_explicit_tap_equals_hooks_in_training_with_gradients(model_type, pre_ln, padded):
    """Train mode: dropout draws in the same order (equal outputs and RNG state after), and the
    same parameter gradients, the CNN's included (trainable here)."""
    model = tiny_model(model_type, pre_ln=pre_ln).train()
    x, mask = _batch(padded)
    layers = [1, 2, 3, 4]
    results = []
    for tap in (LayerTap(model, explicit=False), LayerTap(model, channels_last_cnn=False)):
        model.zero_grad(set_to_none=True)
        reps, frames, rng = _run(tap, x, mask, layers, seed=7)
        weights = torch.linspace(0.5, 1.5, reps[0].shape[-1])
        loss = sum(((r * weights)[frames] ** 2).mean() for r in reps)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((reps, frames, rng, grads))
    (r0, f0, rng0, g0), (r1, f1, rng1, g1) = results
    _assert_equal(r1, r0)
    assert torch.equal(f1, f0) and torch.equal(rng1, rng0)
    assert len(g0) == len(list(model.parameters())) - (
        "masked_spec_embed" in dict(model.named_parameters())
    )
    _assert_equal(g1, g0)
    # Dropout was on: another seed gives other outputs.
    other, _, _ = _run(LayerTap(model, channels_last_cnn=False), x, mask, layers, seed=8)
    assert not torch.equal(other[-1], r1[-1])


@pytest.mark.parametrize("model_type, pre_ln", [("wav2vec2", False), ("wavlm", True)])
def test_layerdrop_draws_and_skips_as_transformers_does(model_type, pre_ln):
    """LayerDrop in training: the same draws, the same layers skipped. The old tap had no output
    for a dropped requested layer (an error); the new one says so."""
    model = tiny_model(model_type, pre_ln=pre_ln).train()
    model.config.layerdrop = 0.5
    x, mask = _batch()
    explicit, hooked = LayerTap(model, channels_last_cnn=False), LayerTap(model, explicit=False)
    with torch.no_grad():
        model.config.layerdrop = 0.0
        full, _, _ = _run(explicit, x, mask, [4], seed=0)
        model.config.layerdrop = 0.5
        outcomes = []
        for seed in range(12):
            try:
                want = _run(hooked, x, mask, [4], seed)
            except KeyError:
                with pytest.raises(RuntimeError, match="dropped by layerdrop"):
                    _run(explicit, x, mask, [4], seed)
                outcomes.append("dropped")
                continue
            got = _run(explicit, x, mask, [4], seed)
            _assert_equal(got[0], want[0])
            assert torch.equal(got[2], want[2])  # the same number of draws
            # With seed 0 no layer is skipped only if the draws say so; count the skips.
            outcomes.append("same" if torch.equal(got[0][0], full[0]) else "skipped")
    assert {"dropped", "skipped"} <= set(outcomes), outcomes


def test_layers_above_the_highest_requested_one_do_not_run():
    model = tiny_model("wav2vec2", pre_ln=True)
    calls = []
    for i, layer in enumerate(model.encoder.layers):
        layer.register_forward_hook(lambda module, args, out, i=i: calls.append(i + 1))
    x, mask = _batch()
    with torch.no_grad():
        got, _ = LayerTap(model, channels_last_cnn=False)(x, mask, [0, 2])
        assert calls == [1, 2]
        calls.clear()
        want, _ = LayerTap(model, explicit=False)(x, mask, [0, 2])
        assert calls == [1, 2, 3, 4]
    _assert_equal(got, want)


@pytest.mark.parametrize("explicit", [True, False])
def test_given_cnn_features_replace_the_cnn(explicit):
    """The shared CNN: the CNN's output is returned, and a given one is used without running
    the model's CNN."""
    model = tiny_model("wav2vec2", pre_ln=True)
    tap = LayerTap(model, explicit=explicit, channels_last_cnn=False)
    x, mask = _batch()
    with torch.no_grad():
        reps, frames, cnn = tap(x, mask, [1, 4], return_cnn=True)
        assert torch.equal(cnn, model.feature_extractor(x))
        runs = []
        model.feature_extractor.conv_layers[0].register_forward_hook(lambda *a: runs.append(1))
        again, again_frames = tap(x, mask, [1, 4], cnn.clone())
        assert runs == []
        _assert_equal(again, reps)
        assert torch.equal(again_frames, frames)
        # Another CNN output changes the result (it is really used), and the CNN runs again
        # once none is given.
        moved, _ = tap(x, mask, [1, 4], cnn + 1.0)
        assert not torch.equal(moved[0], reps[0])
        tap(x, mask, [1])
        assert runs == [1]


def test_truncated_tap_keeps_and_registers_the_norm_above():
    model = tiny_model("wav2vec2", pre_ln=True)
    x, mask = _batch()
    with torch.no_grad():
        full, _ = LayerTap(model)(x, mask, [2])
        tap = LayerTap(model)
        norm = model.encoder.layers[2].layer_norm
        tap.drop_layers_after(2)
        assert len(model.encoder.layers) == 2
        cut, _ = tap(x, mask, [2])
    assert torch.equal(full[0], cut[0])
    # Registered in the tap, so that moving the tap moves it with the model.
    assert any(module is norm for module in tap.modules())
    with pytest.raises(ValueError, match="model with 2 layers"):
        tap(x, mask, [3])


def test_unknown_encoders_fall_back_to_hooks():
    model = tiny_model("wav2vec2", pre_ln=False)

    class OtherEncoder(type(model.encoder)):
        pass

    model.encoder.__class__ = OtherEncoder
    tap = LayerTap(model)
    assert not tap.explicit
    with pytest.raises(ValueError, match="no explicit forward for OtherEncoder"):
        LayerTap(model, explicit=True)
    x, mask = _batch()
    with torch.no_grad():
        reps, _ = tap(x, mask, [4])
        out = model(x, attention_mask=mask).last_hidden_state
    assert torch.equal(reps[0], out)
    # The hooks are removed after the call.
    assert not any(layer._forward_hooks for layer in model.encoder.layers)


@pytest.mark.parametrize("model_type, pre_ln", FAMILIES)
def test_tap_compiles_as_one_graph(model_type, pre_ln):
    """torch.compile captures the whole forward (fullgraph=True fails on any graph break), in
    inference mode as the teacher runs, and gives the eager values."""
    torch._dynamo.reset()
    model = tiny_model(model_type, pre_ln=pre_ln)
    tap = LayerTap(model)
    compiled = torch.compile(tap, fullgraph=True, backend="eager")
    x, mask = _batch()
    with torch.inference_mode():
        want = tap(x, mask, [0, 2, 4], return_cnn=True)
        got = compiled(x, mask, [0, 2, 4], return_cnn=True)
    _assert_equal(got[0], want[0])
    assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])


@pytest.mark.parametrize("pre_ln", [True, False])
def test_tap_compiles_as_one_graph_in_training(pre_ln):
    """The student's case: train mode (dropout), gradients through AOTAutograd, with a given CNN
    output (the shared CNN) and with a trainable CNN of its own."""
    torch._dynamo.reset()
    model = tiny_model("wav2vec2", pre_ln=pre_ln).train()
    tap = LayerTap(model)
    compiled = torch.compile(tap, fullgraph=True, backend="aot_eager")
    x, mask = _batch()
    with torch.no_grad():
        cnn = model.feature_extractor(x)
    for given in (cnn, None):
        results = []
        for run in (tap, compiled):
            model.zero_grad(set_to_none=True)
            torch.manual_seed(3)
            reps, frames = run(x, mask, [1, 2, 3, 4], given)
            sum(r[frames].square().mean() for r in reps).backward()
            grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
            results.append((reps, grads))
        (want, want_grads), (got, got_grads) = results
        assert len(got_grads) == len(want_grads) > 0
        for a, b in zip(got + got_grads, want + want_grads, strict=True):
            torch.testing.assert_close(a, b)
        cnn_grad = model.feature_extractor.conv_layers[0].conv.weight.grad
        assert (cnn_grad is None) == (given is not None)


LAYER_NORM_CNN = [f for f in FAMILIES if f[1] or f[0] == "data2vec-audio"]


@pytest.mark.parametrize("model_type, pre_ln", LAYER_NORM_CNN)
def test_the_channels_last_cnn_equals_transformers_cnn_with_its_gradients(model_type, pre_ln):
    """A layer-norm CNN (XLS-R's) runs channels-last: transformers' values and parameter
    gradients to float rounding, with the channels innermost in memory, so the (B, T, C) view
    the feature projection reads is contiguous."""
    model = tiny_model(model_type, pre_ln=pre_ln).train()
    extractor = model.feature_extractor
    assert all(_is_layer_norm_conv(layer) for layer in extractor.conv_layers)
    x, _ = _batch(padded=False)
    results = []
    for channels_last in (False, True):
        model.zero_grad(set_to_none=True)
        out = run_cnn(extractor, x, channels_last)
        (out * torch.linspace(0.5, 1.5, out.shape[1])[:, None]).square().mean().backward()
        results.append((out, [p.grad.clone() for p in extractor.parameters()]))
    (want, want_grads), (got, got_grads) = results
    assert got.shape == want.shape and got.dtype == want.dtype
    assert torch.equal(want, extractor(x))  # channels_last=False is transformers' own
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not torch.equal(got, want)  # it did run another way
    assert got.stride(1) == 1 and got.transpose(1, 2).is_contiguous()
    assert len(got_grads) == 4 * len(extractor.conv_layers)  # conv and LayerNorm weights, biases
    for g, w in zip(got_grads, want_grads, strict=True):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-6)


def test_the_channels_last_cnn_under_bf16_autocast_as_a_gpu_runs_it():
    """Autocast's dtypes as transformers' layers get them (bf16 convolutions; LayerNorm in bf16
    on the CPU, fp32 on a GPU), and their values to bf16's rounding."""
    model = tiny_model("wav2vec2", pre_ln=True)
    x, _ = _batch(padded=False)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = model.feature_extractor(x)
        got = run_cnn(model.feature_extractor, x)
    assert got.dtype == want.dtype
    assert torch.allclose(got, want, rtol=0.05, atol=0.05)


def test_a_group_norm_cnn_runs_transformers_layers_bit_for_bit():
    model = tiny_model("wav2vec2", pre_ln=False)
    assert not _is_layer_norm_conv(model.feature_extractor.conv_layers[1])
    x, _ = _batch(padded=False)
    with torch.inference_mode():
        assert torch.equal(run_cnn(model.feature_extractor, x), model.feature_extractor(x))


@pytest.mark.parametrize("model_type, pre_ln", FAMILIES)
def test_the_default_explicit_tap_equals_hooks_to_float_rounding(model_type, pre_ln):
    model = tiny_model(model_type, pre_ln=pre_ln)
    x, mask = _batch()
    with torch.inference_mode():
        got, got_frames = LayerTap(model)(x, mask, [0, 2, 4])
        want, want_frames = LayerTap(model, explicit=False)(x, mask, [0, 2, 4])
    assert torch.equal(got_frames, want_frames)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-4)
