"""Pagination: turns flow onto pages of measured lines, without drawing anything.

Rules (they define ``Page.text`` and where pages break, so the memory can seal full pages and resume exactly):

* Every page starts with its label line (``page N``). Each turn part on a page (a *segment*) gets a header line,
  ``[12] user`` (``· name`` when the turn has one, `` (continued)`` when it began on an earlier page), then its
  content. A blank gap of ``turn_gap`` line heights precedes every header.
* ``Page.text`` is ``"\\n".join([label, header₁ + "\\n" + content₁[start₁:end₁], header₂ + "\\n" + …])``:
  the content slices are verbatim, word-wrap breaks add nothing.
* A newline ends the line it follows, so a turn's final newline opens no extra empty line. At a page break inside a
  turn the segment ends after the last character shown, including the newline that ended its last line; the next
  segment starts there.
* Lines wrap at spaces and tabs, by measured advance; a word wider than the line (or longer than 1,024 characters)
  is broken between characters. Spaces before a wrap point stay on the earlier line (they hang past the margin if
  need be; the line box ends at the last visible character). Tabs advance to the next multiple of ``tab_size``
  space advances.
* A character no font of the chain covers, and a control character other than newline and tab, is drawn as a mark
  (the Unicode control picture for C0 controls and DEL, else U+FFFD, else a hollow box) and counted;
  ``Page.text`` keeps the original character.
* A line whose text, stripped of leading spaces and tabs, starts with three backticks or tildes opens or closes a
  fenced code block; fence lines and the lines between them use the mono font.
* A turn starts on a page only if its gap, header and first content line fit; otherwise the page is *full*. A page
  that ends inside a turn is full. The last page is full only when no further turn could have started on it, so a
  full page never changes when more turns arrive.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import Iterator, Mapping, NamedTuple, Sequence

from optical_memory.renderers.fonts import FontFace
from optical_memory.renderers.style import RenderStyle

from optical_memory.core.types import LineBox, Page, Role, Turn, TurnSegment
from optical_memory.core.validation import validate_int

CONTINUED_MARK = " (continued)"
NAME_SEPARATOR = " · "
ELLIPSIS = "…"
MAX_TURN_INDEX = 10**9 - 1  # headers are sized for indices up to nine digits
_TOKEN = re.compile(r"[ \t]+|[^ \t]+")
_SCAN = 1024  # longest token measured whole; longer ones are wider than any line and are hard-wrapped
_FENCES = ("```", "~~~")


class Face(str, Enum):
    """Which font chain a line is drawn with."""

    TEXT = "text"
    MONO = "mono"
    HEADER = "header"


class GlyphRun(NamedTuple):
    """Characters drawn with one font from pen position ``x`` on the line's baseline.

    ``text`` holds what is drawn (substitute marks in place of missing glyphs and control characters);
    ``font_index`` indexes the line's font chain, ``None`` for a hollow box of ``width`` pixels.
    """

    x: int
    font_index: int | None
    text: str
    width: int


@dataclass(frozen=True)
class LayoutLine:
    """One drawn line: its box and text span (as in ``Page.lines``), baseline, font chain and glyph runs."""

    box: LineBox
    baseline: int
    face: Face
    runs: tuple[GlyphRun, ...]


@dataclass(frozen=True)
class PageLayout:
    """A laid-out page: the ``Page`` record plus everything ``PageRenderer.draw`` needs.

    ``full`` is True when the page ended because nothing more fitted; only full pages are final. ``resume_offset``
    is where the page's last turn continues on the next page (pass it as ``first_turn_offset`` with that turn
    first), or ``None`` when that turn ended on this page. ``missing_glyphs`` counts characters no font covers and
    ``control_chars`` control characters; ``page.missing_glyphs`` is their sum (all drawn as substitute marks).
    """

    page: Page
    lines: tuple[LayoutLine, ...]
    full: bool
    resume_offset: int | None
    missing_glyphs: int
    control_chars: int
    style_key: str


class _Filled(NamedTuple):
    """One wrapped line of a logical line: characters ``[start, end)`` of the source and their glyph runs."""

    start: int
    end: int
    ink_width: int
    runs: tuple[GlyphRun, ...]
    missing: int
    controls: int


class _ContentLine(NamedTuple):
    """A wrapped content line and the source offset just after it (past its newline when it ends a logical line)."""

    face: Face
    filled: _Filled
    next_offset: int


def logical_lines(content: str) -> list[tuple[int, int, bool]]:
    """``(start, end, is_code)`` per newline-ended line of ``content``; ``end`` excludes the newline.

    A final newline ends the last line rather than opening an empty one; empty content is one empty line.
    """
    lines: list[tuple[int, int, bool]] = []
    in_code = False
    start = 0
    while True:
        end = content.find("\n", start)
        last = end == -1
        if last:
            end = len(content)
            if start == end and lines:
                break
        is_fence = content[start:end].lstrip(" \t").startswith(_FENCES)
        if is_fence:
            in_code = not in_code
        lines.append((start, end, in_code or is_fence))
        if last:
            break
        start = end + 1
    return lines


def _fitting(face: FontFace, token: str, room: int) -> int:
    """How many leading characters of ``token`` fit in ``room`` pixels."""
    glyph = face.glyph
    count = width = 0
    for char in token:
        width += glyph(char).advance
        if width > room:
            break
        count += 1
    return count


def _clean_name(name: str) -> str:
    """A speaker name fit for a one-line header: whitespace collapsed, control characters removed."""
    return "".join(char for char in " ".join(name.split()) if char.isprintable() or char == " ")


class Paginator:
    """Lays turns out onto pages for one style and its three font faces."""

    def __init__(self, style: RenderStyle, faces: Mapping[Face, FontFace]) -> None:
        self.style = style
        self.faces = faces
        self.style_key = style.key()
        self._limit = style.text_width
        # Vertical metrics shared by every page builder.
        self.line_height = style.line_height
        self.bottom = style.height - style.margin_y
        self.turn_need = style.turn_gap_px + 2 * style.line_height
        text_face = faces[Face.TEXT]
        half_leading = (style.line_height - text_face.ascent - text_face.descent) / 2
        self.baseline_offset = math.floor(half_leading) + text_face.ascent
        widest = f"[{MAX_TURN_INDEX}] {Role.ASSISTANT.value}{CONTINUED_MARK}"
        if self.fill(Face.HEADER, widest, 0, len(widest)).end < len(widest):
            raise ValueError(
                f"RenderStyle.width {style.width} (margins {style.margin_x}) is too narrow for a turn header at "
                f"font_px {style.font_px}: lower font_px or margin_x"
            )

    # -- line filling ----------------------------------------------------------------------------------------------

    def fill(self, face_name: Face, source: str, start: int, end: int) -> _Filled:
        """Fill one line with ``source[start:end]`` (no newlines) from ``start``, greedily, as the module rules say.

        Runs are positioned on the canvas (from the left margin); ``ink_width`` is measured from the margin.

        The result depends only on ``start``, never on earlier lines, so laying out from any line start reproduces
        the same lines: that is what makes resuming a turn on a later page exact.
        """
        face = self.faces[face_name]
        measure = face.measure
        limit = self._limit
        origin = self.style.margin_x
        space = face.space_advance
        tab_width = self.style.tab_size * space
        x = ink = missing = controls = 0
        runs: list[GlyphRun] = []
        next_token = _TOKEN.match
        pos = start
        while pos < end:
            # Scanning is capped so a huge pasted token costs one window per line, not its whole length.
            window = pos + _SCAN
            if window > end:
                window = end
            token = next_token(source, pos, window).group()
            if token == " ":
                x += space
                pos += 1
                continue
            if token[0] in " \t":
                for char in token:
                    x = (x // tab_width + 1) * tab_width if char == "\t" else x + space
                pos += len(token)
                continue
            capped = pos + len(token) == window < end
            if not capped:
                measured = measure(token)
                whole = x + measured.width <= limit
            if capped or not whole:
                if runs:
                    break
                fitting = _fitting(face, token, limit - x)
                if fitting == 0 and pos == start:
                    fitting = 1  # a single glyph wider than the line: place it anyway so layout progresses
                if fitting == 0:
                    break
                measured = measure(token[:fitting])
                whole = False
            for offset, font_index, text, width in measured.runs:
                runs.append(GlyphRun(origin + x + offset, font_index, text, width))
            x += measured.width
            ink = x
            missing += measured.missing
            controls += measured.controls
            pos += len(measured.advances)
            if not whole:
                break
        return _Filled(start, pos, ink, tuple(runs), missing, controls)

    def _content_lines(self, content: str, offset: int) -> Iterator[_ContentLine]:
        """Wrapped lines of ``content`` from ``offset`` on."""
        for start, end, is_code in logical_lines(content):
            if end < offset:
                continue
            face = Face.MONO if is_code else Face.TEXT
            position = max(start, offset)
            while True:
                filled = self.fill(face, content, position, end)
                if filled.end >= end:
                    yield _ContentLine(face, filled, end + 1 if end < len(content) else end)
                    break
                yield _ContentLine(face, filled, filled.end)
                position = filled.end

    def header_text(self, turn: Turn, continued: bool) -> str:
        """The turn's header line; a long speaker name is shortened with an ellipsis so the header fits one line."""
        base = f"[{turn.index}] {Role.parse(turn.role).value}"
        suffix = CONTINUED_MARK if continued else ""
        name = _clean_name(turn.name) if turn.name else ""
        if not name:
            return base + suffix
        header = f"{base}{NAME_SEPARATOR}{name}{suffix}"
        if self.fill(Face.HEADER, header, 0, len(header)).end == len(header):
            return header
        low, high = 0, len(name) - 1  # the longest fitting prefix; the bare base + suffix always fits
        while low < high:
            middle = (low + high + 1) // 2
            trial = f"{base}{NAME_SEPARATOR}{name[:middle]}{ELLIPSIS}{suffix}"
            if self.fill(Face.HEADER, trial, 0, len(trial)).end == len(trial):
                low = middle
            else:
                high = middle - 1
        return f"{base}{NAME_SEPARATOR}{name[:low]}{ELLIPSIS}{suffix}" if low else base + suffix

    # -- pagination ------------------------------------------------------------------------------------------------

    def paginate(self, turns: Sequence[Turn], first_page_index: int, first_turn_offset: int) -> list[PageLayout]:
        _validate(turns, first_page_index, first_turn_offset)
        pages: list[PageLayout] = []
        page = _PageBuilder(self, first_page_index)
        for position, turn in enumerate(turns):
            offset = first_turn_offset if position == 0 else 0
            lines = self._content_lines(turn.content, offset)
            pending: _ContentLine | None = next(lines)
            continued = offset > 0
            while pending is not None:
                if not page.can_start_turn():
                    pages.append(page.finish(full=True))
                    page = _PageBuilder(self, page.index + 1)
                page.begin_segment(turn, pending.filled.start, continued)
                while pending is not None and page.fits_line():
                    page.add_content_line(pending)
                    pending = next(lines, None)
                page.end_segment(turn)
                continued = True
        if page.segments:
            pages.append(page.finish(full=not page.can_start_turn()))
        return pages


class _PageBuilder:
    """Accumulates one page: text, line boxes, segments and counts, top to bottom."""

    def __init__(self, paginator: Paginator, index: int) -> None:
        self.paginator = paginator
        self.index = index
        self.parts: list[str] = []
        self.length = 0
        self.lines: list[LayoutLine] = []
        self.segments: list[TurnSegment] = []
        self.y = paginator.style.margin_y
        self.missing = self.controls = 0
        self.timestamp = -math.inf
        self.resume_offset: int | None = None
        self._segment_start = self._segment_end = self._segment_text = 0
        self._continued = False
        self._add_generated_line(f"page {index}")

    def can_start_turn(self) -> bool:
        return self.y + self.paginator.turn_need <= self.paginator.bottom

    def fits_line(self) -> bool:
        return self.y + self.paginator.line_height <= self.paginator.bottom

    def _append(self, text: str) -> int:
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        return start

    def _place(self, face: Face, filled: _Filled, text_start: int) -> None:
        paginator = self.paginator
        x0 = paginator.style.margin_x
        box = LineBox(
            x0, self.y, x0 + filled.ink_width, self.y + paginator.line_height,
            text_start, text_start + filled.end - filled.start,
        )
        self.lines.append(LayoutLine(box, self.y + paginator.baseline_offset, face, filled.runs))
        self.y += paginator.line_height
        self.missing += filled.missing
        self.controls += filled.controls

    def _add_generated_line(self, text: str) -> None:
        """A label or header line: always one line (headers are sized to fit)."""
        if self.parts:
            self._append("\n")
        start = self._append(text)
        self._place(Face.HEADER, self.paginator.fill(Face.HEADER, text, 0, len(text)), start)

    def begin_segment(self, turn: Turn, start: int, continued: bool) -> None:
        self.y += self.paginator.style.turn_gap_px
        self._add_generated_line(self.paginator.header_text(turn, continued))
        self._segment_text = self._append("\n") + 1
        self._continued = continued
        self._segment_start = self._segment_end = start
        self.timestamp = max(self.timestamp, turn.timestamp)

    def add_content_line(self, line: _ContentLine) -> None:
        self._place(line.face, line.filled, self._segment_text + line.filled.start - self._segment_start)
        self._segment_end = line.next_offset

    def end_segment(self, turn: Turn) -> None:
        start, end = self._segment_start, self._segment_end
        self._append(turn.content[start:end])
        self.segments.append(TurnSegment(turn.index, Role.parse(turn.role), start, end, self._continued))
        self.resume_offset = end if end < len(turn.content) else None

    def finish(self, *, full: bool) -> PageLayout:
        paginator = self.paginator
        style = paginator.style
        text = "".join(self.parts)
        page = Page(
            index=self.index,
            text=text,
            segments=tuple(self.segments),
            lines=tuple(line.box for line in self.lines),
            width=style.width,
            height=style.height,
            render_key=render_key(text, paginator.style_key),
            missing_glyphs=self.missing + self.controls,
            timestamp=self.timestamp,
        )
        return PageLayout(
            page, tuple(self.lines), full, self.resume_offset, self.missing, self.controls, paginator.style_key
        )


def render_key(text: str, style_key: str) -> str:
    """SHA-256 of a page's text under a style: equal keys mean equal pixels, so a page is rendered once."""
    return hashlib.sha256(f"{style_key}\n{text}".encode()).hexdigest()


def _validate(turns: Sequence[Turn], first_page_index: int, first_turn_offset: int) -> None:
    if isinstance(turns, (str, bytes)) or not isinstance(turns, Sequence):
        raise TypeError(f"turns must be a sequence of Turn, got {type(turns).__name__}")
    validate_int(first_page_index, field_name="first_page_index", minimum=0)
    validate_int(first_turn_offset, field_name="first_turn_offset", minimum=0)
    for position, turn in enumerate(turns):
        if not isinstance(turn, Turn):
            raise TypeError(f"turns[{position}] must be a Turn, got {type(turn).__name__}")
        if not isinstance(turn.content, str):
            raise TypeError(f"turns[{position}].content must be a string, got {type(turn.content).__name__}")
        validate_int(turn.index, field_name=f"turns[{position}].index", minimum=0, maximum=MAX_TURN_INDEX)
        Role.parse(turn.role, field_name=f"turns[{position}].role")
        if isinstance(turn.timestamp, bool) or not isinstance(turn.timestamp, (int, float)):
            raise TypeError(f"turns[{position}].timestamp must be a number, got {type(turn.timestamp).__name__}")
        if turn.name is not None and not isinstance(turn.name, str):
            raise TypeError(f"turns[{position}].name must be a string or None, got {type(turn.name).__name__}")
    if turns:
        length = len(turns[0].content)
        if first_turn_offset and first_turn_offset >= length:
            raise ValueError(
                f"first_turn_offset {first_turn_offset} must be less than the first turn's length {length}"
            )
    elif first_turn_offset:
        raise ValueError("first_turn_offset must be 0 when there are no turns")
