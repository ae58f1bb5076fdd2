"""What layout needs to know about Unicode text: grapheme clusters, which text needs shaping, bidi order, CJK breaks.

Everything here comes from the standard library's ``unicodedata`` (the properties it lacks are tabulated below), so
rendering adds no dependency and follows the Python build's Unicode version.

* **Clusters** are extended grapheme clusters (UAX #29 rules GB3-GB13): a base letter with its combining marks, a
  Hangul syllable from jamo, an emoji ZWJ sequence, a flag (two regional indicators), a keycap. Layout never breaks
  a line inside one, and a cluster is drawn with one font. Not implemented: GB9c (Indic conjuncts, Unicode 15.1),
  so a conjunct is two clusters; shaping still joins it, as both go to raqm in one run.
* **Shaping**: a word needs a shaping engine (raqm) when it holds right-to-left or Arabic-number characters,
  combining marks, format characters (ZWJ, ZWNJ, bidi marks, variation selectors, tags), regional indicators, emoji
  modifiers or conjoining jamo. Everything else (Latin, Greek, Cyrillic, CJK, most symbols) is one glyph per code
  point and keeps the fast glyph-by-glyph path.
* **Bidi**: the Unicode Bidirectional Algorithm (UAX #9) without bracket pairs (N0): explicit embeddings,
  overrides and isolates (X1-X10), W1-W7, N1-N2, I1-I2 and L1 resolve a level per piece of text, L2 reorders the
  pieces of a line; it passes every case of Unicode's BidiTest.txt. The paragraph level comes from the first strong
  character outside isolates (P2-P3). Each line is resolved on its own, so an isolate or embedding that a line
  break cuts ends at that break; the controls themselves are drawn as nothing.
* **CJK breaks**: Chinese and Japanese write no spaces, so a line may break after any ideograph or kana, though not
  before closing punctuation nor after opening punctuation (the basic kinsoku rule).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Iterator, Sequence

# Default_Ignorable_Code_Point (DerivedCoreProperties.txt): drawn as nothing, so no font needs to cover them.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
# Grapheme_Cluster_Break=Prepend (GraphemeBreakProperty.txt).
_PREPEND = (
    (0x0600, 0x0605), (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x0D4E, 0x0D4E),
    (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x111C2, 0x111C3), (0x1193F, 0x1193F), (0x11941, 0x11941),
    (0x11A3A, 0x11A3A), (0x11A84, 0x11A89), (0x11D46, 0x11D46), (0x11F02, 0x11F02),
)
# Extended_Pictographic (emoji-data.txt), merged into ranges: what a ZWJ joins in an emoji sequence (GB11).
_PICTOGRAPHIC = (
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122), (0x2139, 0x2139),
    (0x2194, 0x2199), (0x21A9, 0x21AA), (0x231A, 0x231B), (0x2328, 0x2328), (0x2388, 0x2388), (0x23CF, 0x23CF),
    (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2), (0x25AA, 0x25AB), (0x25B6, 0x25B6), (0x25C0, 0x25C0),
    (0x25FB, 0x25FE), (0x2600, 0x2605), (0x2607, 0x2612), (0x2614, 0x2685), (0x2690, 0x2705), (0x2708, 0x2712),
    (0x2714, 0x2714), (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721), (0x2728, 0x2728), (0x2733, 0x2734),
    (0x2744, 0x2744), (0x2747, 0x2747), (0x274C, 0x274C), (0x274E, 0x274E), (0x2753, 0x2755), (0x2757, 0x2757),
    (0x2763, 0x2767), (0x2795, 0x2797), (0x27A1, 0x27A1), (0x27B0, 0x27B0), (0x27BF, 0x27BF), (0x2934, 0x2935),
    (0x2B05, 0x2B07), (0x2B1B, 0x2B1C), (0x2B50, 0x2B50), (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D),
    (0x3297, 0x3297), (0x3299, 0x3299), (0x1F000, 0x1F0FF), (0x1F10D, 0x1F10F), (0x1F12F, 0x1F12F),
    (0x1F16C, 0x1F171), (0x1F17E, 0x1F17F), (0x1F18E, 0x1F18E), (0x1F191, 0x1F19A), (0x1F1AD, 0x1F1E5),
    (0x1F201, 0x1F20F), (0x1F21A, 0x1F21A), (0x1F22F, 0x1F22F), (0x1F232, 0x1F23A), (0x1F23C, 0x1F23F),
    (0x1F249, 0x1F3FA), (0x1F400, 0x1F53D), (0x1F546, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F774, 0x1F77F),
    (0x1F7D5, 0x1F7FF), (0x1F80C, 0x1F80F), (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F), (0x1F888, 0x1F88F),
    (0x1F8AE, 0x1F8FF), (0x1F90C, 0x1F93A), (0x1F93C, 0x1F945), (0x1F947, 0x1FAFF), (0x1FC00, 0x1FFFD),
)
# Grapheme_Cluster_Break classes (those the rules tell apart).
_OTHER, _CR, _LF, _CONTROL, _EXTEND, _ZWJ, _RI, _PREPEND_BREAK, _SPACING, _L, _V, _T, _LV, _LVT = range(14)
_HANGUL_JOINS = {_L: (_L, _V, _LV, _LVT), _LV: (_V, _T), _V: (_V, _T), _LVT: (_T,), _T: (_T,)}
_RIGHT_TO_LEFT_CLASSES = ("R", "AL", "AN")
_BIDI_CLASSES = frozenset({"R", "AL", "AN", "RLE", "RLO", "RLI", "FSI", "LRO"})
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def _within(code: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= code <= high for low, high in ranges)


@lru_cache(maxsize=8192)
def _break_class(char: str) -> int:
    code = ord(char)
    if char == "\r":
        return _CR
    if char == "\n":
        return _LF
    if code == 0x200D:
        return _ZWJ
    if 0x1F1E6 <= code <= 0x1F1FF:
        return _RI
    # Emoji modifiers, tags, ZWNJ and halfwidth voicing marks extend a cluster though they are not marks.
    if 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F or code == 0x200C or 0xFF9E <= code <= 0xFF9F:
        return _EXTEND
    if 0x1100 <= code <= 0x115F or 0xA960 <= code <= 0xA97C:
        return _L
    if 0x1160 <= code <= 0x11A7 or 0xD7B0 <= code <= 0xD7C6:
        return _V
    if 0x11A8 <= code <= 0x11FF or 0xD7CB <= code <= 0xD7FB:
        return _T
    if 0xAC00 <= code <= 0xD7A3:
        return _LV if (code - 0xAC00) % 28 == 0 else _LVT
    if _within(code, _PREPEND):
        return _PREPEND_BREAK
    if code in (0x0E33, 0x0EB3):  # Thai and Lao sara am: letters by category, spacing marks for clusters
        return _SPACING
    category = unicodedata.category(char)
    if category in ("Mn", "Me"):
        return _EXTEND
    if category == "Mc":
        return _SPACING
    if category in ("Cc", "Cf", "Zl", "Zp") or (category == "Cn" and is_default_ignorable(char)):
        return _CONTROL
    return _OTHER


@lru_cache(maxsize=8192)
def _pictographic(char: str) -> bool:
    return _within(ord(char), _PICTOGRAPHIC)


def iter_clusters(text: str) -> Iterator[str]:
    """The extended grapheme clusters of ``text``, one at a time (callers may stop early)."""
    if not text:
        return
    start = 0
    previous = _break_class(text[0])
    regional = 1 if previous == _RI else 0  # regional indicators in a row, ending at the previous character
    emoji = _pictographic(text[0])  # after a pictograph and only Extend since
    joined_emoji = False  # the previous character is a ZWJ after a pictograph (GB11)
    for position in range(1, len(text)):
        char = text[position]
        current = _break_class(char)
        if previous == _CR and current == _LF:
            joins = True  # GB3
        elif previous in (_CONTROL, _CR, _LF) or current in (_CONTROL, _CR, _LF):
            joins = False  # GB4, GB5
        elif current in _HANGUL_JOINS.get(previous, ()):
            joins = True  # GB6-GB8
        elif current in (_EXTEND, _ZWJ, _SPACING) or previous == _PREPEND_BREAK:
            joins = True  # GB9, GB9a, GB9b
        elif joined_emoji and _pictographic(char):
            joins = True  # GB11
        else:
            joins = previous == current == _RI and regional % 2 == 1  # GB12, GB13
        if not joins:
            yield text[start:position]
            start = position
        joined_emoji = emoji and current == _ZWJ
        if _pictographic(char):
            emoji = True
        elif current != _EXTEND:
            emoji = False
        regional = regional + 1 if current == _RI else 0
        previous = current
    yield text[start:]


def is_emoji_sequence(cluster: str) -> bool:
    """Whether ``cluster`` is an emoji sequence that an emoji font may draw as one glyph: a ZWJ sequence, a skin
    tone, a flag (regional indicator pair or tag sequence) or a keycap."""
    return len(cluster) > 1 and any(
        char == "\u200d" or char == "\u20e3" or 0x1F1E6 <= ord(char) <= 0x1F1FF or 0x1F3FB <= ord(char) <= 0x1F3FF
        or 0xE0020 <= ord(char) <= 0xE007F
        for char in cluster
    )


def clusters(text: str) -> list[str]:
    """The extended grapheme clusters of ``text``, in order."""
    return list(iter_clusters(text))


def first_cluster_length(text: str) -> int:
    """Code points in the first cluster of ``text`` (at least 1 for non-empty text)."""
    return len(next(iter_clusters(text), ""))


@lru_cache(maxsize=8192)
def _shaped_char(char: str) -> bool:
    code = ord(char)
    return (
        bidi_class(char) in _RIGHT_TO_LEFT_CLASSES
        or unicodedata.category(char) in ("Mn", "Mc", "Me", "Cf")
        or _break_class(char) in (_RI, _EXTEND, _L, _V, _T)
        or 0xD7B0 <= code <= 0xD7FF
    )


def needs_shaping(text: str) -> bool:
    """Whether ``text`` has anything that one-glyph-per-code-point drawing gets wrong (see the module docstring)."""
    return not text.isascii() and any(_shaped_char(char) for char in text)


def has_right_to_left(text: str) -> bool:
    """Whether ``text`` has a right-to-left letter, an Arabic digit or a control that opens right-to-left or
    overridden text, so its line needs the bidi algorithm."""
    return not text.isascii() and any(bidi_class(char) in _BIDI_CLASSES for char in text)


def is_bidi_control(char: str) -> bool:
    """Explicit bidi controls and marks (LRE…RLO, PDF, LRI…PDI, LRM, RLM, ALM): drawn as nothing, yet they steer
    the bidi algorithm, so layout keeps each as an empty piece of its class."""
    return char in _BIDI_CONTROLS


def is_default_ignorable(char: str) -> bool:
    return _within(ord(char), _DEFAULT_IGNORABLE)


@lru_cache(maxsize=8192)
def bidi_class(char: str) -> str:
    """The bidi class of ``char``; unassigned code points count as left-to-right (UAX #9's default for most)."""
    return unicodedata.bidirectional(char) or "L"


def paragraph_level(text: str, start: int, end: int) -> int:
    """0 (left-to-right) or 1 (right-to-left): the direction of the first strong character of ``text[start:end]``
    outside isolates (rules P2-P3)."""
    depth = 0
    for position in range(start, end):
        kind = bidi_class(text[position])
        if kind in _ISOLATE_INITIATORS:
            depth += 1
        elif kind == "PDI":
            depth = max(0, depth - 1)
        elif depth == 0 and kind == "L":
            return 0
        elif depth == 0 and kind in ("R", "AL"):
            return 1
    return 0


# Ideographs, kana and CJK punctuation, for line breaking (one ``re`` scan per token).
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
# A layout token: a run of anything but spaces, newlines, ideographs and opening punctuation (tried first: by far
# the commonest, and nothing else starts with those characters), a run of spaces and tabs, a newline, one ideograph
# with the punctuation that must stay with it, or opening punctuation that no ideograph follows.
TOKEN = re.compile(
    f"[^ \\t\\n{_CJK}{_CJK_OPENING}]+|[ \\t]+|\\n"
    f"|[{_CJK_OPENING}]*[{_CJK}][{_CJK_EXTEND}]*(?:[{_CJK_CLOSING}][{_CJK_EXTEND}]*)*"
    f"|[{_CJK_OPENING}]+"
)

_ISOLATE_INITIATORS = frozenset({"LRI", "RLI", "FSI"})
_EMBEDDINGS = {"LRE": ("L", None), "RLE": ("R", None), "LRO": ("L", "L"), "RLO": ("R", "R")}
_NEUTRALS = frozenset({"B", "S", "WS", "ON", "LRI", "RLI", "FSI", "PDI"})  # NI of rules N1 and N2
_MAX_DEPTH = 125


def _isolate_matches(classes: Sequence[str]) -> dict[int, int]:
    """BD9: each isolate initiator's matching PDI, by index (unmatched initiators are left out)."""
    matches: dict[int, int] = {}
    open_isolates: list[int] = []
    for index, kind in enumerate(classes):
        if kind in _ISOLATE_INITIATORS:
            open_isolates.append(index)
        elif kind == "PDI" and open_isolates:
            matches[open_isolates.pop()] = index
        elif kind == "B":
            open_isolates.clear()
    return matches


def first_strong(classes: Sequence[str], start: int = 0, end: int | None = None) -> int | None:
    """Rules P2-P3: 0 or 1 for the first L, or R/AL, in ``classes[start:end]`` outside isolates; None if none."""
    depth = 0
    for index in range(start, len(classes) if end is None else end):
        kind = classes[index]
        if kind in _ISOLATE_INITIATORS:
            depth += 1
        elif kind == "PDI":
            depth = max(0, depth - 1)
        elif depth == 0 and kind == "L":
            return 0
        elif depth == 0 and kind in ("R", "AL"):
            return 1
        elif kind == "B":
            return None
    return None


def resolve_levels(classes: Sequence[str], lengths: Sequence[int], paragraph: int) -> list[int]:
    """Embedding levels of a line's pieces, each piece of one bidi class (``lengths`` in code points).

    See ``resolve_line``; this is its levels alone.
    """
    return resolve_line(classes, lengths, paragraph)[0]


def resolve_line(
    classes: Sequence[str], lengths: Sequence[int], paragraph: int
) -> tuple[list[int], list[str | None]]:
    """Embedding levels of a line's pieces, and the direction an override forces on each (``"L"``, ``"R"``, None).

    UAX #9 rules X1-X10 (explicit embeddings, overrides and isolates, each control its own piece), W1-W7, N1-N2,
    I1-I2 and L1, with the line taken as the paragraph: an embedding or isolate left open at a line break ends
    there. Bracket pairs (N0) are not resolved: brackets are neutrals like any other. Pieces the rules remove (X9:
    embedding and override controls, PDF, BN) keep the level of the text around them; they draw nothing.
    """
    count = len(classes)
    kinds = list(classes)
    levels = [paragraph] * count
    forced: list[str | None] = [None] * count
    removed = [False] * count
    matches = _isolate_matches(classes)
    # X1-X8: the directional status stack; entries are (level, override, isolate).
    stack: list[tuple[int, str | None, bool]] = [(paragraph, None, False)]
    overflow_isolates = overflow_embeddings = valid_isolates = 0
    for index, kind in enumerate(classes):
        level, override, _ = stack[-1]
        if kind in _EMBEDDINGS:
            direction, pushed_override = _EMBEDDINGS[kind]
            new = (level + 1) | 1 if direction == "R" else (level + 2) & ~1
            removed[index] = True
            levels[index] = level
            if new <= _MAX_DEPTH and overflow_isolates == overflow_embeddings == 0:
                stack.append((new, pushed_override, False))
            elif overflow_isolates == 0:
                overflow_embeddings += 1
        elif kind in _ISOLATE_INITIATORS:
            levels[index] = level
            if override is not None:
                kinds[index] = override
            if kind == "FSI":
                rtl = first_strong(classes, index + 1, matches.get(index, count)) == 1
            else:
                rtl = kind == "RLI"
            new = (level + 1) | 1 if rtl else (level + 2) & ~1
            if new <= _MAX_DEPTH and overflow_isolates == overflow_embeddings == 0:
                valid_isolates += 1
                stack.append((new, None, True))
            else:
                overflow_isolates += 1
        elif kind == "PDI":
            if overflow_isolates:
                overflow_isolates -= 1
            elif valid_isolates:
                overflow_embeddings = 0
                while not stack[-1][2]:
                    stack.pop()
                stack.pop()
                valid_isolates -= 1
            level, override, _ = stack[-1]
            levels[index] = level
            if override is not None:
                kinds[index] = override
        elif kind == "PDF":
            removed[index] = True
            levels[index] = level
            if overflow_isolates:
                pass
            elif overflow_embeddings:
                overflow_embeddings -= 1
            elif not stack[-1][2] and len(stack) > 1:
                stack.pop()
        elif kind == "B":  # X8: a paragraph separator ends every embedding and isolate
            stack = [(paragraph, None, False)]
            overflow_isolates = overflow_embeddings = valid_isolates = 0
        elif kind == "BN":
            removed[index] = True
            levels[index] = level
        else:
            levels[index] = level
            if override is not None:
                kinds[index] = forced[index] = override
    # X10: isolating run sequences, each resolved on its own.
    kept = [index for index in range(count) if not removed[index]]
    runs: list[list[int]] = []
    for index in kept:
        if runs and levels[runs[-1][-1]] == levels[index]:
            runs[-1].append(index)
        else:
            runs.append([index])
    run_of = {run[0]: run for run in runs}
    continued = set(matches.values())
    position_in_kept = {index: position for position, index in enumerate(kept)}
    for run in runs:
        if run[0] in continued:
            continue  # resolved with the sequence of its isolate initiator
        sequence = list(run)
        while classes[sequence[-1]] in _ISOLATE_INITIATORS and sequence[-1] in matches:
            following = run_of.get(matches[sequence[-1]])
            if following is None:
                break
            sequence.extend(following)
        first, last = sequence[0], sequence[-1]
        before = position_in_kept[first] - 1
        after = position_in_kept[last] + 1
        sos_level = max(levels[first], levels[kept[before]] if before >= 0 else paragraph)
        unmatched = classes[last] in _ISOLATE_INITIATORS
        eos_level = max(levels[last], paragraph if after >= len(kept) or unmatched else levels[kept[after]])
        _resolve_sequence(kinds, lengths, sequence, "R" if sos_level % 2 else "L", "R" if eos_level % 2 else "L",
                          levels[first])
    # I1, I2.
    for index in kept:
        kind, level = kinds[index], levels[index]
        if level % 2 == 0:
            levels[index] = level + (1 if kind == "R" else 2 if kind in ("AN", "EN") else 0)
        elif kind in ("L", "EN", "AN"):
            levels[index] = level + 1
    # L1: separators, and whitespace and isolate controls before them or at the line's end, at the paragraph level.
    trailing = True
    for index in range(count - 1, -1, -1):
        kind = classes[index]
        if kind in ("S", "B"):
            levels[index] = paragraph
            trailing = True
        elif trailing and (kind in ("WS", "LRI", "RLI", "FSI", "PDI") or removed[index]):
            levels[index] = paragraph
        else:
            trailing = False
    return levels, forced


def _resolve_sequence(
    kinds: list[str], lengths: Sequence[int], sequence: list[int], sos: str, eos: str, level: int
) -> None:
    """Rules W1-W7 and N1-N2 on one isolating run sequence (indices into ``kinds``, changed in place)."""
    types = [kinds[index] for index in sequence]
    count = len(types)
    # W1: a non-spacing mark takes the class before it (a neutral after an isolate control).
    for i, kind in enumerate(types):
        if kind == "NSM":
            previous = types[i - 1] if i else sos
            types[i] = "ON" if previous in _ISOLATE_INITIATORS or previous == "PDI" else previous
    # W2, W3: European digits after Arabic letters are Arabic numbers; Arabic letters are right-to-left.
    strong = sos
    for i, kind in enumerate(types):
        if kind in ("L", "R", "AL"):
            strong = kind
        elif kind == "EN" and strong == "AL":
            types[i] = "AN"
    types = ["R" if kind == "AL" else kind for kind in types]
    # W4: one separator between two numbers of the same kind joins them.
    for i in range(1, count - 1):
        if lengths[sequence[i]] == 1 and types[i - 1] == types[i + 1]:
            if (types[i] == "ES" and types[i - 1] == "EN") or (types[i] == "CS" and types[i - 1] in ("EN", "AN")):
                types[i] = types[i - 1]
    # W5: terminators (currency, percent) next to European digits are digits.
    for i, kind in enumerate(types):
        if kind == "EN":
            j = i - 1
            while j >= 0 and types[j] == "ET":
                types[j] = "EN"
                j -= 1
            j = i + 1
            while j < count and types[j] == "ET":
                types[j] = "EN"
                j += 1
    # W6: remaining separators and terminators are neutral. W7: digits in left-to-right text are left-to-right.
    strong = sos
    for i, kind in enumerate(types):
        if kind in ("ES", "ET", "CS"):
            types[i] = "ON"
        elif kind in ("L", "R"):
            strong = kind
        elif kind == "EN" and strong == "L":
            types[i] = "L"
    # N1, N2: neutrals between text of one direction take it (numbers count as right-to-left), else the embedding's.
    embedding = "R" if level % 2 else "L"
    i = 0
    while i < count:
        if types[i] not in _NEUTRALS:
            i += 1
            continue
        j = i
        while j < count and types[j] in _NEUTRALS:
            j += 1
        before = sos if i == 0 else _direction(types[i - 1])
        after = eos if j == count else _direction(types[j])
        resolved = before if before == after else embedding
        for k in range(i, j):
            types[k] = resolved
        i = j
    for index, kind in zip(sequence, types):
        kinds[index] = kind


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
