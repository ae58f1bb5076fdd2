"""The store interface: what the memory persists, and the guarantees every backend gives.

Turns are the source of truth; pages are derived (sealed once, never rewritten except for ``forget_pixels``) and
their images are content-addressed by ``Page.render_key``, so an identical page is rendered and stored once.
Every ``commit`` is one transaction: a turn, its words in the full-text index, its vector (when the memory has an
embedder) and the pages it seals land together or not at all. Concurrency is optimistic: a commit names the turn count it was computed against and fails with
``StaleSession`` when another writer got there first, so the memory reloads and recomputes instead of sealing pages
from a stale view. Every write bumps the session's ``version``, so a reader tells whether anything changed from one
small row.

Sessions are data their user owns: reading or opening one writes nothing; its row appears with its first turn (or
``create_session``), and ``delete_session`` erases it with everything derived from it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from optical_memory.core.types import LineBox, Page, Role, Turn, TurnSegment

SCHEMA_VERSION = 3


class StoreError(RuntimeError):
    """The store cannot do what was asked (unreadable file, newer schema, disk full, read-only …)."""


class StaleSession(StoreError):
    """Another writer appended to this session since it was loaded; reload and retry."""


@dataclass(frozen=True, repr=False)
class Scope:
    """Which conversation: several users and sessions share one store.

    ``companion`` names a stream kept beside the conversation in a namespace of its own (``""``: the conversation
    itself; ``"system"``: the instructions a LangChain history keeps apart). No session id, whatever its characters,
    reaches another session's companion: the companion is a separate column, never part of the id.
    """

    user: str
    session: str
    companion: str = ""

    def __post_init__(self) -> None:
        for name in ("user", "session", "companion"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, got {type(value).__name__}")
            if (not value and name != "companion") or len(value) > 256 or any(ord(ch) < 32 for ch in value):
                raise ValueError(f"{name} must be 1-256 printable characters, got {value!r}")

    def __repr__(self) -> str:
        # The conversation itself reads as it always has (logs and messages name it); a companion adds its name.
        companion = f", companion={self.companion!r}" if self.companion else ""
        return f"Scope(user={self.user!r}, session={self.session!r}{companion})"

    @property
    def conversation(self) -> "Scope":
        """The session this scope belongs to (itself when it is not a companion)."""
        return Scope(self.user, self.session)


@dataclass(frozen=True)
class SessionInfo:
    """A stored session (or companion) as one small row tells it, without loading its turns."""

    scope: Scope
    key: int
    """The row's id: never handed out again, so a deleted and re-created session has another one."""
    style_key: str
    created_at: float
    version: int
    """Bumped by every write to the session: unchanged ``(key, version)`` means nothing to reload."""
    turns: int
    pages: int


@dataclass(frozen=True)
class SearchMatch:
    """A turn the full-text index found, with its relevance: higher is better (SQLite: ``-bm25()``; PostgreSQL:
    ``ts_rank_cd``; the scales differ, the order is what counts)."""

    turn: Turn
    score: float


@dataclass(frozen=True, eq=False)
class TurnVector:
    """A turn's embedding as stored: the name of the model that made it (``Embedder.name``) and its vector."""

    model: str
    vector: np.ndarray


@dataclass(frozen=True, eq=False)
class StoredVectors:
    """Vectors of one session as ``Store.vectors`` reads them: those written after ``after_seq``, in write order.

    ``seq`` numbers writes within a session in commit order, so a reader that remembers ``last_seq`` reads only what
    is new next time; ``count`` is how many the session holds in all (fewer than the reader has seen: some were
    dropped). ``model`` is the one model of the session's vectors (``None``: it has none).
    """

    model: str | None
    count: int
    last_seq: int
    turns: np.ndarray
    """Turn index of each row, ``int64``."""
    matrix: np.ndarray
    """One ``float32`` vector per row, shape ``(len(turns), dimension)`` (``(0, 0)`` when there are none)."""


@dataclass(frozen=True)
class Erased:
    """What a deletion removed: turns, pages and images no other session still shows, over ``scopes`` streams
    (the conversation and its companions)."""

    scopes: int
    turns: int
    pages: int
    images: int


@dataclass(frozen=True)
class StoredPage:
    """A sealed page as persisted: which image it shows now (the master, or a smaller one after forgetting)."""

    page: Page
    image_key: str
    image_tier: str | None = None  # None: the master image; else the tier the pixels were reduced to


def turn_to_row(turn: Turn) -> tuple[Any, ...]:
    return (
        turn.index,
        turn.role.value,
        turn.content,
        turn.timestamp,
        turn.name,
        json.dumps(dict(turn.metadata), sort_keys=True, ensure_ascii=False),
    )


def turn_from_row(row: Sequence[Any]) -> Turn:
    index, role, content, timestamp, name, metadata = row
    return Turn(int(index), Role(role), content, float(timestamp), name, json.loads(metadata))


def page_to_json(page: Page) -> str:
    return json.dumps(
        {
            "index": page.index,
            "text": page.text,
            "segments": [[s.turn_index, s.role.value, s.start, s.end, s.continued] for s in page.segments],
            "lines": [[b.x0, b.y0, b.x1, b.y1, b.text_start, b.text_end] for b in page.lines],
            "width": page.width,
            "height": page.height,
            "render_key": page.render_key,
            "missing_glyphs": page.missing_glyphs,
            "timestamp": page.timestamp,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def page_from_json(data: str) -> Page:
    raw = json.loads(data)
    return Page(
        index=raw["index"],
        text=raw["text"],
        segments=tuple(TurnSegment(t, Role(r), s, e, bool(c)) for t, r, s, e, c in raw["segments"]),
        lines=tuple(LineBox(*box) for box in raw["lines"]),
        width=raw["width"],
        height=raw["height"],
        render_key=raw["render_key"],
        missing_glyphs=raw["missing_glyphs"],
        timestamp=raw["timestamp"],
    )


class Store(ABC):
    """Persistence for turns, sealed pages and page images."""

    def change_mark(self) -> Hashable | None:
        """A value that equals an earlier one only while nothing was committed to the store in between, by any
        connection or process, this one included: a reader that caught up as of a mark need not look again while
        the mark holds. ``None`` (the default) where the backend cannot tell cheaply: look every time."""
        return None

    @abstractmethod
    def session(self, scope: Scope) -> SessionInfo | None:
        """The stored session, or ``None`` when it has no row (never stored, or deleted). Writes nothing."""

    @abstractmethod
    def create_session(self, scope: Scope, style_key: str) -> SessionInfo:
        """Create the session's row now (it otherwise appears with its first turn); an existing one is returned
        as it is, with the style it was created with."""

    @abstractmethod
    def load(
        self, scope: Scope, *, after_turn: int = -1, after_page: int | None = None
    ) -> tuple[list[Turn], list[StoredPage]]:
        """Turns with index > ``after_turn`` and, oldest first, the pages holding them (``after_page`` given: the
        pages with index > ``after_page`` instead)."""

    @abstractmethod
    def commit(
        self,
        scope: Scope,
        turn: Turn | None,
        pages: Sequence[tuple[Page, bytes]],
        *,
        expected_turns: int,
        style_key: str,
        vector: TurnVector | None = None,
    ) -> int:
        """Atomically append ``turn`` (its index must be ``expected_turns``) with its words in the search index and
        its ``vector`` (if given), seal ``pages`` with their images, and return the session's new version. A session
        without a row gets one (rendered in ``style_key``) when this is its first turn.

        Raises ``StaleSession`` when the session no longer has ``expected_turns`` turns, ``ValueError`` when it was
        created in another style or ``vector`` is of another model or dimension than the session's vectors.
        """

    @abstractmethod
    def image(self, key: str) -> bytes:
        """Encoded image stored under ``key`` (``KeyError`` if absent)."""

    @abstractmethod
    def has_image(self, key: str) -> bool: ...

    @abstractmethod
    def replace_image(self, scope: Scope, page_index: int, key: str, image: bytes, tier: str) -> None:
        """Point a page at smaller pixels (``forget_pixels``), dropping the old image if nothing else uses it."""

    @abstractmethod
    def search(self, scope: Scope, query: str, *, k: int = 10, match: str = "all") -> list[SearchMatch]:
        """The ``k`` turns of ``scope`` that match ``query`` best, best first (ties: the newer turn first).

        ``query`` is any text: its words (``optical_memory.store.search``) are searched as literals, so quotes,
        ``*``, ``NEAR``, ``AND``, ``-``, ``:`` or parentheses are never query syntax. ``match="all"``: turns holding
        every word; ``"any"``: at least one. A query without words finds nothing.
        """

    @abstractmethod
    def vector_model(self, scope: Scope) -> tuple[str, int] | None:
        """(model name, dimension) of the session's vectors, or ``None`` when it has none."""

    @abstractmethod
    def vectors(self, scope: Scope, *, after_seq: int = 0) -> StoredVectors:
        """The session's vectors written after ``after_seq`` (all of them by default), in write order."""

    @abstractmethod
    def add_vectors(self, scope: Scope, model: str, vectors: Sequence[tuple[int, np.ndarray]]) -> int:
        """Store ``(turn index, vector)`` pairs of ``model`` for turns that have none yet, in one transaction (a turn
        that got one meanwhile keeps it); returns how many were written. ``ValueError`` for a turn the session does
        not have, or another model or dimension than the session's vectors."""

    @abstractmethod
    def missing_vectors(self, scope: Scope) -> list[int]:
        """Indices of the session's turns that have no vector, ascending."""

    @abstractmethod
    def drop_vectors(self, scope: Scope) -> int:
        """Erase every vector of the session (to embed it again with another model); returns how many."""

    @abstractmethod
    def clear(self, scope: Scope) -> Erased:
        """Erase one stream (``scope``, the conversation or a companion) as ``delete_session`` erases a session."""

    @abstractmethod
    def delete_session(self, user: str, session: str) -> Erased:
        """Erase a session and its companions: turns, their search index rows and vectors, pages, images no other
        session shows, and the session rows. What remains on disk afterwards is the backend's to say (its docstring)."""

    @abstractmethod
    def sessions(self, user: str | None = None) -> list[Scope]:
        """Stored sessions (a session holding only a companion included), sorted; companions are not listed."""

    @abstractmethod
    def scopes(self, user: str, session: str) -> list[Scope]:
        """Every stored stream of a session: the conversation first (when stored), then its companions by name."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
