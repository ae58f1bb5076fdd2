"""The store interface: what the memory persists, and the guarantees every backend gives.

Turns are the source of truth; pages are derived (sealed once, never rewritten except for ``forget_pixels``) and
their images are content-addressed by ``Page.render_key``, so an identical page is rendered and stored once.
Every ``commit`` is one transaction: a turn and the pages it seals land together or not at all. Concurrency is
optimistic: a commit names the turn count it was computed against and fails with ``StaleSession`` when another writer
got there first, so the memory reloads and recomputes instead of sealing pages from a stale view.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

from optical_memory.core.types import LineBox, Page, Role, Turn, TurnSegment

SCHEMA_VERSION = 1


class StoreError(RuntimeError):
    """The store cannot do what was asked (unreadable file, newer schema, disk full, read-only …)."""


class StaleSession(StoreError):
    """Another writer appended to this session since it was loaded; reload and retry."""


@dataclass(frozen=True)
class Scope:
    """Which conversation: several users and sessions share one store."""

    user: str
    session: str

    def __post_init__(self) -> None:
        for name in ("user", "session"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, got {type(value).__name__}")
            if not value or len(value) > 256 or any(ord(ch) < 32 for ch in value):
                raise ValueError(f"{name} must be 1-256 printable characters, got {value!r}")


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

    @abstractmethod
    def open_session(self, scope: Scope, style_key: str) -> str:
        """Create the session if new; return the render-style key its pages were sealed with."""

    @abstractmethod
    def load(self, scope: Scope, *, after_turn: int = -1) -> tuple[list[Turn], list[StoredPage]]:
        """Turns with index > ``after_turn`` and pages holding them, both oldest first."""

    @abstractmethod
    def commit(
        self, scope: Scope, turn: Turn | None, pages: Sequence[tuple[Page, bytes]], *, expected_turns: int
    ) -> None:
        """Atomically append ``turn`` (its index must be ``expected_turns``) and seal ``pages`` with their images.

        Raises ``StaleSession`` when the session no longer has ``expected_turns`` turns.
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
    def clear(self, scope: Scope) -> None:
        """Delete a session's turns and pages (images no other page uses go too)."""

    @abstractmethod
    def sessions(self, user: str | None = None) -> list[Scope]: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
