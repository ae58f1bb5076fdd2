"""Optional dependencies: the core install is the middleware alone; models, OCR readers, PostgreSQL, LangChain and
the benchmarks come with extras. A missing one is an ``ImportError`` that says which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise ``ImportError`` naming ``pip install "optical-memory[extra]"``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{module} is not installed; it comes with the {extra!r} extra: pip install \"optical-memory[{extra}]\""
        ) from error
