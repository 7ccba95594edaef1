"""Evaluation. `distilxlsr.evaluate(models, data, out, ...)` is
`distilxlsr.evaluate.harness.evaluate`."""

from distilxlsr._callable import make_callable

make_callable(__name__, "distilxlsr.evaluate.harness:evaluate")
