"""Pagination: turns flow onto pages of measured lines, without drawing anything.

Rules (they define ``Page.text`` and where pages break, so the memory can seal full pages and resume exactly):

* Every page starts with its label line, ``page N · 2023-05-08``: the page id and the day of its first turn. Days
  are UTC calendar days of ``Turn.timestamp`` (seconds since the epoch); a timestamp outside the years 1-9999 has
  no day and shows none. When a turn's day differs from the day of the turn before it on the page, a date line
  (``2023-05-09``) precedes it.
* Each turn part on a page (a *segment*) starts a line with its bold role tag, ``User:``, ``Assistant:``, ``Tool:``
  or ``System:`` (``User · Ada:`` when the turn has a name, ``Assistant (continued from page 6):`` when it began on
  an earlier page), and its content follows on the same line after one space (on the next line when its first
  word would fit a line of its own but not after the tag). A gap of ``turn_gap`` line heights precedes every
  segment (and its date line).
* ``Page.text`` is ``"\\n".join([label, date?, tag₁ + " " + content₁[start₁:end₁], date?, tag₂ + " " + …])``:
  the content slices are verbatim; wrap points, run-on newline marks and continuation marks add nothing.
* Fenced code: a line whose text, stripped of leading spaces and tabs, starts with three backticks or tildes opens or
  closes a code block; fence lines and the lines between them use the mono font, and every newline there ends a
  line. A code line wider than the page wraps, each continuation starting with ``↪``.
* Prose packs: a newline ends a line only before or after a blank line, or before a line that starts with a space,
  a tab, a list bullet or number, ``>``, ``#`` or ``|``; any other newline runs on, drawn as ``⏎`` between spaces
  (or as a line break where the line is full). A newline ends the line it follows, so a turn's final newline opens
  no extra empty line. At a page break inside a turn the segment ends after the last character shown (a newline that
  ended its last line included); the next segment starts there.
* Lines wrap at spaces and tabs, and around any ideograph or kana (never before closing punctuation, nor between
  opening punctuation and the ideograph after it), by measured advance; never inside a grapheme cluster. A word
  wider than the line (or longer than 1,024 code points) is broken between clusters. Spaces before a wrap point
  stay on the earlier line (they hang past the margin if need be; the line box ends at the last visible character).
  A tab advances to the next multiple of ``tab_size`` space advances that is at least one space away.
* Right-to-left text is reordered by the bidi algorithm (``renderers.scripts``); a prose paragraph whose first
  strong character is right-to-left is right-aligned. Tags, marks and code blocks stay left-to-right.
* A character no font of the chain covers, and a control character other than newline and tab, is drawn as a mark
  (the Unicode control picture for C0 controls and DEL, else U+FFFD, else a hollow box) and counted in
  ``Page.missing_glyphs``; ``Page.text`` keeps the original character.
* A turn starts on a page only if its gap, date line and first content line fit; otherwise the page is *full*. A
  page that ends inside a turn is full. The last page is full only when no further turn could have started on it,
  so a full page never changes when more turns arrive.
"""

from __future__ import annotations

import hashlib
import math
import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Iterator, Mapping, NamedTuple, Sequence

from optical_memory.renderers.fonts import FontFace
from optical_memory.renderers.scripts import (
    TOKEN,
    bidi_class,
    first_cluster_length,
    paragraph_level,
    resolve_line,
    visual_order,
)
from optical_memory.renderers.style import RenderStyle

from optical_memory.core.types import LineBox, Page, Role, Turn, TurnSegment
from optical_memory.core.validation import validate_int

ROLE_TAGS = {Role.SYSTEM: "System", Role.USER: "User", Role.ASSISTANT: "Assistant", Role.TOOL: "Tool"}
NAME_SEPARATOR = " · "
ELLIPSIS = "…"
RUN_ON_MARK = "⏎"
CONTINUATION_MARK = "↪"
MAX_INDEX = 10**9 - 1  # tags and labels are sized for turn and page indices up to nine digits
_SCAN = 1024  # longest token measured whole; longer ones are wider than any line and are hard-wrapped
_FENCES = ("```", "~~~")
_BLOCK_START = re.compile(r"[ \t]|[-*+•>#|]|\d{1,9}[.)]")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_OVERRIDE_OPEN = {"L": "\u202d", "R": "\u202e"}  # LRO, RLO
_POP_DIRECTIONAL_FORMATTING = "\u202c"


class Face(str, Enum):
    """Which font chain a run is drawn with."""

    TEXT = "text"
    MONO = "mono"
    HEADER = "header"


class GlyphRun(NamedTuple):
    """Characters drawn with one font of ``face``'s chain from pen position ``x`` on the line's baseline.

    ``text`` holds what is drawn (substitute marks in place of missing glyphs and control characters);
    ``font_index`` indexes the face's font chain, ``None`` for a hollow box of ``width`` pixels. ``direction`` is
    ``None`` for glyph-by-glyph drawing at whole-pixel advances, else the direction raqm shapes ``text`` in.
    ``bidi`` is the bidi class of a shaped run or of a bidi control (an empty run), ``None`` for glyph-by-glyph text.
    """

    x: int
    font_index: int | None
    text: str
    width: int
    face: Face
    direction: str | None = None
    bidi: str | None = None


@dataclass(frozen=True)
class LayoutLine:
    """One drawn line: its box and text span (as in ``Page.lines``), baseline, main face and glyph runs."""

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
    """One wrapped line of a block: characters ``[start, end)`` of the source, ink extent and glyph runs."""

    start: int
    end: int
    x0: int
    x1: int
    runs: tuple[GlyphRun, ...]
    missing: int
    controls: int


class _ContentLine(NamedTuple):
    """A wrapped content line and the source offset just after it (past its newline when it ends a block)."""

    face: Face
    filled: _Filled
    next_offset: int


def utc_day(timestamp: float) -> str | None:
    """The UTC calendar day of ``timestamp`` as ``YYYY-MM-DD``, or ``None`` outside the years 1-9999."""
    try:
        day = _EPOCH + timedelta(seconds=timestamp)
    except (OverflowError, ValueError):
        return None
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


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


def blocks(content: str) -> list[tuple[int, int, bool]]:
    """``(start, end, is_code)`` per block that layout fills as one paragraph: logical lines, with prose lines joined
    where a newline runs on (see the module rules); ``end`` excludes the newline that ends the block."""
    joined: list[tuple[int, int, bool]] = []
    previous: tuple[int, int, bool] | None = None
    for start, end, is_code in logical_lines(content):
        if previous is not None and not is_code and not previous[2] and _runs_on(content, previous, start, end):
            joined[-1] = (joined[-1][0], end, False)
        else:
            joined.append((start, end, is_code))
        previous = (start, end, is_code)
    return joined


def _runs_on(content: str, previous: tuple[int, int, bool], start: int, end: int) -> bool:
    """Whether the newline between the logical line ``previous`` and the prose line ``[start, end)`` runs on."""
    if start == end or not content[previous[0]:previous[1]].strip(" \t"):
        return False
    return _BLOCK_START.match(content, start, end) is None


def _clean_name(name: str) -> str:
    """A speaker name fit for a one-line tag: whitespace collapsed, control characters removed."""
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
        self.turn_gap = style.turn_gap_px
        self.bottom = style.height - style.margin_y
        text_face = faces[Face.TEXT]
        half_leading = (style.line_height - text_face.ascent - text_face.descent) / 2
        self.baseline_offset = math.floor(half_leading) + text_face.ascent
        self.tag_space = text_face.space_advance
        widest = [f"page {MAX_INDEX} · 9999-12-30", self._tag_base(Role.ASSISTANT, "", MAX_INDEX)]
        if any(self.fill(Face.HEADER, text, 0, len(text)).end < len(text) for text in widest):
            raise ValueError(
                f"RenderStyle.width {style.width} (margins {style.margin_x}) is too narrow for a page label or turn "
                f"tag at font_px {style.font_px}: lower font_px or margin_x"
            )
        mark = faces[Face.MONO].measure(CONTINUATION_MARK)
        self._continuation = (mark, mark.width + faces[Face.MONO].space_advance)
        self._blocks_cache: tuple[str, list[tuple[int, int, bool]], list[int]] = ("", [], [])

    # -- line filling ----------------------------------------------------------------------------------------------

    def fill(
        self,
        face_name: Face,
        source: str,
        start: int,
        end: int,
        *,
        indent: int = 0,
        allow_empty: bool = False,
        paragraph: int = 0,
    ) -> _Filled:
        """Fill one line with ``source[start:end]`` from ``start``, greedily, as the module rules say.

        ``indent`` pixels are kept free at the line's start (for a tag or mark). With ``allow_empty``, a first word
        that would fit a line of its own but not after the indent is left for the next line. ``paragraph`` is the
        bidi paragraph level. Newlines inside ``[start, end)`` run on. Runs are positioned on the canvas.

        The result depends only on these arguments, never on earlier lines, so laying out from any line start
        reproduces the same lines: that is what makes resuming a turn on a later page exact.
        """
        face = self.faces[face_name]
        measure = face.measure
        limit = self._limit
        origin = self.style.margin_x
        space = face.space_advance
        tab_width = self.style.tab_size * space
        x = indent
        ink = 0
        missing = controls = 0
        right_to_left = paragraph == 1
        runs: list[GlyphRun] = []
        next_token = TOKEN.match
        pos = start
        while pos < end:
            # Scanning is capped so a huge pasted token costs one window per line, not its whole length.
            window = pos + _SCAN
            if window > end:
                window = end
            token = next_token(source, pos, window).group()
            first = token[0]
            if token == " ":
                x += space
                pos += 1
                continue
            if first == " " or first == "\t":
                for char in token:
                    x = -(-(x + space) // tab_width) * tab_width if char == "\t" else x + space
                pos += len(token)
                continue
            if first == "\n":
                mark = measure(RUN_ON_MARK)
                pos += 1
                if x + space + mark.width > limit:
                    break  # the line break itself shows the newline
                x += space
                for offset, font_index, text, width, direction, _ in mark.runs:
                    runs.append(GlyphRun(origin + x + offset, font_index, text, width, face_name, direction))
                x += mark.width
                ink = x
                x += space
                continue
            capped = pos + len(token) == window < end
            if not capped:
                measured = measure(token)
                whole = x + measured.width <= limit
            if capped or not whole:
                if runs:
                    break
                if allow_empty and pos == start and not capped and measured.width <= limit - (x - indent):
                    break  # fits a line of its own: not split after a tag
                fitting = face.fit(token, limit - x)
                if fitting == 0 and pos == start:
                    fitting = first_cluster_length(token)  # wider than the line: placed anyway, so layout progresses
                if fitting == 0:
                    break
                measured = measure(token[:fitting])
                whole = False
            for offset, font_index, text, width, direction, bidi in measured.runs:
                runs.append(GlyphRun(origin + x + offset, font_index, text, width, face_name, direction, bidi))
            x += measured.width
            ink = x
            missing += measured.missing
            controls += measured.controls
            right_to_left = right_to_left or measured.right_to_left
            pos += measured.length
            if not whole:
                break
        x0, x1 = origin, origin + ink
        if right_to_left and runs:
            runs, x0, x1 = self._reorder(face, runs, paragraph, origin + indent, origin + limit)
        return _Filled(start, pos, x0, x1, tuple(runs), missing, controls)

    def _reorder(
        self, face: FontFace, runs: list[GlyphRun], paragraph: int, left: int, right: int
    ) -> tuple[list[GlyphRun], int, int]:
        """Runs of one line in bidi visual order, right-aligned in a right-to-left paragraph; and the ink extent.

        The runs come in logical order, placed left to right; the gaps between them are whitespace.
        """
        pieces: list[tuple[GlyphRun | None, str, int, int]] = []  # run (None: a gap), bidi class, length, width
        pen = left
        for run in runs:
            if run.x > pen:
                pieces.append((None, "WS", 1, run.x - pen))
            pen = run.x + run.width
            if run.direction is not None or run.font_index is None or not run.text:
                shaped_class = "ON" if run.font_index is None else run.bidi or _run_class(run.text)
                pieces.append((run, shaped_class, max(1, len(run.text)), run.width))
                continue
            # A glyph-by-glyph run may mix classes (a word and its comma): split it where the class changes.
            start = 0
            kind = bidi_class(run.text[0]) if run.text else "ON"
            offset = 0
            for position in range(1, len(run.text) + 1):
                next_kind = bidi_class(run.text[position]) if position < len(run.text) else None
                if next_kind != kind:
                    text = run.text[start:position]
                    width = sum(face.advance(run.font_index, char) for char in text)
                    pieces.append((run._replace(x=run.x + offset, text=text, width=width), kind, len(text), width))
                    offset += width
                    start, kind = position, next_kind
        levels, forced = resolve_line([piece[1] for piece in pieces], [piece[2] for piece in pieces], paragraph)
        total = sum(piece[3] for piece in pieces)
        x = left if paragraph == 0 else max(left, right - total)
        placed = []
        for index in visual_order(levels):
            run, kind, _, width = pieces[index]
            if run is not None and run.text:
                direction = run.direction
                override = forced[index]
                if override is not None and run.font_index is not None:
                    # An override draws the run's glyphs in the forced order; raqm honours the same controls.
                    direction = "rtl" if override == "R" else "ltr"
                    if not face.is_bitmap(run.font_index):
                        run = run._replace(text=_OVERRIDE_OPEN[override] + run.text + _POP_DIRECTIONAL_FORMATTING)
                elif levels[index] % 2 and run.font_index is not None and (direction is None or kind in ("ON", "WS")):
                    direction = "rtl"  # neutrals inside right-to-left text: reversed and mirrored by raqm
                elif direction is not None and kind in ("ON", "WS") and levels[index] % 2 == 0:
                    direction = "ltr"
                placed.append(run._replace(x=x, direction=direction))
            x += width
        if not placed:
            return placed, left, left
        x0 = min(run.x for run in placed)
        x1 = max(run.x + run.width for run in placed)
        return placed, (self.style.margin_x if paragraph == 0 else x0), x1

    def _blocks(self, content: str) -> tuple[list[tuple[int, int, bool]], list[int]]:
        """``blocks(content)`` and their ends, kept for the turn being paginated (a long turn spans many pages).

        One tuple is swapped in whole, so threads sharing a renderer never pair one turn's blocks with another's.
        """
        cached, found, ends = self._blocks_cache
        if cached is not content:
            found = blocks(content)
            ends = [end for _, end, _ in found]
            self._blocks_cache = (content, found, ends)
        return found, ends

    def _content_lines(self, content: str, offset: int, indent: int) -> Iterator[_ContentLine]:
        """Wrapped lines of ``content`` from ``offset`` on; the first keeps ``indent`` pixels free for a tag.

        A first line that holds nothing (its first word does not fit after the tag) comes back empty, ending where
        it starts; the lines after it are full width.
        """
        first = True
        origin = self.style.margin_x
        mark, mark_indent = self._continuation
        found, ends = self._blocks(content)
        for start, end, is_code in found[bisect_left(ends, offset):]:
            face = Face.MONO if is_code else Face.TEXT
            paragraph = 0 if is_code else paragraph_level(content, start, end)
            position = max(start, offset)
            while True:
                lead = indent if first else 0
                continuation = is_code and position > start
                filled = self.fill(
                    face,
                    content,
                    position,
                    end,
                    indent=lead + (mark_indent if continuation else 0),
                    allow_empty=first and lead > 0,
                    paragraph=paragraph,
                )
                first = False
                if filled.end == position < end:
                    yield _ContentLine(face, filled._replace(runs=()), position)
                    continue
                if continuation:
                    prefix = tuple(
                        GlyphRun(origin + lead + offset, font_index, text, width, Face.MONO, direction)
                        for offset, font_index, text, width, direction, _ in mark.runs
                    )
                    filled = filled._replace(
                        runs=prefix + filled.runs,
                        x1=max(filled.x1, origin + lead + mark.width),
                        missing=filled.missing + mark.missing,
                    )
                if filled.end >= end:
                    yield _ContentLine(face, filled, end + 1 if end < len(content) else end)
                    break
                yield _ContentLine(face, filled, filled.end)
                position = filled.end

    def _tag_base(self, role: Role, name: str, continued_from: int | None) -> str:
        suffix = f" (continued from page {continued_from})" if continued_from is not None else ""
        return f"{ROLE_TAGS[role]}{NAME_SEPARATOR + name if name else ''}{suffix}:"

    def tag_text(self, turn: Turn, continued_from: int | None) -> str:
        """The turn's role tag; a long speaker name is shortened with an ellipsis so the tag fits one line."""
        role = Role.parse(turn.role)
        name = _clean_name(turn.name) if turn.name else ""
        tag = self._tag_base(role, name, continued_from)
        if not name or self._fits(tag):
            return tag
        low, high = 0, len(name) - 1  # the longest fitting prefix; the bare tag always fits
        while low < high:
            middle = (low + high + 1) // 2
            if self._fits(self._tag_base(role, name[:middle] + ELLIPSIS, continued_from)):
                low = middle
            else:
                high = middle - 1
        return self._tag_base(role, name[:low] + ELLIPSIS if low else "", continued_from)

    def _fits(self, text: str) -> bool:
        return self.fill(Face.HEADER, text, 0, len(text)).end == len(text)

    # -- pagination ------------------------------------------------------------------------------------------------

    def paginate(self, turns: Sequence[Turn], first_page_index: int, first_turn_offset: int) -> list[PageLayout]:
        _validate(turns, first_page_index, first_turn_offset)
        pages: list[PageLayout] = []
        page = _PageBuilder(self, first_page_index)
        for position, turn in enumerate(turns):
            offset = first_turn_offset if position == 0 else 0
            continued = offset > 0
            done = False
            while not done:
                segment = page.try_segment(turn, offset, continued)
                if segment is None:
                    pages.append(page.finish(full=True))
                    page = _PageBuilder(self, page.index + 1)
                    continue
                offset, done = segment
                if not done:
                    pages.append(page.finish(full=True))
                    page = _PageBuilder(self, page.index + 1)
                    continued = True
        if page.segments:
            pages.append(page.finish(full=not page.could_start_turn()))
        return pages


def _run_class(text: str) -> str:
    return bidi_class(text[0]) if text else "ON"


class _PageBuilder:
    """Accumulates one page: text, line boxes, segments and counts, top to bottom."""

    def __init__(self, paginator: Paginator, index: int) -> None:
        self.paginator = paginator
        self.index = index
        self.parts: list[str] = []
        self.length = 0
        self.lines: list[LayoutLine] = []
        self.segments: list[TurnSegment] = []
        # The label line is written with the first turn, whose day it shows.
        self.y = paginator.style.margin_y + paginator.line_height
        self.day: str | None = None
        self.missing = self.controls = 0
        self.timestamp = -math.inf
        self.resume_offset: int | None = None

    def could_start_turn(self) -> bool:
        """Whether the cheapest further turn (same day, first word fitting after its tag) would still fit."""
        paginator = self.paginator
        return self.y + paginator.turn_gap + paginator.line_height <= paginator.bottom

    def _append(self, text: str) -> int:
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        return start

    def _place(self, face: Face, filled: _Filled, text_start: int, text_end: int, y: int | None = None) -> None:
        paginator = self.paginator
        top = self.y if y is None else y
        box = LineBox(filled.x0, top, max(filled.x0, filled.x1), top + paginator.line_height, text_start, text_end)
        self.lines.append(LayoutLine(box, top + paginator.baseline_offset, face, filled.runs))
        if y is None:
            self.y += paginator.line_height
        self.missing += filled.missing
        self.controls += filled.controls

    def _header_line(self, text: str, y: int | None = None) -> None:
        """A label or date line: always one line (sized to fit)."""
        if self.parts:
            self._append("\n")
        start = self._append(text)
        self._place(Face.HEADER, self.paginator.fill(Face.HEADER, text, 0, len(text)), start, start + len(text), y)

    def try_segment(self, turn: Turn, offset: int, continued: bool) -> tuple[int, bool] | None:
        """Lay out as much of ``turn`` from ``offset`` as fits: ``(where it stopped, whether it ended)``, or ``None``
        when not even its first line fits on this page."""
        paginator = self.paginator
        style = paginator.style
        day = utc_day(turn.timestamp)
        dated = bool(self.segments) and day != self.day and day is not None
        tag = paginator.tag_text(turn, self.index - 1 if continued else None)
        tag_filled = paginator.fill(Face.HEADER, tag, 0, len(tag))
        indent = tag_filled.x1 - style.margin_x + paginator.tag_space
        lines = paginator._content_lines(turn.content, offset, indent)
        first = next(lines)
        tag_only = first.next_offset == first.filled.start < len(turn.content)
        need = paginator.turn_gap + paginator.line_height * (1 + dated + tag_only)
        if self.y + need > paginator.bottom:
            return None
        if not self.segments:
            label = f"page {self.index}" + (f" · {day}" if day is not None else "")
            self._header_line(label, y=style.margin_y)
        self.y += paginator.turn_gap
        if dated:
            self._header_line(day)  # type: ignore[arg-type]
        if day is not None:
            self.day = day
        self.timestamp = max(self.timestamp, turn.timestamp)
        # The tag and the segment's first line share one line box.
        tag_start = self._append("\n") + 1
        self._append(tag + " ")
        content_start = tag_start + len(tag) + 1
        end = offset
        line: _ContentLine | None = first
        first_line = True
        while line is not None and (first_line or self.y + paginator.line_height <= paginator.bottom):
            filled = line.filled
            text_start = content_start + filled.start - offset
            text_end = text_start + filled.end - filled.start
            if first_line:
                merged = filled._replace(
                    runs=tag_filled.runs + filled.runs,
                    x0=style.margin_x,
                    x1=max(filled.x1, tag_filled.x1),
                    missing=filled.missing + tag_filled.missing,
                    controls=filled.controls + tag_filled.controls,
                )
                self._place(line.face, merged, tag_start, max(text_end, content_start))
            else:
                self._place(line.face, filled, text_start, text_end)
            end = line.next_offset
            first_line = False
            line = next(lines, None)
        self._append(turn.content[offset:end])
        self.segments.append(TurnSegment(turn.index, Role.parse(turn.role), offset, end, continued))
        done = end >= len(turn.content)
        self.resume_offset = None if done else end
        return end, done

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
    validate_int(first_page_index, field_name="first_page_index", minimum=0, maximum=MAX_INDEX)
    validate_int(first_turn_offset, field_name="first_turn_offset", minimum=0)
    for position, turn in enumerate(turns):
        if not isinstance(turn, Turn):
            raise TypeError(f"turns[{position}] must be a Turn, got {type(turn).__name__}")
        if not isinstance(turn.content, str):
            raise TypeError(f"turns[{position}].content must be a string, got {type(turn.content).__name__}")
        validate_int(turn.index, field_name=f"turns[{position}].index", minimum=0, maximum=MAX_INDEX)
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
