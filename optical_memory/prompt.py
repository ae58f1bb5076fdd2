"""The prompt a chat model receives: system messages, one message holding the pages, and the recent turns verbatim,
in one dialect and fitted to a token budget.

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
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Sequence

from optical_memory.context import Context
from optical_memory.core.consumers import BaseConsumer, get_consumer
from optical_memory.core.geometry import Tier
from optical_memory.core.imaging import encode_png
from optical_memory.core.types import PageView, TokenReport, Turn
from optical_memory.core.validation import validate_budget
from optical_memory.memory import OpticalMemory
from optical_memory.messages.dialect import (
    PAGES_PREAMBLE,
    Dialect,
    TurnDraft,
    image_label,
)
from optical_memory.policies import ForgettingPolicy

_FIT_ATTEMPTS = 8


@dataclass(frozen=True)
class OpticalMessages:
    """Messages ready to send. ``report`` is the memory's accounting of pages and recent text (its ``budget`` is the
    caller's, its ``page_image_bytes`` the PNG bytes of the pages these messages carry as images); ``total_tokens``
    is everything sent as the dialect counts it (framing, preamble, labels and user images included), which never
    exceeds ``budget``."""

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


def add_drafts(memory: OpticalMemory, drafts: Sequence[TurnDraft]) -> list[Turn]:
    """Append validated drafts as turns, in order."""
    return [memory.add(d.role, d.content, name=d.name, metadata=d.metadata) for d in drafts]


def add_messages(memory: OpticalMemory, dialect: Dialect, messages: Sequence[Any], *, where: str = "messages") -> list[Turn]:
    """Validate every message first, then append them all as turns (nothing is written if one is bad)."""
    return add_drafts(memory, [dialect.to_turn(message, where=f"{where}[{i}]") for i, message in enumerate(messages)])


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

    def assemble(ctx: Context) -> tuple[list[Any], int]:
        """The messages for ``ctx``, and the PNG bytes of the pages they carry as images."""
        blocks: list[Any] = []
        image_bytes = 0
        for view in ctx.shown_pages:
            if view.as_text:
                blocks.append(dialect.text_block(view.page.text))
            else:
                png = _PAGE_IMAGES.png(view, cacheable=not memory.forget_pixels)
                image_bytes += len(png)
                blocks.append(dialect.page_block(png, view.tier))  # type: ignore[arg-type]
            for turn_index in view.page.turn_indices:
                if last_pages.get(turn_index) == view.page.index:
                    blocks.extend(labelled(turns[turn_index], paged_images.get(turn_index, []), view.page.label))
        if not blocks:
            return fixed, 0
        return [*system, dialect.pages_message([dialect.text_block(preamble), *blocks]), *hot], image_bytes

    if budget is None:
        messages, image_bytes = assemble(probe)
        report = replace(probe.report, page_image_bytes=image_bytes)
        return OpticalMessages(messages, report, dialect.cost(messages, consumer), None, probe)

    reserve_blocks = [dialect.text_block(preamble)]
    for turn_index, images in paged_images.items():
        reserve_blocks.extend(labelled(turns[turn_index], images, f"page {last_pages[turn_index]}"))
    reserve = dialect.cost([dialect.pages_message(reserve_blocks)], consumer)
    allowance = budget - fixed_cost - reserve
    for _ in range(_FIT_ATTEMPTS):
        ctx = memory.context(probe.report.hot_text_tokens + max(0, allowance), consumer, policy=policy, now=now)
        messages, image_bytes = assemble(ctx)
        total = dialect.cost(messages, consumer)
        if total <= budget:
            report = replace(ctx.report, budget=budget, page_image_bytes=image_bytes)
            return OpticalMessages(messages, report, total, budget, ctx)
        allowance -= total - budget
    raise RuntimeError(f"could not fit the context into {budget} tokens for {consumer.name}")
