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


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "64"),
        ({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "8"}, "8"),
        ({"DISTILXLSR_MALLOC_TUNING": "0"}, "None"),
    ],
)
def test_tuning_bounds_onednns_primitive_cache_unless_told_otherwise(env, expected):
    import os

    probe = (
        "import os, distilxlsr\n"
        "distilxlsr.tune_malloc()\n"
        "print(os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY'))\n"
    )
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DISTILXLSR_MALLOC_TUNING")
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=base | env
    )
    assert out.stdout.strip() == expected
