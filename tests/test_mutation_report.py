"""The mutation report's counts, and how re-tested verdicts replace a run's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import script_module

SCRIPT = Path(__file__).parents[1] / "tools" / "mutation_report.py"


@pytest.fixture
def report():
    with script_module(SCRIPT) as module:
        yield module


def _row(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("| src/pkg/mod.py"))


def test_counts_and_recheck(report, tmp_path, capsys):
    meta = tmp_path / "src" / "pkg" / "mod.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {"a": 1, "b": 0, "c": 33, "d": 24, "e": None}
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    # killed, total, % killed, timeout, survived, no tests, not checked
    assert report.main(["--mutants", str(tmp_path), "--min", "50"]) == 1
    assert _row(capsys.readouterr().out) == "| src/pkg/mod.py | 1 | 5 | 20.0 | 1 | 1 | 1 | 1 |"
    verdicts = {"b": "killed", "c": "survived", "d": "killed"}
    (tmp_path / "recheck.json").write_text(json.dumps(verdicts))
    assert report.main(["--mutants", str(tmp_path), "--min", "50"]) == 0
    out = capsys.readouterr().out
    assert _row(out) == "| src/pkg/mod.py | 3 | 5 | 60.0 | 0 | 1 | 0 | 1 |"
    assert "3 verdicts from `tools/mutation_recheck.py`" in out
    report.main(["--mutants", str(tmp_path), "--run-only"])
    assert _row(capsys.readouterr().out) == "| src/pkg/mod.py | 1 | 5 | 20.0 | 1 | 1 | 1 | 1 |"


def test_no_run_is_one_line(report, tmp_path, capsys):
    assert report.main(["--mutants", str(tmp_path)]) == 1
    assert capsys.readouterr().out.startswith("no mutmut results under")
