"""The records that flow through optical-memory: turns, pages, page views, token reports and the consumer protocol.

``optical_memory.core`` is the leaf layer: it imports nothing else of the project, so that ``renderers``,
``policies``, the store and the model code can all depend on it without depending on each other. Modes, tiers and
every fitting rule live beside these records in :mod:`optical_memory.core.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Mapping,
    Protocol,
    Sequence,
    runtime_checkable,
)

from optical_memory.core.geometry import Mode, Tier

if TYPE_CHECKING:
    from PIL import Image


class Role(str, Enum):
    """Who spoke a turn."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"

    @classmethod
    def parse(cls, value: object, *, field_name: str = "role") -> "Role":
        """Accept a ``Role`` or its string value (``"human"``/``"ai"`` as LangChain spells them)."""
        if isinstance(value, Role):
            return value
        if not isinstance(value, str):
            raise TypeError(f"{field_name} must be a string, got {type(value).__name__}")
        aliases = {"human": "user", "ai": "assistant", "developer": "system"}
        key = aliases.get(value.strip().lower(), value.strip().lower())
        try:
            return cls(key)
        except ValueError:
            allowed = ", ".join(r.value for r in cls)
            raise ValueError(f"{field_name} {value!r} is not one of: {allowed}") from None


@dataclass(frozen=True)
class Turn:
    """One chat turn, verbatim. ``index`` is its position in the session (0-based), assigned by the store."""

    index: int
    role: Role
    content: str
    timestamp: float
    name: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnSegment:
    """The part ``content[start:end]`` of turn ``turn_index`` that a page shows."""

    turn_index: int
    role: Role
    start: int
    end: int
    continued: bool = False  # the segment continues a turn begun on an earlier page


@dataclass(frozen=True)
class LineBox:
    """A drawn line: its pixel box on the master canvas and the span of ``Page.text`` it shows."""

    x0: int
    y0: int
    x1: int
    y1: int
    text_start: int
    text_end: int


@dataclass(frozen=True)
class Page:
    """A sealed page: master image plus the exact source text it shows.

    ``text`` is everything drawn on the page in reading order (page label, role headers, turn text with its own
    newlines; word-wrap breaks are not inserted), so it is both the recall source of truth and the reference that
    readers are scored against. ``render_key`` hashes text + style, so identical pages are rendered once.
    """

    index: int
    text: str
    segments: tuple[TurnSegment, ...]
    lines: tuple[LineBox, ...]
    width: int
    height: int
    render_key: str
    missing_glyphs: int = 0
    timestamp: float = 0.0  # of the newest turn on the page: wall-clock age is measured from it

    @property
    def label(self) -> str:
        """The page id as printed on the page, which ``recall_page`` accepts."""
        return f"page {self.index}"

    @cached_property
    def turn_indices(self) -> tuple[int, ...]:
        """Indices of the turns this page shows, in order (cached: policies ask on every context)."""
        return tuple(dict.fromkeys(segment.turn_index for segment in self.segments))


def pages_in_common(known: Sequence[Page], pages: Sequence[Page]) -> int:
    """How many leading pages ``pages`` shares with ``known``, so that what was worked out for those stays valid.

    A session's pages change only at its newest end (a page sealed, open pages laid out anew as turns reach them),
    so the ends are compared first, and whole lists at C speed: identical pages compare at once, and equal ones
    (another load of the same session) count as shared, since every field of a page takes part in equality.
    """
    count = min(len(known), len(pages))
    old = known[:count] if isinstance(known, list) else list(known[:count])
    new = pages[:count] if isinstance(pages, list) else list(pages[:count])
    if old == new:
        return count
    # Back from the end, doubling, to a prefix they share; then halving, comparing whole runs, to the first page
    # that differs (one page at a time, each comparison of two distinct pages would build both pages' field tuples).
    step = 1
    while step < count and old[:count - step] != new[:count - step]:
        step *= 2
    shared, differs = max(0, count - step), count - step // 2  # old[:shared] == new[:shared]; not so up to differs
    while differs - shared > 1:
        middle = (shared + differs) // 2
        if old[shared:middle] == new[shared:middle]:
            shared = middle
        else:
            differs = middle
    return shared


@runtime_checkable
class Consumer(Protocol):
    """Whatever reads the context: prices pages and text, and names its tier ladder (sharpest first).

    Policies only ever see this protocol: they choose a fidelity level (an index into ``tiers``) per page.
    """

    name: str

    @property
    def tiers(self) -> Sequence[Tier]: ...

    def page_tokens(self, page: Page, level: int) -> int:
        """Tokens the consumer charges for ``page`` sent at ``tiers[level]``."""
        ...

    def text_tokens(self, text: str) -> int:
        """Tokens the consumer charges for ``text`` sent as text."""
        ...


@dataclass(frozen=True)
class PageView:
    """A page as one context presents it.

    ``level`` indexes the consumer's ladder (``None``: forgotten). ``as_text`` means the page's turns go as text
    because the image would have cost more than the text it replaces (fail-closed). ``tokens`` is what the consumer
    is charged for this view (0 when forgotten). ``reason`` says why the page has its level or goes as text, and
    ``expected_recall`` what the consumer's reading model predicts it reads back (``None``: no model). ``image``
    (the page fitted to its tier) is produced on first access, so pricing a context never decodes pixels it does
    not send. ``sealed`` is False for the open page: the turns past the hot window that fill no page yet, laid out
    as the next page, which keeps its label and grows until it is full and stored.
    """

    page: Page
    level: int | None
    tier: Tier | None
    tokens: int
    text_tokens: int
    as_text: bool = False
    load_image: "Callable[[], Image.Image] | None" = field(default=None, repr=False, compare=False)
    reason: str = ""  # why the page has its level or goes as text: "age", "budget", "fail-closed: …", …
    expected_recall: float | None = None  # what the consumer's reading model predicts it reads back (None: no model)
    sealed: bool = True

    @cached_property
    def image(self) -> "Image.Image | None":
        """The pixels the consumer receives, or ``None`` when the page is forgotten or sent as text."""
        if self.load_image is None or self.level is None or self.as_text:
            return None
        return self.load_image()

    @property
    def mode(self) -> Mode | None:
        """The DeepEncoder mode, or ``None`` when forgotten, sent as text, or priced by a host."""
        if self.tier is None or self.as_text:
            return None
        return self.tier.mode

    @property
    def forgotten(self) -> bool:
        return self.level is None


@dataclass(frozen=True)
class TokenReport:
    """Exact token accounting of one context.

    ``image_tokens`` are valid vision tokens for the DeepEncoder (the paper's count) or the host's own image-token
    charge; ``decoder_positions`` is set for the DeepEncoder only (image tokens plus row newlines and separators).
    ``tokenizer`` names what counted the text; ``tokenizer_exact`` is false where that is a stated proxy (the
    provider publishes no tokenizer), and the name says why. ``page_image_bytes`` is what the pages sent as images
    weigh as PNG (base64 on the wire adds a third): ``None`` in a context, which prices pixels without encoding
    them; set on the report of built messages, which encode them.
    """

    consumer: str
    tokenizer: str
    tokenizer_exact: bool
    budget: int | None
    hot_text_tokens: int
    paged_text_tokens: int
    image_tokens: int
    fallback_text_tokens: int
    decoder_positions: int | None
    pages_total: int
    pages_as_images: int
    pages_as_text: int
    pages_dropped: int
    dropped_text_tokens: int
    page_image_bytes: int | None = None
    # Expected share of the session's text (recent turns and every page, forgotten ones included) the consumer reads
    # back from this context under its reading model; None when a page went as an image that no model predicts.
    expected_recall: float | None = None
    min_recall: float | None = None  # the floor below which a page went as text instead of as an image
    # The verbatim passages of a query's best hits sent beside the pages (``Context.passages``), header included.
    passage_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """What the consumer is charged for the whole context."""
        return self.hot_text_tokens + self.image_tokens + self.fallback_text_tokens + self.passage_tokens

    @property
    def compression(self) -> float:
        """Text tokens the images replace, per image token spent (0 when no page is an image)."""
        return self.paged_text_tokens / self.image_tokens if self.image_tokens else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["total_tokens"] = self.total_tokens
        data["compression"] = round(self.compression, 3)
        return data


@dataclass(frozen=True)
class SearchHit:
    """A turn that ``OpticalMemory.search`` found.

    ``snippet`` is verbatim: ``memory.turns[turn_index].content[start:end]``, up to about 240 characters around the
    words that matched. ``page`` is the label of the page showing the first matching word (``"page 3"``, what
    ``recall`` takes; the snippet is cut at that page's edge, so ``recall(page)`` holds it), the open page included,
    or ``"recent"`` while that part of the turn is in the hot window. ``score``: higher
    is better; its scale is the backend's (SQLite ``-bm25()``, PostgreSQL ``ts_rank_cd``), so compare scores within
    one result list only. With an embedder it is the reciprocal rank fusion score instead
    (``optical_memory.store.vectors.RRF_K``: in (0, 2/61], about 0.033 for a turn both rankings put first). A
    context's passages (``Context.passages``) score the rarity of the query words they hold instead
    (``OpticalMemory.context``), fused the same way with an embedder.
    """

    turn_index: int
    page: str
    score: float
    snippet: str
    start: int
    end: int
    role: Role
    timestamp: float
