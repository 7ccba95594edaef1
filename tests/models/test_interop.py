"""Interop with the DistilXLSR authors' checkpoints: safe loading, the key map, configs, round
trips, and agreement with an independent reference forward of the authors' model."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as F
import transformers

from distilxlsr.errors import UserError
from distilxlsr.models import interop
from distilxlsr.models.layers import LayerTap
from distilxlsr.models.loading import load_model
from distilxlsr.models.presets import tiny_config

HIDDEN, FFN, HEADS = 32, 64, 2
CONV = [(24, 10, 5), (24, 8, 4), (24, 8, 4)]
CONV_SPEC = "[(24,10,5)] + [(24,8,4)] * 2"

# ---------------------------------------------------------------------------------------------
# A reference forward of the authors' model, written from their layout, over their tensor names
# ---------------------------------------------------------------------------------------------


def _activation(name: str):
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    if name == "gelu_accurate":  # the tanh approximation, written out
        return lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    raise ValueError(name)


def _ln(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    weight = sd[f"{prefix}.weight"]
    return F.layer_norm(x, weight.shape, weight, sd[f"{prefix}.bias"], eps=1e-5)


def _linear(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    return F.linear(x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"])


def _self_attention(x: torch.Tensor, sd: dict, prefix: str, heads: int) -> torch.Tensor:
    batch, frames, width = x.shape
    head_dim = width // heads

    def project(name: str) -> torch.Tensor:
        y = _linear(x, sd, f"{prefix}.{name}_proj")
        return y.view(batch, frames, heads, head_dim).transpose(1, 2)

    q, k, v = project("q") * head_dim**-0.5, project("k"), project("v")
    mixed = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
    return _linear(mixed.transpose(1, 2).reshape(batch, frames, width), sd, f"{prefix}.out_proj")


def reference_forward(
    sd: dict, cfg: dict, conv: list[tuple[int, int, int]], wav: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The authors' student forward (eval mode, no padding) from its fairseq state dict.

    Returns the final output and one feature per layer: for pre-LN models layer l's is the next
    layer's input after its self_attn_layer_norm (the final output for the last layer), for
    post-LN models layer l's output.
    """
    x = wav.unsqueeze(1)
    for i, (dim, _kernel, stride) in enumerate(conv):
        p = f"feature_extractor.conv_layers.{i}"
        x = F.conv1d(x, sd[f"{p}.0.weight"], sd.get(f"{p}.0.bias"), stride=stride)
        if cfg["extractor_mode"] == "layer_norm":
            x = _ln(x.transpose(1, 2), sd, f"{p}.2.1").transpose(1, 2)
        elif i == 0:
            x = F.group_norm(x, dim, sd[f"{p}.2.weight"], sd[f"{p}.2.bias"], eps=1e-5)
        x = F.gelu(x)
    x = _ln(x.transpose(1, 2), sd, "layer_norm")
    if "post_extract_proj.weight" in sd:
        x = _linear(x, sd, "post_extract_proj")

    v, g = sd["encoder.pos_conv.0.weight_v"], sd["encoder.pos_conv.0.weight_g"]
    weight = g * v / v.norm(dim=(0, 1), keepdim=True)  # weight norm over dim 2
    kernel = cfg["conv_pos"]
    pos = F.conv1d(
        x.transpose(1, 2),
        weight,
        sd["encoder.pos_conv.0.bias"],
        padding=kernel // 2,
        groups=cfg["conv_pos_groups"],
    )
    if kernel % 2 == 0:
        pos = pos[:, :, :-1]
    x = x + F.gelu(pos).transpose(1, 2)

    pre_ln = cfg["layer_norm_first"]
    if not pre_ln:
        x = _ln(x, sd, "encoder.layer_norm")
    act = _activation(cfg["activation_fn"])
    features = []
    for i in range(cfg["encoder_layers"]):
        p = f"encoder.layers.{i}"
        residual = x
        h = _ln(x, sd, f"{p}.self_attn_layer_norm") if pre_ln else x
        if pre_ln and i > 0:
            features.append(h)
        x = residual + _self_attention(h, sd, f"{p}.self_attn", cfg["encoder_attention_heads"])
        if not pre_ln:
            x = _ln(x, sd, f"{p}.self_attn_layer_norm")
        residual = x
        h = _ln(x, sd, f"{p}.final_layer_norm") if pre_ln else x
        x = residual + _linear(act(_linear(h, sd, f"{p}.fc1")), sd, f"{p}.fc2")
        if not pre_ln:
            x = _ln(x, sd, f"{p}.final_layer_norm")
            features.append(x)
    if pre_ln:
        x = _ln(x, sd, "encoder.layer_norm")
        features.append(x)
    return x, features


# ---------------------------------------------------------------------------------------------
# Checkpoints in the authors' layout, built from the layout description
# ---------------------------------------------------------------------------------------------


def official_cfg(
    pre_ln: bool = True,
    mode: str = "layer_norm",
    conv_bias: bool = True,
    activation: str = "gelu",
    layers: int = 2,
    conv_spec: str = CONV_SPEC,
    mask_prob: float = 0.65,
) -> dict:
    return {
        "_name": "distilxlsr",  # fields the converter does not need are ignored
        "extractor_mode": mode,
        "encoder_layers": layers,
        "encoder_embed_dim": HIDDEN,
        "encoder_ffn_embed_dim": FFN,
        "encoder_attention_heads": HEADS,
        "activation_fn": activation,
        "layer_norm_first": pre_ln,
        "conv_feature_layers": conv_spec,
        "conv_bias": conv_bias,
        "feature_grad_mult": 0.0,
        "normalize": pre_ln,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "encoder_layerdrop": 0.05,
        "dropout_input": 0.0,
        "dropout_features": 0.0,
        "mask_length": 10,
        "mask_prob": mask_prob,
        "mask_selection": "static",
        "mask_channel_length": 10,
        "mask_channel_prob": 0.0,
        "conv_pos": 16,
        "conv_pos_groups": 2,
        "relative_position_embedding": False,
        "layer_distil_version": 4,
        "specified_teacher_layers": "[2, 5, 8, 11]",
    }


def official_state(cfg: dict, conv: list[tuple[int, int, int]], seed: int = 0) -> dict:
    """Random tensors under the authors' fairseq names, at scales that keep activations O(1)."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale

    def norm(prefix: str, dim: int) -> None:
        sd[f"{prefix}.weight"] = 1 + randn(dim, scale=0.2)
        sd[f"{prefix}.bias"] = randn(dim, scale=0.1)

    def linear(prefix: str, out_dim: int, in_dim: int) -> None:
        sd[f"{prefix}.weight"] = randn(out_dim, in_dim, scale=in_dim**-0.5)
        sd[f"{prefix}.bias"] = randn(out_dim, scale=0.1)

    width = cfg["encoder_embed_dim"]
    channels = 1
    for i, (dim, kernel, _stride) in enumerate(conv):
        p = f"feature_extractor.conv_layers.{i}"
        sd[f"{p}.0.weight"] = randn(dim, channels, kernel, scale=(channels * kernel) ** -0.5)
        if cfg["conv_bias"]:
            sd[f"{p}.0.bias"] = randn(dim, scale=0.1)
        if cfg["extractor_mode"] == "layer_norm":
            norm(f"{p}.2.1", dim)
        elif i == 0:
            norm(f"{p}.2", dim)
        channels = dim
    norm("layer_norm", channels)
    if channels != width:
        linear("post_extract_proj", width, channels)
    sd["mask_emb"] = torch.rand(width, generator=gen)
    kernel, groups = cfg["conv_pos"], cfg["conv_pos_groups"]
    sd["encoder.pos_conv.0.bias"] = randn(width, scale=0.1)
    sd["encoder.pos_conv.0.weight_g"] = 0.5 + torch.rand(1, 1, kernel, generator=gen)
    sd["encoder.pos_conv.0.weight_v"] = randn(width, width // groups, kernel)
    norm("encoder.layer_norm", width)
    for i in range(cfg["encoder_layers"]):
        p = f"encoder.layers.{i}"
        for name in ("q", "k", "v", "out"):
            linear(f"{p}.self_attn.{name}_proj", width, width)
        norm(f"{p}.self_attn_layer_norm", width)
        linear(f"{p}.fc1", cfg["encoder_ffn_embed_dim"], width)
        linear(f"{p}.fc2", width, cfg["encoder_ffn_embed_dim"])
        norm(f"{p}.final_layer_norm", width)
    return sd


def write_checkpoint(path, cfg: dict, sd: dict, **extra):
    torch.save(
        {"Config": {"model": cfg, "task": {"_name": "audio_pretraining"}}, "Student": sd, **extra},
        path,
    )
    return path


def _wav(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3200, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Importing matches the reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pre_ln, mode, activation",
    [(True, "layer_norm", "gelu"), (False, "default", "relu"), (True, "default", "gelu_accurate")],
)
def test_import_matches_reference_forward(tmp_path, pre_ln, mode, activation):
    cfg = official_cfg(pre_ln=pre_ln, mode=mode, activation=activation, layers=3)
    sd = official_state(cfg, CONV)
    ckpt = write_checkpoint(tmp_path / "student.pt", cfg, sd)

    out = interop.import_official(ckpt, tmp_path / "hf")
    assert (out / "model.safetensors").is_file()
    model = load_model(str(out)).eval()
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(out)
    assert fe.do_normalize == cfg["normalize"]
    assert fe.return_attention_mask == (mode == "layer_norm")

    wav = _wav()
    with torch.no_grad():
        expected, expected_layers = reference_forward(sd, cfg, CONV, wav)
        hidden = model(wav).last_hidden_state
        layers, _ = LayerTap(model)(wav, None, [1, 2, 3])
    torch.testing.assert_close(hidden, expected, rtol=0, atol=1e-4)
    assert len(layers) == len(expected_layers) == 3
    for got, want in zip(layers, expected_layers, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_official_round_trip_is_exact(tmp_path):
    cfg = official_cfg(pre_ln=True, mode="layer_norm")
    sd = official_state(cfg, CONV)
    hf_dir = interop.import_official(write_checkpoint(tmp_path / "a.pt", cfg, sd), tmp_path / "hf")
    back = interop.safe_load_checkpoint(interop.export_official(hf_dir, tmp_path / "b.pt"))

    assert set(back["Student"]) == set(sd)
    for key, tensor in sd.items():
        assert torch.equal(back["Student"][key], tensor), key
    exported = back["Config"]["model"]
    for key in ("encoder_layers", "encoder_embed_dim", "layer_norm_first", "extractor_mode",
                "conv_bias", "conv_pos", "conv_pos_groups", "activation_fn", "normalize",
                "mask_prob", "encoder_layerdrop", "conv_feature_layers"):  # fmt: skip
        assert exported[key] == cfg[key], key


def test_equal_widths_have_no_projection(tmp_path):
    # The authors' model has no post_extract_proj when the CNN width equals the hidden size.
    conv = [(HIDDEN, 10, 5), (HIDDEN, 8, 4), (HIDDEN, 8, 4)]
    cfg = official_cfg(conv_spec=f"[({HIDDEN},10,5)] + [({HIDDEN},8,4)] * 2")
    sd = official_state(cfg, conv)
    assert "post_extract_proj.weight" not in sd
    hf_dir = interop.import_official(write_checkpoint(tmp_path / "a.pt", cfg, sd), tmp_path / "hf")
    model = load_model(str(hf_dir)).eval()
    wav = _wav()
    with torch.no_grad():
        torch.testing.assert_close(
            model(wav).last_hidden_state,
            reference_forward(sd, cfg, conv, wav)[0],
            rtol=0,
            atol=1e-4,
        )
    back = interop.safe_load_checkpoint(interop.export_official(hf_dir, tmp_path / "b.pt"))
    assert set(back["Student"]) == set(sd)

    # A transformers model of that shape with a real projection cannot be written that way.
    with torch.no_grad():
        model.feature_projection.projection.weight.add_(0.01)
    model.save_pretrained(tmp_path / "changed")
    with pytest.raises(UserError, match="not the identity"):
        interop.export_official(tmp_path / "changed", tmp_path / "c.pt")


def test_mask_vector_without_masking_is_left_out_with_a_warning(tmp_path, caplog):
    cfg = official_cfg(mask_prob=0.0)
    sd = official_state(cfg, CONV)
    with caplog.at_level("WARNING", logger="distilxlsr.models.interop"):
        hf_dir = interop.import_official(
            write_checkpoint(tmp_path / "a.pt", cfg, sd), tmp_path / "hf"
        )
    assert "mask_emb" in caplog.text
    assert not hasattr(load_model(str(hf_dir)), "masked_spec_embed")
    back = interop.safe_load_checkpoint(interop.export_official(hf_dir, tmp_path / "b.pt"))
    assert set(back["Student"]) == set(sd)  # the authors' model always holds mask_emb
    assert not back["Student"]["mask_emb"].any()


# ---------------------------------------------------------------------------------------------
# transformers -> authors' layout -> transformers
# ---------------------------------------------------------------------------------------------


def _hf_model(pre_ln: bool, norm: str, conv_bias: bool, mask: float = 0.0, width: int = 24):
    config = tiny_config("wav2vec2", pre_ln=pre_ln, layers=2, conv_channels=width)
    config.feat_extract_norm = norm
    config.conv_bias = conv_bias
    config.hidden_act = "gelu" if pre_ln else "relu"
    config.mask_time_prob = mask
    torch.manual_seed(0)
    model = transformers.Wav2Vec2Model(config).eval()
    with torch.no_grad():  # no parameter keeps its initial constant (LayerNorm 1/0 and the like)
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model


@pytest.mark.parametrize("conv_bias", [True, False])
@pytest.mark.parametrize("norm", ["layer", "group"])
@pytest.mark.parametrize("pre_ln", [True, False])
def test_hf_round_trip_gives_identical_model(tmp_path, pre_ln, norm, conv_bias):
    original = _hf_model(pre_ln, norm, conv_bias)
    original.save_pretrained(tmp_path / "a")
    transformers.Wav2Vec2FeatureExtractor(do_normalize=not pre_ln).save_pretrained(tmp_path / "a")

    ckpt = interop.export_official(tmp_path / "a", tmp_path / "student.pt")
    interop.import_official(ckpt, tmp_path / "b")

    a, b = load_model(str(tmp_path / "a")).eval(), load_model(str(tmp_path / "b")).eval()
    state_a, state_b = a.state_dict(), b.state_dict()
    assert set(state_a) == set(state_b)
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    for field in ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
                  "conv_dim", "conv_kernel", "conv_stride", "conv_bias", "feat_extract_norm",
                  "do_stable_layer_norm", "hidden_act", "num_conv_pos_embeddings",
                  "num_conv_pos_embedding_groups", "mask_time_prob", "layerdrop"):  # fmt: skip
        assert getattr(a.config, field) == getattr(b.config, field), field
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(tmp_path / "b")
    assert fe.do_normalize == (not pre_ln)
    wav = _wav()
    with torch.no_grad():
        torch.testing.assert_close(
            a(wav).last_hidden_state, b(wav).last_hidden_state, rtol=0, atol=0
        )


def test_mask_vector_round_trips_when_masking_is_on(tmp_path):
    original = _hf_model(True, "layer", True, mask=0.05)
    original.save_pretrained(tmp_path / "a")
    ckpt = interop.export_official(tmp_path / "a", tmp_path / "student.pt")
    interop.import_official(ckpt, tmp_path / "b")
    b = load_model(str(tmp_path / "b"))
    assert torch.equal(b.masked_spec_embed, original.masked_spec_embed)


def test_exported_file_holds_only_plain_data(tmp_path):
    _hf_model(True, "layer", True).save_pretrained(tmp_path / "a")
    path = interop.export_official(tmp_path / "a", tmp_path / "out" / "student.pt")
    loaded = torch.load(path, weights_only=True, map_location="cpu")
    assert set(loaded) == {"Config", "Student"} and set(loaded["Config"]) == {"model"}

    def check(value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                assert type(key) is str
                check(item)
        elif isinstance(value, list):
            for item in value:
                check(item)
        else:
            assert type(value) in (torch.Tensor, str, int, float, bool), type(value)

    check(loaded)
    assert interop.parse_conv_layers(loaded["Config"]["model"]["conv_feature_layers"]) == CONV


def test_key_map_covers_both_transformers_variants():
    for pre_ln, norm in ((True, "layer"), (False, "group")):
        model = _hf_model(pre_ln, norm, True, mask=0.05)
        for key in model.state_dict():
            official = interop.hf_key_to_official(key, norm)
            assert official is not None, key
            assert interop.official_key_to_hf(official, norm) == key


def test_export_refuses_other_model_types(tmp_path):
    torch.manual_seed(0)
    transformers.HubertModel(tiny_config("hubert", layers=1)).save_pretrained(tmp_path / "h")
    with pytest.raises(UserError, match="only wav2vec2"):
        interop.export_official(tmp_path / "h", tmp_path / "h.pt")
    with pytest.raises(UserError, match="does not exist"):
        interop.export_official(tmp_path / "nothing", tmp_path / "n.pt")


# ---------------------------------------------------------------------------------------------
# Refusing what is unsafe or not understood
# ---------------------------------------------------------------------------------------------


class _CreatesFile:
    """Unpickling this calls open(path, "w"): it creates a file, as a malicious pickle would."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("fmt", ["torch.save", "legacy pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path, fmt):
    # The payload is real: plain unpickling runs it.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_CreatesFile(probe))).close()
    assert probe.exists()

    marker = tmp_path / "pwned"
    cfg = official_cfg()
    payload = {  # the payload first: a legacy pickle's tensors are refused too, but later
        "x": _CreatesFile(marker),
        "Config": {"model": cfg},
        "Student": official_state(cfg, CONV),
    }
    path = tmp_path / "student.pt"
    if fmt == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(UserError, match="run code") as err:
        interop.safe_load_checkpoint(path)
    assert str(path) in str(err.value) and "io.open" in str(err.value)
    with pytest.raises(UserError, match="run code"):
        interop.import_official(path, tmp_path / "hf")
    assert not marker.exists()
    assert not (tmp_path / "hf").exists()


def test_unreadable_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        interop.safe_load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(UserError, match="is a directory"):
        interop.safe_load_checkpoint(tmp_path)
    for name, content in (
        ("text.pt", b"hello world"),
        ("empty.pt", b""),
        ("zip.pt", b"PK\x03\x04"),
    ):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UserError, match="not a PyTorch checkpoint"):
            interop.safe_load_checkpoint(tmp_path / name)
    cfg, sd = official_cfg(), official_state(official_cfg(), CONV)
    torch.save({"Config": {"model": cfg}}, tmp_path / "no_student.pt")
    with pytest.raises(UserError, match="'Config' and 'Student'"):
        interop.safe_load_checkpoint(tmp_path / "no_student.pt")
    torch.save({"Config": {"task": {}}, "Student": sd}, tmp_path / "no_model.pt")
    with pytest.raises(UserError, match=r"\['Config'\]\['model'\]"):
        interop.safe_load_checkpoint(tmp_path / "no_model.pt")
    torch.save({"Config": {"model": cfg}, "Student": {"a": 1}}, tmp_path / "bad_student.pt")
    with pytest.raises(UserError, match="not a state dict"):
        interop.safe_load_checkpoint(tmp_path / "bad_student.pt")


@pytest.mark.parametrize(
    "extra",
    [
        "encoder.layers.0.self_attn.relative_attention_bias.weight",
        "final_proj.weight",
        "feature_extractor.conv_layers.1.2.1.weight",  # layer_norm-mode name in a default-mode file
    ],
)
def test_unknown_tensor_is_named(tmp_path, extra):
    cfg = official_cfg(mode="default")
    sd = official_state(cfg, CONV)
    sd[extra] = torch.zeros(3)
    with pytest.raises(UserError, match="does not define") as err:
        interop.import_official(write_checkpoint(tmp_path / "a.pt", cfg, sd), tmp_path / "hf")
    assert extra in str(err.value)


def test_missing_surplus_and_misshapen_tensors_are_named(tmp_path):
    cfg = official_cfg()
    sd = official_state(cfg, CONV)

    missing = dict(sd)
    del missing["encoder.layers.1.fc2.bias"]
    with pytest.raises(UserError, match=r"lacks .*encoder\.layers\.1\.fc2\.bias"):
        interop.import_official(write_checkpoint(tmp_path / "a.pt", cfg, missing), tmp_path / "a")

    surplus = {**sd, "encoder.layers.5.fc1.weight": torch.zeros(FFN, HIDDEN)}
    with pytest.raises(UserError, match=r"no place for .*encoder\.layers\.5\.fc1\.weight"):
        interop.import_official(write_checkpoint(tmp_path / "b.pt", cfg, surplus), tmp_path / "b")

    misshapen = {**sd, "encoder.layers.0.fc1.weight": torch.zeros(FFN + 1, HIDDEN)}
    with pytest.raises(UserError, match=r"shapes disagree .*encoder\.layers\.0\.fc1\.weight"):
        interop.import_official(write_checkpoint(tmp_path / "c.pt", cfg, misshapen), tmp_path / "c")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"relative_position_embedding": True}, "cannot represent"),
        ({"activation_fn": "glu"}, "activation_fn 'glu'"),
        ({"extractor_mode": "conv2d"}, "extractor_mode 'conv2d'"),
        ({"encoder_layers": None}, "no 'encoder_layers'"),
        ({"encoder_layers": "2"}, "not a int"),
    ],
)
def test_unsupported_configs_are_refused(change, message):
    cfg = {**official_cfg(), **change}
    with pytest.raises(UserError, match=message):
        interop.official_config_to_hf(cfg)


def test_config_maps_both_ways():
    cfg = official_cfg(pre_ln=False, mode="default", conv_bias=False, activation="gelu_accurate")
    config = interop.official_config_to_hf(cfg)
    assert (config.do_stable_layer_norm, config.feat_extract_norm) == (False, "group")
    assert (config.hidden_act, config.conv_bias) == ("gelu_new", False)
    assert (config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups) == (16, 2)
    assert (config.mask_time_prob, config.layerdrop, config.hidden_dropout) == (0.65, 0.05, 0.1)
    assert list(config.conv_dim) == [24, 24, 24] and list(config.conv_stride) == [5, 4, 4]
    back = interop.hf_config_to_official(config, normalize=cfg["normalize"])
    for key, value in back.items():
        assert cfg[key] == value, key


def test_conv_spec_parses_the_documented_form():
    spec = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
    layers = interop.parse_conv_layers(spec)
    assert layers == [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    assert interop.format_conv_layers(layers) == spec
    assert interop.parse_conv_layers("2 * [(8, 3, 1)]") == [(8, 3, 1), (8, 3, 1)]


@pytest.mark.parametrize(
    "spec",
    [
        "__import__('os')",
        "__import__('os').system('touch {marker}')",
        "open('{marker}', 'w')",
        "[(512,10,5)] * n",
        "[(512,10,5)].__class__",
        "[(512,10,5)] * 10**9",
        "[(512,10,5)] * 100000",
        "[(512,10,5)] + (lambda: [])()",
        "[x for x in [(512,10,5)]]",
        "[('512',10,5)]",
        "[(512,10,5.0)]",
        "[(True,10,5)]",
        "[(512,10)]",
        "[]",
        "[(512,10,5)",
    ],
)
def test_conv_spec_refuses_anything_else(tmp_path, spec):
    marker = tmp_path / "pwned"
    with pytest.raises(UserError, match="conv_feature_layers"):
        interop.parse_conv_layers(spec.format(marker=marker))
    assert not marker.exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"encoder_embed_dim": 10**7}, "hidden_size=10000000, outside"),
        ({"encoder_layers": 400, "encoder_ffn_embed_dim": 60000}, "parameters but holds"),
    ],
)
def test_absurd_sizes_are_refused_before_allocating(tmp_path, change, message):
    cfg = official_cfg()
    sd = official_state(cfg, interop.parse_conv_layers(cfg["conv_feature_layers"]))
    ckpt = write_checkpoint(tmp_path / "a.pt", {**cfg, **change}, sd)
    with pytest.raises(UserError, match=message):
        interop.import_official(ckpt, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_a_checkpoint_that_expands_far_beyond_its_size_is_refused(tmp_path):
    import zipfile

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\0" * (64 << 20))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(UserError, match="expands to 67,108,864 bytes"):
        interop.safe_load_checkpoint(bomb)
