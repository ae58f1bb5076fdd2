"""Modes, tiers and every fitting rule: how a page image is brought to the pixels a consumer reads.

One module owns the geometry so that the pixels (``core.imaging``), the prices (``core.consumers``), the glyph sizes
a recall model reads (``policies``) and the encoder's inputs (``model.preprocessing``) can never disagree about the
size a page is sent at.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Iterable


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

    For the DeepEncoder a tier is a ``Mode``; for a host LLM it is a pixel size (and, for OpenAI, a ``detail``; for
    Gemini 3, a ``media_resolution`` level such as ``MEDIA_RESOLUTION_LOW``, which sets its price).
    """

    name: str
    size: int
    fit: Fit
    mode: Mode | None = None
    detail: str | None = None
    media_resolution: str | None = None


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """``width``×``height`` scaled by ``scale``, rounded, never below one pixel."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def pad_scale(width: int, height: int, size: int) -> float:
    """Scale of the aspect-kept fit into a ``size`` square (``Fit.PAD``; may enlarge)."""
    return min(size / width, size / height)


def longest_side_scale(width: int, height: int, size: int) -> float:
    """Scale that brings the longest side to at most ``size`` (``Fit.SCALE``; never enlarges)."""
    return min(1.0, size / max(width, height))


def fitted_size(width: int, height: int, tier: Tier) -> tuple[int, int]:
    """Pixel size of a ``width``×``height`` page as sent at ``tier`` (GUNDAM pages are sent whole)."""
    if tier.fit in (Fit.PAD, Fit.RESIZE):
        return tier.size, tier.size
    if tier.fit is Fit.TILE:
        return width, height
    return scaled_size(width, height, longest_side_scale(width, height, tier.size))


def glyph_scale(width: int, height: int, tier: Tier) -> float:
    """How much a page's glyph heights are scaled when fitted to ``tier`` (GUNDAM: in its 640-px tiles)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"page size must be positive, got {width}x{height}")
    if tier.fit is Fit.PAD:
        return pad_scale(width, height, tier.size)
    if tier.fit is Fit.RESIZE:
        return tier.size / height
    if tier.fit is Fit.TILE:
        cols, rows = gundam_grid(width, height)
        return GUNDAM_TILE * rows / height if cols * rows > 1 else pad_scale(width, height, tier.size)
    return longest_side_scale(width, height, tier.size)


def square_mode(width: int, height: int, modes: Iterable[Mode] = (Mode.TINY, Mode.SMALL, Mode.BASE, Mode.LARGE)) -> Mode | None:
    """The single-view mode an image of this size was fitted to (a square of its native side), else ``None``."""
    if width != height:
        return None
    return next((mode for mode in modes if mode.size == width), None)
