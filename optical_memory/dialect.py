"""An optical context as chat messages of one dialect (LangChain, OpenAI, Anthropic), fitted to a token budget.

Every adapter stores each message as one turn: ``Turn.content`` is what a page shows (text, ``[image N]`` markers,
``[calls f(args)]``), ``Turn.metadata["message"]`` is the message verbatim, so recent turns go back out exactly as
they came in (ids, names, tool calls, images) and nothing is lost when a turn is drawn onto a page.

Images users sent stay images: while a turn is recent they travel inside its verbatim message; once the turn is on a
page they are sent beside that page, each after a short label naming its turn. They are priced with the consumer's
rule either way, and the budget reserves room for all of them before the forgetting policy shares out the rest.

The budget covers everything sent: system messages, the pages message (preamble, pages, images, labels) and the
recent turns as the dialect counts them (``Dialect.cost``). The memory prices pages and recent text; the extra
structure is measured here and kept out of the policy's allowance, and the assembled messages are counted once more
so that the budget holds even where a rule rounds.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Sequence

from optical_memory.consumers import BaseConsumer, get_consumer
from optical_memory.context import PAGES_PREAMBLE, Context
from optical_memory.imaging import encode_png
from optical_memory.memory import OpticalMemory
from optical_memory.types import PageView, Role, Tier, TokenReport, Turn, validate_budget
from policies import ForgettingPolicy

NO_TEXT = "(no text)"
# The preamble when the model has no recall tool (``context.PAGES_PREAMBLE`` names the tool).
PLAIN_PREAMBLE = "Earlier turns of this conversation, rendered as pages (oldest first); each page prints its id ('page N')."
# Chat formats wrap every message in a few framing tokens beyond its content (OpenAI documents 3 per message).
TOKENS_PER_MESSAGE = 3
_FIT_ATTEMPTS = 8


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


@dataclass(frozen=True)
class OpticalMessages:
    """Messages ready to send. ``report`` is the memory's accounting of pages and recent text (its ``budget`` is the
    caller's); ``total_tokens`` is everything sent as the dialect counts it (framing, preamble, labels and user
    images included), which never exceeds ``budget``."""

    messages: list[Any]
    report: TokenReport
    total_tokens: int
    budget: int | None
    context: Context


class _PageImageCache:
    """Encoded page images by (render key, tier): a page's pixels never change, so each size is encoded once."""

    def __init__(self, max_entries: int = 128) -> None:
        self._entries: OrderedDict[tuple[str, Tier], bytes] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def png(self, view: PageView, *, cacheable: bool) -> bytes:
        assert view.tier is not None
        key = (view.page.render_key, view.tier)
        with self._lock:
            if cacheable and key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        image = view.image
        assert image is not None
        data = encode_png(image)
        if cacheable:
            with self._lock:
                self._entries[key] = data
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)
        return data


_PAGE_IMAGES = _PageImageCache()


def image_label(turn: Turn, number: int, page_label: str) -> str:
    return f"Image {number} of turn {turn.index} (on {page_label}):"


def add_drafts(memory: OpticalMemory, drafts: Sequence[TurnDraft]) -> list[Turn]:
    """Append validated drafts as turns, in order."""
    return [memory.add(d.role, d.content, name=d.name, metadata=d.metadata) for d in drafts]


def add_messages(memory: OpticalMemory, dialect: Dialect, messages: Sequence[Any], *, where: str = "messages") -> list[Turn]:
    """Validate every message first, then append them all as turns (nothing is written if one is bad)."""
    return add_drafts(memory, [dialect.to_turn(message, where=f"{where}[{i}]") for i, message in enumerate(messages)])


def tool_exchange_metadata(calls: Sequence[tuple[str | None, str, str]] = (), answers: str | None = None) -> dict[str, Any]:
    """The keys by which the memory keeps a tool call and its results on one side of the page/text boundary (and
    ``Context.to_openai`` rebuilds them): ``tool_calls`` in OpenAI's shape from (id, name, JSON arguments), and
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


def _last_pages(memory: OpticalMemory) -> dict[int, int]:
    """Turn index → index of the last page that shows part of it."""
    last: dict[int, int] = {}
    for page in memory.pages:
        for segment in page.segments:
            last[segment.turn_index] = page.index
    return last


def build_messages(
    memory: OpticalMemory,
    dialect: Dialect,
    *,
    system: Sequence[Any] = (),
    budget: float | None = None,
    consumer: str | BaseConsumer | None = None,
    policy: ForgettingPolicy | None = None,
    preamble: str = PAGES_PREAMBLE,
    now: float | None = None,
) -> OpticalMessages:
    """``system`` + one message holding the pages + the recent turns verbatim, within ``budget`` tokens.

    Raises ``ValueError`` when ``system`` and the recent turns alone exceed the budget.
    """
    if budget is not None:
        budget = validate_budget(budget)
    consumer = memory.consumer if consumer is None else get_consumer(consumer)
    now = memory.clock() if now is None else now  # one instant for every pricing below
    probe = memory.context(None, consumer, policy=policy, now=now)
    recent = probe.recent
    turns = memory.turns
    last_pages = _last_pages(memory)

    hot: list[Any] = []
    for turn in recent:
        original = turns[turn.index]
        if turn.metadata.get("continued"):
            hot.append(dialect.continued(original, turn.content, f"page {last_pages[turn.index]}"))
        else:
            hot.append(dialect.restore(original))
    fixed = [*system, *hot]
    fixed_cost = dialect.cost(fixed, consumer)
    if budget is not None and fixed_cost > budget:
        raise ValueError(
            f"budget {budget} is smaller than the system prompt and recent turns alone ({fixed_cost} tokens for"
            f" {consumer.name}); raise the budget or lower hot_turns"
        )

    first_recent = recent[0].index if recent else len(turns)
    paged_images = {
        turn.index: images for turn in turns[:first_recent] if (images := dialect.image_blocks(turn))
    }

    def labelled(turn: Turn, images: Sequence[Any], page_label: str) -> list[Any]:
        out: list[Any] = []
        for number, block in enumerate(images, start=1):
            out.extend([dialect.text_block(image_label(turn, number, page_label)), block])
        return out

    def assemble(ctx: Context) -> list[Any]:
        blocks: list[Any] = []
        for view in ctx.shown_pages:
            if view.as_text:
                blocks.append(dialect.text_block(view.page.text))
            else:
                png = _PAGE_IMAGES.png(view, cacheable=not memory.forget_pixels)
                blocks.append(dialect.page_block(png, view.tier))  # type: ignore[arg-type]
            for turn_index in view.page.turn_indices:
                if last_pages.get(turn_index) == view.page.index:
                    blocks.extend(labelled(turns[turn_index], paged_images.get(turn_index, []), view.page.label))
        if not blocks:
            return fixed
        return [*system, dialect.pages_message([dialect.text_block(preamble), *blocks]), *hot]

    if budget is None:
        messages = assemble(probe)
        return OpticalMessages(messages, probe.report, dialect.cost(messages, consumer), None, probe)

    reserve_blocks = [dialect.text_block(preamble)]
    for turn_index, images in paged_images.items():
        reserve_blocks.extend(labelled(turns[turn_index], images, f"page {last_pages[turn_index]}"))
    reserve = dialect.cost([dialect.pages_message(reserve_blocks)], consumer)
    allowance = budget - fixed_cost - reserve
    for _ in range(_FIT_ATTEMPTS):
        ctx = memory.context(probe.report.hot_text_tokens + max(0, allowance), consumer, policy=policy, now=now)
        messages = assemble(ctx)
        total = dialect.cost(messages, consumer)
        if total <= budget:
            return OpticalMessages(messages, replace(ctx.report, budget=budget), total, budget, ctx)
        allowance -= total - budget
    raise RuntimeError(f"could not fit the context into {budget} tokens for {consumer.name}")
