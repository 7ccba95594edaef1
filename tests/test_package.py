"""Importing the package changes nothing global."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_import_leaves_the_allocator_alone_and_the_cli_tunes_it():
    probe = (
        "import distilxlsr._malloc as m\n"
        "import distilxlsr, distilxlsr.training.loop, distilxlsr.distill.train\n"
        "print(m._applied)\n"
        "print(distilxlsr.tune_malloc())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    first, second = out.stdout.split()
    assert first == "None"  # nothing applied by importing
    assert second in ("True", "False")  # the explicit call runs (False off glibc)
