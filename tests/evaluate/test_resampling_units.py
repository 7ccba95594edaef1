"""`evaluate` keeps each test utterance's speaker and resamples hierarchically: seeds once for
every language, the speakers' voices within each language, utterances within each voice; it
records those units in results.json and names them in results.md."""

import json

import pytest

from distilxlsr.data.toy import make_toy_corpus
from distilxlsr.evaluate.ctc import ProbeConfig
from distilxlsr.evaluate.harness import evaluate


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("voices")
    for lang, seed in [("aa", 1), ("bb", 2)]:
        make_toy_corpus(root, lang, "train", num_utterances=8, seed=seed)
        make_toy_corpus(root, lang, "test", num_utterances=6, num_speakers=3, seed=seed + 100)
    return root


def test_results_record_the_speakers_and_the_units_resampled(tmp_path, corpus):
    results = evaluate(
        ["logmel", "again=logmel"],
        str(corpus),
        str(tmp_path / "out"),
        seeds=[0, 1],
        probe=ProbeConfig(steps=3),
        floor_probe=ProbeConfig(steps=3),
        bootstrap=100,
    )
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    utterances = saved["models"][0]["details"]["aa"]["utterances"]
    assert [u["speaker"] for u in utterances] == [f"aa-test-spk{i % 3}" for i in range(6)]
    assert saved["bootstrap"]["resampling"] == {
        "scheme": "hierarchical",
        "units": ["seed", "voice", "utterance"],
        "seeds": 2,
        "seeds_drawn": "once per resample for every language",
        "voices": {"aa": 3, "bb": 3},
    }
    assert results["bootstrap"] == saved["bootstrap"]
    report = (tmp_path / "out" / "results.md").read_text()
    assert (
        "(100 paired resamples of seeds (drawn once for every language), test voices within "
        "each language and utterances within each voice)" in report
    )
