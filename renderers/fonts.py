"""Font files, per-cluster font choice and glyph metrics: what a page is drawn with.

A page is drawn with a *chain* of font files. DejaVu Sans / Sans Mono / Sans Bold ship inside this package (so Latin,
Greek and Cyrillic pixels are identical on every machine); system fonts are appended for other scripts: Noto
(``fonts-noto-core``, ``fonts-noto-cjk``), Symbola (``fonts-symbola``: monochrome outline emoji that scale to any
size) and, last, Noto Color Emoji (``fonts-noto-color-emoji``: every emoji of its Unicode version as colour
bitmaps). Each grapheme cluster is drawn with the first file of the chain whose cmap (read with fontTools) maps all of
its code points (default-ignorable ones such as ZWJ and variation selectors need no glyph), except that Hebrew and
Arabic prefer the Noto font of their script and the emoji planes prefer Symbola where the chain has them, so every
face draws them in one design, and that an emoji sequence (ZWJ sequence, skin tone, flag, keycap) goes to a colour
emoji font that has one glyph for it. A cluster no single file covers is drawn code point by code point; a code
point no file covers, and a control character, is drawn as a visible substitute mark and counted.

A colour bitmap font has glyphs at one size (its strike, 109 px for Noto Color Emoji): its clusters are measured
there and scaled to the face's size, each to a whole-pixel advance that layout and drawing share, and drawn there
too, then scaled and turned to grey (see ``PageRenderer``). Without such a font, those emoji count as missing.

Text that needs no shaping (see ``renderers.scripts``) is measured with Pillow's basic layout (hinted, whole pixels
per glyph), so a word's width is the sum of its characters' advances and layout never has to draw to measure. Text
that does (right-to-left scripts, combining marks, emoji sequences) is measured and later drawn by raqm
(``ImageFont.Layout.RAQM``: HarfBuzz shaping, FriBiDi inside); where Pillow has no raqm such text counts as missing,
so its page goes to the consumer as text.
"""

from __future__ import annotations

import hashlib
import os
import struct
import unicodedata
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

from fontTools.ttLib import TTFont, TTLibError
from PIL import ImageFont, features

from optical_memory.renderers.scripts import (
    bidi_class,
    clusters,
    has_right_to_left,
    iter_clusters,
    is_bidi_control,
    is_default_ignorable,
    is_emoji_sequence,
    needs_shaping,
)

FONT_DIR = Path(__file__).resolve().parent / "fonts"
SANS = FONT_DIR / "DejaVuSans.ttf"
SANS_BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"
MONO = FONT_DIR / "DejaVuSansMono.ttf"

# Debian/Ubuntu (fonts-noto-core, fonts-noto-cjk, fonts-symbola) and Fedora locations of Noto fonts and Symbola.
SYSTEM_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/noto"),
    Path("/usr/share/fonts/opentype/noto"),
    Path("/usr/share/fonts/google-noto"),
    Path("/usr/share/fonts/google-noto-cjk"),
    Path("/usr/share/fonts/truetype/ancient-scripts"),
    Path("/usr/share/fonts/gdouros-symbola"),
    Path("/usr/share/fonts/google-noto-color-emoji-fonts"),
)
SYMBOLA_FILES = ("Symbola_hint.ttf", "Symbola.ttf")
# Noto Color Emoji (fonts-noto-color-emoji): every emoji of its Unicode version, sequences included, as colour
# bitmaps. Last in the chain: its cmap also maps digits, "#", "*" and a few symbols that the text fonts draw.
COLOR_EMOJI_FILES = ("NotoColorEmoji.ttf",)
# Broad-coverage fallbacks are tried before the per-script Noto families, in this order. Symbola comes after the CJK
# fonts: it maps a few ideographs and kana, which must not come out in another design than their neighbours.
_PREFERRED_FALLBACKS = (
    "NotoSans-Regular.ttf",
    "NotoSansSymbols-Regular.ttf",
    "NotoSansSymbols2-Regular.ttf",
    "NotoSansMath-Regular.ttf",
    "NotoSansCJK-Regular.ttc",
    "NotoSansCJKsc-Regular.otf",
    "NotoSansCJKjp-Regular.otf",
    *SYMBOLA_FILES,
)
_FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
# Colour bitmap fonts (e.g. Noto Color Emoji) only load at a size they have a strike for (see ``font_strike``).
_BITMAP_TABLES = ("CBLC", "sbix")

REPLACEMENT_MARK = "\ufffd"
BOX_ADVANCE_EM = 0.6  # advance of the hollow box drawn when not even the replacement mark is covered

# Code point ranges drawn with their own font where the chain has it, even where an earlier file covers them:
# Hebrew and Arabic with Noto (DejaVu's forms differ per face), the emoji planes with Symbola (one design for every
# emoji, where the Noto symbol fonts map only some).
_SCRIPT_FONTS = (
    *((0x1F000, 0x1FAFF, name) for name in SYMBOLA_FILES),
    (0x0590, 0x05FF, "NotoSansHebrew-Regular.ttf"),
    (0xFB1D, 0xFB4F, "NotoSansHebrew-Regular.ttf"),
    (0x0600, 0x06FF, "NotoSansArabic-Regular.ttf"),
    (0x0750, 0x077F, "NotoSansArabic-Regular.ttf"),
    (0x0870, 0x08FF, "NotoSansArabic-Regular.ttf"),
    (0xFB50, 0xFDFF, "NotoSansArabic-Regular.ttf"),
    (0xFE70, 0xFEFF, "NotoSansArabic-Regular.ttf"),
)
SHAPING = features.check("raqm")
_SEQUENCE_GLUE = frozenset("\u200d\ufe0e\ufe0f")  # what joins an emoji sequence without choosing its glyph
_CHOICE_CACHE_SIZE = 1 << 16  # clusters whose font choice is remembered (hostile text has unboundedly many)


@lru_cache(maxsize=1)
def system_fallback_fonts() -> tuple[str, ...]:
    """Noto and Symbola font files present on this machine: broad-coverage ones first, then the per-script families,
    then Noto Color Emoji.

    Only regular weights are taken: a fallback's job is coverage, and one weight keeps the chain (and its key) short.
    """
    found: dict[str, Path] = {}
    for directory in SYSTEM_FONT_DIRS:
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            noto = path.name.startswith("Noto") and "-Regular." in path.name and path.suffix in _FONT_SUFFIXES
            if noto or path.name in SYMBOLA_FILES or path.name in COLOR_EMOJI_FILES:
                found.setdefault(path.name, path)
    emoji = [found.pop(name) for name in COLOR_EMOJI_FILES if name in found][:1]
    preferred = [found.pop(name) for name in _PREFERRED_FALLBACKS if name in found]
    if any(path.name in SYMBOLA_FILES for path in preferred):  # one Symbola is enough (hinted and plain are alike)
        symbola = next(path for path in preferred if path.name in SYMBOLA_FILES)
        preferred = [path for path in preferred if path.name not in SYMBOLA_FILES or path is symbola]
    # Sans families before Serif ones before display styles (Kufi, Nastaliq…), each group by name.
    rest = sorted(found, key=lambda name: (not name.startswith("NotoSans"), not name.startswith("NotoSerif"), name))
    return tuple(str(path) for path in [*preferred, *(found[name] for name in rest), *emoji])


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


def _unreadable(path: str, error: Exception) -> ValueError:
    return ValueError(f"font file {path!r} is not a readable TrueType/OpenType font: {error}")


@lru_cache(maxsize=None)
def _coverage(path: str, stamp: tuple[int, int]) -> frozenset[int]:
    try:
        with TTFont(path, lazy=True, fontNumber=0) as font:
            cmap = font.getBestCmap() or {}
    except (TTLibError, OSError, KeyError) as error:
        raise _unreadable(path, error) from None
    return frozenset(cmap)


def font_coverage(path: str) -> frozenset[int]:
    """Code points the font's best cmap maps."""
    return _coverage(path, _file_stamp(path))


@lru_cache(maxsize=None)
def _strike(path: str, stamp: tuple[int, int]) -> int | None:
    # Only the strike headers are read (struct-wise): fontTools would decompile every bitmap index to list them.
    try:
        with TTFont(path, lazy=True, fontNumber=0) as font:
            tag = next((tag for tag in _BITMAP_TABLES if tag in font), None)
            if tag is None or "glyf" in font or "CFF " in font:
                return None
            data = font.reader[tag]
    except (TTLibError, OSError, KeyError) as error:
        raise _unreadable(path, error) from None
    sizes = []
    try:
        if tag == "CBLC":  # version, numSizes, then 48-byte BitmapSize records with ppemY at byte 45
            (count,) = struct.unpack_from(">I", data, 4)
            sizes = [data[8 + 48 * index + 45] for index in range(count)]
        else:  # sbix: version, flags, numStrikes, strike offsets; each strike starts with its ppem
            (count,) = struct.unpack_from(">I", data, 4)
            offsets = struct.unpack_from(f">{count}I", data, 8)
            sizes = [struct.unpack_from(">H", data, offset)[0] for offset in offsets]
    except (struct.error, IndexError) as error:
        raise _unreadable(path, error) from None
    return max(sizes) if sizes else None


def font_strike(path: str) -> int | None:
    """The pixel size of a colour bitmap font's largest strike, or ``None`` for an outline font.

    Pillow loads such a font only at a size it has a strike for; text in it is drawn at that size and scaled.
    """
    return _strike(path, _file_stamp(path))


class FontChain:
    """An ordered chain of font files; each cluster is drawn with the first file that covers it (see the module).

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
        names = {}
        for index, path in enumerate(self.files):
            names.setdefault(Path(path).name, index)
        self._script_font = tuple(
            (low, high, names[name]) for low, high, name in _SCRIPT_FONTS if name in names
        )
        self._chosen: dict[str, int | None] = {}
        self._strikes: dict[int, int | None] = {}
        self._bitmap_fonts: tuple[int, ...] | None = None
        self._emoji_shapers: dict[int, ImageFont.FreeTypeFont] = {}

    def strike(self, index: int) -> int | None:
        """The strike size of chain file ``index`` if it is a colour bitmap font (see ``font_strike``), else None."""
        strike = self._strikes.get(index, -1)
        if strike == -1:
            strike = self._strikes[index] = font_strike(self.files[index])
        return strike

    def bitmap_fonts(self) -> tuple[int, ...]:
        """Indices of the chain's colour bitmap fonts (found once: the file headers are read on the first call)."""
        if self._bitmap_fonts is None:
            self._bitmap_fonts = tuple(index for index in range(len(self.files)) if self.strike(index) is not None)
        return self._bitmap_fonts

    def _one_glyph(self, index: int, cluster: str) -> bool:
        """Whether bitmap font ``index`` shapes ``cluster`` (through its GSUB) into one glyph.

        Every glyph of a colour emoji font has the same advance, so one glyph is as wide as the cluster's first code
        point alone; a sequence the font has no ligature for comes out as its parts side by side, wider.
        """
        font = self._emoji_shapers.get(index)
        if font is None:
            font = self._emoji_shapers[index] = ImageFont.truetype(
                self.files[index], self.strike(index), layout_engine=ImageFont.Layout.RAQM
            )
        return round(font.getlength(cluster)) == round(font.getlength(cluster[0]))

    def _emoji_font(self, cluster: str) -> int | None:
        """The first colour emoji font of the chain that draws the emoji sequence ``cluster`` as one glyph."""
        if not SHAPING:
            return None
        # Tags and modifiers must be mapped (they select the glyph); joiners and variation selectors need not be.
        required = [ord(char) for char in cluster if char not in _SEQUENCE_GLUE]
        for index in self.bitmap_fonts():
            coverage = font_coverage(self.files[index])
            if all(code in coverage for code in required) and self._one_glyph(index, cluster):
                return index
        return None

    def _candidates(self, code: int) -> Iterator[int]:
        for low, high, index in self._script_font:
            if low <= code <= high:
                yield index
                break
        yield from range(len(self.files))

    def font_index(self, char: str) -> int | None:
        """Index of the file that draws ``char`` (its script's font, else the first covering it), or ``None``."""
        return self.cluster_font(char)

    def cluster_font(self, cluster: str) -> int | None:
        """Index of the file that draws every code point of ``cluster``, or ``None`` when no single file does.

        Default-ignorable code points need no glyph; a cluster of nothing else is drawn (as nothing) by the first.
        An emoji sequence (ZWJ sequence, skin tone, flag, keycap) goes to the first colour emoji font that has one
        glyph for it, else to the first file covering its parts, which draws them side by side.
        """
        chosen = self._chosen.get(cluster, -1)
        if chosen != -1:
            return chosen
        required = [ord(char) for char in cluster if not is_default_ignorable(char)]
        chosen = None if required else 0
        if required and is_emoji_sequence(cluster):
            chosen = self._emoji_font(cluster)
        for index in self._candidates(required[0]) if required and chosen is None else ():
            coverage = font_coverage(self.files[index])
            if all(code in coverage for code in required):
                chosen = index
                break
        if len(self._chosen) < _CHOICE_CACHE_SIZE:
            self._chosen[cluster] = chosen
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
    """Consecutive characters of a word drawn with one font, ``offset`` pixels after the word's start.

    ``direction`` is ``None`` for text drawn glyph by glyph at whole-pixel advances, else the direction raqm shapes
    it in ("ltr" or "rtl"); ``bidi`` is the bidi class the first code point of each of its clusters shares
    (``None`` for a glyph-by-glyph run, whose characters may differ). A bidi control is an empty run of its class.
    """

    offset: int
    font_index: int | None
    text: str
    width: int
    direction: str | None = None
    bidi: str | None = None


@dataclass(frozen=True)
class Measured:
    """A word (no spaces or tabs) measured with a face: its runs, length and substitution counts.

    ``length`` counts the word's code points; ``right_to_left`` says its line needs the bidi algorithm.
    """

    width: int
    runs: tuple[Run, ...]
    length: int
    missing: int
    controls: int
    right_to_left: bool = False


class _Piece(NamedTuple):
    """One cluster (or code point) of a word that needs shaping, before clusters are joined into runs."""

    font_index: int | None
    text: str
    shaped: bool
    bidi: str
    missing: int
    controls: int


class FontFace:
    """A font chain at one pixel size: Pillow fonts, per-cluster font choice and cached word measurements."""

    def __init__(self, chain: FontChain, px: int, *, word_cache_size: int = 1 << 14) -> None:
        self.chain = chain
        self.px = px
        self._fonts: dict[int, ImageFont.FreeTypeFont] = {}
        self._shapers: dict[int, ImageFont.FreeTypeFont] = {}
        self._glyphs: dict[str, Glyph] = {}
        self._advances: dict[tuple[int, str], int] = {}
        self.measure = lru_cache(maxsize=word_cache_size)(self._measure)
        self.ascent, self.descent = self.font(0).getmetrics()
        self.space_advance = self.glyph(" ").advance

    def _load(self, index: int, engine: ImageFont.Layout) -> ImageFont.FreeTypeFont:
        size = self.chain.strike(index) or self.px
        try:
            return ImageFont.truetype(self.chain.files[index], size, layout_engine=engine)
        except OSError as error:
            raise ValueError(f"font file {self.chain.files[index]!r} cannot be loaded at {size} px: {error}") from error

    def is_bitmap(self, index: int) -> bool:
        """Whether chain file ``index`` is a colour bitmap font: drawn at its strike size, scaled to ``px``."""
        return self.chain.strike(index) is not None

    def bitmap_advance(self, index: int, cluster: str) -> int:
        """Whole-pixel advance at ``px`` of one cluster of bitmap font ``index``: its advance at the strike size,
        scaled like its bitmap. Layout and drawing both step by it, so each cluster lands where it was measured."""
        key = (index, cluster)
        advance = self._advances.get(key)
        if advance is None:
            strike = self.chain.strike(index)
            if strike is None:
                raise ValueError(f"font_index {index} ({self.chain.files[index]!r}) is not a colour bitmap font")
            font = self.shaper(index) if SHAPING else self.font(index)
            advance = round(font.getlength(cluster) * self.px / strike) if cluster else 0
            self._advances[key] = advance
        return advance

    def font(self, index: int) -> ImageFont.FreeTypeFont:
        """The Pillow font for chain file ``index`` at this size (basic layout: no shaping, whole-pixel advances)."""
        font = self._fonts.get(index)
        if font is None:
            font = self._fonts[index] = self._load(index, ImageFont.Layout.BASIC)
        return font

    def shaper(self, index: int) -> ImageFont.FreeTypeFont:
        """The same file through raqm: HarfBuzz shaping (joining, marks, ligatures) in a given direction."""
        font = self._shapers.get(index)
        if font is None:
            font = self._shapers[index] = self._load(index, ImageFont.Layout.RAQM)
        return font

    def advance(self, font_index: int, char: str) -> int:
        """Whole-pixel advance of ``char`` in chain file ``font_index`` (what glyph-by-glyph drawing steps by)."""
        key = (font_index, char)
        advance = self._advances.get(key)
        if advance is None:
            if self.is_bitmap(font_index):
                return self.bitmap_advance(font_index, char)
            advance = self._advances[key] = round(self.font(font_index).getlength(char))
        return advance

    def shaped_width(self, font_index: int, text: str, direction: str) -> int:
        """Width of ``text`` shaped by raqm in ``direction``; for a bitmap font, the sum of its clusters' advances."""
        if self.is_bitmap(font_index):
            return sum(self.bitmap_advance(font_index, cluster) for cluster in iter_clusters(text))
        return round(self.shaper(font_index).getlength(text, direction=direction))

    def _mark(self, candidates: str) -> tuple[int | None, str]:
        for mark in candidates:
            index = self.chain.font_index(mark)
            if index is not None:
                return index, mark
        return None, ""

    def glyph(self, char: str) -> Glyph:
        """How ``char`` is drawn on its own: itself in the font the chain picks, or a substitute mark."""
        glyph = self._glyphs.get(char)
        if glyph is not None:
            return glyph
        substitute: Substitute | None = None
        if is_control(char):
            substitute = Substitute.CONTROL
            index, drawn = self._mark(control_mark(char) + REPLACEMENT_MARK)
        elif is_default_ignorable(char):
            index, drawn = 0, ""
        else:
            index, drawn = self.chain.font_index(char), char
            if index is None:
                substitute = Substitute.MISSING
                index, drawn = self._mark(REPLACEMENT_MARK)
        if index is None:
            advance = max(1, round(self.px * BOX_ADVANCE_EM))
        else:
            advance = self.advance(index, drawn) if drawn else 0
        glyph = Glyph(index, drawn, advance, substitute)
        self._glyphs[char] = glyph
        return glyph

    def _measure(self, word: str) -> Measured:
        if needs_shaping(word):
            return self._measure_shaped(word)
        runs: list[Run] = []
        missing = controls = 0
        run_start = run_width = 0
        run_font: int | None = None
        run_text: list[str] = []
        for char in word:
            glyph = self.glyph(char)
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
        return Measured(run_start + run_width, tuple(runs), len(word), missing, controls)

    def _glyph_piece(self, char: str) -> _Piece:
        glyph = self.glyph(char)
        missing = glyph.substitute is Substitute.MISSING
        control = glyph.substitute is Substitute.CONTROL
        bidi = "ON" if missing or control else bidi_class(char)
        return _Piece(glyph.font_index, glyph.drawn, False, bidi, int(missing), int(control))

    def _pieces(self, cluster: str) -> list[_Piece]:
        """How one cluster of a word that needs shaping is drawn."""
        if len(cluster) == 1 and not needs_shaping(cluster):
            return [self._glyph_piece(cluster)]
        bidi = bidi_class(cluster[0])
        if len(cluster) == 1 and is_bidi_control(cluster):
            return [_Piece(0, "", False, bidi, 0, 0)]  # drawn as nothing, but the bidi algorithm needs its class
        if all(is_default_ignorable(char) for char in cluster):
            return []  # drawn as nothing
        index = self.chain.cluster_font(cluster)
        if index is not None:
            if not SHAPING:
                return [_Piece(index, cluster, False, bidi, 1, 0)]  # cannot be drawn right: counted as missing
            return [_Piece(index, cluster, True, bidi, 0, 0)]
        if len(cluster) == 1:
            return [self._glyph_piece(cluster)]
        # No single file covers the whole cluster: each code point on its own, marks included.
        return [piece for char in cluster for piece in self._pieces(char)]

    def _measure_shaped(self, word: str) -> Measured:
        pieces = [piece for cluster in clusters(word) for piece in self._pieces(cluster)]
        runs: list[Run] = []
        offset = 0
        position = 0
        while position < len(pieces):
            first = pieces[position]
            end = position + 1
            # Clusters join a run when raqm can shape them together: one font, one kind, one bidi class. A bidi
            # control stays a run of its own: the bidi algorithm counts each.
            if first.font_index is not None and first.text:
                while end < len(pieces):
                    piece = pieces[end]
                    if (piece.font_index, piece.shaped, piece.bidi) != (first.font_index, first.shaped, first.bidi):
                        break
                    if not piece.text:
                        break
                    end += 1
            text = "".join(piece.text for piece in pieces[position:end])
            if first.font_index is None:
                run = Run(offset, None, text, max(1, round(self.px * BOX_ADVANCE_EM)))
            elif first.shaped:
                direction = "rtl" if first.bidi in ("R", "AL") else "ltr"
                run = Run(offset, first.font_index, text, self.shaped_width(first.font_index, text, direction),
                          direction, first.bidi)
            elif not text:
                run = Run(offset, first.font_index, text, 0, None, first.bidi)
            else:
                width = sum(self.advance(first.font_index, char) for char in text)
                run = Run(offset, first.font_index, text, width, None, None)
            runs.append(run)
            offset += run.width
            position = end
        return Measured(
            offset,
            tuple(runs),
            len(word),
            sum(piece.missing for piece in pieces),
            sum(piece.controls for piece in pieces),
            has_right_to_left(word),
        )

    def fit(self, word: str, room: int) -> int:
        """How many leading code points of ``word`` fit in ``room`` pixels, never ending inside a cluster."""
        if not needs_shaping(word):
            count = width = 0
            glyph = self.glyph
            for char in word:
                width += glyph(char).advance
                if width > room:
                    break
                count += 1
            return count
        ends = []
        width = length = 0
        for cluster in iter_clusters(word):  # lazily: a long run of flags is slow to segment whole
            width += self.measure(cluster).width
            if width > room:
                break
            length += len(cluster)
            ends.append(length)
        # Shaping a longer prefix can change its width (joining forms, kerning): shrink until it really fits.
        while ends and self.measure(word[:ends[-1]]).width > room:
            ends.pop()
        return ends[-1] if ends else 0
