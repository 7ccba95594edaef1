"""Modules that are also the function they are named after, for the package's top-level API:
`distilxlsr.distill(config)`, `distilxlsr.export(run, out)`, `distilxlsr.evaluate(models, ...)`.

`distilxlsr.distill`, `.export` and `.evaluate` are modules (so `distilxlsr.distill.train` and
every existing import keep working); calling one calls its function, imported on first call.
"""

from __future__ import annotations

import importlib
import sys
import types


def make_callable(module_name: str, target: str) -> None:
    """Make module `module_name` callable as `target` ("package.module:function")."""
    target_module, function = target.split(":")

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(importlib.import_module(target_module), function)(*args, **kwargs)

    CallableModule.__call__.__doc__ = f"Calls {target_module}.{function}; see its docstring."
    sys.modules[module_name].__class__ = CallableModule
