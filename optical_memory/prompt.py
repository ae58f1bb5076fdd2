"""The prompt a chat model receives from a memory: system messages, one message holding the pages, and the recent
turns verbatim, in one dialect and fitted to a token budget (``Context.messages`` does the fitting), plus the
helpers that append a dialect's messages to a memory.
"""

from __future__ import annotations

from typing import Any, Sequence

from optical_memory.context import OpticalMessages
from optical_memory.core.consumers import BaseConsumer
from optical_memory.core.types import Turn
from optical_memory.memory import OpticalMemory
from optical_memory.messages.dialect import PLAIN_PREAMBLE, Dialect, TurnDraft
from optical_memory.policies import ForgettingPolicy

__all__ = ["OpticalMessages", "add_drafts", "add_messages", "build_messages"]


def add_drafts(memory: OpticalMemory, drafts: Sequence[TurnDraft]) -> list[Turn]:
    """Append validated drafts as turns, in order."""
    return [memory.add(d.role, d.content, name=d.name, metadata=d.metadata) for d in drafts]


def add_messages(memory: OpticalMemory, dialect: Dialect, messages: Sequence[Any], *, where: str = "messages") -> list[Turn]:
    """Validate every message first, then append them all as turns (nothing is written if one is bad)."""
    return add_drafts(memory, [dialect.to_turn(message, where=f"{where}[{i}]") for i, message in enumerate(messages)])


def build_messages(
    memory: OpticalMemory,
    dialect: Dialect,
    *,
    system: Sequence[Any] = (),
    budget: float | None = None,
    reserve: int = 0,
    consumer: str | BaseConsumer | None = None,
    policy: ForgettingPolicy | None = None,
    preamble: str = PLAIN_PREAMBLE,
    now: float | None = None,
) -> OpticalMessages:
    """``system`` + one message holding the pages + the recent turns verbatim, within ``budget`` tokens with
    ``reserve`` tokens left for what is sent beside the messages (see ``Context.messages``).

    Raises ``ValueError`` when ``system``, ``reserve`` and the recent turns alone exceed the budget.
    """
    context = memory.context(None, consumer, policy=policy, now=now)
    return context.messages(dialect, system=system, reserve=reserve, preamble=preamble, budget=budget)
