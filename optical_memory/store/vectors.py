"""Semantic search beside the word index: a session's turn vectors held in memory, the turns nearest a query by
cosine, and reciprocal rank fusion of that ranking with BM25's.

The nearest turns are found by brute force, one matrix-vector product over every vector of the session (numpy):
exact, with no index to build or keep in step with the store (``benchmarks/search_latency.py`` measures it). The
vectors are read from the store once and then only those written since (``StoredVectors.last_seq``), whenever the
session's version says something changed, so a search reads nothing from the store that it has read before.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from tqdm import tqdm

from optical_memory.core.embedding import Embedder, check_embedder
from optical_memory.core.types import Turn
from optical_memory.core.validation import validate_int
from optical_memory.store.base import Scope, SearchMatch, Store, StoredVectors

RRF_K = 60
"""Reciprocal rank fusion's constant (Cormack, Clarke and Büttcher, SIGIR 2009, whose experiments chose 60): a turn
ranked ``r``-th (from 1) by one retriever gets ``1 / (RRF_K + r)`` from it, and its fused score is the sum over
the retrievers that found it, so a fused score lies in (0, 2/61] with two retrievers: about 0.0328 for a turn both
rank first, 0.0164 for one only a single retriever ranks first."""


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], *, k: int = RRF_K) -> list[tuple[int, float]]:
    """``(item, fused score)`` over best-first ``rankings`` of distinct items, best first; equal scores put the
    larger item first (for turn indices: the newer turn, as the word index breaks its ties)."""
    validate_int(k, field_name="k", minimum=1)
    ranks: dict[int, list[int]] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            ranks.setdefault(item, []).append(rank)
    # Summed in rank order, so turns ranked alike by different retrievers get bit-identical scores and tie.
    scores = {item: sum(1.0 / (k + rank) for rank in sorted(found)) for item, found in ranks.items()}
    return sorted(scores.items(), key=lambda entry: (-entry[1], -entry[0]))


class SessionVectors:
    """The vectors of one session's turns for one embedder, kept in memory and updated from the store.

    ``ValueError`` when the session already holds vectors of another model or dimension: their cosines with this
    embedder's vectors would mean nothing (``Store.drop_vectors`` and ``backfill`` re-embed a session).
    """

    def __init__(self, store: Store, scope: Scope, embedder: Embedder) -> None:
        check_embedder(embedder)
        self.store, self.scope, self.embedder = store, scope, embedder
        self._check(store.vector_model(scope))
        self._reset(None)

    def _check(self, stored: tuple[str, int] | None) -> None:
        if stored is not None and stored != (self.embedder.name, self.embedder.dimension):
            raise ValueError(
                f"session {self.scope.user!r}/{self.scope.session!r} holds vectors of {stored[0]!r} ({stored[1]}"
                f" dimensions), not of embedder {self.embedder.name!r} ({self.embedder.dimension}): open it with that"
                " embedder, or store.drop_vectors(scope) and backfill with this one"
            )

    def _reset(self, key: int | None) -> None:
        self._key = key
        self._seen: tuple[int, int] | None = None  # the session (key, version) the vectors were last read at
        self._seq = 0
        self._count = 0
        # Rows [:_count] are live; the arrays grow by doubling so that adding one turn's vector copies nothing.
        self._turns = np.zeros(0, dtype=np.int64)
        self._matrix = np.zeros((0, self.embedder.dimension), dtype=np.float32)

    def refresh(self, key: int | None, version: int | None) -> None:
        """Read what was written since the last read, when the session (``key``, ``version``) changed."""
        if key is None or version is None:
            self._reset(None)
            return
        if (key, version) == self._seen:
            return
        if key != self._key:
            self._reset(key)
        stored = self.store.vectors(self.scope, after_seq=self._seq)
        if stored.count != self._count + len(stored.turns):  # some were dropped: read them all again
            self._reset(key)
            stored = self.store.vectors(self.scope)
        self._append(stored)
        self._seen = (key, version)

    def _append(self, stored: StoredVectors) -> None:
        self._seq = stored.last_seq
        if not len(stored.turns):
            return
        self._check((str(stored.model), stored.matrix.shape[1]))
        end = self._count + len(stored.turns)
        if end > len(self._turns):
            capacity = max(end, 2 * len(self._turns), 1024)
            turns = np.zeros(capacity, dtype=np.int64)
            matrix = np.zeros((capacity, self.embedder.dimension), dtype=np.float32)
            turns[: self._count], matrix[: self._count] = self._turns[: self._count], self._matrix[: self._count]
            self._turns, self._matrix = turns, matrix
        self._turns[self._count : end] = stored.turns
        self._matrix[self._count : end] = stored.matrix
        self._count = end

    def nearest(self, query: str, k: int, *, turn_count: int) -> list[tuple[int, float]]:
        """``(turn index, cosine)`` of the ``k`` turns below ``turn_count`` closest to ``query``, best first (cosines
        to 6 decimals; ties: the newer turn first). Only turns with a positive cosine count: a zero cosine shares
        nothing with it."""
        validate_int(k, field_name="k", minimum=1)
        if not self._count:
            return []
        # Rounded so that the summation order of the product, not the meaning, never decides between equal vectors.
        scores = np.round(self._matrix[: self._count] @ self.embedder([query])[0], 6)
        candidates = np.flatnonzero((scores > 0) & (self._turns[: self._count] < turn_count))
        if len(candidates) > k:
            # Everything scoring at least the k-th best, so that ties at the cut are broken by the rule, not by chance.
            kth = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
            candidates = candidates[scores[candidates] >= kth]
        order = sorted(candidates, key=lambda row: (-scores[row], -self._turns[row]))[:k]
        return [(int(self._turns[row]), float(scores[row])) for row in order]

    def fuse(
        self, matches: Sequence[SearchMatch], query: str, k: int, turns: Sequence[Turn], *, key: int | None,
        version: int | None,
    ) -> list[SearchMatch]:
        """The best ``k`` of the word index's ``matches`` and the ``k`` turns nearest ``query`` by meaning, fused by
        reciprocal rank (``RRF_K``); each match's score is its fused score. ``turns``: the session as the caller
        holds it at ``key``/``version`` (a vector of a turn it does not hold yet is left out)."""
        self.refresh(key, version)
        nearest = self.nearest(query, k, turn_count=len(turns))
        by_index = {match.turn.index: match.turn for match in matches}
        fused = reciprocal_rank_fusion([list(by_index), [index for index, _ in nearest]])[:k]
        return [SearchMatch(by_index[index] if index in by_index else turns[index], score) for index, score in fused]

    def backfill(self, turns: Sequence[Turn], *, batch_size: int = 64, progress: bool = True) -> int:
        """Embed the turns among ``turns`` that have no vector, ``batch_size`` at a time, each batch stored in one
        transaction (an interrupted backfill keeps what it stored and resumes there); returns how many it stored."""
        validate_int(batch_size, field_name="batch_size", minimum=1)
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
        missing = [index for index in self.store.missing_vectors(self.scope) if index < len(turns)]
        written = 0
        with tqdm(total=len(missing), desc="embedding turns", unit="turn", disable=not progress) as bar:
            for start in range(0, len(missing), batch_size):
                batch = missing[start : start + batch_size]
                vectors = self.embedder([turns[index].content for index in batch])
                written += self.store.add_vectors(self.scope, self.embedder.name, list(zip(batch, vectors)))
                bar.update(len(batch))
        return written
