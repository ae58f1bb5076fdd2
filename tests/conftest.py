"""Shared test helpers: pages built without a renderer, for tests of pricing and policies; Triton's interpreter on CPU."""

from __future__ import annotations

import os

import pytest
import torch

# Without CUDA, the library's Triton kernels run in Triton's CPU interpreter, which reads this before any kernel is
# defined: the tests then exercise the kernels themselves, not only the fallbacks that CPU users get.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from optical_memory.core.types import Page, Role, TurnSegment


def make_page(index: int, *, text: str = "hello world " * 100, turns: tuple[int, ...] | None = None,
              timestamp: float = 0.0, size: tuple[int, int] = (1280, 1280)) -> Page:
    """A page holding ``turns`` (default: turn ``index``) with ``text``, sized like a master page."""
    turns = (index,) if turns is None else turns
    segments = tuple(TurnSegment(t, Role.USER, 0, 1) for t in turns)
    return Page(index=index, text=text, segments=segments, lines=(), width=size[0], height=size[1],
                render_key=f"key-{index}-{hash(text)}", timestamp=timestamp)


@pytest.fixture
def page_factory():
    return make_page


# Store tests: a real PostgreSQL server per session, and the fixture that runs a test on each backend.
from postgres import postgres_schema, postgres_server  # noqa: E402,F401
from store_backends import store_backend  # noqa: E402,F401
