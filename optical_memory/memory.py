"""The memory middleware: turns in, optical contexts out.

Turns older than the hot window flow onto pages; a page is rendered and sealed once it is full (so every page is
drawn exactly once and never changes), together with the turn that filled it, in one store transaction. Turns past
the hot window that do not yet fill a page stay text until they do (or until ``flush``). At ``context`` time a
forgetting policy picks a tier per page, the consumer prices it, and a page goes as an image only when that is
cheaper than its text (fail-closed).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

from PIL import Image

from optical_memory.context import Context
from optical_memory.core.consumers import (
    BaseConsumer,
    DeepSeekOCRConsumer,
    consumer_names,
    get_consumer,
)
from optical_memory.core.imaging import decode_png, encode_png, fit_to_tier
from optical_memory.core.retry import retry_transient
from optical_memory.core.types import Page, PageView, Role, TokenReport, Turn
from optical_memory.core.validation import (
    validate_budget,
    validate_int,
    validate_text,
    validate_timestamp,
)
from optical_memory.policies import ForgettingPolicy, TokenBudget
from optical_memory.renderers import PageRenderer, RenderStyle, encode_page_png
from optical_memory.store.backends import open_store
from optical_memory.store.base import Scope, StaleSession, Store, StoredPage

# Optimistic commits that lose to other writers retry for this long, with short pauses: a writer that keeps losing
# to a faster one of the same session waits its turn instead of failing.
_COMMIT_PATIENCE_SECONDS = 30.0
_COMMIT_MAX_PAUSE_SECONDS = 0.05


def validate_options(hot_turns: object, policy: object) -> None:
    """Reject a bad hot window or policy before anything touches the store."""
    validate_int(hot_turns, field_name="hot_turns", minimum=0)
    if policy is not None and not isinstance(policy, ForgettingPolicy):
        raise TypeError(f"policy must be a ForgettingPolicy, got {type(policy).__name__}")


def _position_after(page: Page, turns: Sequence[Turn]) -> tuple[int, int]:
    """(turn index, character offset) of the first character after ``page``."""
    last = page.segments[-1]
    if last.end >= len(turns[last.turn_index].content):
        return last.turn_index + 1, 0
    return last.turn_index, last.end


def _in_tool_exchange(turn: Turn) -> bool:
    return turn.role is Role.TOOL or (turn.role is Role.ASSISTANT and bool(turn.metadata.get("tool_calls")))


def _clean_boundary(turns: Sequence[Turn], position: tuple[int, int]) -> bool:
    """Whether sealing up to ``position`` keeps every tool call and its results on one side of the boundary."""
    index, offset = position
    if index >= len(turns):
        return True
    if offset:
        return not _in_tool_exchange(turns[index])
    return turns[index].role is not Role.TOOL


class OpticalMemory:
    """A chat history kept as text for recent turns and as shrinking page images for older ones.

    Example::

        mem = OpticalMemory.open("memory.db", session="user-42", hot_turns=8)
        mem.add("user", "Book the 9:40 train to Lyon for Ada Park.")
        ctx = mem.context(budget=4000, consumer="deepseek-ocr")
    """

    def __init__(
        self,
        store: Store,
        *,
        user: str = "default",
        session: str = "default",
        hot_turns: int = 8,
        consumer: str | BaseConsumer = "deepseek-ocr",
        policy: ForgettingPolicy | None = None,
        style: RenderStyle | None = None,
        forget_pixels: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        validate_options(hot_turns, policy)
        self.store = store
        self.scope = Scope(user, session)
        self.hot_turns = hot_turns
        self.consumer = get_consumer(consumer)
        self.policy = policy if policy is not None else TokenBudget()
        self.style = style if style is not None else RenderStyle.preset(self.consumer.render_preset)
        self.renderer = PageRenderer(self.style)
        self.forget_pixels = forget_pixels
        self.clock = clock
        self._lock = threading.RLock()
        stored_style = store.open_session(self.scope, self.style.session_key())
        if stored_style != self.style.session_key():
            raise ValueError(
                f"session {session!r} of user {user!r} was sealed with another render style; open it with the same"
                " consumer/style it was created with"
            )
        self._turns: list[Turn] = []
        self._pages: list[StoredPage] = []
        self._forgotten_views: dict[tuple[int, str], PageView] = {}
        self._reload()

    @classmethod
    def open(cls, store: str | os.PathLike[str] | Store = ":memory:", **options: Any) -> "OpticalMemory":
        """Open (or create) a memory in ``store``: a SQLite path, ``":memory:"``, a URL or a ``Store``."""
        return cls(open_store(store), **options)

    # -- state ---------------------------------------------------------------------------------------------------

    def _reload(self) -> None:
        turns, pages = self.store.load(self.scope)
        self._turns, self._pages = turns, pages

    @property
    def turns(self) -> list[Turn]:
        """Every turn of the session, verbatim, oldest first."""
        return list(self._turns)

    @property
    def pages(self) -> list[Page]:
        """Sealed pages, oldest first."""
        return [stored.page for stored in self._pages]

    def _cursor(self) -> tuple[int, int]:
        """(turn index, character offset) where the not-yet-sealed text starts."""
        return _position_after(self._pages[-1].page, self._turns) if self._pages else (0, 0)

    def _pending(self, turns: Sequence[Turn]) -> tuple[list[Turn], int]:
        """Turns past the hot window that are not sealed yet, and the offset into the first of them."""
        first, offset = self._cursor()
        end = max(first, len(turns) - self.hot_turns)
        # A tool result stays on the same side of the page/text boundary as the call it answers.
        while first < end < len(turns) and turns[end].role is Role.TOOL:
            end -= 1
        return list(turns[first:end]), offset

    # -- writing -------------------------------------------------------------------------------------------------

    def add(
        self,
        role: str | Role,
        content: str,
        *,
        timestamp: float | None = None,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Turn:
        """Append a turn; pages it fills are rendered and sealed in the same transaction. Persisted on return."""
        role = Role.parse(role)
        content = validate_text(content)
        timestamp = validate_timestamp(self.clock() if timestamp is None else timestamp)
        if name is not None:
            validate_text(name, field_name="name")
        metadata = dict(metadata or {})
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as error:
            raise TypeError(f"metadata must be JSON-serialisable: {error}") from None
        turn, _ = self._commit(lambda: Turn(len(self._turns), role, content, timestamp, name, metadata))
        assert turn is not None
        return turn

    async def aadd(self, role: str | Role, content: str, **options: Any) -> Turn:
        """``add`` without blocking the event loop."""
        return await asyncio.to_thread(self.add, role, content, **options)

    def flush(self) -> list[Page]:
        """Seal every unsealed turn past the hot window, even onto a partly filled page (e.g. at session end)."""
        return self._commit(None)[1]

    def _commit(self, make_turn: Callable[[], Turn] | None) -> tuple[Turn | None, list[Page]]:
        """Append a turn (``make_turn``) and/or seal pages in one transaction, retrying when another writer won.

        Without a turn, every unsealed turn past the hot window is sealed, even onto a partly filled page.
        """
        def attempt() -> tuple[Turn | None, list[Page]]:
            turn = None if make_turn is None else make_turn()
            if turn is not None:
                self._turns.append(turn)  # tentatively, so sealing sees it without copying a long session
            try:
                sealed = self._seal(self._turns, full_only=turn is not None)
            finally:
                if turn is not None:
                    self._turns.pop()
            if turn is None and not sealed:
                return None, []
            self.store.commit(self.scope, turn, sealed, expected_turns=len(self._turns))
            self._apply(turn, sealed)
            return turn, [page for page, _ in sealed]

        with self._lock:
            try:
                return retry_transient(
                    attempt,
                    lambda error: isinstance(error, StaleSession),
                    seconds=_COMMIT_PATIENCE_SECONDS,
                    max_delay=_COMMIT_MAX_PAUSE_SECONDS,
                    before_retry=self._reload,
                )
            except StaleSession:
                raise RuntimeError(
                    f"could not write to {self.scope}: other writers kept winning for {_COMMIT_PATIENCE_SECONDS:g} s"
                ) from None

    def _seal(self, turns: Sequence[Turn], *, full_only: bool) -> list[tuple[Page, bytes]]:
        """Render the pages that ``turns`` fill past the hot window (``full_only=False``: the partial one too)."""
        pending, offset = self._pending(turns)
        if not pending:
            return []
        layouts = self.renderer.paginate(pending, first_page_index=len(self._pages), first_turn_offset=offset)
        if full_only:
            layouts = [layout for layout in layouts if layout.full]
            # Seal no page whose end would leave a tool exchange straddling the page/text boundary.
            while layouts and not _clean_boundary(turns, _position_after(layouts[-1].page, turns)):
                layouts.pop()
        sealed = []
        for layout in layouts:
            page = layout.page
            image = b"" if self.store.has_image(page.render_key) else encode_page_png(self.renderer.draw(layout))
            sealed.append((page, image))
        return sealed

    def _apply(self, turn: Turn | None, sealed: Sequence[tuple[Page, bytes]]) -> None:
        if turn is not None:
            self._turns.append(turn)
        self._pages.extend(StoredPage(page, page.render_key) for page, _ in sealed)

    def clear(self) -> None:
        """Forget this session entirely (turns, pages, and images no other session uses)."""
        with self._lock:
            self.store.clear(self.scope)
            self.store.open_session(self.scope, self.style.session_key())
            self._turns, self._pages = [], []

    # -- reading -------------------------------------------------------------------------------------------------

    def _stored(self, page: int | str | Page) -> StoredPage:
        if isinstance(page, Page):
            page = page.index
        if isinstance(page, str):
            digits = page.strip().lower().removeprefix("page").strip()
            if not digits.isdigit():
                raise ValueError(f"page id {page!r} is not a page number like 'page 3' or '3'")
            page = int(digits)
        if isinstance(page, bool) or not isinstance(page, int):
            raise TypeError(f"page must be a page number, label or Page, got {type(page).__name__}")
        if not 0 <= page < len(self._pages):
            raise ValueError(f"no page {page} in this session (it has {len(self._pages)} pages)")
        return self._pages[page]

    def recall(self, page: int | str | Page) -> str:
        """The exact source text of a page (``3``, ``"page 3"`` or a ``Page``): what the agent's recall tool returns."""
        return self._stored(page).page.text

    def page_image(self, page: int | str | Page) -> Image.Image:
        """The stored image of a page (the master, or smaller pixels when ``forget_pixels`` reduced it)."""
        return decode_png(self._image_bytes(self._stored(page).page.index))

    def _image_bytes(self, page_index: int) -> bytes:
        try:
            return self.store.image(self._pages[page_index].image_key)
        except KeyError:
            # Another process replaced this page's pixels (forget_pixels) since we loaded it.
            with self._lock:
                self._reload()
            return self.store.image(self._pages[page_index].image_key)

    def context(
        self,
        budget: float | None = None,
        consumer: str | BaseConsumer | None = None,
        *,
        policy: ForgettingPolicy | None = None,
        now: float | None = None,
    ) -> Context:
        """The optical context for ``consumer`` under ``budget`` tokens (hot text + pages, priced by the consumer).

        Raises ``ValueError`` if the unsealed recent turns alone exceed the budget.
        """
        if budget is not None:
            budget = validate_budget(budget)
        consumer = self.consumer if consumer is None else get_consumer(consumer)
        policy = self.policy if policy is None else policy
        now = self.clock() if now is None else now
        with self._lock:
            turns, stored_pages = list(self._turns), list(self._pages)
        first, offset = self._cursor()
        recent = list(turns[first:])
        if recent and offset:
            recent[0] = replace(recent[0], content=recent[0].content[offset:], metadata={**recent[0].metadata, "continued": True})
        hot_tokens = sum(consumer.text_tokens(turn.content) for turn in recent)
        if budget is not None and hot_tokens > budget:
            raise ValueError(
                f"budget {budget} is smaller than the recent turns alone ({hot_tokens} tokens); raise the budget or"
                " lower hot_turns"
            )
        pages = [stored.page for stored in stored_pages]
        levels = policy.choose(
            pages, consumer, now=now, turn_count=len(turns), budget=None if budget is None else budget - hot_tokens
        )
        if self.forget_pixels and consumer == self.consumer:
            self._forget_pixels(stored_pages, policy, now, len(turns))
        views = [self._view(stored, level, consumer) for stored, level in zip(stored_pages, levels)]
        return Context(views, recent, self._report(views, hot_tokens, budget, consumer), consumer)

    async def acontext(self, budget: float | None = None, consumer: str | BaseConsumer | None = None, **options: Any) -> Context:
        """``context`` without blocking the event loop."""
        return await asyncio.to_thread(self.context, budget, consumer, **options)

    def _view(self, stored: StoredPage, level: int | None, consumer: BaseConsumer) -> PageView:
        page = stored.page
        if level is None:
            # Most pages of a long session are forgotten: their views hold no pixels and never change, so reuse them.
            key = (page.index, consumer.name)
            view = self._forgotten_views.get(key)
            if view is None or view.page is not page:
                view = self._forgotten_views[key] = PageView(page, None, None, 0, consumer.text_tokens(page.text))
            return view
        text_tokens = consumer.text_tokens(page.text)
        tier = consumer.tier(level)
        if page.missing_glyphs:
            # Some characters are drawn as substitute marks: the image would not show all the text, so send the text.
            missing = page.missing_glyphs
            reason = f"fail-closed: {missing} glyph{'s' if missing != 1 else ''} missing"
            return PageView(page, level, tier, text_tokens, text_tokens, as_text=True, reason=reason)
        image_tokens = consumer.page_tokens(page, level)
        if image_tokens >= text_tokens:
            return PageView(page, level, tier, text_tokens, text_tokens, as_text=True)
        return PageView(
            page,
            level,
            tier,
            image_tokens,
            text_tokens,
            load_image=lambda: fit_to_tier(decode_png(self._image_bytes(page.index)), tier),
        )

    def _forget_pixels(self, stored_pages: Sequence[StoredPage], policy: ForgettingPolicy, now: float, turn_count: int) -> None:
        """Replace stored images by their age-level pixels, for good: the disk keeps only what is still shown."""
        ages = policy.choose([s.page for s in stored_pages], self.consumer, now=now, turn_count=turn_count)
        tier_rank = {tier.name: i for i, tier in enumerate(self.consumer.tiers)}
        for stored, level in zip(stored_pages, ages):
            current = -1 if stored.image_tier is None else tier_rank.get(stored.image_tier, -1)
            if level is None or level <= current:
                continue
            tier = self.consumer.tier(level)
            smaller = encode_png(fit_to_tier(decode_png(self._image_bytes(stored.page.index)), tier))
            key = f"{stored.page.render_key}@{tier.name}"
            self.store.replace_image(self.scope, stored.page.index, key, smaller, tier.name)
            with self._lock:
                self._pages[stored.page.index] = StoredPage(stored.page, key, tier.name)

    def _report(self, views: Sequence[PageView], hot_tokens: int, budget: int | None, consumer: BaseConsumer) -> TokenReport:
        images: list[PageView] = []
        as_text: list[PageView] = []
        dropped: list[PageView] = []
        for view in views:
            (dropped if view.level is None else as_text if view.as_text else images).append(view)
        positions = None
        if isinstance(consumer, DeepSeekOCRConsumer):
            positions = sum(consumer.decoder_positions(v.page, v.level) for v in images)  # type: ignore[arg-type]
        return TokenReport(
            consumer=consumer.name,
            tokenizer=consumer.tokenizer,
            tokenizer_exact=consumer.tokenizer_exact,
            budget=budget,
            hot_text_tokens=hot_tokens,
            paged_text_tokens=sum(v.text_tokens for v in images),
            image_tokens=sum(v.tokens for v in images),
            fallback_text_tokens=sum(v.tokens for v in as_text),
            decoder_positions=positions,
            pages_total=len(views),
            pages_as_images=len(images),
            pages_as_text=len(as_text),
            pages_dropped=len(dropped),
            dropped_text_tokens=sum(v.text_tokens for v in dropped),
        )

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "OpticalMemory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_memory(
    store: Store,
    *,
    user: str,
    session: str,
    consumer: BaseConsumer,
    hot_turns: int,
    policy: ForgettingPolicy | None,
) -> OpticalMemory:
    """The memory of ``session`` whatever provider it was first rendered for: new sessions in ``consumer``'s preset
    style, existing ones in the preset they were sealed with, so their pages stay and only the pricing changes
    (``ValueError`` for a custom style, which only ``OpticalMemory`` itself can reopen)."""
    validate_options(hot_turns, policy)
    preferred = RenderStyle.preset(consumer.render_preset)
    stored = store.open_session(Scope(user, session), preferred.session_key())
    style = preferred
    if stored != preferred.session_key():
        presets = sorted({get_consumer(name).render_preset for name in consumer_names()})
        matches = [candidate for candidate in map(RenderStyle.preset, presets) if candidate.session_key() == stored]
        if not matches:
            raise ValueError(
                f"session {session!r} was rendered with a custom style; open it with OpticalMemory and that style"
            )
        style = matches[0]
    return OpticalMemory(
        store, user=user, session=session, hot_turns=hot_turns, consumer=consumer, policy=policy, style=style
    )
