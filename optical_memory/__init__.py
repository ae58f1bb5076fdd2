"""optical-memory: keep long LLM conversations cheap by rendering old turns onto pages that blur with age.

Public names are imported lazily, so ``import optical_memory`` stays cheap (no torch) until a model is used.
The library logs seal, render and store events to the standard ``logging`` logger ``optical_memory``, which prints
nothing unless the application configures it (``optical-memory --log-level info`` does on the command line).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from optical_memory.core.geometry import Fit, Mode, Tier
from optical_memory.core.types import Page, PageView, Role, TokenReport, Turn

_LAZY = {
    "OpticalMemory": "optical_memory.memory",
    "Context": "optical_memory.context",
    "get_consumer": "optical_memory.core.consumers",
    "compress_messages": "optical_memory.compress",
    "LATEST_USER_MESSAGE": "optical_memory.prompt",
    "open_store": "optical_memory.store.backends",
}

# A library never decides where its log goes: without the application's own handlers, nothing is printed.
logging.getLogger("optical_memory").addHandler(logging.NullHandler())

__all__ = ["Fit", "Mode", "Page", "PageView", "Role", "Tier", "TokenReport", "Turn", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'optical_memory' has no attribute {name!r}")
