"""The probe's standardisation: statistics from the training features, applied to any split."""

import torch

from distilxlsr.evaluate.ctc import Probe, ProbeConfig, probe_decode, train_probe
from distilxlsr.evaluate.per import phone_error_rate


def _toy(seed: int, n: int = 12, layers: int = 3, dim: int = 8):
    """Features whose layer 1, dimension 2 announces the label (1 or 2) in each frame block."""
    g = torch.Generator().manual_seed(seed)
    feats, labels = [], []
    for _ in range(n):
        seq = torch.randint(1, 3, (6,), generator=g).tolist()
        frames = torch.randn(layers, 6 * 5, dim, generator=g) * 0.1
        for k, label in enumerate(seq):
            frames[1, 5 * k + 1 : 5 * k + 4, 2] += 1.0 if label == 1 else -1.0
        feats.append(frames.half())
        labels.append(seq)
    return feats, labels


def test_statistics_come_from_the_training_features():
    feats, _ = _toy(0)
    probe = Probe(3, 8, 3)
    probe.fit_standardisation(feats)
    ready = torch.cat(probe.standardise(feats), dim=1)  # (layers, all frames, dim)
    assert torch.allclose(ready.mean(1), torch.zeros(3, 8), atol=1e-4)
    assert torch.allclose(ready.std(1, unbiased=False), torch.ones(3, 8), atol=1e-3)
    # other features are standardised with the same statistics, not their own
    other = [f * 3 + 1 for f in feats]
    shifted = torch.cat(probe.standardise(other), dim=1)
    assert shifted.mean().abs() > 1


def test_the_probe_does_not_care_about_each_dimension_s_scale_and_offset():
    feats, labels = _toy(1)
    scale = torch.logspace(-1, 2, 8)  # dimensions a thousand times apart, as log-mel's and
    shift = torch.linspace(-5, 5, 8)  # a transformer's are
    warped = [f.float() * scale + shift for f in feats]
    config = ProbeConfig(optimizer="adam", steps=300, lr=3e-2, batch_utterances=4, standardise=True)
    plain, _ = train_probe(feats, labels, 3, config)
    scaled, _ = train_probe(warped, labels, 3, config)
    # both see the same standardised inputs
    for a, b in zip(plain.standardise(feats), scaled.standardise(warped), strict=True):
        assert torch.allclose(a, b, atol=1e-2)
    for probe, inputs in ((plain, feats), (scaled, warped)):
        hyp = [[str(t) for t in h] for h in probe_decode(probe, inputs)]
        assert (
            phone_error_rate([[str(t) for t in seq] for seq in labels], hyp) < 0.1
        )  # untrained: about 1


def test_the_first_n_steps_of_a_longer_probe_are_an_n_step_probe():
    """The selection scores several lengths in one run; that must equal separate runs."""
    feats, labels = _toy(2)
    seen = {}

    def keep(step, probe):
        if step in (20, 70):
            seen[step] = {k: v.clone() for k, v in probe.state_dict().items()}

    train_probe(
        feats,
        labels,
        3,
        ProbeConfig(optimizer="adam", steps=90, lr=3e-2, warmup_steps=30, standardise=False),
        keep,
    )
    for steps in (20, 70):
        alone, _ = train_probe(
            feats,
            labels,
            3,
            ProbeConfig(optimizer="adam", steps=steps, lr=3e-2, warmup_steps=30, standardise=False),
        )
        for key, value in alone.state_dict().items():
            assert torch.equal(value, seen[steps][key]), (steps, key)


def test_without_standardisation_the_features_are_used_as_they_are():
    feats, labels = _toy(3)
    probe, _ = train_probe(feats, labels, 3, ProbeConfig(steps=1, standardise=False))
    assert torch.equal(probe.mean, torch.zeros(3, 8)) and torch.equal(probe.scale, torch.ones(3, 8))
    assert torch.equal(probe.standardise(feats)[0], feats[0].float())
    probe, _ = train_probe(feats, labels, 3, ProbeConfig(steps=1, standardise=True))
    assert not torch.equal(probe.scale, torch.ones(3, 8))


def test_a_padded_batch_gives_each_utterance_what_it_gets_alone_and_the_same_gradients():
    """Padding is zeros after the mixing: no utterance's frames or gradient leak into another's."""
    from distilxlsr.evaluate.ctc import _ctc  # noqa: PLC0415

    g = torch.Generator().manual_seed(3)
    feats = [torch.randn(3, t, 8, generator=g) for t in (7, 12, 4)]
    labels = [[1, 2], [2, 1, 1], [1]]
    probe = Probe(3, 8, 3)
    with torch.no_grad():
        probe.layer_logits.copy_(torch.tensor([0.3, -0.2, 0.5]))
    log_probs, lengths = probe(feats)
    assert log_probs.shape == (3, 12, 3) and lengths.tolist() == [7, 12, 4]
    for i, f in enumerate(feats):
        alone, _ = probe([f])
        assert torch.allclose(log_probs[i, : f.shape[1]], alone[0], atol=1e-6)
        padding = torch.log_softmax(probe.head.bias, -1).detach()  # the head of a zero frame
        assert torch.allclose(log_probs[i, f.shape[1] :], padding.expand(12 - f.shape[1], 3))
    _ctc(log_probs, lengths, labels).backward()
    batch_grads = [p.grad.clone() for p in probe.parameters()]
    probe.zero_grad()
    for f, seq in zip(feats, labels, strict=True):  # the batch loss is the mean of these
        (_ctc(*probe([f]), [seq]) / len(feats)).backward()
    for batch_grad, p in zip(batch_grads, probe.parameters(), strict=True):
        assert torch.allclose(batch_grad, p.grad, atol=1e-6)
