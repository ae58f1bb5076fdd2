"""Leaf types of optical-memory: turns, pages, modes, tiers, page views and token reports.

This module imports nothing else of the project, so that ``renderers``, ``policies`` and the model code can all
depend on it without depending on each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

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


def validate_text(value: object, *, field_name: str = "content") -> str:
    """Return ``value`` if it is a non-blank string, else raise a ``TypeError``/``ValueError`` naming the field."""
    if not isinstance(value, str):
        raise TypeError(f"{field_name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{field_name} must not be empty or whitespace only")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise ValueError(f"{field_name} contains a lone surrogate code point, which cannot be stored as UTF-8")
    return value


def validate_int(value: object, *, field_name: str, minimum: int) -> int:
    """An int of at least ``minimum`` (bools refused); errors name ``field_name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field_name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{field_name} must be >= {minimum}, got {value}")
    return value


def validate_timestamp(value: object, *, field_name: str = "timestamp") -> float:
    """Seconds since the epoch: a finite number (bools refused), returned as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field_name} must be a finite number of seconds, got {value!r}")
    return float(value)


def validate_budget(value: object, *, field_name: str = "budget") -> int:
    """A token budget: a finite, non-negative number, returned as an int."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field_name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{field_name} must be a finite non-negative number, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Turn:
    """One chat turn, verbatim. ``index`` is its position in the session (0-based), assigned by the store."""

    index: int
    role: Role
    content: str
    timestamp: float
    name: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


class Fit(str, Enum):
    """How a page image is brought to a square input (ARCHITECTURE.md, "Modes")."""

    PAD = "pad"  # aspect kept, bicubic fit, centre-padded with (127, 127, 127)
    RESIZE = "resize"  # plain resize to a square, aspect distorted
    TILE = "tile"  # gundam: 640-px tiles plus one padded 1024 global view
    SCALE = "scale"  # host images: aspect kept, longest side scaled to the tier's size, no padding


PAD_COLOR = (127, 127, 127)
GUNDAM_TILE = 640
GUNDAM_GLOBAL = 1024
GUNDAM_MIN_TILES = 2
GUNDAM_MAX_TILES = 9


class Mode(Enum):
    """DeepSeek-OCR's native resolutions: the rungs of the forgetting ladder for the DeepEncoder.

    ``valid_tokens`` is the paper's count (grid cells); ``decoder_positions`` adds one ``image_newline`` per grid row
    and the final ``view_separator``, i.e. what the MoE decoder actually spends.
    """

    TINY = "tiny"
    SMALL = "small"
    BASE = "base"
    LARGE = "large"
    GUNDAM = "gundam"

    @property
    def size(self) -> int:
        """Side of the square input in pixels (the global view for GUNDAM)."""
        return _MODE_SIZE[self.value]

    @property
    def fit(self) -> Fit:
        return _MODE_FIT[self.value]

    @property
    def grid(self) -> int:
        """Tokens per side of the (global) view: input side / 16 (SAM patches) / 4 (16x compressor)."""
        return _MODE_SIZE[self.value] // 64

    def valid_tokens(self, tiles: tuple[int, int] = (1, 1)) -> int:
        """Vision tokens the encoder emits; ``tiles`` = (columns, rows) of GUNDAM's local grid."""
        global_tokens = self.grid**2
        if self is not Mode.GUNDAM:
            return global_tokens
        cols, rows = tiles
        local = 0 if cols * rows <= 1 else (GUNDAM_TILE // 64) ** 2 * cols * rows
        return global_tokens + local

    def decoder_positions(self, tiles: tuple[int, int] = (1, 1)) -> int:
        """Decoder positions: every grid row ends with ``image_newline``, one ``view_separator`` closes the image."""
        positions = self.grid * (self.grid + 1) + 1
        if self is Mode.GUNDAM:
            cols, rows = tiles
            if cols * rows > 1:
                tile_grid = GUNDAM_TILE // 64
                positions += tile_grid * rows * (tile_grid * cols + 1)
        return positions


_MODE_SIZE = {"tiny": 512, "small": 640, "base": 1024, "large": 1280, "gundam": GUNDAM_GLOBAL}
_MODE_FIT = {"tiny": Fit.RESIZE, "small": Fit.RESIZE, "base": Fit.PAD, "large": Fit.PAD, "gundam": Fit.TILE}


def gundam_grid(width: int, height: int, *, max_tiles: int = GUNDAM_MAX_TILES) -> tuple[int, int]:
    """(columns, rows) of GUNDAM's local tiles for an image of this size.

    Follows DeepSeek-OCR's ``dynamic_preprocess`` (``process/image_process.py`` in the released repository): no tiles
    when both sides are <= 640; otherwise the grid with 2 <= cols*rows <= ``max_tiles`` whose aspect is closest to the
    image's, ties going to the larger grid when the image area exceeds half the grid's pixel area.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if width <= GUNDAM_TILE and height <= GUNDAM_TILE:
        return (1, 1)
    aspect = width / height
    candidates = sorted(
        {
            (cols, rows)
            for n in range(GUNDAM_MIN_TILES, max_tiles + 1)
            for cols in range(1, n + 1)
            for rows in range(1, n + 1)
            if GUNDAM_MIN_TILES <= cols * rows <= max_tiles
        },
        key=lambda grid: (grid[0] * grid[1], grid[0]),
    )
    best, best_diff = (1, 1), float("inf")
    area = width * height
    for cols, rows in candidates:
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and area > 0.5 * GUNDAM_TILE * GUNDAM_TILE * cols * rows:
            best = (cols, rows)
    return best


@dataclass(frozen=True)
class Tier:
    """One rung of a consumer's ladder: the pixels a page is sent at, and how it is fitted.

    For the DeepEncoder a tier is a ``Mode``; for a host LLM it is a pixel size (and, for OpenAI, a ``detail``).
    """

    name: str
    size: int
    fit: Fit
    mode: Mode | None = None
    detail: str | None = None


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
    is charged for this view (0 when forgotten). ``image`` (the page fitted to its tier) is produced on first access,
    so pricing a context never decodes pixels it does not send.
    """

    page: Page
    level: int | None
    tier: Tier | None
    tokens: int
    text_tokens: int
    as_text: bool = False
    load_image: "Callable[[], Image.Image] | None" = field(default=None, repr=False, compare=False)

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
    """

    consumer: str
    tokenizer: str
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

    @property
    def total_tokens(self) -> int:
        """What the consumer is charged for the whole context."""
        return self.hot_text_tokens + self.image_tokens + self.fallback_text_tokens

    @property
    def compression(self) -> float:
        """Text tokens the images replace, per image token spent (0 when no page is an image)."""
        return self.paged_text_tokens / self.image_tokens if self.image_tokens else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["total_tokens"] = self.total_tokens
        data["compression"] = round(self.compression, 3)
        return data
