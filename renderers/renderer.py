"""The page renderer: turns → page layouts → greyscale page images.

Drawing composites cached bitmaps instead of asking FreeType for every glyph of every page: each glyph is rasterised
once per process (Pillow, basic layout), a word is composed from its glyphs at the whole-pixel advances layout
measured, and words are cached too because chat text repeats them, so most of a page is a few hundred pastes. Runs
that layout marked for shaping (right-to-left text, marks, emoji sequences) are rasterised whole by raqm in their
direction, and cached the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np
from optical_memory.renderers.fonts import FontChain, FontFace
from optical_memory.renderers.layout import Face, PageLayout, Paginator
from optical_memory.renderers.style import RenderStyle
from PIL import Image, ImageDraw

from optical_memory.core.types import Page, Turn

WORD_IMAGE_CACHE_SIZE = 1 << 14  # a few hundred bytes to a few KiB each: at most ~25 MiB
GLYPH_IMAGE_CACHE_SIZE = 1 << 13


class _Glyph(NamedTuple):
    """A rasterised glyph: coverage image (None when nothing is inked), box around the pen position, advance."""

    image: np.ndarray | None
    left: int
    top: int
    right: int
    bottom: int
    advance: int


@dataclass(frozen=True)
class RenderedPage:
    """A page record with its master image (mode "L", the style's canvas size) and whether the page is full."""

    page: Page
    image: Image.Image
    full: bool


class PageRenderer:
    """Lays out and draws chat turns as pages for one ``RenderStyle``.

    ``paginate`` is cheap (measures, never draws) and already gives each page's ``render_key``, so a caller can skip
    ``draw`` for pages it has cached. Same turns and style give identical pixels in any process.
    """

    def __init__(self, style: RenderStyle | None = None) -> None:
        if style is None:
            style = RenderStyle.preset("deepseek-ocr")
        if not isinstance(style, RenderStyle):
            raise TypeError(f"style must be a RenderStyle, got {type(style).__name__}")
        self.style = style
        self.chains = {
            Face.TEXT: FontChain(style.font_files),
            Face.MONO: FontChain(style.mono_font_files),
            Face.HEADER: FontChain(style.header_font_files),
        }
        self.faces = {
            Face.TEXT: FontFace(self.chains[Face.TEXT], style.font_px),
            Face.MONO: FontFace(self.chains[Face.MONO], style.mono_font_px),
            Face.HEADER: FontFace(self.chains[Face.HEADER], style.font_px),
        }
        self._paginator = Paginator(style, self.faces)
        self._word_image = lru_cache(maxsize=WORD_IMAGE_CACHE_SIZE)(self._rasterise)
        self._glyph_image = lru_cache(maxsize=GLYPH_IMAGE_CACHE_SIZE)(self._rasterise_glyph)

    def paginate(
        self, turns: Sequence[Turn], *, first_page_index: int = 0, first_turn_offset: int = 0
    ) -> list[PageLayout]:
        """Lay ``turns`` out on consecutive pages numbered from ``first_page_index``.

        ``first_turn_offset`` is how many characters of the first turn an earlier page already showed; its segment
        here is then a continuation. The last layout may be partial (``full`` False); full layouts never change
        when more turns are appended. ``Page.text`` is
        ``"\\n".join([label, date?, tag₁ + " " + content₁[start₁:end₁], date?, tag₂ + " " + …])``, with content
        slices verbatim and no characters added at wrap points or for drawn marks; ``renderers.layout`` states every
        rule.
        """
        return self._paginator.paginate(turns, first_page_index, first_turn_offset)

    def draw(self, layout: PageLayout) -> Image.Image:
        """The page image: mode "L" (pages are greyscale), ``style.width`` × ``style.height``."""
        if not isinstance(layout, PageLayout):
            raise TypeError(f"layout must be a PageLayout, got {type(layout).__name__}")
        if layout.style_key != self.style.key():
            raise ValueError("layout was made with another RenderStyle; draw it with a renderer of that style")
        style = self.style
        canvas = Image.new("L", (style.width, style.height), style.background)
        boxes = []
        for line in layout.lines:
            for run in line.runs:
                if run.font_index is None:
                    boxes.append((run, line.baseline, self.faces[run.face].px))
                    continue
                word = self._word_image(run.face, run.font_index, run.text, run.direction)
                if word is not None:
                    image, left, top = word
                    canvas.paste(style.ink, (run.x + left, line.baseline + top), image)
        if boxes:
            pen = ImageDraw.Draw(canvas)
            for run, baseline, px in boxes:
                # A hollow box the height of a capital: visibly "a character is here that no font has".
                top = baseline - round(px * 0.7)
                pen.rectangle((run.x + 1, top, run.x + max(2, run.width - 2), baseline - 1), outline=style.ink)
        return canvas

    def render(
        self, turns: Sequence[Turn], *, first_page_index: int = 0, first_turn_offset: int = 0
    ) -> list[RenderedPage]:
        """``paginate`` then ``draw`` every page."""
        layouts = self.paginate(turns, first_page_index=first_page_index, first_turn_offset=first_turn_offset)
        return [RenderedPage(layout.page, self.draw(layout), layout.full) for layout in layouts]

    def _rasterise_glyph(self, face: Face, font_index: int, char: str) -> _Glyph:
        font = self.faces[face].font(font_index)
        advance = round(font.getlength(char))
        left, top, right, bottom = font.getbbox(char, anchor="ls")
        if right <= left or bottom <= top:
            return _Glyph(None, 0, 0, 0, 0, advance)
        image = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(image).text((-left, -top), char, font=font, fill=255, anchor="ls")
        return _Glyph(np.asarray(image), left, top, right, bottom, advance)

    def _rasterise(
        self, face: Face, font_index: int, text: str, direction: str | None
    ) -> tuple[Image.Image, int, int] | None:
        """Coverage image of ``text`` in one font and its offset from the pen position on the baseline.

        Glyph by glyph (``direction`` None), glyphs are placed at the same whole-pixel advances that layout measured,
        so the word is exactly as wide as its line box says; a shaped run is drawn by raqm as it measured it.
        """
        if direction is not None:
            return self._rasterise_shaped(face, font_index, text, direction)
        placed = []
        pen = 0
        for char in text:
            glyph = self._glyph_image(face, font_index, char)
            if glyph.image is not None:
                placed.append((pen, glyph))
            pen += glyph.advance
        if not placed:
            return None
        left = min(pen + glyph.left for pen, glyph in placed)
        top = min(glyph.top for _, glyph in placed)
        right = max(pen + glyph.right for pen, glyph in placed)
        bottom = max(glyph.bottom for _, glyph in placed)
        coverage = np.zeros((bottom - top, right - left), dtype=np.uint8)
        for pen, glyph in placed:
            x, y = pen + glyph.left - left, glyph.top - top
            area = coverage[y:y + glyph.image.shape[0], x:x + glyph.image.shape[1]]
            np.maximum(area, glyph.image, out=area)  # overlapping edges (kerned pairs, marks) keep the darker ink
        word = Image.fromarray(coverage)
        return word, left, top

    def _rasterise_shaped(
        self, face: Face, font_index: int, text: str, direction: str
    ) -> tuple[Image.Image, int, int] | None:
        font = self.faces[face].shaper(font_index)
        left, top, right, bottom = font.getbbox(text, direction=direction, anchor="ls")
        if right <= left or bottom <= top:
            return None
        image = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(image).text((-left, -top), text, font=font, fill=255, anchor="ls", direction=direction)
        return image, left, top
