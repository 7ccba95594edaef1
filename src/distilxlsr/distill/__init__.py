"""Distillation. `distilxlsr.distill(config)` is `distilxlsr.distill.train.distill`."""

from distilxlsr._callable import make_callable

make_callable(__name__, "distilxlsr.distill.train:distill")
