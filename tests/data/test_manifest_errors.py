"""Manifests that cannot be read, and audio that is gone, are one line before training starts."""

from __future__ import annotations

import gzip
import json

import pytest

from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import scan_cuts
from distilxlsr.data.toy import make_toy_corpus
from distilxlsr.errors import UserError


@pytest.fixture
def corpus(tmp_path):
    make_toy_corpus(tmp_path, "en", "train", num_utterances=4, seed=0)
    return tmp_path / "en"


def _rewrite(manifest, change):
    with gzip.open(manifest, "rt") as f:
        lines = f.read().splitlines()
    with gzip.open(manifest, "wt") as f:
        f.write("\n".join(change(lines)) + "\n")


def test_a_manifest_that_is_not_gzip(corpus):
    (corpus / "cuts_train.jsonl.gz").write_text("not gzip")
    with pytest.raises(UserError, match="not a readable lhotse cut manifest .*BadGzipFile"):
        load_cuts(corpus, "train")


def test_a_cut_without_sampling_rate(corpus):
    def drop_rate(lines):
        first = json.loads(lines[0])
        del first["recording"]["sampling_rate"]
        return [json.dumps(first), *lines[1:]]

    _rewrite(corpus / "cuts_train.jsonl.gz", drop_rate)
    with pytest.raises(UserError, match="sampling_rate"):
        load_cuts(corpus, "train")


def test_a_broken_line_further_down(corpus):
    _rewrite(corpus / "cuts_train.jsonl.gz", lambda lines: [*lines[:2], "{broken", *lines[2:]])
    cuts = load_cuts(corpus, "train")  # the first line is fine
    with pytest.raises(UserError, match="could not be read after 2 cuts"):
        scan_cuts(cuts, 0.5)


def test_audio_deleted_after_prepare(corpus):
    files = sorted((corpus / "audio").rglob("*.flac"))
    files[1].unlink()
    with pytest.raises(UserError, match=f"1 audio file.*gone .*{files[1].name}"):
        scan_cuts(load_cuts(corpus, "train"), 0.5)
