"""The manifest scan before training (exact counts, hours, languages and skips), its summary line,
the error that names the manifests, and how the loader is built."""

from __future__ import annotations

import pytest
import torch
from lhotse import Recording, SupervisionSegment
from lhotse.audio import AudioSource
from lhotse.cut import MonoCut, PaddingCut
from lhotse.supervision import AlignmentItem

from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import (
    AudioBatches,
    BatchPlan,
    CorpusStats,
    make_loader,
    scan_cuts,
)
from distilxlsr.data.toy import make_toy_corpus
from distilxlsr.errors import UserError

PHONES = {"phone": [AlignmentItem("a", 0.0, 0.1)]}
WORDS = {"word": [AlignmentItem("ab", 0.0, 0.2)]}


def _sup(cut_id, language, duration, alignment=None, n=0):
    return SupervisionSegment(
        f"{cut_id}-{n}", cut_id, 0.0, duration, language=language, alignment=alignment
    )


def _cut(cut_id, duration, sups=(), source=None, source_type="file"):
    recording = None
    if source is not None:
        recording = Recording(
            cut_id,
            [AudioSource(source_type, [0], str(source))],
            16000,
            int(duration * 16000),
            duration,
        )
    return MonoCut(cut_id, 0.0, duration, 0, supervisions=list(sups), recording=recording)


@pytest.fixture
def audio(tmp_path):
    path = tmp_path / "present.flac"
    path.write_bytes(b"")
    return path


def test_scan_counts_every_usable_cut_once(audio):
    cuts = [
        _cut("a", 2.0, [_sup("a", "sw", 2.0, PHONES)], audio),
        _cut("short", 0.3, [_sup("short", "sw", 0.3, PHONES)], audio),
        PaddingCut("pad", 0.2, 16000, 0.0),  # short too; has no recording at all
        # Words but no phones: usable, unaligned; the first such cut is named.
        _cut("c", 1.5, [_sup("c", "it", 1.5, WORDS)], audio),
        _cut("d", 1.0),  # no supervision, no recording: language "?", unaligned
        # Exactly the minimum is long enough; a phone alignment on any supervision counts.
        _cut("e", 0.5, [_sup("e", None, 0.2, WORDS), _sup("e", "sw", 0.3, PHONES, 1)], audio),
        _cut("f", 1.0, [_sup("f", None, 1.0, None)], "https://x/y.flac", "url"),
        PaddingCut("silence", 1.0, 16000, 0.0),  # no recording, no supervision
    ]
    stats = scan_cuts(cuts, 0.5)
    assert (stats.cuts, stats.too_short, stats.unaligned, stats.first_unaligned) == (6, 2, 4, "c")
    assert stats.hours == pytest.approx(7.0 / 3600, rel=1e-12)
    # A cut counts under its first supervision's language.
    assert stats.languages == pytest.approx({"sw": 2.0 / 3600, "it": 1.5 / 3600, "?": 3.5 / 3600})
    assert set(stats.languages) == {"sw", "it", "?"}


def test_each_language_s_tier_is_that_of_its_first_cut_naming_one(audio):
    """What a student trained on these cuts heard, with tiers (its provenance record)."""
    tiered = _cut("b", 1.0, [_sup("b", "sw", 1.0, PHONES)], audio)
    tiered.custom = {"tier": "unheard"}
    other = _cut("c", 1.0, [_sup("c", "sw", 1.0, PHONES)], audio)
    other.custom = {"tier": "label"}
    cuts = [_cut("a", 1.0, [_sup("a", "sw", 1.0, PHONES)], audio), tiered, other]
    cuts.append(_cut("d", 1.0, [_sup("d", "it", 1.0, PHONES)], audio))
    assert scan_cuts(cuts, 0.5).tiers == {"sw": "unheard", "it": None}


def test_short_cuts_are_not_checked_for_audio(tmp_path):
    gone = tmp_path / "gone.flac"
    stats = scan_cuts([_cut("s", 0.2, source=gone)], 0.5)
    assert (stats.cuts, stats.too_short, stats.hours, stats.languages) == (0, 1, 0.0, {})


def test_missing_audio_is_counted_and_the_first_named(tmp_path, audio):
    cuts = [
        _cut("a", 1.0, source=audio),
        _cut("b", 1.0, source=tmp_path / "b.flac"),
        _cut("c", 1.0, source=tmp_path / "c.flac"),
    ]
    with pytest.raises(UserError) as err:
        scan_cuts(cuts, 0.5)
    assert str(err.value) == (
        f"2 audio file(s) named by the manifests are gone (first: {tmp_path / 'b.flac'}); "
        "restore them or run `distilxlsr prepare` again."
    )


def _breaking(cuts, error):
    yield from cuts
    raise error


@pytest.mark.parametrize(
    "error, shown",
    [
        (ValueError("bad json\nat line 3"), "ValueError: bad json"),
        (OSError("truncated"), "OSError: truncated"),
        (EOFError(), "EOFError: no detail"),
        (KeyError("duration"), "KeyError: 'duration'"),
        (TypeError("x"), "TypeError: x"),
    ],
)
def test_a_manifest_that_breaks_is_one_error(audio, error, shown):
    cuts = [_cut("a", 1.0, source=audio), _cut("s", 0.1), _cut("b", 1.0, source=audio)]
    with pytest.raises(UserError) as err:
        scan_cuts(_breaking(cuts, error), 0.5)
    assert str(err.value) == (
        f"a cut manifest could not be read after 3 cuts ({shown}); write it again with "
        "`distilxlsr prepare` / `distilxlsr synth`."
    )
    assert err.value.__cause__ is None and err.value.__suppress_context__


def _manifest(directory, lang):
    (directory / lang).mkdir(parents=True)
    path = directory / lang / "cuts_train.jsonl.gz"
    path.write_bytes(b"")
    return path


def _error_naming(source):
    with pytest.raises(UserError) as err:
        scan_cuts(_breaking([], ValueError("x")), 0.5, source)
    return str(err.value).split(" could not be read")[0]


def test_the_error_names_the_manifests(tmp_path):
    one = _manifest(tmp_path / "one", "en")
    assert _error_naming(one) == f"cut manifest '{one}'"
    assert _error_naming(tmp_path / "one") == f"cut manifest '{one}'"
    three = [_manifest(tmp_path / "three", lang) for lang in ("de", "en", "fr")]
    assert _error_naming(tmp_path / "three") == (
        "one of the cut manifests " + ", ".join(f"'{p}'" for p in three)
    )
    four = [_manifest(tmp_path / "four", lang) for lang in ("de", "en", "fr", "sw")]
    assert _error_naming(tmp_path / "four") == (
        "one of the cut manifests " + ", ".join(f"'{p}'" for p in four[:3]) + " ..."
    )
    assert _error_naming(tmp_path / "nowhere") == f"the cut manifests of '{tmp_path / 'nowhere'}'"
    assert _error_naming("") == "a cut manifest"


@pytest.mark.parametrize(
    "languages, too_short, expected",
    [
        ({"?": 0.5}, 0, "3 cuts, 0.50 h"),
        ({"en": 0.5}, 0, "3 cuts, 0.50 h (en 0.50 h)"),
        (
            {"?": 0.25, "en": 0.25},
            1,
            "3 cuts, 0.50 h (? 0.25 h, en 0.25 h); 1 shorter than 0.5 s skipped",
        ),
        ({"sw": 0.25, "?": 0.125, "en": 0.125}, 2, None),
    ],
)
def test_summary_line(languages, too_short, expected):
    text = CorpusStats(3, 0.5, too_short, languages).summary(0.5)
    if expected is None:  # several languages, sorted by name, and the skipped short cuts
        expected = "3 cuts, 0.50 h (? 0.12 h, en 0.12 h, sw 0.25 h); 2 shorter than 0.5 s skipped"
    assert text == expected


def test_make_loader_keeps_the_global_rng_and_yields_the_plans_batches(tmp_path):
    make_toy_corpus(tmp_path, "en", "train", num_utterances=6, seed=0)
    cuts = load_cuts(tmp_path / "en")
    args = dict(batch_seconds=4.0, max_seconds=2.0, min_seconds=0.5, num_buckets=2, seed=0)
    before = torch.random.get_rng_state()
    loader = make_loader(BatchPlan(cuts, **args), AudioBatches(), 0, False, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    # One batch per BatchRef, not batches of batches; the loader's own generator is seeded.
    assert loader.batch_size is None and loader.generator.initial_seed() == 5
    assert (loader.num_workers, loader.pin_memory, loader.persistent_workers) == (0, False, False)
    direct = [
        AudioBatches()[ref] for ref, _ in zip(BatchPlan(cuts, **args), range(3), strict=False)
    ]
    got = [b for b, _ in zip(loader, range(3), strict=False)]
    for a, b in zip(direct, got, strict=True):
        assert torch.equal(a["input_values"], b["input_values"])
    # Workers prefetch four batches each; with none there is nothing to prefetch.
    workers = make_loader(BatchPlan(cuts, **args), AudioBatches(), 2, True)
    assert (workers.num_workers, workers.pin_memory, workers.prefetch_factor) == (2, True, 4)
    assert loader.prefetch_factor is None and workers.generator.initial_seed() == 0
    one = make_loader(BatchPlan(cuts, **args), AudioBatches(), 1, False)
    assert one.prefetch_factor == 4
