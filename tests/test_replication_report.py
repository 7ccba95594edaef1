"""The replication report (experiments/reproduce_mini.py) from saved per-run results: tables,
target verdicts, layer-similarity plot, and partial results (fewer seeds, missing variants)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from distilxlsr.demo import EVAL_LANGS

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "reproduce_mini.py"


@pytest.fixture(scope="module")
def mini():
    spec = importlib.util.spec_from_file_location("reproduce_mini", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through it
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def record(variant: str, seed: int, per: float, params: int, cka=None) -> dict:
    similarity = {lang: {"targets": [2, 4, 6, 8], "cka": cka} for lang in EVAL_LANGS} if cka else {}
    return {
        "variant": variant,
        "seed": seed,
        "params": params,
        "per": dict.fromkeys(EVAL_LANGS, per),
        "per_mean": per,
        "train_per_mean": per / 2,
        "similarity": similarity,
        "seconds": 1.0,
    }


def test_report_states_targets_and_plots_similarity(mini, tmp_path):
    records = [
        record("teacher", 0, 0.020, 1000),
        record("teacher", 1, 0.020, 1000),
        record("method", 0, 0.021, 540, cka=[0.9, 0.8, 0.7, 0.6]),
        record("method", 1, 0.021, 540, cka=[0.7, 0.6, 0.5, 0.4]),
        record("no-shuffle", 0, 0.030, 540),
    ]
    out = tmp_path / "replication.md"
    mini.report(records, out)
    text = out.read_text()
    assert "| method | jump:2 | utterance | 0.00M | 2.10 ± 0.00 | +5.0% | 2 |" in text
    # no-shuffle has seed 0 only: paired with the method's seed 0.
    assert "| no-shuffle | +0.90 | +0.90 | 0 of 1 | 0 / 15 |" in text
    assert "| no-shuffle | jump:2 | none |" in text and "word-shuffle" not in text
    assert "54.0% (met)" in text and "+5.0% (met)" in text and "(beaten)" in text
    assert "layer 1 ↔ teacher 2: 0.800" in text and "layer 4 ↔ teacher 8: 0.500" in text
    assert (tmp_path / "replication.png").is_file()
    assert (tmp_path / "replication_similarity.png").is_file()

    assert "## Discussion" not in text
    (tmp_path / "replication-discussion.md").write_text("Shuffling helps because ...\n")
    worse = [record("teacher", 0, 0.020, 1000), record("method", 0, 0.030, 560)]
    mini.report(worse, out)
    text = out.read_text()
    assert text.rstrip().endswith("## Discussion\n\nShuffling helps because ...")
    assert "56.0% (missed)" in text and "+50.0% (missed)" in text and "(not beaten)" in text


def test_report_only_needs_a_teacher_result(mini, tmp_path):
    results = tmp_path / "runs"
    results.mkdir()
    (results / "method-s0.json").write_text(json.dumps(record("method", 0, 0.02, 5)))
    with pytest.raises(SystemExit, match="no teacher result"):
        mini.write_report(results)


def test_report_shows_longer_distillation_beside_the_method_on_the_same_seeds(mini, tmp_path):
    longer = record("method-3000", 0, 0.022, 540, cka=[0.99, 0.98, 0.97, 0.96])
    longer["steps"] = 3000
    records = [
        record("teacher", 0, 0.020, 1000),
        record("method", 0, 0.030, 540, cka=[0.9, 0.8, 0.7, 0.6]),
        record("teacher", 1, 0.040, 1000),
        record("method", 1, 0.050, 540, cka=[0.9, 0.8, 0.7, 0.6]),
        longer,
    ]
    out = tmp_path / "replication.md"
    mini.report(records, out)
    text = out.read_text()
    assert "## Distillation length" in text
    # That section uses seed 0 only (the seed the longer run has), the teacher's included.
    assert "| method | 300 | 0 | 3.00 | +50.0% | 0.900 / 0.800 / 0.700 / 0.600 |" in text
    assert "| method-3000 | 3000 | 0 | 2.20 | +10.0% | 0.990 / 0.980 / 0.970 / 0.960 |" in text
    # The main table and the targets still speak of the method at the demo's length.
    assert "| method-3000 | jump:2" not in text and "+33.3% (missed)" in text
    # Without a longer run there is no such section.
    mini.report(records[:4], out)
    assert "## Distillation length" not in out.read_text()


def test_unknown_variant_is_refused_before_any_work(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--variants", "method,metod", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "unknown variant(s) metod" in done.stderr and "method-3000" in done.stderr
    assert not any(tmp_path.iterdir())


def test_a_saved_result_of_another_length_is_not_mixed_in(mini, tmp_path):
    results = tmp_path / "runs"
    results.mkdir()
    short = record("method", 0, 0.02, 5)
    short["steps"] = 50
    (results / "method-s0.json").write_text(json.dumps(short))
    with pytest.raises(SystemExit, match="holds a 50-step run, not 300"):
        mini.run_one("method", 0, tmp_path / "data", tmp_path / "work", results, 300)
    assert mini.run_one("method", 0, tmp_path / "data", tmp_path / "work", results, 50) == short
