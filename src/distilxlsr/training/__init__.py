"""Training machinery shared by every run: one step loop, one owner of the run directory.

Distillation (`distilxlsr.distill`) and teacher pretraining (`distilxlsr.pretraining`) are *tasks*
that map a batch to a loss; everything else (optimizer, schedule, precision, NaN guard,
accumulation, stop handling, metrics, checkpoints, exact resume) lives here once
(docs/design.md, "Training loop" and "Run directory").
"""
