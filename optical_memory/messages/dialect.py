"""What every message dialect (LangChain, OpenAI, Anthropic) shares: the ``Dialect`` interface and the conventions
by which a message becomes a turn and a turn goes back out.

Every adapter stores each message as one turn: ``Turn.content`` is what a page shows (text, ``[image N]`` markers,
``[calls f(args)]``), ``Turn.metadata["message"]`` is the message verbatim, so recent turns go back out exactly as
they came in (ids, names, tool calls, images) and nothing is lost when a turn is drawn onto a page. A dialect only
encodes; fitting a context into a budget is :mod:`optical_memory.prompt`'s work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

from optical_memory.core.consumers import BaseConsumer
from optical_memory.core.geometry import Tier
from optical_memory.core.types import Role, SearchHit, Turn

NO_TEXT = "(no text)"
# The preamble of the pages message: the plain one, and the one for a model that has the recall_page tool.
PLAIN_PREAMBLE = "Earlier turns of this conversation, rendered as pages (oldest first); each page prints its id ('page N')."
PAGES_PREAMBLE = (
    "Earlier turns of this conversation, rendered as pages (oldest first). Each page prints its id ('page N'); "
    "call recall_page with that number for a page's exact text."
)
# Opens the verbatim passages a query found (``Context.passages``), sent after the pages.
PASSAGES_HEADER = "Passages of earlier turns that match the current request, word for word, best first:"
PASSAGE_SEPARATOR = "\n\n"
# Chat formats wrap every message in a few framing tokens beyond its content (OpenAI documents 3 per message).
TOKENS_PER_MESSAGE = 3


@dataclass(frozen=True)
class TurnDraft:
    """What ``OpticalMemory.add`` needs for one message. ``metadata`` holds the verbatim message under ``"message"``,
    its identity (id or content hash) under ``"identity"`` where the dialect has one, and the tool-exchange keys of
    ``tool_exchange_metadata``."""

    role: Role
    content: str
    name: str | None
    metadata: dict[str, Any]


class Dialect(ABC):
    """One message shape: how a message becomes a turn, how turns and pages go back out, and what it all costs."""

    format: str

    @abstractmethod
    def to_turn(self, message: Any, *, where: str = "message") -> TurnDraft:
        """Validate ``message`` and describe it as a turn (raises ``TypeError``/``ValueError`` naming ``where``)."""

    @abstractmethod
    def restore(self, turn: Turn) -> Any:
        """The message stored in ``turn``, verbatim."""

    @abstractmethod
    def continued(self, turn: Turn, tail: str, page_label: str) -> Any:
        """A message for the unsealed tail of ``turn`` whose beginning is on ``page_label``."""

    @abstractmethod
    def image_blocks(self, turn: Turn) -> list[Any]:
        """The images of ``turn`` as blocks of this dialect, in order."""

    @abstractmethod
    def text_block(self, text: str) -> Any: ...

    @abstractmethod
    def page_block(self, png: bytes, tier: Tier) -> Any:
        """A page image (PNG bytes) as sent at ``tier``."""

    @abstractmethod
    def pages_message(self, blocks: Sequence[Any]) -> Any:
        """The one message that holds the pages."""

    @abstractmethod
    def cost(self, messages: Sequence[Any], consumer: BaseConsumer) -> int:
        """Tokens ``consumer`` charges for ``messages`` as this dialect sends them."""


def passage_text(hit: SearchHit) -> str:
    """One verbatim passage after the words naming its page and speaker (the ``search_memory`` tool's form).

    The page is what ``recall_page`` takes and orders passages in time; a turn number and a line of its own would
    cost each passage five tokens more (16 for a four-word turn, against 11). The passage starts with a letter:
    a block of passages then splits into the lines its passages were counted by (``optical_memory.core.tokens``
    counts a text line by line where a line starts with an ASCII letter, and keeps each line's count), so counting
    the block is mostly lookups."""
    return f"{hit.page}, {hit.role.value}: {hit.snippet}"


def passages_text(hits: Sequence[SearchHit]) -> str:
    """The block of a context's passages: a header, then each passage (``passage_text``), best first."""
    return PASSAGE_SEPARATOR.join([PASSAGES_HEADER, *map(passage_text, hits)])


def image_label(turn: Turn, number: int, page_label: str) -> str:
    return f"Image {number} of turn {turn.index} (on {page_label}):"


def tool_exchange_metadata(calls: Sequence[tuple[str | None, str, str]] = (), answers: str | None = None) -> dict[str, Any]:
    """The keys by which the memory keeps a tool call and its results on one side of the page/text boundary (and
    the OpenAI dialect rebuilds them): ``tool_calls`` in OpenAI's shape from (id, name, JSON arguments), and
    ``tool_call_id`` for a result."""
    metadata: dict[str, Any] = {}
    if calls:
        metadata["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in calls
        ]
    if answers is not None:
        metadata["tool_call_id"] = answers
    return metadata


def continued_text(tail: str, page_label: str) -> str:
    """The text of a turn whose beginning is already drawn on ``page_label``."""
    return f"(continued from {page_label}) {tail}"


