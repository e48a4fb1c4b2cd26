"""MkDocs hook: tolerate a broken mkdocstrings template entry point in the environment.

pixeltable-yolox (the ``yolox`` package yolox-sdk depends on) declares a ``mkdocstrings.python.templates``
entry point, ``tool.doc_plugins.mkdocstrings:get_templates_path``, whose module it does not ship; mkdocstrings
loads every such entry point when its Python handler starts, so the build would stop with
``No module named 'tool'``. This hook is imported while MkDocs reads ``mkdocs.yml``, before any plugin runs,
and stands in for that module with one returning a folder that holds no templates.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

MISSING_MODULE = "tool.doc_plugins.mkdocstrings"


def _templates_path() -> Path:
    return Path(__file__).parent / "no-templates"


def _stand_in_for_missing_module() -> None:
    try:
        if importlib.util.find_spec(MISSING_MODULE) is not None:
            return
    except ModuleNotFoundError:
        pass
    parts = MISSING_MODULE.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        module = sys.modules.setdefault(name, types.ModuleType(name))
        module.__path__ = []  # a package, so the next part can be imported from it
    sys.modules[MISSING_MODULE].get_templates_path = _templates_path


_stand_in_for_missing_module()
