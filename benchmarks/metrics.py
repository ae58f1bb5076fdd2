"""Text-recovery metrics: how much of a page's source text a reader got back.

Both texts are first normalised the same way (``normalise``): Unicode NFKC (so a reader's full-width punctuation or
ligatures compare equal to their ASCII forms), then every run of whitespace collapsed to one space and the ends
stripped. Line breaks therefore never count: a renderer wraps lines where the source has spaces, and a reader
returns one line per drawn line.

- **char accuracy** (Fox-style, as in the DeepSeek-OCR paper): ``1 - Levenshtein(decoded, source) / max(len)``.
- **char precision / char recall**: from the longest common subsequence of the two texts (rapidfuzz ``Indel``):
  matched chars / decoded chars and matched chars / source chars. An OCR engine that misses lines keeps a high
  precision while its recall falls; one number would hide that.
- **word recall**: the multiset of ``\\w+`` words of the source that also occur in the decoded text (case kept).
- **fact recall**: the share of planted fact strings found verbatim (after normalisation) in the decoded text.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from rapidfuzz.distance import Indel, Levenshtein

_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def normalise(text: str, *, field_name: str = "text") -> str:
    """NFKC, every whitespace run collapsed to one space, ends stripped: the form every metric compares."""
    if not isinstance(text, str):
        raise TypeError(f"{field_name} must be a string, got {type(text).__name__}")
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def char_accuracy(decoded: str, source: str) -> float:
    """``1 - normalised Levenshtein distance`` (distance / longer length); 1.0 when both are empty."""
    a, b = normalise(decoded, field_name="decoded"), normalise(source, field_name="source")
    return 1.0 - Levenshtein.normalized_distance(a, b)


def matched_chars(decoded: str, source: str) -> int:
    """Length of the longest common subsequence of the normalised texts."""
    a, b = normalise(decoded, field_name="decoded"), normalise(source, field_name="source")
    return (len(a) + len(b) - Indel.distance(a, b)) // 2


def char_precision(decoded: str, source: str) -> float:
    """Matched chars / decoded chars. An empty reading is 0.0 (it recovered nothing), 1.0 if the source is empty too."""
    a, b = normalise(decoded, field_name="decoded"), normalise(source, field_name="source")
    if not a:
        return 1.0 if not b else 0.0
    return matched_chars(a, b) / len(a)


def char_recall(decoded: str, source: str) -> float:
    """Matched chars / source chars (1.0 for an empty source)."""
    a, b = normalise(decoded, field_name="decoded"), normalise(source, field_name="source")
    if not b:
        return 1.0
    return matched_chars(a, b) / len(b)


def word_recall(decoded: str, source: str) -> float:
    """Share of the source's ``\\w+`` words (as a multiset, case kept) that the decoded text contains."""
    source_words = Counter(_WORD.findall(normalise(source, field_name="source")))
    total = sum(source_words.values())
    if not total:
        return 1.0
    found = source_words & Counter(_WORD.findall(normalise(decoded, field_name="decoded")))
    return sum(found.values()) / total


def facts_found(decoded: str, facts: Iterable[str]) -> list[bool]:
    """For each fact string: does it occur verbatim in the decoded text (both normalised)?"""
    haystack = normalise(decoded, field_name="decoded")
    found = []
    for position, fact in enumerate(facts):
        needle = normalise(fact, field_name=f"facts[{position}]")
        if not needle:
            raise ValueError(f"facts[{position}] must be a non-blank string, got {fact!r}")
        found.append(needle in haystack)
    return found


def fact_recall(decoded: str, facts: Sequence[str]) -> float | None:
    """Share of ``facts`` found verbatim in the decoded text; ``None`` when there are no facts to find."""
    found = facts_found(decoded, facts)
    return sum(found) / len(found) if found else None


@dataclass(frozen=True)
class TextRecovery:
    """Every metric of one reading against its source. ``fact_recall`` is ``None`` when no facts were planted."""

    char_accuracy: float
    char_precision: float
    char_recall: float
    word_recall: float
    fact_recall: float | None
    decoded_chars: int
    source_chars: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def score(decoded: str, source: str, facts: Sequence[str] = ()) -> TextRecovery:
    """All metrics of ``decoded`` against ``source`` (and the planted ``facts`` that the source holds)."""
    a, b = normalise(decoded, field_name="decoded"), normalise(source, field_name="source")
    return TextRecovery(
        char_accuracy=char_accuracy(a, b),
        char_precision=char_precision(a, b),
        char_recall=char_recall(a, b),
        word_recall=word_recall(a, b),
        fact_recall=fact_recall(a, facts),
        decoded_chars=len(a),
        source_chars=len(b),
    )
