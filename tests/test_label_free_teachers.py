"""The label-free teachers' script (experiments/label_free_teachers.py): the Gate section it
puts on each teacher's card from the gate record."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import script_module

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "label_free_teachers.py"


@pytest.fixture(scope="module")
def teachers():
    with script_module(SCRIPT) as module:
        yield module


def record(passed_unheard: bool) -> dict:
    """A gate record as `gate()` returns it: heard passes; unheard as asked."""
    unheard = {"T1": 0.55 if not passed_unheard else 0.5, "logmel": 0.524, "untrained": 0.76}
    return {
        "teacher": "T1",
        "passed": passed_unheard,
        "tiers": {
            "heard": {
                "mean_dev_per": {"T1": 0.385, "logmel": 0.476, "untrained": 0.77},
                "passed": True,
            },
            "unheard": {"mean_dev_per": unheard, "passed": passed_unheard},
        },
        "per_language": {
            "el": {"T1": 0.2202, "logmel": 0.2963, "untrained": 0.7436},
            "ka": {"T1": 0.839, "logmel": 0.643, "untrained": 0.768},
        },
    }


def test_gate_section_states_rule_verdict_tiers_and_languages(teachers):
    text = teachers.gate_section("T1", record(passed_unheard=True))
    assert "dev split (never test)" in text and "**PASSED**" in text
    assert "| heard (it, pl, sv, ky, el) | 38.5% | 47.6% | 77.0% | yes |" in text
    assert "| unheard (eu, ka, sw, tt, ia) | 50.0% | 52.4% | 76.0% | yes |" in text
    assert "| el | 22.0% | 29.6% | 74.4% |" in text
    assert "| ka | 83.9% | 64.3% | 76.8% |" in text
    assert "--teachers T1" in text
    failed = teachers.gate_section("T1", record(passed_unheard=False))
    assert "**FAILED**" in failed and "| 55.0% | 52.4% | 76.0% | no |" in failed


def test_gate_section_replaces_the_previous_one(teachers, tmp_path):
    (tmp_path / "README.md").write_text("# T1\n\n**Labels seen:** none.\n")
    teachers.write_gate_section(tmp_path, "T1", record(passed_unheard=False))
    teachers.write_gate_section(tmp_path, "T1", record(passed_unheard=True))
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("# T1\n\n**Labels seen:** none.\n")
    assert card.count("## Gate (dev split)") == 1
    assert "**PASSED**" in card and "FAILED" not in card
