"""Code from outside the package that registers tasks, estimators or corrections (``rollwise train --import``).

A module registers its entries when it is imported (``@register_task``, ``@register_estimator``,
``@register_correction``); :func:`import_modules` imports each one named on the command line, by module name
(looked up on ``sys.path`` and in the current directory) or as a path to a ``.py`` file.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from rollwise.config import ConfigError


def import_module(name: str) -> ModuleType:
    """Import ``name`` (``my_tasks``, ``pkg.tasks`` or ``path/to/my_tasks.py``); a one-line ConfigError if it
    cannot be found."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"--import {name}: no such file")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # dataclasses and pickling look modules up here
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as ``python -m`` does; the ``rollwise`` script does not
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise ConfigError(f"--import {name}: no module named {e.name!r} on the Python path or in the current "
                              "directory (or give a path to a .py file)") from e
        raise


def import_modules(names: list[str]) -> list[ModuleType]:
    """Import every module in ``names``, in order."""
    return [import_module(name) for name in names]
