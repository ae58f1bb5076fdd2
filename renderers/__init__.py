"""Renderers: chat turns → page images that a vision encoder or a host vision LLM reads.

``PageRenderer(style).paginate(turns)`` lays turns out (cheap, gives each page's text and ``render_key``);
``draw(layout)`` makes the greyscale image; ``render(turns)`` does both; ``encode_page_png`` encodes a page image
several times faster than Pillow's PNG writer.
"""

from optical_memory.renderers.fonts import FontChain, FontFace, system_fallback_fonts
from optical_memory.renderers.layout import (
    Face,
    GlyphRun,
    LayoutLine,
    PageLayout,
    render_key,
)
from optical_memory.renderers.png import encode_page_png
from optical_memory.renderers.renderer import PageRenderer, RenderedPage
from optical_memory.renderers.style import RenderStyle

__all__ = [
    "Face",
    "FontChain",
    "FontFace",
    "GlyphRun",
    "LayoutLine",
    "PageLayout",
    "PageRenderer",
    "RenderStyle",
    "RenderedPage",
    "encode_page_png",
    "render_key",
    "system_fallback_fonts",
]
