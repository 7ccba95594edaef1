"""The CTC recognisers' mechanics: the tri-stage schedule, the CTC loss, the probe's training loop
(warm-up, seed, steps, callback, info) and fine-tuning's model configuration and batches."""

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distilxlsr.data.loader import collate
from distilxlsr.evaluate.ctc import (
    FinetuneConfig,
    FrozenCNNOutputs,
    Probe,
    ProbeConfig,
    _ctc,
    finetune,
    train_probe,
    tri_stage,
)
from distilxlsr.models.frames import frame_lengths
from distilxlsr.models.loading import model_class
from distilxlsr.models.presets import tiny_config
from tests.helpers import randomize_norms

# --- the tri-stage learning-rate schedule ------------------------------------------------------


def test_tri_stage_warms_up_linearly_holds_then_decays_exponentially_to_the_final_scale():
    # 100 steps: 10 of warm-up, 40 at the peak, 50 of decay to 5% of the peak.
    def lr(step, **kw):
        return tri_stage(step, 100, [0.1, 0.4, 0.5], **kw)

    assert [lr(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0], abs=1e-12)
    assert [lr(s) for s in (10, 30, 49, 50)] == [1.0, 1.0, 1.0, 1.0]
    assert lr(75) == pytest.approx(math.sqrt(0.05), rel=1e-12)  # half-way down, in log space
    assert lr(99) == pytest.approx(0.05 ** (49 / 50), rel=1e-12)
    assert lr(100) == pytest.approx(0.05, rel=1e-12)
    assert lr(150) == pytest.approx(0.05, rel=1e-12)  # it stays at the floor
    assert lr(100, final_scale=0.2) == pytest.approx(0.2, rel=1e-12)
    assert lr(75, final_scale=0.2) == pytest.approx(math.sqrt(0.2), rel=1e-12)


def test_tri_stage_with_stages_of_one_step_or_none():
    # one warm-up step (10% of 10) starts at the peak; a one-step decay ends at the floor
    assert tri_stage(0, 10, [0.1, 0.4, 0.5]) == 1.0
    assert tri_stage(0, 10, [0.5, 0.4, 0.1]) == pytest.approx(0.2)
    assert tri_stage(9, 10, [0.5, 0.4, 0.1]) == 1.0
    assert tri_stage(10, 10, [0.5, 0.4, 0.1]) == pytest.approx(0.05, rel=1e-12)
    # no warm-up: the first step is at the peak
    assert tri_stage(0, 10, [0.0, 0.5, 0.5]) == 1.0
    assert tri_stage(5, 10, [0.0, 0.5, 0.5]) == 1.0
    assert tri_stage(10, 10, [0.0, 0.5, 0.5]) == pytest.approx(0.05, rel=1e-12)


# --- the CTC loss ------------------------------------------------------------------------------


def test_ctc_loss_by_hand_on_one_and_two_frames():
    log_probs = torch.randn(2, 2, 4, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    # utterance 0: one frame, label [2]: the only path is "2"
    # utterance 1: two frames, no labels: the only path is blank, blank (blank is 0)
    loss = _ctc(log_probs, torch.tensor([1, 2]), [[2], []])
    by_hand_0 = -log_probs[0, 0, 2] / 1  # each loss is divided by its label count ...
    by_hand_1 = -(log_probs[1, 0, 0] + log_probs[1, 1, 0])  # ... (at least 1)
    assert loss.item() == pytest.approx(((by_hand_0 + by_hand_1) / 2).item(), rel=1e-5)


def test_ctc_loss_is_torch_s_mean_over_the_batch_of_each_utterance_s_loss_per_label():
    log_probs = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(1)).log_softmax(-1)
    lengths, labels = torch.tensor([6, 4]), [[1, 2, 1], [3]]
    expected = [
        F.ctc_loss(lp[:n], torch.tensor(seq), [n], [len(seq)], reduction="sum") / len(seq)
        for lp, n, seq in zip(log_probs, lengths.tolist(), labels, strict=True)
    ]
    loss = _ctc(log_probs, lengths, labels)
    assert loss.item() == pytest.approx(((expected[0] + expected[1]) / 2).item(), rel=1e-5)


def test_an_utterance_too_short_for_its_labels_adds_no_loss_and_no_gradient():
    log_probs = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(2)).log_softmax(-1)
    log_probs.requires_grad_(True)
    # utterance 0 has 2 frames for 3 labels: no alignment exists
    loss = _ctc(log_probs, torch.tensor([2, 6]), [[1, 2, 3], [1]])
    alone = F.ctc_loss(log_probs[1].detach(), torch.tensor([1]), [6], [1], reduction="sum")
    assert loss.item() == pytest.approx(alone.item() / 2, rel=1e-5)
    loss.backward()
    assert torch.isfinite(log_probs.grad).all() and not log_probs.grad[0].any()


# --- the probe ---------------------------------------------------------------------------------


def _features(seed: int, n: int, layers: int = 3, frames: int = 12, dim: int = 5):
    """n utterances of random (layers, frames, dim) features, each with 3 labels of 1..3."""
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(layers, frames, dim, generator=g) * 2 + 1 for _ in range(n)]
    labels = [torch.randint(1, 4, (3,), generator=g).tolist() for _ in range(n)]
    return feats, labels


def _state(probe: Probe) -> dict:
    return {k: v.clone() for k, v in probe.state_dict().items()}


def test_a_new_probe_weighs_the_layers_equally_and_leaves_the_features_as_they_are():
    probe = Probe(3, 5, 4)
    assert torch.equal(probe.layer_weights(), torch.full((3,), 1 / 3))
    assert torch.equal(probe.mean, torch.zeros(3, 5)) and torch.equal(probe.scale, torch.ones(3, 5))
    feats, _ = _features(0, 2, frames=7)
    for before, after in zip(feats, probe.standardise(feats), strict=True):
        assert torch.equal(before, after)
    assert probe.head.in_features == 5 and probe.head.out_features == 4


def test_the_first_probe_step_moves_each_weight_by_the_warmed_up_learning_rate():
    """Adam's first step moves every weight by exactly lr x warm-up factor against its gradient;
    the factor is 1/warmup_steps on the first step, and a warm-up of 0 or 1 step is none."""
    feats, labels = _features(3, 1)  # a single utterance: every batch is that utterance
    for warmup, factor in ((4, 0.25), (1, 1.0), (0, 1.0)):
        config = ProbeConfig(
            optimizer="adam",
            standardise=False,
            steps=0,
            lr=0.01,
            warmup_steps=warmup,
            batch_utterances=8,
        )
        start, info = train_probe(feats, labels, 4, config)
        assert info["steps"] == 0 and math.isnan(info["final_loss"])
        loss = _ctc(*start(start.standardise(feats)), labels)
        loss.backward()
        config.steps = 1
        trained, info = train_probe(feats, labels, 4, config)
        assert info["final_loss"] == pytest.approx(loss.item(), rel=1e-6)
        for name, before in start.named_parameters():
            g = before.grad
            expected = before.detach() - 0.01 * factor * g / (g.abs() + 1e-8)
            after = dict(trained.named_parameters())[name].detach()
            assert torch.allclose(after, expected, rtol=0, atol=1e-7), (warmup, name)


def test_after_the_warm_up_the_probe_s_learning_rate_stays_at_lr():
    """Adam moves a weight by at most about lr a step: by Cauchy-Schwarz on its moment
    estimates, at most 1.028 lr in each of the first 8 steps (the warm-up, 2 steps, aside)."""
    feats, labels = _features(4, 1)
    config = ProbeConfig(optimizer="adam", standardise=False, steps=8, lr=0.01, warmup_steps=2)
    moves, last = (
        [],
        [
            _state(
                train_probe(
                    feats, labels, 4, ProbeConfig(optimizer="adam", standardise=False, steps=0)
                )[0]
            )
        ],
    )

    def track(step, probe):
        now = _state(probe)
        moves.append(max((now[k] - last[0][k]).abs().max().item() for k in now))
        last[0] = now

    train_probe(feats, labels, 4, config, track)
    assert moves[0] == pytest.approx(0.005, rel=1e-4)  # half of lr on the first of two
    assert max(moves[1:]) <= 0.0104, moves
    assert max(moves[1:]) >= 0.009, moves


def test_the_callback_sees_every_step_once_with_the_probe_being_trained():
    feats, labels = _features(5, 4)
    seen = []

    def keep(step, probe):
        seen.append((step, probe, _state(probe)))

    config = ProbeConfig(optimizer="adam", standardise=False, steps=5, lr=0.01, batch_utterances=2)
    probe, info = train_probe(feats, labels, 4, config, keep)
    assert [s for s, _, _ in seen] == [1, 2, 3, 4, 5]
    assert all(p is probe for _, p, _ in seen)
    assert all(torch.equal(v, probe.state_dict()[k]) for k, v in seen[-1][2].items())
    assert info["steps"] == 5
    # each step changed the probe
    heads = [state["head.weight"] for _, _, state in seen]
    assert all(not torch.equal(a, b) for a, b in zip(heads, heads[1:], strict=False))
    seen.clear()
    train_probe(feats, labels, 4, ProbeConfig(optimizer="adam", standardise=False, steps=0), keep)
    assert seen == []


def test_the_probe_s_info_reports_its_steps_time_and_last_loss():
    feats, labels = _features(6, 1)
    before_last = {}

    def keep(step, probe):
        if step == 2:
            before_last.update(_state(probe))

    start = time.perf_counter()
    probe, info = train_probe(
        feats, labels, 4, ProbeConfig(optimizer="adam", standardise=False, steps=3, lr=0.01), keep
    )
    elapsed = time.perf_counter() - start
    assert set(info) == {"steps", "seconds", "final_loss"}
    assert info["steps"] == 3
    assert 0 < info["seconds"] <= elapsed
    # the loss of the last step: the probe as it was before that step, on the one utterance
    probe.load_state_dict(before_last)
    with torch.no_grad():
        last = _ctc(*probe(probe.standardise(feats)), labels).item()
    assert info["final_loss"] == pytest.approx(last, rel=1e-6)


def test_the_probe_is_a_function_of_its_seed_alone():
    feats, labels = _features(7, 6)
    config = ProbeConfig(
        optimizer="adam", standardise=False, steps=4, lr=0.01, batch_utterances=2, seed=3
    )
    torch.manual_seed(100)
    a, info_a = train_probe(feats, labels, 4, config)
    torch.manual_seed(200)
    after = torch.rand(3)
    torch.manual_seed(200)
    b, info_b = train_probe(feats, labels, 4, config)
    assert torch.equal(torch.rand(3), after), "training a probe must not draw from the global RNG"
    assert info_a["final_loss"] == info_b["final_loss"]
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    config.seed = 4
    c, info_c = train_probe(feats, labels, 4, config)
    assert not torch.equal(a.head.weight, c.head.weight)
    # another seed draws other batches, not only another initialisation
    init_a = train_probe(
        feats, labels, 4, ProbeConfig(optimizer="adam", standardise=False, steps=0, seed=3)
    )[0]
    init_c = train_probe(
        feats, labels, 4, ProbeConfig(optimizer="adam", standardise=False, steps=0, seed=4)
    )[0]
    assert not torch.equal(init_a.head.weight, init_c.head.weight)
    assert info_a["final_loss"] != info_c["final_loss"]


def test_a_standardising_probe_uses_the_training_features_statistics():
    feats, labels = _features(8, 3)
    probe, _ = train_probe(
        feats, labels, 4, ProbeConfig(optimizer="adam", steps=1, standardise=True)
    )
    every = torch.cat(feats, dim=1).double()  # (layers, all frames, dim)
    assert torch.allclose(probe.mean, every.mean(1).float(), atol=1e-5)
    assert torch.allclose(probe.scale, every.std(1, unbiased=False).reciprocal().float(), rtol=1e-4)


# --- the converged (L-BFGS) probe --------------------------------------------------------------


def _objective(probe, feats, labels, l2):
    with torch.no_grad():
        return (
            _ctc(*probe(probe.standardise(feats)), labels) + l2 * probe.head.weight.pow(2).sum()
        ).item()


def test_the_lbfgs_probe_converges_to_an_optimum_its_seed_barely_moves():
    feats, labels = _features(11, 6)
    config = ProbeConfig(optimizer="lbfgs", standardise=True, l2=0.05, steps=400, tolerance=1e-7)
    a, info_a = train_probe(feats, labels, 4, config)
    b, _ = train_probe(
        feats,
        labels,
        4,
        ProbeConfig(**{**config.__dict__, "seed": 1}),
    )
    assert info_a["converged"] and info_a["steps"] < 400
    assert info_a["final_loss"] == pytest.approx(_objective(a, feats, labels, 0.05), rel=1e-3)
    # at the optimum, the gradient of the objective vanishes
    a.zero_grad()
    loss = _ctc(*a(a.standardise(feats)), labels) + 0.05 * a.head.weight.pow(2).sum()
    loss.backward()
    assert a.head.weight.grad.abs().max() < 1e-3
    # another seed starts elsewhere and ends at the same objective and nearly the same head
    assert _objective(b, feats, labels, 0.05) == pytest.approx(
        _objective(a, feats, labels, 0.05), rel=1e-4
    )
    assert torch.allclose(a.head.weight, b.head.weight, atol=2e-2)
    # a few Adam steps are far from it
    adam, _ = train_probe(
        feats, labels, 4, ProbeConfig(optimizer="adam", steps=5, lr=0.01, standardise=True)
    )
    assert _objective(adam, feats, labels, 0.05) > _objective(a, feats, labels, 0.05) + 0.1


def test_the_packed_forward_is_the_probes_forward():
    """The full-batch fit evaluates the probe through `forward_packed`; it must compute what
    `forward` computes (the same log-probabilities at every real frame, lengths alike)."""
    feats, _ = _features(13, 5)
    feats = [f[:, : 6 + i] for i, f in enumerate(feats)]  # utterances of different lengths
    probe = Probe(3, 5, 4)
    with torch.no_grad():
        probe.layer_logits.copy_(torch.tensor([0.3, -1.0, 0.5]))
        ready = probe.standardise(feats)
        padded, lengths = probe(ready)
        packed = Probe.pack(ready)
        assert torch.equal(packed.lengths, lengths)
        packed_out = probe.forward_packed(packed)
    for b, n in enumerate(lengths.tolist()):
        assert torch.allclose(packed_out[b, :n], padded[b, :n], atol=1e-6)


def test_the_lbfgs_penalty_shrinks_the_head_and_its_cap_on_iterations_holds():
    feats, labels = _features(12, 6)
    free, _ = train_probe(feats, labels, 4, ProbeConfig(optimizer="lbfgs", steps=60))
    held, _ = train_probe(feats, labels, 4, ProbeConfig(optimizer="lbfgs", steps=60, l2=1.0))
    assert held.head.weight.norm() < 0.5 * free.head.weight.norm()
    capped, info = train_probe(
        feats, labels, 4, ProbeConfig(optimizer="lbfgs", steps=20, tolerance=0.0)
    )
    assert info["steps"] == 20 and not info["converged"]
    with pytest.raises(ValueError, match="optimizer"):
        train_probe(feats, labels, 4, ProbeConfig(optimizer="sgd"))


# --- fine-tuning -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny pretrained model (hidden 32, 2 layers) whose config says none of what fine-tuning
    needs: a pad id of 7, no SpecAugment, layer drop, summed CTC loss without zero_infinity; and
    no dropout, so that a step without SpecAugment is deterministic."""
    config = tiny_config("wav2vec2", hidden=32, layers=2, conv_channels=16)
    config.update(
        {
            "pad_token_id": 7,
            "apply_spec_augment": False,
            "layerdrop": 0.1,
            "ctc_loss_reduction": "sum",
            "ctc_zero_infinity": False,
            "mask_time_length": 10,
            "mask_feature_length": 10,
            "hidden_dropout": 0.0,
            "attention_dropout": 0.0,
            "activation_dropout": 0.0,
            "feat_proj_dropout": 0.0,
            "final_dropout": 0.0,
        }
    )
    torch.manual_seed(0)
    model = model_class("wav2vec2")(config)
    randomize_norms(model)
    path = tmp_path_factory.mktemp("finetune_base")
    model.save_pretrained(path)
    return path


def _waves(lengths=(1200, 2000), seed=0):
    """Short waves (15 and 25 frames) far from zero mean and unit variance."""
    rng = np.random.default_rng(seed)
    return [(5 + 30 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


LABELS = [[1, 2], [3, 1, 4]]


def test_fine_tuning_configures_a_ctc_model_with_blank_0_and_scaled_spec_augment(base_dir):
    config = FinetuneConfig(
        steps=0,
        mask_time_prob=0.3,
        mask_time_length=3,
        mask_feature_prob=0.2,
        mask_feature_length=48,  # 1.5 channels at width 32 of 1024: 2
    )
    model, info = finetune(str(base_dir), _waves(), LABELS, 5, config, normalize=True)
    assert info["steps"] == 0 and math.isnan(info["final_loss"])
    assert not model.training
    c = model.config
    assert (c.vocab_size, c.pad_token_id, model.lm_head.out_features) == (5, 0, 5)
    assert (c.ctc_loss_reduction, c.ctc_zero_infinity) == ("mean", True)
    assert c.apply_spec_augment is True and c.layerdrop == 0.0
    assert (c.mask_time_prob, c.mask_time_length) == (0.3, 3)
    assert (c.mask_feature_prob, c.mask_feature_length) == (0.2, 2)
    # the feature mask is at least one channel wide (16 of 1024 scale to 0.5 at width 32)
    config.mask_feature_length = 16
    model, _ = finetune(str(base_dir), _waves(), LABELS, 5, config, normalize=True)
    assert model.config.mask_feature_length == 1


def test_the_first_fine_tuning_step_moves_the_head_by_lr_and_leaves_the_cnn(base_dir):
    config = FinetuneConfig(steps=0, lr=3e-4, batch_utterances=2, head_only_fraction=0.0)
    before, _ = finetune(str(base_dir), _waves(), LABELS, 5, config, normalize=True)
    config.steps = 1  # one step: no warm-up (10% of 1 step), the peak lr
    after, info = finetune(str(base_dir), _waves(), LABELS, 5, config, normalize=True)
    assert math.isfinite(info["final_loss"])
    moved = (after.lm_head.weight - before.lm_head.weight).abs()
    assert moved.max().item() == pytest.approx(3e-4, rel=0.01)  # AdamW's first step: lr
    assert moved.max().item() <= 3e-4 * 1.01
    old, new = before.state_dict(), after.state_dict()
    cnn = [k for k in old if ".feature_extractor." in k]
    assert cnn and all(torch.equal(old[k], new[k]) for k in cnn)
    assert not any(p.requires_grad for p in after.base_model.feature_extractor.parameters())
    layer = "wav2vec2.encoder.layers.0.attention.q_proj.weight"
    assert not torch.equal(old[layer], new[layer])


def test_fine_tuning_s_loss_is_the_mean_of_each_normalised_unpadded_utterance_s_loss(base_dir):
    """lr 0 and no SpecAugment: the reported loss is that of the unchanged model on the last
    batch, a mix of the two utterances. Each utterance counts as it is alone: its padding is
    masked, it is normalised, its labels are unpadded, its loss is per label."""
    waves = _waves()
    config = FinetuneConfig(
        steps=1, lr=0.0, batch_utterances=8, mask_time_prob=0.0, mask_feature_prob=0.0
    )
    start = time.perf_counter()
    model, info = finetune(str(base_dir), waves, LABELS, 5, config, normalize=True)
    elapsed = time.perf_counter() - start
    assert set(info) == {"steps", "seconds", "final_loss"}
    assert info["steps"] == 1 and 0 < info["seconds"] <= elapsed
    alone = []
    with torch.no_grad():
        for wave, seq in zip(waves, LABELS, strict=True):
            batch = collate([wave], normalize=True)
            logits = model(batch["input_values"]).logits[0]
            ctc = F.ctc_loss(logits.log_softmax(-1), torch.tensor(seq), [len(logits)], [len(seq)])
            alone.append(ctc.item())  # torch's "mean": per label
    mixes = [(k * alone[0] + (8 - k) * alone[1]) / 8 for k in range(9)]
    assert min(abs(info["final_loss"] - m) for m in mixes) < 1e-4 * alone[0], (info, alone)


def test_fine_tuning_is_a_function_of_its_seed_alone(base_dir):
    """SpecAugment's masks come from numpy's global RNG: whatever state the process left it in,
    the same seed gives the same model, and the caller's numpy state is left as it was."""
    config = FinetuneConfig(steps=3, batch_utterances=2, mask_time_prob=0.5, mask_time_length=2)
    heads = []
    for outside in (1, 2):
        np.random.seed(outside)
        model, info = finetune(str(base_dir), _waves(), LABELS, 5, config, normalize=True)
        assert np.random.randint(1 << 30) == np.random.RandomState(outside).randint(1 << 30)
        heads.append((model.lm_head.weight.detach().clone(), info["final_loss"]))
    assert torch.equal(heads[0][0], heads[1][0]) and heads[0][1] == heads[1][1]
    config.seed = 1
    other, _ = finetune(str(base_dir), _waves(), LABELS, 5, config, normalize=True)
    assert not torch.equal(other.lm_head.weight, heads[0][0])


def _finetuned(path, reuse: bool, waves, labels, config) -> tuple[list[torch.Tensor], float]:
    """The fine-tuned model's logits on each wave alone, and its last training loss."""
    model, info = finetune(
        str(path), waves, labels, 5, config, normalize=True, reuse_cnn_outputs=reuse
    )
    assert type(model.base_model.feature_extractor).__name__ == "Wav2Vec2FeatureEncoder"
    with torch.no_grad():
        logits = [model(collate([w], True)["input_values"]).logits[0] for w in waves]
    return logits, info["final_loss"]


THREE_LABELS = [[1, 2], [3, 1, 4], [2, 2, 3, 1]]
REUSE_CONFIG = dict(
    steps=6, lr=1e-2, batch_utterances=2, head_only_fraction=0.34, mask_time_prob=0.3
)


def test_reusing_the_frozen_cnn_s_outputs_trains_the_same_model(base_dir):
    """A layer-norm CNN run once per utterance gives the batches' values to float rounding: the
    same model after 6 steps (2 head-only) on padded batches of three lengths, SpecAugment on.
    (Compared by what the models compute: a weight whose gradient is zero in exact arithmetic,
    such as a key bias, moves by ±lr under Adam in either run, whichever sign the rounding
    gives it.)"""
    waves = _waves((1200, 2000, 1650))
    config = FinetuneConfig(**REUSE_CONFIG)
    every_step, loss = _finetuned(base_dir, False, waves, THREE_LABELS, config)
    reused, reused_loss = _finetuned(base_dir, True, waves, THREE_LABELS, config)
    untrained, _ = _finetuned(base_dir, True, waves, THREE_LABELS, FinetuneConfig(steps=0))
    for got, want, before in zip(reused, every_step, untrained, strict=True):
        assert (want - before).abs().max() > 0.1  # training changed the outputs
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4)
    assert reused_loss == pytest.approx(loss, rel=1e-5)


def test_frozen_cnn_outputs_are_the_cnn_s_valid_frames_zero_padded(base_dir):
    model = model_class("wav2vec2").from_pretrained(base_dir)
    waves = _waves((1200, 2000, 1650))
    inputs = [collate([w], True)["input_values"][0] for w in waves]
    frozen = FrozenCNNOutputs(model.feature_extractor, inputs)
    frozen.select([2, 0, 2])
    batch = collate([waves[i] for i in (2, 0, 2)], True)
    with torch.no_grad():
        got = frozen(batch["input_values"])
        want = model.feature_extractor(batch["input_values"])
    lengths = frame_lengths(model, batch["attention_mask"])
    assert got.shape == want.shape and lengths.tolist() == [19, 13, 19]
    for row, n in enumerate(lengths.tolist()):
        assert torch.allclose(got[row, :, :n], want[row, :, :n], rtol=1e-5, atol=1e-6)
        assert not got[row, :, n:].any()


def test_a_group_norm_cnn_runs_at_every_step(tmp_path):
    """Group norm normalises over the padding: its CNN is never replaced, so the setting
    changes nothing, bit for bit."""
    config = tiny_config("wav2vec2", pre_ln=False, hidden=32, layers=2, conv_channels=16)
    config.update({"hidden_dropout": 0.0, "attention_dropout": 0.0, "feat_proj_dropout": 0.0})
    torch.manual_seed(0)
    model_class("wav2vec2")(config).save_pretrained(tmp_path)
    waves = _waves((1200, 2000, 1650))
    a, loss_a = _finetuned(tmp_path, False, waves, THREE_LABELS, FinetuneConfig(**REUSE_CONFIG))
    b, loss_b = _finetuned(tmp_path, True, waves, THREE_LABELS, FinetuneConfig(**REUSE_CONFIG))
    assert loss_a == loss_b and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
