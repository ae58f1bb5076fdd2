"""Framework-free compression: OpenAI- or Anthropic-shaped chat messages in, the same shape out, old turns as pages.

``compress_messages`` works with any OpenAI-compatible client (or Anthropic's) and needs no LangChain::

    from optical_memory import compress_messages
    messages = compress_messages(messages, budget=6000, consumer="openai:gpt-4o")
    client.chat.completions.create(model="gpt-4o", messages=messages)

Each call renders the conversation afresh in memory; to keep pages between calls, keep an ``OpticalMemory`` (or use
the LangChain middleware), which renders each page once and stores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence, overload

from optical_memory.core.consumers import BaseConsumer, get_consumer
from optical_memory.core.types import PageView, Role, TokenReport
from optical_memory.memory import OpticalMemory
from optical_memory.messages.content_blocks import parse_content
from optical_memory.messages.dialect import PLAIN_PREAMBLE, TurnDraft
from optical_memory.messages.dialects import get_dialect
from optical_memory.policies import ForgettingPolicy
from optical_memory.prompt import LATEST_USER_MESSAGE, Query, add_drafts, build_messages, check_query, resolve_query
from optical_memory.store.sqlite import SQLiteStore

Format = Literal["openai", "anthropic"]


def _system_messages(system: object, format: str) -> list[dict[str, Any]]:
    if system is None:
        return []
    if format != "anthropic":
        raise ValueError("system= is for format='anthropic'; OpenAI-style system messages go in the message list")
    parse_content(system, where="system")
    return [{"role": "system", "content": system}]


def count_message_tokens(
    messages: Sequence[Mapping[str, Any]], *, consumer: str | BaseConsumer = "openai:gpt-4o", format: Format = "openai"
) -> int:
    """Tokens ``consumer`` charges for ``messages`` (text with its tokenizer, images by its own rule, plus a few
    framing tokens per message): the measure ``compress_messages`` keeps within the budget."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of message dicts, got {type(messages).__name__}")
    return get_dialect(format).cost(messages, get_consumer(consumer))


@dataclass(frozen=True)
class CompressionReport:
    """What ``compress_messages`` sent. ``total_tokens``: the returned messages as ``count_message_tokens`` counts
    them, plus the Anthropic ``system=`` prompt; never above ``budget``. ``tokens``: the memory's accounting of the
    pages and the recent text (pages as images, as text and forgotten, image tokens, compression). ``pages``: every
    page as it was sent, with its tier, tokens and why it has its level (``PageView.reason``)."""

    total_tokens: int
    budget: int | None
    tokens: TokenReport
    pages: tuple[PageView, ...]


@overload
def compress_messages(
    messages: Sequence[Mapping[str, Any]],
    *,
    budget: float | None = ...,
    consumer: str | BaseConsumer = ...,
    format: Format = ...,
    system: str | Sequence[Mapping[str, Any]] | None = ...,
    hot_turns: int = ...,
    policy: ForgettingPolicy | None = ...,
    preamble: str = ...,
    query: Query = ...,
    return_report: Literal[False] = ...,
) -> list[dict[str, Any]]: ...


@overload
def compress_messages(
    messages: Sequence[Mapping[str, Any]],
    *,
    budget: float | None = ...,
    consumer: str | BaseConsumer = ...,
    format: Format = ...,
    system: str | Sequence[Mapping[str, Any]] | None = ...,
    hot_turns: int = ...,
    policy: ForgettingPolicy | None = ...,
    preamble: str = ...,
    query: Query = ...,
    return_report: Literal[True],
) -> tuple[list[dict[str, Any]], CompressionReport]: ...


def compress_messages(
    messages: Sequence[Mapping[str, Any]],
    *,
    budget: float | None = None,
    consumer: str | BaseConsumer = "openai:gpt-4o",
    format: Format = "openai",
    system: str | Sequence[Mapping[str, Any]] | None = None,
    hot_turns: int = 8,
    policy: ForgettingPolicy | None = None,
    preamble: str = PLAIN_PREAMBLE,
    query: Query = None,
    return_report: bool = False,
) -> list[dict[str, Any]] | tuple[list[dict[str, Any]], CompressionReport]:
    """The same conversation within ``budget`` tokens: recent turns verbatim, older ones as page images.

    ``format="openai"``: chat-completions messages; system/developer messages are never rendered and come first.
    ``format="anthropic"``: Messages-API messages; the system prompt stays separate (pass it as ``system=`` so it
    counts toward the budget; it is not returned). Tool calls and their results stay on the same side of the
    page/text boundary; images inside turns stay images. Every content shape is either handled or refused with a
    ``TypeError``/``ValueError`` naming the message and block. ``return_report=True`` returns ``(messages,
    CompressionReport)``. ``query`` (a string, or ``LATEST_USER_MESSAGE`` for the text of the last user message)
    keeps the pages holding its best hits readable and drops them last (``OpticalMemory.context``). Raises
    ``ValueError`` when the system prompt and the ``hot_turns`` most recent turns alone exceed ``budget``.
    """
    dialect = get_dialect(format)
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of message dicts, got {type(messages).__name__}")
    if not isinstance(return_report, bool):
        raise TypeError(f"return_report must be a bool, got {type(return_report).__name__}")
    check_query(query)
    consumer = get_consumer(consumer)
    system_messages = _system_messages(system, format)
    drafts: list[TurnDraft] = []
    for i, message in enumerate(messages):
        draft = dialect.to_turn(message, where=f"messages[{i}]")
        if draft.role is Role.SYSTEM:
            system_messages.append(draft.metadata["message"])
        else:
            drafts.append(draft)
    with OpticalMemory(SQLiteStore(":memory:"), hot_turns=hot_turns, consumer=consumer, policy=policy, clock=lambda: 0.0) as memory:
        add_drafts(memory, drafts)
        memory.flush()
        result = build_messages(memory, dialect, system=system_messages, budget=budget, consumer=consumer,
                                preamble=preamble, query=resolve_query(memory, query))
    out = result.messages[1:] if format == "anthropic" and system is not None else result.messages
    if not return_report:
        return out
    return out, CompressionReport(result.total_tokens, result.budget, result.report, tuple(result.context.pages))


__all__ = ["LATEST_USER_MESSAGE", "CompressionReport", "compress_messages", "count_message_tokens"]
