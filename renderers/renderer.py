"""The page renderer: turns → page layouts → greyscale page images.

Drawing composites cached bitmaps instead of asking FreeType for every glyph of every page: each glyph is rasterised
once per process (Pillow, basic layout), a word is composed from its glyphs at the whole-pixel advances layout
measured, and words are cached too because chat text repeats them, so most of a page is a few hundred pastes. Runs
that layout marked for shaping (right-to-left text, marks, emoji sequences) are rasterised whole by raqm in their
direction, and cached the same way. Runs of a colour bitmap font (emoji) are drawn a cluster at a time at the font's
strike size, scaled to the line and turned into the grey of their luminance, pasted with their own coverage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np
from optical_memory.renderers.fonts import SHAPING, FontChain, FontFace
from optical_memory.renderers.layout import Face, PageLayout, Paginator
from optical_memory.renderers.scripts import is_default_ignorable, iter_clusters
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
        self._bitmap_fonts = {face: frozenset(chain.bitmap_fonts()) for face, chain in self.chains.items()}
        self._word_image = lru_cache(maxsize=WORD_IMAGE_CACHE_SIZE)(self._rasterise)
        self._glyph_image = lru_cache(maxsize=GLYPH_IMAGE_CACHE_SIZE)(self._rasterise_glyph)
        self._emoji_image = lru_cache(maxsize=WORD_IMAGE_CACHE_SIZE)(self._rasterise_emoji)
        self._emoji_glyph = lru_cache(maxsize=GLYPH_IMAGE_CACHE_SIZE)(self._rasterise_emoji_glyph)

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
        bitmap_fonts = self._bitmap_fonts
        for line in layout.lines:
            for run in line.runs:
                if run.font_index is None:
                    boxes.append((run, line.baseline, self.faces[run.face].px))
                    continue
                if run.font_index in bitmap_fonts[run.face]:
                    emoji = self._emoji_image(run.face, run.font_index, run.text, run.direction)
                    if emoji is not None:
                        tone, alpha, left, top = emoji
                        canvas.paste(tone, (run.x + left, line.baseline + top), alpha)
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

    def _rasterise_emoji(
        self, face: Face, font_index: int, text: str, direction: str | None
    ) -> tuple[Image.Image, Image.Image, int, int] | None:
        """A run of a colour bitmap font as grey tones and their coverage, and its offset from the pen position.

        Each cluster is placed at the advance layout measured for it (``FontFace.bitmap_advance``), right to left
        in a right-to-left run.
        """
        measure = self.faces[face]
        placed = []
        pen = 0
        parts = [cluster for cluster in iter_clusters(text) if not all(map(is_default_ignorable, cluster))]
        for cluster in reversed(parts) if direction == "rtl" else parts:
            glyph = self._emoji_glyph(face, font_index, cluster)
            if glyph is not None:
                placed.append((pen, glyph))
            pen += measure.bitmap_advance(font_index, cluster)
        if not placed:
            return None
        left = min(pen + glyph[2] for pen, glyph in placed)
        top = min(glyph[3] for _, glyph in placed)
        right = max(pen + glyph[2] + glyph[0].shape[1] for pen, glyph in placed)
        bottom = max(glyph[3] + glyph[0].shape[0] for _, glyph in placed)
        tone = np.zeros((bottom - top, right - left), dtype=np.uint8)
        alpha = np.zeros_like(tone)
        for pen, (glyph_tone, glyph_alpha, glyph_left, glyph_top) in placed:
            x, y = pen + glyph_left - left, glyph_top - top
            window = np.s_[y:y + glyph_tone.shape[0], x:x + glyph_tone.shape[1]]
            over = glyph_alpha >= alpha[window]  # overlapping edges keep the more opaque pixel
            tone[window][over] = glyph_tone[over]
            alpha[window][over] = glyph_alpha[over]
        return Image.fromarray(tone), Image.fromarray(alpha), left, top

    def _rasterise_emoji_glyph(
        self, face: Face, font_index: int, cluster: str
    ) -> tuple[np.ndarray, np.ndarray, int, int] | None:
        """One cluster of a colour bitmap font at the face's size: grey tones, coverage, box offset from the pen.

        The cluster is drawn in colour at the font's strike size (raqm applies the font's ligatures, so a ZWJ
        sequence or flag is one glyph), scaled down with premultiplied alpha, and its colours become the grey of
        their luminance (ITU-R 601), mapped from the style's ink (black) to its background (white).
        """
        measure = self.faces[face]
        font = measure.shaper(font_index) if SHAPING else measure.font(font_index)
        scale = measure.px / measure.chain.strike(font_index)
        left, top, right, bottom = font.getbbox(cluster, anchor="ls")
        if right <= left or bottom <= top:
            return None
        # The scaled box in whole pixels, and the strike-size area that covers it.
        x0, y0 = math.floor(left * scale), math.floor(top * scale)
        x1, y1 = math.ceil(right * scale), math.ceil(bottom * scale)
        sx0, sy0, sx1, sy1 = math.floor(x0 / scale), math.floor(y0 / scale), math.ceil(x1 / scale), math.ceil(y1 / scale)
        colour = Image.new("RGBA", (sx1 - sx0, sy1 - sy0), (0, 0, 0, 0))
        ImageDraw.Draw(colour).text((-sx0, -sy0), cluster, font=font, anchor="ls", embedded_color=True)
        # Drawn onto transparent black, the colour channels hold colour times alpha: premultiplied, as scaling needs.
        colour = Image.frombytes("RGBa", colour.size, colour.tobytes())
        box = (x0 / scale - sx0, y0 / scale - sy0, x1 / scale - sx0, y1 / scale - sy0)
        small = np.asarray(colour.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS, box=box), dtype=np.int64)
        alpha = small[..., 3]
        luma = (small[..., 0] * 299 + small[..., 1] * 587 + small[..., 2] * 114) // 1000  # premultiplied luminance
        lightness = np.clip(luma * 255 // np.maximum(alpha, 1), 0, 255)
        ink, background = self.style.ink, self.style.background
        tone = ink + ((background - ink) * lightness + 127) // 255
        return tone.astype(np.uint8), alpha.astype(np.uint8), x0, y0
