"""What the model sees: pages at their tiers, the recent turns verbatim and the token report, and those as the
messages of one dialect fitted to a token budget.

The budget covers everything sent: system messages, tokens reserved for what travels beside the messages (tool
schemas, a prompt around a chat history), the pages message (preamble, pages, images users sent and their labels)
and the recent turns as the dialect counts them (``Dialect.cost``, per-message framing included). The memory prices
pages and recent text; ``Context.messages`` measures the rest, keeps it out of the policy's allowance by pricing the
same snapshot again (``reprice``), and counts the assembled messages once more so that the budget holds even where a
rule rounds. Every path that sends messages (``to_openai``, ``prompt.build_messages`` and through it
``compress_messages``, the LangChain middleware and history) goes through ``Context.messages``, and every budget
check raises through ``check_budget``.

Images users sent stay images: while a turn is recent they travel inside its verbatim message; once the turn is on a
page they are sent beside that page, each after a short label naming its turn. They are priced with the consumer's
rule either way, and the budget reserves room for all of them before the forgetting policy shares out the rest.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from optical_memory.core.consumers import BaseConsumer
from optical_memory.core.geometry import Tier
from optical_memory.core.imaging import encode_png
from optical_memory.core.types import PageView, SearchHit, TokenReport, Turn
from optical_memory.core.validation import validate_budget, validate_int
from optical_memory.messages.dialect import PLAIN_PREAMBLE, Dialect, image_label, passages_text
from optical_memory.messages.dialects import OpenAIDialect

_FIT_ATTEMPTS = 8


def check_budget(budget: int, fixed_tokens: int, consumer: BaseConsumer) -> None:
    """The one budget check: what every call sends whatever the pages (system prompt, tool schemas and other
    reserved tokens, the recent turns) must fit in ``budget``, else ``ValueError``."""
    if fixed_tokens > budget:
        raise ValueError(
            f"budget {budget} is smaller than what every call must send: system prompt, tools, reserve and recent"
            f" turns take {fixed_tokens} tokens for {consumer.name}; raise the budget or lower hot_turns"
        )


@dataclass(frozen=True)
class OpticalMessages:
    """Messages ready to send. ``report`` is the memory's accounting of pages and recent text (its ``budget`` is the
    caller's, its ``page_image_bytes`` the PNG bytes of the pages these messages carry as images); ``total_tokens``
    is everything sent as the dialect counts it (framing, preamble, labels and user images included) plus the
    reserved tokens, and never exceeds ``budget``."""

    messages: list[Any]
    report: TokenReport
    total_tokens: int
    budget: int | None
    context: "Context"


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


@dataclass(frozen=True)
class Context:
    """An optical context: ``pages`` (oldest first, forgotten ones included with ``level=None``; the memory's sealed
    pages, then its open page, ``PageView.sealed`` False), ``recent`` (the turns on no page, verbatim: the hot window
    and the tool exchange at its edge; the first may be the tail of a turn whose head is on the last page) and
    ``report`` (exact token accounting of pages and recent text for ``consumer``, within ``report.budget``).
    ``passages`` are the verbatim passages of a query's best hits on those pages (``OpticalMemory.context(query=…)``),
    best first, sent as one text block after the pages and priced in ``report.passage_tokens``.

    ``turns`` is the session the context was taken from (every turn, verbatim) and ``reprice`` prices that same
    snapshot, at the same instant, under another budget for pages and recent text: ``messages`` uses both to fit
    what a chat model is sent. ``cacheable_images`` is False where stored pixels can still shrink (the memory's
    ``forget_pixels``), so encoded page images are not reused.
    """

    pages: list[PageView]
    recent: list[Turn]
    report: TokenReport
    consumer: BaseConsumer
    turns: Sequence[Turn] = field(repr=False)
    reprice: Callable[[int], "Context"] = field(repr=False, compare=False)
    cacheable_images: bool = True
    passages: tuple[SearchHit, ...] = ()

    @property
    def shown_pages(self) -> list[PageView]:
        """Pages that are sent (as images or, fail-closed, as text)."""
        return [view for view in self.pages if not view.forgotten]

    def to_openai(self, *, system: str | None = None) -> list[dict[str, Any]]:
        """OpenAI chat-completions messages within this context's budget: the optional system prompt, one user
        message holding a preamble and the pages as ``image_url`` parts (data URLs; ``detail`` as the tier was
        priced), then the recent turns as ordinary messages (a turn whose head is on a page starts with its
        "(continued from page N)" mark). The system prompt, the preamble and the per-message framing count toward
        the budget too, so pages are blurred or dropped further where they need the room (``messages`` with
        ``OpenAIDialect`` gives the token report as well)."""
        if system is not None and not isinstance(system, str):
            raise TypeError(f"system must be a string, got {type(system).__name__}")
        prompt = [] if system is None else [{"role": "system", "content": system}]
        return self.messages(OpenAIDialect(), system=prompt).messages

    def messages(
        self,
        dialect: Dialect,
        *,
        system: Sequence[Any] = (),
        reserve: int = 0,
        preamble: str = PLAIN_PREAMBLE,
        budget: float | None = None,
    ) -> OpticalMessages:
        """``system`` + one message holding the pages (then the query's passages) + the recent turns verbatim, in
        ``dialect``, within ``budget`` tokens (default: this context's own, ``report.budget``; ``None`` there: no
        limit).

        ``reserve`` is tokens sent beside these messages that the budget must leave room for (tool schemas, the
        rest of a prompt a history is placed in). ``preamble`` opens the pages message: mention the ``recall_page``
        tool in it only where that tool is registered. Raises ``ValueError`` (``check_budget``) when ``system``,
        ``reserve`` and the recent turns alone exceed the budget, and when the forgetting policy ignores budgets
        and its pages do not fit.
        """
        budget = self.report.budget if budget is None else validate_budget(budget)
        reserve = validate_int(reserve, field_name="reserve", minimum=0)
        consumer = self.consumer
        last_pages = {segment.turn_index: view.page.index for view in self.pages for segment in view.page.segments}

        hot: list[Any] = []
        for turn in self.recent:
            original = self.turns[turn.index]
            if turn.metadata.get("continued"):
                hot.append(dialect.continued(original, turn.content, self.page_of(turn.index)))
            else:
                hot.append(dialect.restore(original))
        fixed = [*system, *hot]
        fixed_cost = dialect.cost(fixed, consumer) + reserve
        if budget is not None:
            check_budget(budget, fixed_cost, consumer)

        first_recent = self.recent[0].index if self.recent else len(self.turns)
        paged_images = {
            turn.index: images for turn in self.turns[:first_recent] if (images := dialect.image_blocks(turn))
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
                    png = _PAGE_IMAGES.png(view, cacheable=self.cacheable_images)
                    image_bytes += len(png)
                    blocks.append(dialect.page_block(png, view.tier))  # type: ignore[arg-type]
                for turn_index in view.page.turn_indices:
                    if last_pages.get(turn_index) == view.page.index:
                        images = paged_images.get(turn_index, [])
                        blocks.extend(labelled(self.turns[turn_index], images, view.page.label))
            if ctx.passages:
                blocks.append(dialect.text_block(passages_text(ctx.passages)))
            if not blocks:
                return fixed, 0
            return [*system, dialect.pages_message([dialect.text_block(preamble), *blocks]), *hot], image_bytes

        if budget is None:
            messages, image_bytes = assemble(self)
            report = replace(self.report, page_image_bytes=image_bytes)
            return OpticalMessages(messages, report, dialect.cost(messages, consumer) + reserve, None, self)

        structure = [dialect.text_block(preamble)]
        for turn_index, images in paged_images.items():
            structure.extend(labelled(self.turns[turn_index], images, f"page {last_pages[turn_index]}"))
        allowance = budget - fixed_cost - dialect.cost([dialect.pages_message(structure)], consumer)
        for _ in range(_FIT_ATTEMPTS):
            ctx = self.reprice(self.report.hot_text_tokens + max(0, allowance))
            messages, image_bytes = assemble(ctx)
            total = dialect.cost(messages, consumer) + reserve
            if total <= budget:
                report = replace(ctx.report, budget=budget, page_image_bytes=image_bytes)
                return OpticalMessages(messages, report, total, budget, ctx)
            allowance -= total - budget
        raise ValueError(
            f"the pages do not fit in budget {budget} for {consumer.name} ({total} tokens): the forgetting policy did"
            " not shrink them to their allowance (AgeSchedule ignores budgets; TokenBudget and RecallAwareBudget fit"
            " them)"
        )

    def page_of(self, turn_index: int) -> str:
        """The label of the last page that shows part of turn ``turn_index``."""
        label = next((view.page.label for view in reversed(self.pages) if turn_index in view.page.turn_indices), None)
        if label is None:
            raise ValueError(f"turn {turn_index} is on no page of this context")
        return label
