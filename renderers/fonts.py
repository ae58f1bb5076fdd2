"""Font files, per-character font choice and glyph metrics: what a page is drawn with.

A page is drawn with a *chain* of font files. DejaVu Sans / Sans Mono / Sans Bold ship inside this package (so Latin,
Greek and Cyrillic pixels are identical on every machine); Noto fonts found on the system are appended for other
scripts. Each character is drawn with the first file of the chain whose cmap (read with fontTools) maps it. A
character no file covers, and a control character, is drawn as a visible substitute mark and counted.

Advances come from Pillow's basic layout (hinted, whole pixels per glyph), so a word's width is the sum of its
characters' advances and layout never has to draw to measure.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Sequence

from fontTools.ttLib import TTFont, TTLibError
from PIL import ImageFont

FONT_DIR = Path(__file__).resolve().parent / "fonts"
SANS = FONT_DIR / "DejaVuSans.ttf"
SANS_BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"
MONO = FONT_DIR / "DejaVuSansMono.ttf"

# Debian/Ubuntu (fonts-noto-core, fonts-noto-cjk) and Fedora locations of Noto fonts.
SYSTEM_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/noto"),
    Path("/usr/share/fonts/opentype/noto"),
    Path("/usr/share/fonts/google-noto"),
    Path("/usr/share/fonts/google-noto-cjk"),
)
# Broad-coverage fallbacks are tried before the per-script Noto families, in this order.
_PREFERRED_FALLBACKS = (
    "NotoSans-Regular.ttf",
    "NotoSansSymbols-Regular.ttf",
    "NotoSansSymbols2-Regular.ttf",
    "NotoSansMath-Regular.ttf",
    "NotoSansCJK-Regular.ttc",
    "NotoSansCJKsc-Regular.otf",
    "NotoSansCJKjp-Regular.otf",
)
_FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
# Colour bitmap fonts (e.g. Noto Color Emoji) only load at their strike size in Pillow, so they cannot be scaled.
_UNSCALABLE_TABLES = ("CBDT", "sbix")

REPLACEMENT_MARK = "\ufffd"
BOX_ADVANCE_EM = 0.6  # advance of the hollow box drawn when not even the replacement mark is covered


@lru_cache(maxsize=1)
def system_fallback_fonts() -> tuple[str, ...]:
    """Noto font files present on this machine: broad-coverage ones first, then the per-script families.

    Only regular weights are taken: a fallback's job is coverage, and one weight keeps the chain (and its key) short.
    """
    found: dict[str, Path] = {}
    for directory in SYSTEM_FONT_DIRS:
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.name.startswith("Noto") and "-Regular." in path.name and path.suffix in _FONT_SUFFIXES:
                found.setdefault(path.name, path)
    preferred = [found.pop(name) for name in _PREFERRED_FALLBACKS if name in found]
    # Sans families before Serif ones before display styles (Kufi, Nastaliq…), each group by name.
    rest = sorted(found, key=lambda name: (not name.startswith("NotoSans"), not name.startswith("NotoSerif"), name))
    return tuple(str(path) for path in [*preferred, *(found[name] for name in rest)])


def bundled_chain(primary: Path) -> tuple[str, ...]:
    """``primary`` (a font shipped with this package) followed by the system fallbacks."""
    return (str(primary), *system_fallback_fonts())


def _file_stamp(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


@lru_cache(maxsize=None)
def _digest(path: str, stamp: tuple[int, int]) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def font_digest(path: str) -> str:
    """SHA-256 of a font file's bytes (cached per file size and modification time)."""
    return _digest(path, _file_stamp(path))


@lru_cache(maxsize=None)
def _coverage(path: str, stamp: tuple[int, int]) -> frozenset[int]:
    try:
        with TTFont(path, lazy=True, fontNumber=0) as font:
            if any(tag in font for tag in _UNSCALABLE_TABLES):
                return frozenset()
            cmap = font.getBestCmap() or {}
    except (TTLibError, OSError, KeyError) as error:
        raise ValueError(f"font file {path!r} is not a readable TrueType/OpenType font: {error}") from None
    return frozenset(cmap)


def font_coverage(path: str) -> frozenset[int]:
    """Code points the font's best cmap maps (empty for colour bitmap fonts, which Pillow cannot scale)."""
    return _coverage(path, _file_stamp(path))


class FontChain:
    """An ordered chain of font files; each character is drawn with the first file that covers it.

    Coverage is read lazily: a file's cmap is loaded only when every earlier file lacks some character, so English
    text never touches the fallbacks.
    """

    def __init__(self, files: Sequence[str | os.PathLike[str]], *, field_name: str = "font_files") -> None:
        if isinstance(files, (str, os.PathLike)) or not isinstance(files, Sequence):
            raise TypeError(f"{field_name} must be a sequence of font file paths, got {type(files).__name__}")
        if not files:
            raise ValueError(f"{field_name} must name at least one font file")
        paths = []
        for position, file in enumerate(files):
            if not isinstance(file, (str, os.PathLike)):
                raise TypeError(f"{field_name}[{position}] must be a path, got {type(file).__name__}")
            path = os.fspath(file)
            if not os.path.isfile(path):
                raise ValueError(f"{field_name}[{position}] {path!r} is not a font file")
            paths.append(path)
        self.files: tuple[str, ...] = tuple(paths)
        self._chosen: dict[str, int | None] = {}

    def font_index(self, char: str) -> int | None:
        """Index of the first file covering ``char``, or ``None`` when no file does."""
        chosen = self._chosen.get(char, -1)
        if chosen != -1:
            return chosen
        code = ord(char)
        chosen = next((i for i, path in enumerate(self.files) if code in font_coverage(path)), None)
        self._chosen[char] = chosen
        return chosen

    def digests(self) -> tuple[str, ...]:
        """Content hashes of the files, in chain order: what the style key pins instead of paths."""
        return tuple(font_digest(path) for path in self.files)

    def __repr__(self) -> str:
        return f"FontChain({[Path(path).name for path in self.files]})"


class Substitute(str, Enum):
    """Why a character is drawn as a mark instead of itself."""

    MISSING = "missing"  # no font of the chain covers it
    CONTROL = "control"  # a control character (other than newline and tab)


def control_mark(char: str) -> str:
    """The Unicode control picture for C0 controls and DEL (U+2400 block); the replacement mark for C1 controls."""
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    return REPLACEMENT_MARK


def is_control(char: str) -> bool:
    """Control characters that need a visible mark: category Cc except newline and tab (layout handles those)."""
    return char not in "\n\t" and unicodedata.category(char) == "Cc"


class Glyph(NamedTuple):
    """How one source character is drawn: with which font of the chain (``None``: a hollow box), as what, how wide."""

    font_index: int | None
    drawn: str
    advance: int
    substitute: Substitute | None


class Run(NamedTuple):
    """Consecutive characters of a word drawn with one font, ``offset`` pixels after the word's start."""

    offset: int
    font_index: int | None
    text: str
    width: int


@dataclass(frozen=True)
class Measured:
    """A word (no spaces or tabs) measured with a face: its runs, per-character advances and substitution counts."""

    width: int
    runs: tuple[Run, ...]
    advances: tuple[int, ...]
    missing: int
    controls: int


class FontFace:
    """A font chain at one pixel size: Pillow fonts, per-character glyph choice and cached word measurements."""

    def __init__(self, chain: FontChain, px: int, *, word_cache_size: int = 1 << 14) -> None:
        self.chain = chain
        self.px = px
        self._fonts: dict[int, ImageFont.FreeTypeFont] = {}
        self._glyphs: dict[str, Glyph] = {}
        self.measure = lru_cache(maxsize=word_cache_size)(self._measure)
        self.ascent, self.descent = self.font(0).getmetrics()
        self.space_advance = self.glyph(" ").advance

    def font(self, index: int) -> ImageFont.FreeTypeFont:
        """The Pillow font for chain file ``index`` at this size (basic layout: no shaping, whole-pixel advances)."""
        font = self._fonts.get(index)
        if font is None:
            try:
                font = ImageFont.truetype(self.chain.files[index], self.px, layout_engine=ImageFont.Layout.BASIC)
            except OSError as error:
                raise ValueError(
                    f"font file {self.chain.files[index]!r} cannot be loaded at {self.px} px: {error}"
                ) from error
            self._fonts[index] = font
        return font

    def _mark(self, candidates: str) -> tuple[int | None, str]:
        for mark in candidates:
            index = self.chain.font_index(mark)
            if index is not None:
                return index, mark
        return None, ""

    def glyph(self, char: str) -> Glyph:
        """How ``char`` is drawn: itself in the first covering font, or a substitute mark."""
        glyph = self._glyphs.get(char)
        if glyph is not None:
            return glyph
        substitute: Substitute | None = None
        if is_control(char):
            substitute = Substitute.CONTROL
            index, drawn = self._mark(control_mark(char) + REPLACEMENT_MARK)
        else:
            index, drawn = self.chain.font_index(char), char
            if index is None:
                substitute = Substitute.MISSING
                index, drawn = self._mark(REPLACEMENT_MARK)
        if index is None:
            advance = max(1, round(self.px * BOX_ADVANCE_EM))
        else:
            advance = round(self.font(index).getlength(drawn))
        glyph = Glyph(index, drawn, advance, substitute)
        self._glyphs[char] = glyph
        return glyph

    def _measure(self, word: str) -> Measured:
        runs: list[Run] = []
        advances = []
        missing = controls = 0
        run_start = run_width = 0
        run_font: int | None = None
        run_text: list[str] = []
        for char in word:
            glyph = self.glyph(char)
            advances.append(glyph.advance)
            if glyph.substitute is Substitute.MISSING:
                missing += 1
            elif glyph.substitute is Substitute.CONTROL:
                controls += 1
            # A box is its own run; characters of one font join the run before them.
            if run_text and (glyph.font_index is None or glyph.font_index != run_font):
                runs.append(Run(run_start, run_font, "".join(run_text), run_width))
                run_start, run_width, run_text = run_start + run_width, 0, []
            run_font = glyph.font_index
            run_text.append(glyph.drawn)
            run_width += glyph.advance
        if run_text:
            runs.append(Run(run_start, run_font, "".join(run_text), run_width))
        return Measured(sum(advances), tuple(runs), tuple(advances), missing, controls)
