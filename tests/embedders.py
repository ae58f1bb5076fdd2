"""A real, small, deterministic embedder for tests: no model, no download, and yet not the word index in disguise."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from optical_memory.core.embedding import Embedder
from optical_memory.store.search import words


class TrigramEmbedder(Embedder):
    """The set of character trigrams of a text's words, marked at their edges (``#pu``, ``pup``, …, ``es#``),
    hashed into ``dimension`` buckets. A set, not counts: a trigram repeated by filler text weighs no more than once,
    so a rare hash collision cannot outweigh real shared trigrams."""

    def __init__(self, name: str = "test/hashed-trigrams", dimension: int = 16384) -> None:
        self.name, self.dimension = name, dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in words(text):
                marked = f"#{word.text}#"
                for start in range(len(marked) - 2):
                    digest = hashlib.blake2b(marked[start:start + 3].encode(), digest_size=4).digest()
                    vectors[row, int.from_bytes(digest, "little") % self.dimension] = 1.0
        return vectors
