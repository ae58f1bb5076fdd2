"""The prompt a chat model receives from a memory: system messages, one message holding the pages, and the recent
turns verbatim, in one dialect and fitted to a token budget (``Context.messages`` does the fitting), plus the
helpers that append a dialect's messages to a memory and say which query cues the pages (``resolve_query``).
"""

from __future__ import annotations

from typing import Any, Sequence, Union

from optical_memory.context import OpticalMessages
from optical_memory.core.consumers import BaseConsumer
from optical_memory.core.types import Role, Turn
from optical_memory.memory import OpticalMemory
from optical_memory.messages.dialect import PLAIN_PREAMBLE, Dialect, TurnDraft
from optical_memory.policies import ForgettingPolicy

__all__ = [
    "LATEST_USER_MESSAGE",
    "OpticalMessages",
    "Query",
    "add_drafts",
    "add_messages",
    "build_messages",
    "resolve_query",
]


class LatestUserMessage:
    """The type of ``LATEST_USER_MESSAGE``: "the query is the text of the latest user turn", as opposed to ``None``
    (no query) and a string (that query)."""

    def __repr__(self) -> str:
        return "LATEST_USER_MESSAGE"


LATEST_USER_MESSAGE = LatestUserMessage()
Query = Union[str, None, LatestUserMessage]


def resolve_query(memory: OpticalMemory, query: Query, *, field_name: str = "query") -> str | None:
    """The query ``memory.context`` gets for ``query``: the string itself, ``None``, or for ``LATEST_USER_MESSAGE``
    the content of the memory's latest user turn (``None`` while it has none)."""
    if isinstance(query, LatestUserMessage):
        return next((turn.content for turn in reversed(memory.turns) if turn.role is Role.USER), None)
    check_query(query, field_name=field_name)
    return query  # type: ignore[return-value]


def check_query(query: object, *, field_name: str = "query") -> Query:
    """``query`` if it is a string, ``None`` or ``LATEST_USER_MESSAGE``, else ``TypeError`` naming ``field_name``."""
    if query is not None and not isinstance(query, (str, LatestUserMessage)):
        raise TypeError(f"{field_name} must be a string, None or LATEST_USER_MESSAGE, got {type(query).__name__}")
    return query  # type: ignore[return-value]


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
    query: str | None = None,
) -> OpticalMessages:
    """``system`` + one message holding the pages + the recent turns verbatim, within ``budget`` tokens with
    ``reserve`` tokens left for what is sent beside the messages (see ``Context.messages``); ``query`` cues the
    pages of its best hits (``OpticalMemory.context``).

    Raises ``ValueError`` when ``system``, ``reserve`` and the recent turns alone exceed the budget.
    """
    context = memory.context(None, consumer, policy=policy, now=now, query=query)
    return context.messages(dialect, system=system, reserve=reserve, preamble=preamble, budget=budget)
