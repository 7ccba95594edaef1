"""docs/api.md's examples run as they are, in order, in an empty directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


@pytest.mark.slow
def test_api_examples_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(blocks, start=1):
        code = compile(block, f"docs/api.md block {number}", "exec")
        exec(code, namespace)  # noqa: S102 (the documentation's own examples)
    printed = capsys.readouterr().out
    assert "must be positive" in printed
    assert (tmp_path / "student" / "README.md").is_file()
    assert (tmp_path / "runs" / "teacher" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "asr-sw" / "model" / "lm.arpa").is_file()
