"""experiments/downstream_asr.py `one`: the replication's fine-tuning of one (model, language,
seed), scored on test greedily and with the LM, per utterance with its voice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.asr.test_finetune import make_two_word_corpus
from tests.helpers import tiny_model

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "downstream_asr.py"


def test_one_fine_tunes_scores_test_and_writes_its_record_once(tmp_path):
    root = tmp_path / "corpus"
    for split, n, seed in (("train", 12, 0), ("dev", 4, 1), ("test", 5, 2)):
        make_two_word_corpus(root, split, n, seed)
    base = tmp_path / "base"
    tiny_model("wav2vec2", layers=2).save_pretrained(base)
    record = tmp_path / "records" / "S-s1-tw.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "one",
        f"--model={base}",
        "--tag=S",
        "--lang=tw",
        "--seed=1",
        f"--data={root}",
        f"--runs={tmp_path / 'runs'}",
        f"--record={record}",
        "--frozen-steps=2",
        "--full-steps=2",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(record.read_text())
    assert (out["model"], out["lang"], out["seed"], out["recipe"]) == ("S", "tw", 1, "C")
    test = out["test"]
    assert len(test["ids"]) == len(test["voices"]) == 5
    assert test["voices"][0] == "tw-test-spk0"
    for key in ("cer_greedy_edits", "cer_lm_edits", "wer_lm_edits", "cer_length"):
        assert len(test[key]) == 5
    assert all(n > 0 for n in test["cer_length"])
    assert out["dev"]["split"] == "dev" and "lm_weight" in out["dev"]["lm_settings"]
    config = (tmp_path / "runs" / "S-s1-tw" / "config.yaml").read_text()
    assert "seed: 1" in config
    # A record that exists is not made again.
    stamp = record.stat().st_mtime_ns
    assert subprocess.run(command, capture_output=True, timeout=600).returncode == 0
    assert record.stat().st_mtime_ns == stamp
