"""What full-text search sees of a turn: its words, folded the same way for the index and for every query.

Both backends index the word stream computed here rather than running their own tokenizers (SQLite's ``unicode61``
and PostgreSQL's parser split, fold and skip different things), so a query finds the same turns on either backend,
and user text never reaches a query parser: a query is a list of words, each quoted as a literal.

A word is a maximal run of letters, digits and combining marks (underscore and punctuation separate words), folded
to lower case with compatibility forms unified (NFKC) and Latin/Greek/Cyrillic accents removed ("Café" and "cafe"
are one word). Han ideographs and kana are one word per character, since those scripts put no spaces between words.
Words are cut to ``MAX_WORD_CHARS`` characters, and a turn's index stops growing once its distinct words would fill
``MAX_INDEX_BYTES`` of PostgreSQL ``tsvector`` (which must stay under 1 MiB; about 70,000 distinct words): words that
first appear past that point of a turn (deep inside a pasted blob) are not searchable, on either backend. The word classes follow the running Python's Unicode database.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

MAX_WORD_CHARS = 64
MAX_INDEX_BYTES = 1_000_000
"""A turn's index stops at this many bytes of PostgreSQL ``tsvector`` (whose limit is 1 MiB)."""
MAX_POSITION = 16_383
MAX_POSITIONS_PER_WORD = 256
"""PostgreSQL's ``tsvector`` limits ("Full Text Search: Limitations"): positions 1..16,383, 256 per word."""
MAX_QUERY_WORDS = 64
"""Distinct words of a query that are searched (the first ones); a longer query adds nothing but cost."""

# Scripts written without spaces: each character is its own word (kana, CJK ideographs and their extensions).
_PER_CHARACTER = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_ACCENTS = re.compile("[\u0300-\u036f]+")  # the Combining Diacritical Marks block: Latin, Greek, Cyrillic accents
_ASCII_WORD = re.compile("[a-z0-9]+")


@functools.cache
def _word_pattern() -> re.Pattern[str]:
    # ``\w`` leaves out combining marks, which are part of words in Indic and many other scripts; add them.
    # Marks live in planes 0, 1 and 14 (variation selectors) only; the other planes hold no marks.
    planes = (*range(0x20000), *range(0xE0000, 0xE1000))
    marks = _ranges(c for c in planes if unicodedata.category(chr(c))[0] == "M")
    return re.compile(f"[{_PER_CHARACTER}]|(?:[^\\W_{_PER_CHARACTER}]|[{marks}])+")


def _ranges(codes: Iterable[int]) -> str:
    """A character-class body for ``codes`` (ascending), consecutive runs written as ranges."""
    parts: list[str] = []
    start = previous = None
    for code in codes:
        if previous is not None and code == previous + 1:
            previous = code
            continue
        if start is not None:
            parts.append(_span(start, previous))
        start = previous = code
    if start is not None:
        parts.append(_span(start, previous))
    return "".join(parts)


def _span(start: int, end: int) -> str:
    return re.escape(chr(start)) if start == end else f"{re.escape(chr(start))}-{re.escape(chr(end))}"


def _fold(run: str) -> list[str]:
    if run.isascii():
        return [run.lower()[:MAX_WORD_CHARS]]
    stripped = _ACCENTS.sub("", unicodedata.normalize("NFKD", run))
    folded = unicodedata.normalize("NFKC", stripped.casefold())
    # Compatibility forms may bring separators along ("½" is "1⁄2"): split again.
    return [word[:MAX_WORD_CHARS] for word in _word_pattern().findall(folded)]


@dataclass(frozen=True)
class Word:
    """A word of a text and where its run of characters is in that text."""

    text: str
    start: int
    end: int


def words(text: str) -> list[Word]:
    """Every word of ``text`` with the span of the characters it came from, in order."""
    found = []
    for match in _word_pattern().finditer(text):
        for word in _fold(match.group()):
            found.append(Word(word, match.start(), match.end()))
    return found


def index_terms(text: str) -> list[str]:
    """The word stream a turn is indexed under (capped as the module docstring says)."""
    if text.isascii():
        stream = [word[:MAX_WORD_CHARS] for word in _ASCII_WORD.findall(text.lower())]
    else:
        stream = [word for match in _word_pattern().finditer(text) for word in _fold(match.group())]
    # The size PostgreSQL's tsvector gives these words: each distinct word, its 4-byte entry and position count, and
    # 2 bytes per kept position (positions clamp at 16,383; at most 256 per word).
    kept: dict[str, tuple[int, int]] = {}
    size = 0
    for position, word in enumerate(stream, 1):
        clamped = min(position, MAX_POSITION)
        entry = kept.get(word)
        if entry is None:
            size += len(word.encode("utf-8")) + 8
            if size > MAX_INDEX_BYTES:
                return stream[: position - 1]
            kept[word] = (1, clamped)
        elif entry[0] < MAX_POSITIONS_PER_WORD and entry[1] != clamped:
            size += 2
            kept[word] = (entry[0] + 1, clamped)
    return stream


def query_terms(query: str) -> list[str]:
    """The distinct words a query searches for, in the order they appear (at most ``MAX_QUERY_WORDS``)."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    return list(dict.fromkeys(word.text for word in words(query)))[:MAX_QUERY_WORDS]


MATCH_MODES = ("all", "any")


def check_match(match: object) -> str:
    if match not in MATCH_MODES:
        raise ValueError(f"match must be 'all' (every query word) or 'any' (at least one), got {match!r}")
    return match  # type: ignore[return-value]


@dataclass(frozen=True)
class Excerpt:
    """Where an excerpt of a text is (``text[start:end]``), and where its first matching word starts (``anchor``;
    ``None`` when no word matched)."""

    start: int
    end: int
    anchor: int | None


def excerpt(text: str, terms: Sequence[str], *, width: int = 240) -> Excerpt:
    """About ``width`` characters of ``text`` around the span holding the most distinct ``terms`` (the earliest
    such span), moved out to spaces nearby so words stay whole; the start of the text when no term occurs."""
    hits = _words_among(text, set(terms))
    if not hits:
        return Excerpt(*_to_spaces(text, 0, min(len(text), width)), None)
    best_count, best_first, best_last = 0, 0, 0
    counts: dict[str, int] = {}
    first = 0
    for last, word in enumerate(hits):
        counts[word.text] = counts.get(word.text, 0) + 1
        while first < last and word.end - hits[first].start > width:
            counts[hits[first].text] -= 1
            if not counts[hits[first].text]:
                del counts[hits[first].text]
            first += 1
        if len(counts) > best_count:
            best_count, best_first, best_last = len(counts), first, last
    low = hits[best_first].start
    high = min(hits[best_last].end, low + width)
    pad = (width - (high - low)) // 2
    return Excerpt(*_to_spaces(text, max(0, low - pad), min(len(text), high + pad)), low)


def words_held(text: str, wanted: Iterable[str]) -> set[str]:
    """Which of the index words ``wanted`` occur in ``text``."""
    return {word.text for word in _words_among(text, set(wanted))}


def _words_among(text: str, wanted: set[str]) -> list[Word]:
    """The words of ``text`` that are in ``wanted``, as ``words`` finds them: a query's every hit has its whole turn
    scanned. In ASCII text a word is a run of ASCII letters and digits, lowered (as ``index_terms`` reads it), at
    the same place in the lowered text, so the Unicode word pattern is not needed and only matching runs become a
    ``Word``."""
    if not text.isascii():
        return [word for word in words(text) if word.text in wanted]
    return [Word(word, match.start(), match.end()) for match in _ASCII_WORD.finditer(text.lower())
            if (word := match.group()[:MAX_WORD_CHARS]) in wanted]


def _to_spaces(text: str, start: int, end: int, reach: int = 24) -> tuple[int, int]:
    """``(start, end)`` moved outwards to the nearest whitespace within ``reach`` characters, so words stay whole."""
    for step in range(min(reach, start)):
        if text[start - step - 1].isspace():
            start -= step
            break
    for step in range(min(reach, len(text) - end)):
        if text[end + step].isspace():
            end += step
            break
    return start, end
