"""distilxlsr: distil multilingual wav2vec 2.0-family speech models into half-depth students.

The public API, imported on first use (so that `import distilxlsr` stays light):

- `distilxlsr.load_config(name_or_yaml, ["key=value", ...])`: a distillation config;
- `distilxlsr.distill(config)`: run or resume a distillation, returns the run directory;
- `distilxlsr.export(run_or_model, out, results_file=None)`: a Hugging Face model directory;
- `distilxlsr.evaluate(models, data, out, ...)`: cross-lingual phone recognition;
- `distilxlsr.finetune(config)`: fine-tune a model into a speech recogniser (asr/);
- `distilxlsr.shipped_teacher()`: the small teacher shipped in the package (`teacher=shipped`).

`distill`, `export` and `evaluate` are also the modules of those names (docs/api.md).

Importing the package changes nothing global. Programs that train or benchmark in-process may
call `distilxlsr.tune_malloc()` once at start (the command line and the benchmarks do): it keeps
freed tensor memory in the process instead of returning it to the OS every step (see _malloc).
"""

import importlib

from distilxlsr._malloc import tune_malloc

__all__ = [
    "distill",
    "evaluate",
    "export",
    "finetune",
    "load_config",
    "shipped_teacher",
    "tune_malloc",
]
__version__ = "0.1.0"

_LAZY = {
    "distill": ("distilxlsr.distill", None),
    "evaluate": ("distilxlsr.evaluate", None),
    "export": ("distilxlsr.export", None),
    "finetune": ("distilxlsr.asr.finetune", "finetune"),
    "load_config": ("distilxlsr.distill.recipe", "load_distill_config"),
    "shipped_teacher": ("distilxlsr.shipped", "shipped_teacher"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'distilxlsr' has no attribute '{name}'")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
