"""What layout needs to know about Unicode text: grapheme clusters, which text needs shaping, bidi order, CJK breaks.

* **Clusters** are extended grapheme clusters (UAX #29, the ``regex`` module's ``\\X``): a base letter with its
  combining marks, an emoji ZWJ sequence, a flag (two regional indicators), a keycap. Layout never breaks a line
  inside one, and a cluster is drawn with one font.
* **Shaping**: a word needs a shaping engine (raqm) when it holds right-to-left or Arabic-number characters,
  combining marks, format characters (ZWJ, ZWNJ, bidi marks, variation selectors, tags), regional indicators, emoji
  modifiers or conjoining Hangul jamo. Everything else (Latin, Greek, Cyrillic, CJK, most symbols) is one glyph per
  code point and keeps the fast glyph-by-glyph path.
* **Bidi**: the Unicode Bidirectional Algorithm (UAX #9) without explicit embeddings, overrides and isolates (their
  controls are treated as neutral and drawn as nothing): rules W1-W7, N1-N2, I1-I2 resolve a level per piece of
  text, L2 reorders the pieces of a line. The paragraph level comes from the first strong character (P2-P3).
* **CJK breaks**: Chinese and Japanese write no spaces, so a line may break after any ideograph or kana, though not
  before closing punctuation nor after opening punctuation (the basic kinsoku rule).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Iterator, Sequence

import regex

_CLUSTER = regex.compile(r"\X")
_NEEDS_SHAPING = regex.compile(
    r"[\p{bc=R}\p{bc=AL}\p{bc=AN}\p{Mn}\p{Mc}\p{Me}\p{Cf}"
    r"\U0001F1E6-\U0001F1FF\U0001F3FB-\U0001F3FF\u1100-\u11FF\uA960-\uA97F\uD7B0-\uD7FF]"
)
_RIGHT_TO_LEFT = regex.compile(r"[\p{bc=R}\p{bc=AL}\p{bc=AN}]")
_FIRST_STRONG = regex.compile(r"[\p{bc=L}\p{bc=R}\p{bc=AL}]")

# Default_Ignorable_Code_Point (DerivedCoreProperties.txt): drawn as nothing, so no font needs to cover them.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)

# Ideographs, kana and CJK punctuation, for line breaking (``re``, not ``regex``: this scan runs on every token).
_CJK = (
    "\u2E80-\u2FDF\u3005-\u3007\u3021-\u3029\u3031-\u3035\u3038-\u303C\u3040-\u30FF\u31F0-\u31FF\u3400-\u4DBF"
    "\u4E00-\u9FFF\uF900-\uFAFF\uFF66-\uFF9D\U00020000-\U0003134F"
)
_CJK_OPENING = "\u3008\u300A\u300C\u300E\u3010\u3014\u3016\u3018\u301D\uFF08\uFF3B\uFF5B\uFF5F\uFF62"
_CJK_CLOSING = (
    "\u3001\u3002\u3009\u300B\u300D\u300F\u3011\u3015\u3017\u3019\u301E\u301F\u309D\u309E\u30FB\u30FC\u30FD\u30FE"
    "\uFF01\uFF09\uFF0C\uFF0E\uFF1A\uFF1B\uFF1F\uFF3D\uFF5D\uFF60\uFF63\u2026\u2025"
)
# Marks that may follow an ideograph inside its cluster (combining marks, kana voicing, variation selectors).
_CJK_EXTEND = "\u0300-\u036F\u3099\u309A\uFE00-\uFE0F\U000E0100-\U000E01EF"
# A layout token: a run of spaces and tabs, a newline, one ideograph with the punctuation that must stay with it,
# or a run of anything else (opening punctuation right before an ideograph goes with the ideograph).
TOKEN = re.compile(
    f"[ \\t]+|\\n"
    f"|[{_CJK_OPENING}]*[{_CJK}][{_CJK_EXTEND}]*(?:[{_CJK_CLOSING}][{_CJK_EXTEND}]*)*"
    f"|(?:[^ \\t\\n{_CJK}{_CJK_OPENING}]|[{_CJK_OPENING}](?![{_CJK_OPENING}]*[{_CJK}]))+"
)

_NEUTRAL = frozenset({"B", "S", "WS", "ON", "BN", "LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"})


def clusters(text: str) -> list[str]:
    """The extended grapheme clusters of ``text``, in order."""
    return _CLUSTER.findall(text)


def iter_clusters(text: str) -> Iterator[str]:
    """The clusters of ``text`` one at a time, for callers that may stop early."""
    return (match.group() for match in _CLUSTER.finditer(text))


def first_cluster_length(text: str) -> int:
    """Code points in the first cluster of ``text`` (at least 1 for non-empty text)."""
    return _CLUSTER.match(text).end()  # type: ignore[union-attr]


def needs_shaping(text: str) -> bool:
    """Whether ``text`` has anything that one-glyph-per-code-point drawing gets wrong (see the module docstring)."""
    return _NEEDS_SHAPING.search(text) is not None


def has_right_to_left(text: str) -> bool:
    """Whether ``text`` has a right-to-left letter or an Arabic digit, so its line needs the bidi algorithm."""
    return _RIGHT_TO_LEFT.search(text) is not None


def is_default_ignorable(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _DEFAULT_IGNORABLE)


@lru_cache(maxsize=4096)
def bidi_class(char: str) -> str:
    """The bidi class of ``char``; unassigned code points count as left-to-right (UAX #9's default for most)."""
    return unicodedata.bidirectional(char) or "L"


def paragraph_level(text: str, start: int, end: int) -> int:
    """0 (left-to-right) or 1 (right-to-left): the direction of the first strong character of ``text[start:end]``."""
    first = _FIRST_STRONG.search(text, start, end)
    return 1 if first is not None and bidi_class(first.group()) in ("R", "AL") else 0


def resolve_levels(classes: Sequence[str], lengths: Sequence[int], paragraph: int) -> list[int]:
    """Embedding levels of a line's pieces, each piece of one bidi class (``lengths`` in code points).

    Explicit embedding, override and isolate controls are neutral here (rule X9 would remove them; as neutrals they
    join the direction around them, which is what they are drawn with: nothing).
    """
    sos = "R" if paragraph else "L"
    kinds = list(classes)
    count = len(kinds)
    # W1: a non-spacing mark takes the class of the piece before it.
    for i, kind in enumerate(kinds):
        if kind == "NSM":
            kinds[i] = kinds[i - 1] if i else sos
        elif kind in _NEUTRAL:
            kinds[i] = "ON" if kind not in ("WS", "S", "B") else kind
    # W2, W3: European digits after Arabic letters are Arabic numbers; Arabic letters are right-to-left.
    strong = sos
    for i, kind in enumerate(kinds):
        if kind in ("L", "R", "AL"):
            strong = kind
        elif kind == "EN" and strong == "AL":
            kinds[i] = "AN"
    kinds = ["R" if kind == "AL" else kind for kind in kinds]
    # W4: one separator between two numbers of the same kind joins them.
    for i in range(1, count - 1):
        if lengths[i] == 1 and kinds[i - 1] == kinds[i + 1]:
            if (kinds[i] == "ES" and kinds[i - 1] == "EN") or (kinds[i] == "CS" and kinds[i - 1] in ("EN", "AN")):
                kinds[i] = kinds[i - 1]
    # W5: terminators (currency, percent) next to European digits are digits.
    for i, kind in enumerate(kinds):
        if kind == "EN":
            j = i - 1
            while j >= 0 and kinds[j] == "ET":
                kinds[j] = "EN"
                j -= 1
            j = i + 1
            while j < count and kinds[j] == "ET":
                kinds[j] = "EN"
                j += 1
    # W6: remaining separators and terminators are neutral. W7: digits in left-to-right text are left-to-right.
    strong = sos
    for i, kind in enumerate(kinds):
        if kind in ("ES", "ET", "CS"):
            kinds[i] = "ON"
        elif kind in ("L", "R"):
            strong = kind
        elif kind == "EN" and strong == "L":
            kinds[i] = "L"
    # N1, N2: neutrals between text of one direction take it (numbers count as right-to-left), else the paragraph's.
    i = 0
    while i < count:
        if kinds[i] not in ("ON", "WS", "S", "B"):
            i += 1
            continue
        j = i
        while j < count and kinds[j] in ("ON", "WS", "S", "B"):
            j += 1
        before = "R" if i == 0 and paragraph else "L" if i == 0 else _direction(kinds[i - 1])
        after = ("R" if paragraph else "L") if j == count else _direction(kinds[j])
        resolved = before if before == after else ("R" if paragraph else "L")
        for k in range(i, j):
            kinds[k] = resolved
        i = j
    # I1, I2.
    levels = []
    for kind in kinds:
        if paragraph == 0:
            levels.append(1 if kind == "R" else 2 if kind in ("AN", "EN") else 0)
        else:
            levels.append(2 if kind in ("L", "AN", "EN") else 1)
    return levels


def _direction(kind: str) -> str:
    return "L" if kind == "L" else "R"


def visual_order(levels: Sequence[int]) -> list[int]:
    """Rule L2: indices of the pieces left to right, reversing every run at each level from the highest down."""
    order = list(range(len(levels)))
    if not levels:
        return order
    highest = max(levels)
    lowest_odd = min(levels) | 1
    for level in range(highest, lowest_odd - 1, -1):
        i = 0
        while i < len(order):
            if levels[order[i]] < level:
                i += 1
                continue
            j = i
            while j < len(order) and levels[order[j]] >= level:
                j += 1
            order[i:j] = order[i:j][::-1]
            i = j
    return order
