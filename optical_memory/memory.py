"""The memory middleware: turns in, optical contexts out.

Turns older than the hot window flow onto pages; a page is rendered and sealed once it is full (so every sealed page
is drawn exactly once and never changes), together with the turn that filled it, in one store transaction. A tool
call and its results never straddle the page/text boundary: a page that would end inside such an exchange ends
before the call instead, and the exchange opens the next page. Turns past the hot window that do not yet fill a page
are on the *open page*: laid out from where the sealed pages end, shown and priced like any page and drawn on
demand (same turns, same pixels), but not stored until it is full (or ``flush`` seals it). So the recent text is
exactly the hot window and the tool exchange at its edge, and pages stay dense. At ``context`` time a forgetting
policy picks a tier per page, the consumer prices it, and a page goes as an image only when that is cheaper than
its text (fail-closed) and the consumer's reading model expects at least ``min_recall`` of it to be read back (the
reading gate); otherwise it goes as text. Each page view says why (``PageView.reason``). Given a ``query``,
``context`` first searches the session once: the best hits go verbatim beside the pages, and the pages holding them
are shown at a level the consumer reads and are the last to be dropped (``optical_memory.policies.cue``).

Several processes may share one store: before it reads or writes, a memory asks the store whether anything was
committed since it last looked (SQLite: one pragma), then checks its session's version (one small row) and loads only
what other writers committed since. ``search`` finds turns by their words through the store's
full-text index and, with an ``embedder``, by their meaning too (``optical_memory.store.vectors``).
``list_sessions``, ``delete_session`` and ``export_session`` treat a session as data its user owns.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import logging
import math
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import IO, Any, Callable, Hashable, Iterator, Mapping, Sequence

from PIL import Image

from optical_memory.context import Context, check_budget
from optical_memory.core.consumers import (
    BaseConsumer,
    DeepSeekOCRConsumer,
    consumer_names,
    get_consumer,
)
from optical_memory.core.embedding import Embedder
from optical_memory.core.imaging import decode_png, encode_png, fit_to_tier
from optical_memory.core.retry import retry_transient
from optical_memory.core.types import Page, PageView, Role, SearchHit, TokenReport, Turn, pages_in_common
from optical_memory.core.validation import (
    validate_budget,
    validate_int,
    validate_text,
    validate_timestamp,
)
from optical_memory.messages.dialect import PASSAGE_SEPARATOR, PASSAGES_HEADER, passage_text, passages_text
from optical_memory.policies import (
    DEFAULT_MIN_RECALL,
    AgeSchedule,
    ForgettingPolicy,
    QueryCue,
    ReadingGate,
    ReadingModel,
    RecallAwareBudget,
)
from optical_memory.policies import reading_model as default_reading_model
from optical_memory.policies.reading import BELOW_MIN_RECALL, FAIL_CLOSED, view_choices
from optical_memory.renderers import PageLayout, PageRenderer, RenderStyle, encode_page_png
from optical_memory.store.backends import open_store
from optical_memory.store.base import Erased, Scope, SearchMatch, SessionInfo, StaleSession, Store, StoredPage, TurnVector
from optical_memory.store.search import excerpt, index_terms, query_terms, words_held
from optical_memory.store.vectors import SessionVectors

log = logging.getLogger(__name__)

# Why a page has its level (``PageView.reason`` starts with one of these, then ": " and the details): the level its
# age gives (the policy without a budget), another level or none because of the budget, or sent as text because
# the image would cost more (both prices follow) or because the reading model expects it read back below min_recall.
REASON_AGE = "age"
REASON_BUDGET = "budget"
REASON_FAIL_CLOSED = FAIL_CLOSED
REASON_BELOW_MIN_RECALL = BELOW_MIN_RECALL
# A page holding one of the best hits for the query of ``context``; followed by the hit's score.
REASON_QUERY = "relevant to the query"

# A query's one search returns at most QUERY_HITS turns, ranked again by how rare the query words each holds are
# (``_by_rare_words``). The best of those on pages go verbatim (``Context.passages``) while they fit in
# QUERY_PASSAGE_SHARE of the tokens the recent turns leave, priced before any page: a passage reads back all of its
# text in a few dozen tokens, where an image reads at most what its reader's curve allows (DeepSeek-OCR's about
# 98.5%) and costs 64 tokens or more for what may be one hit. Chosen on the tune split of benchmarks/memory_qa.py
# (92 questions, BM25; text RAG 84.8/89.1/92.4/93.5% at 1k/2k/4k/8k for both consumers). With BM25's order, a
# passage line naming the turn too and half the tokens, 32 hits kept DeepSeek-OCR 80.3/86.9/93.3/96.5% and GPT-4o
# 77.2/85.9/94.5/98.8% available; the shorter line (``passage_text``) raised them to 83.5/89.0/93.3/96.5% and
# 80.4/89.1/94.5/98.8%, the rarity ranking to 86.9/90.1/93.3/96.5% and 85.9/89.1/94.5/98.8%, three quarters of the
# tokens to 88.0/90.1/93.3/96.5% and 86.9/89.1/94.5/98.8%. All the tokens kept as many or fewer; at half of them, 64
# hits kept more at 2k and fewer at 4k, 16 hits fewer at every budget. 128 hits cost 16 ms per context at 10,000
# turns, counting ~110 passages, against ~1 ms for the search.
QUERY_HITS = 32
QUERY_PASSAGE_SHARE = 0.75
# The pages showing the best QUERY_CUE_HITS hits are cued, at most QUERY_PAGES pages, those whose best hit scores at
# least QUERY_SCORE_SHARE of the best hit's score: a hit that shares only a question's common words scores a small
# fraction of one holding its rare words, and a cue spends budget the other pages then lack. A cued page shows the
# turns around its hit, which the passage leaves out. Chosen on the same split before the passages were more than 4
# (3, 5, 8 or 12 pages, share 0.5 or 0.25; 16, 32 or 64 hits): 8, 0.25 and 16 kept the most facts available.
# Cueing instead the pages of the hits not quoted kept 1.2 points more available on average over the 8 cells (with
# 1,000 postings), about one question of 92, and left the page of the best hit to age and budget.
QUERY_CUE_HITS = 16
QUERY_SCORE_SHARE = 0.25
QUERY_PAGES = 8
# With an embedder the share cuts no fused hit (its scores are reciprocal rank fusion's, all within
# [1/(60 + QUERY_HITS), 2/61]), so the cap alone bounds the cues, and fusion ranks the turn that answers a paraphrase
# lower than BM25 ranks a fact's rare words. On the same sweep (query-aware (hybrid)), 16 pages of the 16 best fused
# hits made a planted fact available at 2k, 4k and 8k for both consumers that 8 pages missed and lost one updated
# fact (GPT-4o, 8k); 32 or 64 fused hits added nothing over 16.
QUERY_FUSED_PAGES = 16
# The query's words are searched rarest first while the turns holding them add up to at most this many: ranking
# costs the index a step per matching turn, so a word in most turns ("the", "my") would make every context call a
# scan of the session, and such a word weighs little in BM25 anyway. On the same split, before the rarity ranking,
# 300 and 1,000 kept about as many facts available (88.4% and 88.8% on average over the 8 cells); with it, 1,000
# kept fewer at 1k, 2k and 4k (DeepSeek-OCR 84.7/89.0/91.1% against 88.0/90.1/93.3%): more hits then hold only
# common words, and they crowd the 32.
QUERY_POSTINGS = 300

# Optimistic commits that lose to other writers retry for this long, with short pauses: a writer that keeps losing
# to a faster one of the same session waits its turn instead of failing.
_COMMIT_PATIENCE_SECONDS = 30.0
_COMMIT_MAX_PAUSE_SECONDS = 0.05
# At most this many shown views are kept (``OpticalMemory._view``): a few levels of every page, per consumer and gate.
_SHOWN_VIEWS_KEPT = 1 << 16
# The reason of every forgotten page but the newest one: the same for all of them, so their views are kept between
# calls (_ForgottenViews).
_OLDER_THAN_FORGOTTEN = {
    why: f"{why}: forgotten, older than a forgotten page (an older page is never sharper than a newer one)"
    for why in (REASON_AGE, REASON_BUDGET)
}


def validate_options(hot_turns: object, policy: object, reading_model: object = None) -> None:
    """Reject a bad hot window, policy or reading model before anything touches the store."""
    validate_int(hot_turns, field_name="hot_turns", minimum=0)
    if policy is not None and not isinstance(policy, ForgettingPolicy):
        raise TypeError(f"policy must be a ForgettingPolicy, got {type(policy).__name__}")
    if reading_model is not None and not isinstance(reading_model, ReadingModel):
        raise TypeError(f"reading_model must be a ReadingModel, got {type(reading_model).__name__}")


def default_policy() -> ForgettingPolicy:
    """Under a budget, the levels that maximise expected recall (spending the budget on what the consumer can
    read); without one, the age schedule."""
    return RecallAwareBudget(unbudgeted=AgeSchedule())


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


def _open_stored(layout: PageLayout) -> StoredPage:
    """An open page as the snapshot lists it beside the sealed ones: its image is drawn, so its key is its render
    key (same text, same pixels)."""
    return StoredPage(layout.page, layout.page.render_key)


def _exchange_start(turns: Sequence[Turn], position: tuple[int, int]) -> int | None:
    """The index of the turn that opens the tool exchange ``position`` falls inside (the call before its results),
    or ``None`` when sealing up to ``position`` splits no exchange."""
    if _clean_boundary(turns, position):
        return None
    index, offset = position
    start = index if offset else index - 1
    while start > 0 and turns[start].role is Role.TOOL:
        start -= 1
    return start


class _ForgottenViews:
    """The views of pages forgotten behind a newer forgotten page, per consumer and cause (age or budget).

    Most pages of a long session are such pages. Their views hold no pixels, only the page, the consumer's count of
    its text and one shared reason, so a page's view never changes and, as the session grows, a list of them only
    grows at its newest end: kept between calls, checked against the pages passed, extended by the new ones, with
    the running sum of their text tokens (what the report counts as forgotten).
    """

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str], tuple[list[Page], list[PageView], list[int]]] = {}

    def older(self, consumer: BaseConsumer, pages: list[Page], aged: Sequence[int | None]) -> tuple[list[PageView], int]:
        """The views of ``pages`` (positions 0.. of ``aged``), all forgotten behind a newer forgotten page: by age
        where ``aged`` forgets them too, else by the budget; and the sum of their text tokens."""
        count = len(pages)
        by_age = aged[:count].count(None)
        if aged[:by_age].count(None) == by_age:  # the age schedule forgets the oldest pages, the budget the rest
            if by_age == count:
                views, sums = self._views(consumer, REASON_AGE, pages)
                return views[:count], sums[count]
            forgotten = self._views(consumer, REASON_AGE, pages)[0][:by_age] if by_age else []
            views, sums = self._views(consumer, REASON_BUDGET, pages)
            return forgotten + views[by_age:count], sums[count]
        (by_age_views, sums), (by_budget_views, _) = (self._views(consumer, REASON_AGE, pages),
                                                      self._views(consumer, REASON_BUDGET, pages))
        return [by_age_views[i] if aged[i] is None else by_budget_views[i] for i in range(count)], sums[count]

    def _views(self, consumer: BaseConsumer, why: str, pages: list[Page]) -> tuple[list[PageView], list[int]]:
        """Views of at least ``pages`` (the first ``len(pages)`` are theirs) forgotten for ``why``, and the running
        sums of their text tokens (``sums[n]``: the first ``n`` views')."""
        key = (consumer.name, why)
        known, views, sums = self._kept.get(key, ([], [], [0]))
        shared = pages_in_common(known, pages)  # fewer than both: pages laid out anew, or the session recreated
        if shared < min(len(known), len(pages)):
            known, views, sums = known[:shared], views[:shared], sums[:shared + 1]
        if len(pages) > len(known):
            reason = _OLDER_THAN_FORGOTTEN[why]
            added = pages[len(known):]
            known = known + added
            new = [PageView(page, None, None, 0, consumer.text_tokens(page.text), reason=reason, expected_recall=0.0)
                   for page in added]
            views = views + new
            sums = sums + list(itertools.accumulate((view.text_tokens for view in new), initial=sums[-1]))[1:]
            self._kept[key] = (known, views, sums)  # replaced whole: a concurrent call reads the old lists or the new
        return views, sums


class OpticalMemory:
    """A chat history kept as text for recent turns and as shrinking page images for older ones.

    ``policy`` defaults to ``RecallAwareBudget`` (under a budget) over the age schedule (without one).
    ``reading_model`` predicts what the consumer reads back of a page at each level (default: the consumer's,
    ``optical_memory.policies.reading_model``; a host's capacity comes from ``load_reading_model`` after
    ``optical-memory calibrate``); a page goes as an image only where it predicts at least ``min_recall``.
    ``embedder`` (off by default; e.g. ``MiniLMEmbedder()`` from ``optical_memory.core.embedding``) stores a vector
    with every turn, in its transaction, and makes ``search`` and ``context(query=…)`` rank turns by meaning as well
    as by words; turns stored without one get theirs from ``backfill``.

    Example::

        mem = OpticalMemory.open("memory.db", session="user-42", hot_turns=8)
        mem.add("user", "Book the 9:40 train to Lyon for Ada Park.")
        ctx = mem.context(budget=4000, consumer="deepseek-ocr")

    Opening writes nothing: the session is stored with its first turn. ``companion`` opens a stream kept beside the
    session in a namespace of its own (e.g. ``"system"``), never reachable through any session id.
    """

    def __init__(
        self,
        store: Store,
        *,
        user: str = "default",
        session: str = "default",
        companion: str = "",
        hot_turns: int = 8,
        consumer: str | BaseConsumer = "deepseek-ocr",
        policy: ForgettingPolicy | None = None,
        style: RenderStyle | None = None,
        forget_pixels: bool = False,
        clock: Callable[[], float] = time.time,
        min_recall: float = DEFAULT_MIN_RECALL,
        reading_model: ReadingModel | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        validate_options(hot_turns, policy, reading_model)
        self.store = store
        self.scope = Scope(user, session, companion)
        self.hot_turns = hot_turns
        self.consumer = get_consumer(consumer)
        self.policy = policy if policy is not None else default_policy()
        self.reading_model = reading_model
        self.min_recall = ReadingGate(self._reading_model(self.consumer, self.policy, None), min_recall).min_recall
        self.style = style if style is not None else RenderStyle.preset(self.consumer.render_preset)
        self.renderer = PageRenderer(self.style)
        self.forget_pixels = forget_pixels
        self.clock = clock
        self._lock = threading.RLock()
        info = store.session(self.scope)
        if info is not None and info.style_key != self.style.session_key():
            raise ValueError(
                f"session {session!r} of user {user!r} was sealed with another render style; open it with the same"
                " consumer/style it was created with"
            )
        self._turns: list[Turn] = []
        self._pages: list[StoredPage] = []
        self._forgotten = _ForgottenViews()
        # The views of sealed pages shown for their age or the budget, by page, level, cause, consumer and gate:
        # most pages keep their level from call to call, and such a view never changes while its page is stored
        # as it was (checked by identity).
        self._shown_views: dict[tuple[Any, ...], tuple[StoredPage, PageView]] = {}
        self._page_objects: tuple[list[StoredPage], list[Page]] = ([], [])
        # The open pages' layouts and the newest one drawn, for the state they were made from: laid out once per
        # turn that reaches them, not once per call.
        self._open: tuple[tuple[int | None, int, int], list[PageLayout]] | None = None
        self._drawn: tuple[str, Image.Image] | None = None
        # In how many turns each word occurs (what a query searches picks by), counted up to turn _counted of the
        # stored session _counted_key.
        self._word_turns: Counter[str] = Counter()
        self._counted = 0
        self._counted_key: int | None = None
        # Which stored state _turns/_pages show: the session row's key and version (None: nothing stored).
        self._key: int | None = None
        self._version: int | None = None
        self._mark: Hashable | None = None  # the store's change mark as of the last catch-up (see _sync)
        self.embedder = embedder
        self._vectors = None if embedder is None else SessionVectors(store, self.scope, embedder)
        self._sync()

    @classmethod
    def open(cls, store: str | os.PathLike[str] | Store = ":memory:", **options: Any) -> "OpticalMemory":
        """Open a memory in ``store`` (a SQLite path, ``":memory:"``, a URL or a ``Store``); a new session is stored
        with its first turn."""
        return cls(open_store(store), **options)

    # -- state ---------------------------------------------------------------------------------------------------

    def _reload(self) -> None:
        """Load the whole session again (another process replaced pixels this memory still points at)."""
        with self._lock:
            self._turns, self._pages, self._key, self._version, self._mark = [], [], None, None, None
            self._sync()

    def _sync(self) -> None:
        """Catch up with what other writers committed: the store's change mark says whether anything at all was
        committed since the last catch-up (where the backend has one), then one small row whether this session
        changed, and only turns and pages added since are loaded (everything, when the session was deleted and
        created anew)."""
        with self._lock:
            # Read before the row: whatever is committed after it changes the mark, so the next call looks again.
            mark = self.store.change_mark()
            if mark is not None and mark == self._mark:
                return
            info = self.store.session(self.scope)
            if info is None:
                self._turns, self._pages, self._key, self._version = [], [], None, None
            elif (info.key, info.version) != (self._key, self._version):
                if info.key != self._key:
                    self._turns, self._pages = [], []
                # Read after the version, so what loads is at least that new: a later check only finds more.
                turns, pages = self.store.load(self.scope, after_turn=len(self._turns) - 1,
                                               after_page=len(self._pages) - 1)
                self._turns.extend(turns)
                self._pages.extend(pages)
                self._key, self._version = info.key, info.version
            self._mark = mark

    @property
    def turns(self) -> list[Turn]:
        """Every turn of the session as committed (by any process), verbatim, oldest first."""
        with self._lock:
            self._sync()
            return list(self._turns)

    @property
    def pages(self) -> list[Page]:
        """Sealed pages as committed (by any process), oldest first."""
        with self._lock:
            self._sync()
            return [stored.page for stored in self._pages]

    def _shown_pages(self) -> list[StoredPage]:
        """The sealed pages and then the open ones, of the state this memory holds (call under the lock)."""
        return [*self._pages, *map(_open_stored, self._open_layouts(self._turns, self._pages))]

    def _cursor(self) -> tuple[int, int]:
        """(turn index, character offset) where the not-yet-sealed text starts."""
        return _position_after(self._pages[-1].page, self._turns) if self._pages else (0, 0)

    def _pending_end(self, turns: Sequence[Turn], first: int) -> int:
        """Where the hot window begins: the end of the turns that may be sealed."""
        end = max(first, len(turns) - self.hot_turns)
        # A tool result stays on the same side of the page/text boundary as the call it answers.
        while first < end < len(turns) and turns[end].role is Role.TOOL:
            end -= 1
        return end

    def _open_layouts(self, turns: Sequence[Turn], pages: Sequence[StoredPage]) -> list[PageLayout]:
        """The open pages of a committed snapshot: the turns past the hot window that no sealed page shows, laid out
        from where the sealed pages end (one page, or the pages of a tool exchange longer than a page and the page
        after it)."""
        first, offset = _position_after(pages[-1].page, turns) if pages else (0, 0)
        end = self._pending_end(turns, first)
        if end <= first:
            return []
        # Committed turns and sealed pages never change, so the session, its sealed pages and the hot window's edge
        # say which turns these are.
        key = (self._key, len(pages), end)
        if self._open is None or self._open[0] != key:
            self._open = key, self.renderer.paginate(turns[first:end], first_page_index=len(pages),
                                                     first_turn_offset=offset)
        return self._open[1]

    def _draw(self, layout: PageLayout) -> Image.Image:
        """An open page's master image, drawn once per state of the page."""
        if self._drawn is None or self._drawn[0] != layout.page.render_key:
            self._drawn = layout.page.render_key, self.renderer.draw(layout)
        return self._drawn[1]

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
        vector = None if self.embedder is None else TurnVector(self.embedder.name, self.embedder([content])[0])
        turn, _ = self._commit(lambda: Turn(len(self._turns), role, content, timestamp, name, metadata), vector)
        assert turn is not None
        return turn

    async def aadd(self, role: str | Role, content: str, **options: Any) -> Turn:
        """``add`` without blocking the event loop."""
        return await asyncio.to_thread(self.add, role, content, **options)

    def flush(self) -> list[Page]:
        """Seal every unsealed turn past the hot window, even onto a partly filled page (e.g. at session end)."""
        return self._commit(None)[1]

    def _commit(
        self, make_turn: Callable[[], Turn] | None, vector: TurnVector | None = None
    ) -> tuple[Turn | None, list[Page]]:
        """Append a turn (``make_turn``, with its ``vector``) and/or seal pages in one transaction, retrying when
        another writer won.

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
            version = self.store.commit(
                self.scope, turn, sealed, expected_turns=len(self._turns), style_key=self.style.session_key(),
                vector=vector,
            )
            for page, _ in sealed:
                span = page.turn_indices
                log.info("%s: sealed page %d (turns %d-%d)", self.scope, page.index, span[0], span[-1])
            written = "no turn" if turn is None else f"turn {turn.index}"
            log.debug("%s: committed %s and %d page(s)", self.scope, written, len(sealed))
            self._apply(turn, sealed, version)
            return turn, [page for page, _ in sealed]

        with self._lock:
            self._sync()  # seal from what is committed, not from what this process last saw
            try:
                return retry_transient(
                    attempt,
                    lambda error: isinstance(error, StaleSession),
                    seconds=_COMMIT_PATIENCE_SECONDS,
                    max_delay=_COMMIT_MAX_PAUSE_SECONDS,
                    before_retry=self._sync,
                )
            except StaleSession:
                log.warning(
                    "%s: gave up writing after %g s of losing to other writers", self.scope, _COMMIT_PATIENCE_SECONDS
                )
                raise RuntimeError(
                    f"could not write to {self.scope}: other writers kept winning for {_COMMIT_PATIENCE_SECONDS:g} s"
                ) from None

    def _seal(self, turns: Sequence[Turn], *, full_only: bool) -> list[tuple[Page, bytes]]:
        """Render the pages that ``turns`` fill past the hot window (``full_only=False``: the partial one too)."""
        first, offset = self._cursor()
        layouts = self._layouts(turns, (first, offset), self._pending_end(turns, first), full_only=full_only)
        sealed = []
        for layout in layouts:
            page = layout.page
            if self.store.has_image(page.render_key):
                log.debug("%s: page %d is already stored (key %s), not drawn", self.scope, page.index, page.render_key)
                image = b""
            else:
                image = encode_page_png(self.renderer.draw(layout))
                log.debug("%s: drew page %d (%d bytes of PNG)", self.scope, page.index, len(image))
            sealed.append((page, image))
        return sealed

    def _layouts(
        self, turns: Sequence[Turn], start: tuple[int, int], end: int, *, full_only: bool
    ) -> list[PageLayout]:
        """The pages to seal from ``start`` (turn index, character offset) up to turn ``end``.

        A page that would end inside a tool exchange ends instead before the call that opens it, and the exchange
        starts the next page: the page/text boundary may then fall after that page, so sealing never waits for some
        later page to happen to end between exchanges. Only an exchange longer than a page spans pages; those pages
        are sealed once a page after them ends outside it.
        """
        layouts: list[PageLayout] = []
        while start[0] < end:
            restart = None
            for layout in self.renderer.paginate(
                turns[start[0]:end], first_page_index=len(self._pages) + len(layouts), first_turn_offset=start[1]
            ):
                if full_only and not layout.full:
                    break
                opening = _exchange_start(turns, _position_after(layout.page, turns))
                if opening is not None and (opening, 0) > start:
                    # The same turns up to the call lay out as the beginning of this very page.
                    layout = self.renderer.paginate(
                        turns[start[0]:opening], first_page_index=layout.page.index, first_turn_offset=start[1]
                    )[0]
                    restart = (opening, 0)
                layouts.append(layout)
                start = _position_after(layout.page, turns)
                if restart is not None:
                    break
            if restart is None:
                break
        while layouts and not _clean_boundary(turns, _position_after(layouts[-1].page, turns)):
            layouts.pop()
        return layouts

    def _apply(self, turn: Turn | None, sealed: Sequence[tuple[Page, bytes]], version: int) -> None:
        if turn is not None:
            self._turns.append(turn)
        self._pages.extend(StoredPage(page, page.render_key) for page, _ in sealed)
        # Only when no other writer came in between is the new version exactly what this memory now holds;
        # otherwise the next check loads what the others added.
        if self._version is not None and version == self._version + 1:
            self._version = version

    def clear(self) -> None:
        """Erase this session's stream (its turns, their index rows, pages, and images no other session shows) as
        ``delete_session`` does; the memory stays usable and stores its next turn as a new session."""
        with self._lock:
            self.store.clear(self.scope)
            self._turns, self._pages, self._key, self._version, self._mark = [], [], None, None, None

    # -- searching -----------------------------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, *, match: str = "all") -> list[SearchHit]:
        """The ``k`` turns of this session (user, session and companion) whose words match ``query`` best.

        Any text is a valid query: its words are searched as literals (quotes, ``*``, ``NEAR``, ``AND``, ``-``,
        ``:``, parentheses or SQL quotes are never syntax), case and Latin/Greek/Cyrillic accents folded
        (``optical_memory.store.search`` defines a word). ``match="all"`` finds turns holding every word, ``"any"``
        turns holding at least one. Best first, ties newest first; a query without words finds nothing. Every
        committed turn is searchable (the index is written in the turn's own transaction), whichever process
        wrote it, and whether it is still text or sealed on a page.

        With an embedder, the ``k`` best word matches and the ``k`` turns nearest the query by meaning (cosine of
        their vectors) are fused by reciprocal rank (``optical_memory.store.vectors``): a hit then need not hold
        the query's words, and turns without a vector (stored before the embedder, until ``backfill``) are found
        by their words only.
        """
        terms = query_terms(query)
        matches = self.store.search(self.scope, query, k=k, match=match)
        with self._lock:
            self._sync()
            pages = self._shown_pages()
            matches = self._by_meaning_too(matches, query, k)
        return [_located(found, terms, pages)[0] for found in matches]

    def _by_meaning_too(self, matches: list[SearchMatch], query: str, k: int) -> list[SearchMatch]:
        """``matches`` fused with the turns nearest ``query`` by meaning when the memory has an embedder (call under
        the lock, after ``_sync``)."""
        if self._vectors is None:
            return matches
        return self._vectors.fuse(matches, query, k, self._turns, key=self._key, version=self._version)

    def backfill(self, *, batch_size: int = 64, progress: bool = True) -> int:
        """Embed the session's turns that have no vector yet (stored before the memory had an embedder, or by a
        memory without one), ``batch_size`` at a time with a tqdm progress bar (``progress=False``: none), each
        batch in one transaction; returns how many turns it embedded. Until then those turns are found by their
        words only. ``ValueError`` without an embedder."""
        if self._vectors is None:
            raise ValueError("backfill needs an embedder: open the memory with embedder=…")
        return self._vectors.backfill(self.turns, batch_size=batch_size, progress=progress)

    async def asearch(self, query: str, k: int = 10, *, match: str = "all") -> list[SearchHit]:
        """``search`` without blocking the event loop."""
        return await asyncio.to_thread(self.search, query, k, match=match)

    # -- reading -------------------------------------------------------------------------------------------------

    def _find_page(self, page: int | str | Page) -> tuple[StoredPage, PageLayout | None]:
        """A sealed page, or an open one with its layout."""
        if isinstance(page, Page):
            page = page.index
        if isinstance(page, str):
            digits = page.strip().lower().removeprefix("page").strip()
            if not digits.isdigit():
                raise ValueError(f"page id {page!r} is not a page number like 'page 3' or '3'")
            page = int(digits)
        if isinstance(page, bool) or not isinstance(page, int):
            raise TypeError(f"page must be a page number, label or Page, got {type(page).__name__}")
        with self._lock:
            self._sync()
            if 0 <= page < len(self._pages):
                return self._pages[page], None
            open_layouts = self._open_layouts(self._turns, self._pages)
            if 0 <= page - len(self._pages) < len(open_layouts):
                layout = open_layouts[page - len(self._pages)]
                return _open_stored(layout), layout
            raise ValueError(f"no page {page} in this session (it has {len(self._pages)} sealed pages and"
                             f" {len(open_layouts)} open)")

    def recall(self, page: int | str | Page) -> str:
        """The exact source text of a page (``3``, ``"page 3"`` or a ``Page``), the open page's too: what the agent's
        recall tool returns."""
        return self._find_page(page)[0].page.text

    def page_image(self, page: int | str | Page) -> Image.Image:
        """The image of a page: the stored one (the master, or smaller pixels when ``forget_pixels`` reduced it), or
        the open page drawn as it stands."""
        stored, layout = self._find_page(page)
        return self._master(stored.page.index, layout).copy()

    def _master(self, page_index: int, open_layout: PageLayout | None) -> Image.Image:
        return self._draw(open_layout) if open_layout is not None else decode_png(self._image_bytes(page_index))

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
        min_recall: float | None = None,
        reading_model: ReadingModel | None = None,
        query: str | None = None,
    ) -> Context:
        """The optical context for ``consumer`` under ``budget`` tokens (hot text + pages, priced by the consumer).

        ``report`` accounts for pages and recent text within ``budget``; ``Context.to_openai`` and
        ``Context.messages`` fit the messages they build into the same budget with everything they add counted
        (system prompt, preamble, framing). ``min_recall`` and ``reading_model`` override the memory's for this
        call. ``query`` (e.g. the user's latest message): one search of the session for its rarer words (any of
        them, ``QUERY_POSTINGS``) finds its best hits (``QUERY_HITS``), ranked again by the rarity of the query
        words each holds (the hit's score). The best of those on pages go verbatim
        (``Context.passages``, best first, as many as ``QUERY_PASSAGE_SHARE`` of the tokens the recent turns leave
        pays for; all of them without a budget), priced before any page and counted in ``report.passage_tokens``;
        none is quoted from a page sent as text. The pages showing the best ``QUERY_CUE_HITS`` hits (at most
        ``QUERY_PAGES``) are shown at the cheapest level the reading model expects to read at ``min_recall``
        (``QueryCue``), with the turns around each hit, and dropped last; their
        ``PageView.reason`` starts "relevant to the query: score s" (the hit's score).
        The other pages follow the policy. Raises
        ``ValueError`` (``check_budget``) if the unsealed recent turns alone exceed the budget.
        """
        if budget is not None:
            budget = validate_budget(budget)
        if query is not None and not isinstance(query, str):
            raise TypeError(f"query must be a string or None, got {type(query).__name__}")
        consumer = self.consumer if consumer is None else get_consumer(consumer)
        policy = self.policy if policy is None else policy
        validate_options(0, policy, reading_model)
        gate = ReadingGate(
            self._reading_model(consumer, policy, reading_model), self.min_recall if min_recall is None else min_recall
        )
        now = self.clock() if now is None else now
        # Search before the snapshot: pages only grow, so every page a hit names is in it.
        hits = None if query is None else self._query_hits(query)
        with self._lock:
            self._sync()
            turns, stored_pages, pages = list(self._turns), list(self._pages), self._sealed_pages()
            open_layouts = {layout.page.index: layout for layout in self._open_layouts(turns, stored_pages)}
        stored_pages.extend(map(_open_stored, open_layouts.values()))
        pages.extend(layout.page for layout in open_layouts.values())
        return self._context(turns, stored_pages, pages, budget, consumer, policy, now, gate, hits, open_layouts)

    def _sealed_pages(self) -> list[Page]:
        """A copy of the sealed pages' ``Page`` objects (call under the lock). Kept beside ``_pages`` for the list
        object it was made from: that list only grows until it is replaced (a reload, a new session), and a page's
        entry replaced in it (``forget_pixels``) keeps its ``Page``, so copying a list of the pages costs less than
        reading the page of every stored entry on every call."""
        kept, pages = self._page_objects
        if kept is not self._pages or len(pages) > len(self._pages):
            kept, pages = self._pages, []
        pages.extend(stored.page for stored in self._pages[len(pages):])
        self._page_objects = kept, pages
        return list(pages)

    def _word_counts(self) -> Counter[str]:
        """In how many turns of the session each word occurs, counted once per turn loaded (call under the lock)."""
        if self._counted_key != self._key or self._counted > len(self._turns):
            self._word_turns.clear()
            self._counted, self._counted_key = 0, self._key
        for turn in self._turns[self._counted:]:
            self._word_turns.update(set(index_terms(turn.content)))
        self._counted = len(self._turns)
        return self._word_turns

    def _query_hits(self, query: str) -> _QueryHits | None:
        """The hits for ``query`` on the pages, best first: one search for the query's rarest words
        (QUERY_POSTINGS), ranked by how rare the words each holds are (``_by_rare_words``), then fused with the
        turns nearest the whole query by meaning when the memory has an embedder;
        ``None`` when no word of it occurs and there is no embedder."""
        terms: list[str] = []
        postings = 0
        with self._lock:
            self._sync()
            counts = self._word_counts()
            for term in sorted((term for term in query_terms(query) if counts[term]), key=counts.__getitem__):
                if postings + counts[term] > QUERY_POSTINGS:
                    break
                terms.append(term)
                postings += counts[term]
            rarity = {term: _rarity(len(self._turns), counts[term]) for term in terms}
            pages = self._shown_pages()
        if not terms and self._vectors is None:
            return None
        matches = _by_rare_words(self.store.search(self.scope, " ".join(terms), k=QUERY_HITS, match="any"), rarity)
        with self._lock:
            self._sync()
            matches = self._by_meaning_too(matches, query, QUERY_HITS)
        return _QueryHits(matches, terms, pages)

    def _context(
        self,
        turns: list[Turn],
        stored_pages: list[StoredPage],
        pages: list[Page],
        budget: int | None,
        consumer: BaseConsumer,
        policy: ForgettingPolicy,
        now: float,
        gate: ReadingGate,
        hits: _QueryHits | None = None,
        open_layouts: Mapping[int, PageLayout] | None = None,
    ) -> Context:
        """The context of one snapshot of the session (``stored_pages``: the sealed pages, then the open ones, whose
        layouts ``open_layouts`` holds by page index; ``pages``: their ``Page`` objects), with the passages and cues
        of a query's ``hits`` on those pages; its ``reprice`` prices the same snapshot and hits again."""
        open_layouts = open_layouts or {}
        first, offset = _position_after(stored_pages[-1].page, turns) if stored_pages else (0, 0)
        recent = list(turns[first:])
        if recent and offset:
            recent[0] = replace(recent[0], content=recent[0].content[offset:], metadata={**recent[0].metadata, "continued": True})
        hot_tokens = sum(consumer.text_tokens(turn.content) for turn in recent)
        if budget is not None:
            check_budget(budget, hot_tokens, consumer)
        page_budget = None if budget is None else budget - hot_tokens
        passages, passage_tokens, cues = (), 0, ()
        if hits is not None:
            passages, passage_tokens = hits.quoted(
                consumer, None if page_budget is None else int(page_budget * QUERY_PASSAGE_SHARE))
            cues = hits.cues(QUERY_PAGES if self._vectors is None else QUERY_FUSED_PAGES)
        if page_budget is not None:
            page_budget -= passage_tokens
        # Without the budget the policy gives each page the level of its age: a level that differs is the budget's.
        # A cue sharpens a page for this one call, so the age levels (and the pixels forget_pixels keeps) are the
        # policy's own.
        aged = policy.choose(pages, consumer, now=now, turn_count=len(turns), gate=gate)
        # The best hits go verbatim: no cue takes its most readable view before the other pages are shown.
        chooser = QueryCue(policy, cues, ceiling=tuple(aged), sharpest=0) if cues else policy
        levels = aged if budget is None and not cues else chooser.choose(
            pages, consumer, now=now, turn_count=len(turns), budget=page_budget, gate=gate
        )
        scores = dict(cues)
        if self.forget_pixels and consumer == self.consumer:
            sealed = len(stored_pages) - len(open_layouts)
            self._forget_pixels(stored_pages[:sealed], aged[:sealed])
        views: list[PageView] = [None] * len(levels)  # type: ignore[list-item]

        def show(position: int) -> PageView:
            level, index = levels[position], stored_pages[position].page.index
            why = REASON_AGE if level == aged[position] else REASON_BUDGET
            if index in scores:
                why = f"{REASON_QUERY}: score {scores[index]:.3g}"
            return self._view(stored_pages[position], level, consumer, gate, why,  # type: ignore[arg-type]
                              open_layouts.get(index))

        newest_forgotten = len(levels) - 1 - levels[::-1].index(None) if None in levels else -1
        for position in range(len(levels) - 1, newest_forgotten, -1):
            views[position] = show(position)
        shown_views = views[newest_forgotten + 1:]
        forgotten_tokens = 0
        if newest_forgotten >= 0:  # the newest forgotten page explains itself; the older ones share one reason
            page = pages[newest_forgotten]
            why = REASON_AGE if aged[newest_forgotten] is None else REASON_BUDGET
            reason = self._forgotten_reason(page, consumer, gate, why, type(policy).__name__, page_budget,
                                            sum(view.tokens for view in shown_views))
            views[newest_forgotten] = PageView(page, None, None, 0, consumer.text_tokens(page.text), reason=reason,
                                               expected_recall=0.0)
            views[:newest_forgotten], forgotten_tokens = self._forgotten.older(consumer, pages[:newest_forgotten], aged)
            forgotten_tokens += views[newest_forgotten].text_tokens
            # Older pages shown after all are cued ones (page i is at position i), unless the policy says otherwise.
            shown = newest_forgotten - levels[:newest_forgotten].count(None)
            older = sorted((i for i in scores if i < newest_forgotten and levels[i] is not None), reverse=True)
            if len(older) != shown:
                older = [position for position in range(newest_forgotten) if levels[position] is not None]
            for position in older:
                forgotten_tokens -= views[position].text_tokens  # counted among the forgotten ones just above
                views[position] = show(position)
            shown_views = [views[position] for position in sorted(older)] + shown_views
        as_text = {view.page.label for view in shown_views if view.as_text}
        if any(hit.page in as_text for hit in passages):  # the page's own text holds the passage already
            passages = tuple(hit for hit in passages if hit.page not in as_text)
            passage_tokens = consumer.text_tokens(passages_text(passages)) if passages else 0
        report = self._report(shown_views, len(views), forgotten_tokens, hot_tokens, budget, consumer, gate)
        return Context(
            views,
            recent,
            replace(report, passage_tokens=passage_tokens),
            consumer,
            turns=turns,
            reprice=lambda page_budget: self._context(turns, stored_pages, pages, page_budget, consumer, policy, now,
                                                      gate, hits, open_layouts),
            cacheable_images=not self.forget_pixels,
            passages=passages,
        )

    def _reading_model(
        self, consumer: BaseConsumer, policy: ForgettingPolicy, explicit: ReadingModel | None
    ) -> ReadingModel:
        """The reading model that gates ``consumer``'s views: the one passed, the recall-aware policy's own, the
        memory's, or the consumer's default, the first of those made for this consumer."""
        candidates = [explicit, policy.model if isinstance(policy, RecallAwareBudget) else None, self.reading_model]
        for model in candidates:
            if model is not None and model.consumer == consumer.name:
                return model
        if explicit is not None:
            raise ValueError(f"reading_model is for consumer {explicit.consumer!r}, not {consumer.name!r}")
        return default_reading_model(consumer)

    async def acontext(self, budget: float | None = None, consumer: str | BaseConsumer | None = None, **options: Any) -> Context:
        """``context`` without blocking the event loop."""
        return await asyncio.to_thread(self.context, budget, consumer, **options)

    @staticmethod
    def _forgotten_reason(
        page: Page,
        consumer: BaseConsumer,
        gate: ReadingGate,
        why: str,
        chooser: str,
        page_budget: int | None,
        spent_on_newer: int,
    ) -> str:
        """Why the newest forgotten page is forgotten: its age (the policy without a budget), or what the budget had
        left (and, when no level reads at the floor, that it could only have gone as text)."""
        if page_budget is None:
            return f"{why}: forgotten by {chooser} without a budget"
        choices = view_choices(consumer, page, gate)
        cheapest = min(choices, key=lambda choice: choice.tokens)
        reason = (f"{why}: forgotten by {chooser}: newer pages took {spent_on_newer} of the {page_budget} tokens left"
                  f" after the recent turns; its cheapest view costs {cheapest.tokens}"
                  f" ({'text' if cheapest.as_text else 'image'} at {consumer.tiers[cheapest.level].name})")
        readable = [choice for choice in choices if choice.reading is not None and not choice.as_text]
        if not readable and any(choice.reading is not None for choice in choices):
            best = max((c for c in choices if c.reading is not None), key=lambda c: c.reading.value)  # type: ignore[union-attr]
            reason += (f"; no level reads at min_recall {gate.min_recall:.0%} (best: {best.reading.value:.1%} at"  # type: ignore[union-attr]
                       f" {consumer.tiers[best.level].name}), so it could only go as text")
        return reason

    def _view(
        self,
        stored: StoredPage,
        level: int,
        consumer: BaseConsumer,
        gate: ReadingGate,
        why: str,
        open_layout: PageLayout | None,
    ) -> PageView:
        """A shown page: an image with ``why`` ("age"/"budget"/the query's cue) and the prediction, or text with how it
        came to be (a cued page's reason still starts with its cue). An open page (``open_layout``) is drawn when its
        image is first needed."""
        key = (stored.page.index, level, why, consumer.name, gate.model, gate.min_recall)
        kept = self._shown_views.get(key) if open_layout is None else None
        if kept is not None and kept[0] is stored:
            return kept[1]
        page = stored.page
        choice = view_choices(consumer, page, gate)[level]
        tier = consumer.tier(level)
        if why.startswith(REASON_QUERY):
            reason = f"{why}; {choice.reason}"
        else:
            reason = f"{choice.reason}; {tier.name} by {why}" if choice.as_text else f"{why}: {choice.reason}"
        view = PageView(
            page,
            level,
            tier,
            choice.tokens,
            choice.text_tokens,
            as_text=choice.as_text,
            load_image=None if choice.as_text else lambda: fit_to_tier(self._master(page.index, open_layout), tier),
            reason=reason,
            expected_recall=choice.recall,
            sealed=open_layout is None,
        )
        if open_layout is None and why in (REASON_AGE, REASON_BUDGET):
            if len(self._shown_views) >= _SHOWN_VIEWS_KEPT:
                self._shown_views.clear()
            self._shown_views[key] = stored, view
        return view

    def _forget_pixels(self, stored_pages: Sequence[StoredPage], ages: Sequence[int | None]) -> None:
        """Replace stored images by their age-level pixels, for good: the disk keeps only what is still shown."""
        tier_rank = {tier.name: i for i, tier in enumerate(self.consumer.tiers)}
        for stored, level in zip(stored_pages, ages):
            current = -1 if stored.image_tier is None else tier_rank.get(stored.image_tier, -1)
            if level is None or level <= current:
                continue
            tier = self.consumer.tier(level)
            smaller = encode_png(fit_to_tier(decode_png(self._image_bytes(stored.page.index)), tier))
            key = f"{stored.page.render_key}@{tier.name}"
            self.store.replace_image(self.scope, stored.page.index, key, smaller, tier.name)
            log.info("%s: page %d pixels reduced to %s (forget_pixels)", self.scope, stored.page.index, tier.name)
            with self._lock:
                self._pages[stored.page.index] = StoredPage(stored.page, key, tier.name)

    def _report(
        self,
        shown: Sequence[PageView],
        pages_total: int,
        dropped_text_tokens: int,
        hot_tokens: int,
        budget: int | None,
        consumer: BaseConsumer,
        gate: ReadingGate,
    ) -> TokenReport:
        """The report of a context whose ``shown`` views (oldest first) are all but ``pages_total - len(shown)``
        forgotten pages holding ``dropped_text_tokens`` text tokens: the forgotten ones are most of a long session
        and counted as they are kept (``_ForgottenViews``), not visited."""
        images: list[PageView] = []
        as_text: list[PageView] = []
        for view in shown:
            (as_text if view.as_text else images).append(view)
        positions = None
        if isinstance(consumer, DeepSeekOCRConsumer):
            # The DeepEncoder's positions follow from a page's level and size alone: each distinct one worked out once.
            known: dict[tuple[int | None, int, int], int] = {}
            positions = 0
            for view in images:
                key = (view.level, view.page.width, view.page.height)
                if key not in known:
                    known[key] = consumer.decoder_positions(view.page, view.level)  # type: ignore[arg-type]
                positions += known[key]
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
            pages_total=pages_total,
            pages_as_images=len(images),
            pages_as_text=len(as_text),
            pages_dropped=pages_total - len(shown),
            dropped_text_tokens=dropped_text_tokens,
            expected_recall=_expected_recall([*images, *as_text], hot_tokens, dropped_text_tokens),
            min_recall=gate.min_recall,
        )

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "OpticalMemory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _expected_recall(shown: Sequence[PageView], hot_tokens: int, forgotten_tokens: int) -> float | None:
    """Expected share of all the session's text read back: recent turns in full, each shown page by its view, the
    forgotten pages' text not at all (``None`` when a shown page's recall is unknown)."""
    read = float(hot_tokens)
    total = hot_tokens + forgotten_tokens
    for view in shown:
        if view.expected_recall is None:
            return None
        read += view.text_tokens * view.expected_recall
        total += view.text_tokens
    return read / total if total else 1.0


def open_memory(
    store: Store,
    *,
    user: str,
    session: str,
    consumer: BaseConsumer,
    hot_turns: int,
    policy: ForgettingPolicy | None,
    embedder: Embedder | None = None,
) -> OpticalMemory:
    """The memory of ``session`` whatever provider it was first rendered for: new sessions in ``consumer``'s preset
    style, existing ones in the preset they were sealed with, so their pages stay and only the pricing changes
    (``ValueError`` for a custom style, which only ``OpticalMemory`` itself can reopen). ``embedder``: as for
    ``OpticalMemory``."""
    validate_options(hot_turns, policy)
    preferred = RenderStyle.preset(consumer.render_preset)
    info = store.session(Scope(user, session))
    stored = preferred.session_key() if info is None else info.style_key
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
        store, user=user, session=session, hot_turns=hot_turns, consumer=consumer, policy=policy, style=style,
        embedder=embedder,
    )


class _QueryHits:
    """A query's hits on the pages of one snapshot, best first, each located (its snippet cut, its page found) only
    when a context first asks for it: a context quotes as many as its budget pays for and cues the pages of the
    best few, so most of the QUERY_HITS turns found are never cut."""

    def __init__(self, matches: Sequence[SearchMatch], terms: Sequence[str], pages: Sequence[StoredPage]) -> None:
        # Hits in the recent text are sent verbatim anyway: the query itself (the user's latest message) is usually
        # among them, holding every one of its own words.
        last_on_a_page = pages[-1].page.segments[-1].turn_index if pages else -1
        self._waiting = iter([found for found in matches if found.turn.index <= last_on_a_page])
        self._terms, self._pages = terms, pages
        self._located: list[tuple[SearchHit, int]] = []
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[tuple[SearchHit, int]]:
        """``(hit, index of the page showing it)``, best first."""
        position = 0
        while True:
            with self._lock:
                while position == len(self._located):
                    found = next(self._waiting, None)
                    if found is None:
                        return
                    hit, page = _located(found, self._terms, self._pages)
                    if page is not None:
                        self._located.append((hit, page.page.index))
                located = self._located[position]
            yield located
            position += 1

    def cues(self, cap: int) -> tuple[tuple[int, float], ...]:
        """``(page index, score)`` of the pages showing the best QUERY_CUE_HITS hits, best first, at most ``cap``:
        those whose best hit scores at least QUERY_SCORE_SHARE of the best hit's score."""
        located = list(itertools.islice(self, QUERY_CUE_HITS))
        bar = max((hit.score for hit, _ in located), default=0.0) * QUERY_SCORE_SHARE
        cues: dict[int, float] = {}
        for hit, page in located:
            if hit.score >= bar:
                cues.setdefault(page, hit.score)
        return tuple(cues.items())[:cap]

    def quoted(self, consumer: BaseConsumer, allowance: int | None) -> tuple[tuple[SearchHit, ...], int]:
        """The hits quoted verbatim: the best, as many as ``allowance`` tokens pay for (every hit without an
        allowance); and what their block costs (``passages_text``, what ``Context.messages`` sends)."""
        quoted: list[SearchHit] = []
        spent = consumer.text_tokens(PASSAGES_HEADER)
        for hit, _ in self:
            # A passage with the separator before it: the same text whenever the same hit is quoted, so counted once.
            cost = consumer.text_tokens(PASSAGE_SEPARATOR + passage_text(hit))
            if allowance is not None and spent + cost > allowance:
                break
            quoted.append(hit)
            spent += cost
        # The block as sent, counted whole: a token may span a seam between two passages.
        while quoted:
            spent = consumer.text_tokens(passages_text(quoted))
            if allowance is None or spent <= allowance:
                return tuple(quoted), spent
            quoted.pop()
        return (), 0


def _rarity(turn_count: int, turns_with_word: int) -> float:
    """How rare a word is in a session: BM25's inverse document frequency, in the form that stays positive."""
    return math.log(1.0 + (turn_count - turns_with_word + 0.5) / (turns_with_word + 0.5))


def _by_rare_words(matches: Sequence[SearchMatch], rarity: Mapping[str, float]) -> list[SearchMatch]:
    """``matches`` best first by how rare the query words each holds are (the sum of their ``rarity``), ties in the
    index's order; each match's score is that sum. BM25 also weighs a word by how short the turn is, so a few
    words holding only the query's commonest one outrank a long turn holding its rarest: a context quotes about
    240 characters of a turn whatever its length (``excerpt``), so length says nothing of what it shows."""
    scored = [SearchMatch(found.turn, sum(rarity[word] for word in words_held(found.turn.content, rarity)))
              for found in matches]
    return sorted(scored, key=lambda found: -found.score)


def _located(found: SearchMatch, terms: Sequence[str], pages: Sequence[StoredPage]) -> tuple[SearchHit, StoredPage | None]:
    """``found`` as a hit: its verbatim snippet around ``terms``, cut at the edge of the page showing the first
    matching word so that ``recall`` of that page holds it, and that page (``None`` while that part is recent)."""
    turn = found.turn
    cut = excerpt(turn.content, terms)
    start, end = cut.start, cut.end
    on_page = _page_segment(pages, turn.index, start if cut.anchor is None else cut.anchor)
    if on_page is not None:
        start, end = max(start, on_page[1]), min(end, on_page[2])
    hit = SearchHit(
        turn_index=turn.index,
        page="recent" if on_page is None else on_page[0].page.label,
        score=found.score,
        snippet=turn.content[start:end],
        start=start,
        end=end,
        role=turn.role,
        timestamp=turn.timestamp,
    )
    return hit, None if on_page is None else on_page[0]


def _page_segment(pages: Sequence[StoredPage], turn_index: int, offset: int) -> tuple[StoredPage, int, int] | None:
    """The sealed page showing character ``offset`` of turn ``turn_index`` and the span of the turn it shows, or
    ``None`` while that character is still text."""
    # Pages are in turn order: start at the first one whose last turn is not before this turn.
    first = bisect.bisect_left(pages, turn_index, key=lambda stored: stored.page.segments[-1].turn_index)
    for stored in pages[first:]:
        if stored.page.segments[0].turn_index > turn_index:
            break
        for segment in stored.page.segments:
            if segment.turn_index == turn_index and segment.start <= offset < segment.end:
                return stored, segment.start, segment.end
    return None


# -- sessions as data their user owns -----------------------------------------------------------------------------


@contextlib.contextmanager
def _opened(store: str | os.PathLike[str] | Store) -> Iterator[Store]:
    """``store`` itself when it is a ``Store`` (left open), else the store it names, closed afterwards."""
    if isinstance(store, Store):
        yield store
        return
    opened = open_store(store)
    try:
        yield opened
    finally:
        opened.close()


def list_sessions(store: str | os.PathLike[str] | Store, *, user: str | None = None) -> list[SessionInfo]:
    """Every stored session of ``user`` (all users: ``None``), each stream of it (the conversation, then its
    companions) with its turn and page counts, sorted by user and session. Writes nothing."""
    with _opened(store) as opened:
        infos = []
        for conversation in opened.sessions(user):
            for scope in opened.scopes(conversation.user, conversation.session):
                info = opened.session(scope)
                if info is not None:  # deleted between the two reads
                    infos.append(info)
        return infos


def delete_session(store: str | os.PathLike[str] | Store, session: str, *, user: str = "default") -> Erased:
    """Erase ``session`` of ``user``: its turns, their search index rows, pages, images no other session shows,
    its companions and its rows, in one transaction. What stays on disk afterwards is the backend's to say:
    ``SQLiteStore`` (zeroed pages, merged index, truncated WAL) and ``PostgresStore`` (dead rows until VACUUM)
    document it. A memory that has the session open finds it empty at its next read."""
    with _opened(store) as opened:
        return opened.delete_session(user, session)


def export_session(
    store: str | os.PathLike[str] | Store, session: str, out: IO[str], *, user: str = "default"
) -> int:
    """Write every turn of ``session`` (its companions too) to ``out`` as JSON lines, verbatim, and return how many.

    A line is ``{"role", "content", "timestamp", "turn"}`` plus ``"name"`` and ``"metadata"`` when the turn has them,
    and ``"companion"`` for a companion's turns (the conversation's come first): the JSONL that ``optical-memory
    context`` reads back. ``ValueError`` when the session is not stored.
    """
    scope = Scope(user, session)
    with _opened(store) as opened:
        scopes = opened.scopes(scope.user, scope.session)
        if not scopes:
            raise ValueError(f"session {session!r} of user {user!r} is not stored")
        written = 0
        for stream in scopes:
            for turn in opened.load(stream)[0]:
                record: dict[str, Any] = {"role": turn.role.value, "content": turn.content, "timestamp": turn.timestamp,
                                          "turn": turn.index}
                if turn.name is not None:
                    record["name"] = turn.name
                if turn.metadata:
                    record["metadata"] = dict(turn.metadata)
                if stream.companion:
                    record["companion"] = stream.companion
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
        return written
