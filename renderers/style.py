"""How a page looks: canvas, type sizes, spacing, colours and font chains, with presets per consumer.

Density is the one choice that matters: the glyph size a consumer finally sees is ``font_px`` times the scale at
which it receives the page, and OCR-grade readers need roughly 6-7 px glyphs or more (see /work/shared/OFFLINE.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Mapping

from optical_memory.renderers.fonts import (
    FONT_DIR,
    MONO,
    SANS,
    SANS_BOLD,
    FontChain,
    bundled_chain,
)

from optical_memory.core.validation import validate_int

# Bump when the layout rules move text for an unchanged style (part of every key, the session key too).
LAYOUT_VERSION = 2
# Bump when only the drawing changes the pixels of an unchanged layout (part of the full key, so of every page's
# render key: a page stored before is drawn anew, not reused, while sessions still reopen). 2: bidi controls and
# colour emoji.
DRAWING_VERSION = 2


def _text_chain() -> tuple[str, ...]:
    return bundled_chain(SANS)


def _mono_chain() -> tuple[str, ...]:
    return (str(MONO), *_text_chain())


def _header_chain() -> tuple[str, ...]:
    return (str(SANS_BOLD), *_text_chain())


def _check_int(name: str, value: object, low: int, high: int) -> None:
    validate_int(value, field_name=f"RenderStyle.{name}", minimum=low, maximum=high)


def _check_float(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"RenderStyle.{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"RenderStyle.{name} must be between {low} and {high}, got {value}")


@dataclass(frozen=True)
class RenderStyle:
    """Every setting that affects a page's pixels. Frozen; ``key()`` hashes it (font file contents, not paths).

    Pages are greyscale: ``background`` and ``ink`` are grey levels (0 black … 255 white), so a page is a
    one-channel "L" image. Sizes are pixels of the master canvas. ``line_spacing`` is a multiple of the larger of
    the two type sizes; ``turn_gap`` is the blank space before each turn, in line heights. The page label, date
    lines and role tags use ``header_font_files`` at ``font_px``; fenced code blocks use ``mono_font_files`` at
    ``mono_font_px``; ``tab_size`` is the tab stop distance in spaces of the line's font.
    """

    width: int = 1280
    height: int = 1280
    font_px: int = 20
    mono_font_px: int = 18
    line_spacing: float = 1.2
    margin_x: int = 24
    margin_y: int = 24
    turn_gap: float = 0.2
    tab_size: int = 4
    background: int = 255
    ink: int = 0
    font_files: tuple[str, ...] = field(default_factory=_text_chain)
    mono_font_files: tuple[str, ...] = field(default_factory=_mono_chain)
    header_font_files: tuple[str, ...] = field(default_factory=_header_chain)

    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = MappingProxyType({
        # Measured on real chat text (benchmarks/page_density.py: cl100k tokens per full page of LLM-length turns;
        # "short turns" are the demo's raw chitchat one-liners):
        # DeepSeek-OCR masters: ~1,240 tokens per 1280 px page (short turns ~760). At TINY (512 px) the 20 px type
        # becomes 8 px, above the ~6.5 px where OCR readers start dropping characters (rapidocr read a benchmark
        # page back from TINY at 0.9998 char precision, 0.999 recall).
        "deepseek-ocr": dict(width=1280, height=1280, font_px=20, mono_font_px=18, margin_x=24, margin_y=24),
        # OpenAI high detail scales the short side to 768 and charges 85 + 170 per 512 px tile: a 768 px square is
        # 4 tiles (765 tokens) for ~1,290 text tokens at 12 px, about the smallest type GPT-4o-class models read
        # reliably. Only ~1.7x fewer tokens than the text: hosts gain little.
        "openai": dict(width=768, height=768, font_px=12, mono_font_px=11, margin_x=12, margin_y=12),
        # Anthropic charges ~width*height/750 up to ~1.15 megapixels: a 1092 px square is the largest sent as is
        # (~1,590 tokens) and holds ~2,500 text tokens at 12 px (~1.6x).
        "anthropic": dict(width=1092, height=1092, font_px=12, mono_font_px=11, margin_x=16, margin_y=16),
        # Gemini charges 258 tokens per tile, and any image over 384 px is at least four tiles (1,032 tokens). A page
        # that still reads at <= 384 px (one tile) would need ~24 px type on a 768 canvas and hold almost nothing,
        # so this is a dense 768 px page at 10 px type: ~1,830 text tokens, ~1.8x at best.
        "gemini": dict(width=768, height=768, font_px=10, mono_font_px=9, margin_x=12, margin_y=12),
        # Qwen2.5-VL spends one token per 28x28 px: an 896 px square is 32x32 = 1,024 tokens for ~1,720 text tokens
        # at 12 px (~1.7x).
        "qwen-vl": dict(width=896, height=896, font_px=12, mono_font_px=11, margin_x=14, margin_y=14),
    })

    def __post_init__(self) -> None:
        _check_int("width", self.width, 64, 8192)
        _check_int("height", self.height, 64, 8192)
        _check_int("font_px", self.font_px, 4, 256)
        _check_int("mono_font_px", self.mono_font_px, 4, 256)
        _check_float("line_spacing", self.line_spacing, 1.0, 4.0)
        _check_int("margin_x", self.margin_x, 0, self.width // 3)
        _check_int("margin_y", self.margin_y, 0, self.height // 3)
        _check_float("turn_gap", self.turn_gap, 0.0, 4.0)
        _check_int("tab_size", self.tab_size, 1, 16)
        _check_int("background", self.background, 0, 255)
        _check_int("ink", self.ink, 0, 255)
        if self.ink == self.background:
            raise ValueError(f"RenderStyle.ink must differ from background ({self.background}), or nothing shows")
        for name in ("font_files", "mono_font_files", "header_font_files"):
            chain = FontChain(getattr(self, name), field_name=f"RenderStyle.{name}")
            object.__setattr__(self, name, chain.files)
        # A page must hold its label and a turn whose first word needs a line below its role tag.
        needed = 3 * self.line_height + self.turn_gap_px
        if needed > self.height - 2 * self.margin_y:
            raise ValueError(
                f"RenderStyle.height {self.height} (margins {self.margin_y}) cannot hold the page label, a role "
                f"tag and a line of text at line height {self.line_height} px: lower font_px or line_spacing"
            )

    @property
    def line_height(self) -> int:
        """Pixels from one line's top to the next line's top."""
        return round(max(self.font_px, self.mono_font_px) * self.line_spacing)

    @property
    def turn_gap_px(self) -> int:
        return round(self.turn_gap * self.line_height)

    @property
    def text_width(self) -> int:
        """Width available to a line between the side margins."""
        return self.width - 2 * self.margin_x

    def key(self) -> str:
        """A stable hash of every setting that affects pixels, and of the layout rules' version.

        Font files enter by content, not by path, so the bundled fonts give the same key on every machine; the
        system fallbacks in the default chains are part of it, so installing or removing Noto fonts changes it.
        """
        return self._key

    def session_key(self) -> str:
        """What a memory session pins: every setting and the fonts shipped with this package, not system fallbacks.

        A memory therefore reopens on a machine with other Noto fonts installed (pages already sealed keep their
        pixels; only characters the bundled DejaVu fonts lack may look different on pages sealed from then on).
        """
        return self._session_key

    @cached_property
    def _key(self) -> str:
        return self._hash(bundled_only=False)

    @cached_property
    def _session_key(self) -> str:
        return self._hash(bundled_only=True)

    def _hash(self, *, bundled_only: bool) -> str:
        settings: dict[str, Any] = {"layout_version": LAYOUT_VERSION}
        if not bundled_only:
            settings["drawing_version"] = DRAWING_VERSION
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name.endswith("font_files"):
                files = [f for f in value if Path(f).resolve().parent == FONT_DIR] if bundled_only else value
                value = list(FontChain(files).digests())
            settings[item.name] = value
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "RenderStyle":
        """A named preset (see ``PRESETS``), optionally with some fields overridden."""
        if not isinstance(name, str):
            raise TypeError(f"preset name must be a string, got {type(name).__name__}")
        if name not in cls.PRESETS:
            raise ValueError(f"preset {name!r} is not one of: {', '.join(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    def with_density(self, font_px: int) -> "RenderStyle":
        """The same canvas with another body type size; the code font scales in proportion."""
        _check_int("font_px", font_px, 4, 256)
        mono_font_px = max(4, round(font_px * self.mono_font_px / self.font_px))
        return dataclasses.replace(self, font_px=font_px, mono_font_px=mono_font_px)

    def describe(self) -> dict[str, Any]:
        """The settings as plain JSON-able values, font files by file name (for benchmark records)."""
        data = dataclasses.asdict(self)
        for name in ("font_files", "mono_font_files", "header_font_files"):
            data[name] = [os.path.basename(path) for path in data[name]]
        data["key"] = self.key()
        return data
