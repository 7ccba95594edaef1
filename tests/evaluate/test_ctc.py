"""The probe's mechanics: the CTC loss and the probe's training loop (warm-up, seed, steps,
callback, info). Fine-tuning is the `finetune` job's: tests/asr/test_finetune.py."""

import math
import time

import pytest
import torch
import torch.nn.functional as F

from distilxlsr.evaluate.ctc import Probe, ProbeConfig, _ctc, train_probe

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
