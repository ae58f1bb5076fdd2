"""The embedded default store: one SQLite file (stdlib ``sqlite3``), WAL journal, one transaction per commit."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from optical_memory.store import (
    SCHEMA_VERSION,
    Scope,
    StaleSession,
    Store,
    StoredPage,
    StoreError,
    page_from_json,
    page_to_json,
    turn_from_row,
    turn_to_row,
)
from optical_memory.types import Page, Turn

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    user_id TEXT NOT NULL, session_id TEXT NOT NULL, style_key TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (user_id, session_id));
CREATE TABLE IF NOT EXISTS turns (
    user_id TEXT NOT NULL, session_id TEXT NOT NULL, idx INTEGER NOT NULL, role TEXT NOT NULL,
    content TEXT NOT NULL, timestamp REAL NOT NULL, name TEXT, metadata TEXT NOT NULL,
    PRIMARY KEY (user_id, session_id, idx));
CREATE TABLE IF NOT EXISTS pages (
    user_id TEXT NOT NULL, session_id TEXT NOT NULL, idx INTEGER NOT NULL, first_turn INTEGER NOT NULL,
    last_turn INTEGER NOT NULL, page TEXT NOT NULL, image_key TEXT NOT NULL, image_tier TEXT,
    PRIMARY KEY (user_id, session_id, idx));
CREATE TABLE IF NOT EXISTS images (key TEXT PRIMARY KEY, data BLOB NOT NULL);
"""

# Lock contention between processes is retried with jittered backoff for this long before it reaches the user.
_LOCK_RETRY_SECONDS = 30.0


class SQLiteStore(Store):
    """SQLite-backed store. ``path`` may be ``":memory:"``; a new path creates a new store.

    Safe for several threads (one connection, a lock) and several processes (WAL, ``BEGIN IMMEDIATE``, bounded
    retry with backoff on ``database is locked``).
    """

    def __init__(self, path: str | os.PathLike[str] = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise ValueError(f"store path {self.path!r}: directory {str(parent)!r} does not exist")
            if Path(self.path).is_dir():
                raise ValueError(f"store path {self.path!r} is a directory, not a database file")
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 5000")
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
            self._retrying(self._create_schema)
        except sqlite3.DatabaseError as error:
            raise ValueError(f"store path {self.path!r} is not a usable SQLite database: {error}") from None

    def _create_schema(self) -> None:
        with self._transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path!r} was written by a newer optical-memory (schema {row[0]} > {SCHEMA_VERSION}); upgrade"
                )

    def _transaction(self, *, immediate: bool = True) -> "_Transaction":
        return _Transaction(self._db, immediate)

    def _retrying(self, work: Callable[[], T]) -> T:
        deadline = time.monotonic() + _LOCK_RETRY_SECONDS
        delay = 0.005
        while True:
            try:
                with self._lock:
                    return work()
            except sqlite3.OperationalError as error:
                message = str(error).lower()
                if ("locked" not in message and "busy" not in message) or time.monotonic() > deadline:
                    raise _translate(error, self.path) from None
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.25)
            except sqlite3.DatabaseError as error:
                raise _translate(error, self.path) from None

    def open_session(self, scope: Scope, style_key: str) -> str:
        def work() -> str:
            with self._transaction():
                self._db.execute(
                    "INSERT OR IGNORE INTO sessions VALUES (?, ?, ?, ?)", (scope.user, scope.session, style_key, time.time())
                )
                return self._db.execute(
                    "SELECT style_key FROM sessions WHERE user_id = ? AND session_id = ?", (scope.user, scope.session)
                ).fetchone()[0]

        return self._retrying(work)

    def load(self, scope: Scope, *, after_turn: int = -1) -> tuple[list[Turn], list[StoredPage]]:
        def work() -> tuple[list[Turn], list[StoredPage]]:
            with self._transaction(immediate=False):
                turns = [
                    turn_from_row(row)
                    for row in self._db.execute(
                        "SELECT idx, role, content, timestamp, name, metadata FROM turns"
                        " WHERE user_id = ? AND session_id = ? AND idx > ? ORDER BY idx",
                        (scope.user, scope.session, after_turn),
                    )
                ]
                pages = [
                    StoredPage(page_from_json(page), image_key, image_tier)
                    for page, image_key, image_tier in self._db.execute(
                        "SELECT page, image_key, image_tier FROM pages"
                        " WHERE user_id = ? AND session_id = ? AND last_turn > ? ORDER BY idx",
                        (scope.user, scope.session, after_turn),
                    )
                ]
            return turns, pages

        return self._retrying(work)

    def commit(
        self, scope: Scope, turn: Turn | None, pages: Sequence[tuple[Page, bytes]], *, expected_turns: int
    ) -> None:
        def work() -> None:
            with self._transaction():
                (count,) = self._db.execute(
                    "SELECT COUNT(*) FROM turns WHERE user_id = ? AND session_id = ?", (scope.user, scope.session)
                ).fetchone()
                if count != expected_turns:
                    raise StaleSession(f"session {scope} has {count} turns, expected {expected_turns}")
                if turn is not None:
                    if turn.index != expected_turns:
                        raise ValueError(f"turn index {turn.index} must be {expected_turns}")
                    self._db.execute(
                        "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (scope.user, scope.session, *turn_to_row(turn))
                    )
                for page, image in pages:
                    self._db.execute("INSERT OR IGNORE INTO images VALUES (?, ?)", (page.render_key, image))
                    self._db.execute(
                        "INSERT INTO pages VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                        (
                            scope.user,
                            scope.session,
                            page.index,
                            min(page.turn_indices),
                            max(page.turn_indices),
                            page_to_json(page),
                            page.render_key,
                        ),
                    )

        self._retrying(work)

    def image(self, key: str) -> bytes:
        def work() -> bytes:
            row = self._db.execute("SELECT data FROM images WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(key)
            return bytes(row[0])

        return self._retrying(work)

    def has_image(self, key: str) -> bool:
        return self._retrying(lambda: self._db.execute("SELECT 1 FROM images WHERE key = ?", (key,)).fetchone()) is not None

    def replace_image(self, scope: Scope, page_index: int, key: str, image: bytes, tier: str) -> None:
        def work() -> None:
            with self._transaction():
                row = self._db.execute(
                    "SELECT image_key FROM pages WHERE user_id = ? AND session_id = ? AND idx = ?",
                    (scope.user, scope.session, page_index),
                ).fetchone()
                if row is None:
                    raise KeyError(f"no page {page_index} in session {scope}")
                self._db.execute("INSERT OR IGNORE INTO images VALUES (?, ?)", (key, image))
                self._db.execute(
                    "UPDATE pages SET image_key = ?, image_tier = ? WHERE user_id = ? AND session_id = ? AND idx = ?",
                    (key, tier, scope.user, scope.session, page_index),
                )
                self._drop_unused_image(row[0])

        self._retrying(work)

    def _drop_unused_image(self, key: str) -> None:
        self._db.execute(
            "DELETE FROM images WHERE key = ? AND NOT EXISTS (SELECT 1 FROM pages WHERE image_key = ?)", (key, key)
        )

    def clear(self, scope: Scope) -> None:
        def work() -> None:
            with self._transaction():
                keys = [
                    key
                    for (key,) in self._db.execute(
                        "SELECT DISTINCT image_key FROM pages WHERE user_id = ? AND session_id = ?",
                        (scope.user, scope.session),
                    )
                ]
                for table in ("turns", "pages", "sessions"):
                    self._db.execute(f"DELETE FROM {table} WHERE user_id = ? AND session_id = ?", (scope.user, scope.session))
                for key in keys:
                    self._drop_unused_image(key)

        self._retrying(work)

    def sessions(self, user: str | None = None) -> list[Scope]:
        def work() -> list[Scope]:
            rows = self._db.execute(
                "SELECT user_id, session_id FROM sessions WHERE ? IS NULL OR user_id = ? ORDER BY user_id, session_id",
                (user, user),
            )
            return [Scope(u, s) for u, s in rows]

        return self._retrying(work)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """``BEGIN [IMMEDIATE]`` … ``COMMIT``, rolled back on any exception (the connection runs in autocommit mode).

    Writers take the write lock up front (IMMEDIATE) so two writers never both read, then fail to upgrade.
    """

    def __init__(self, db: sqlite3.Connection, immediate: bool) -> None:
        self._db = db
        self._begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    def __enter__(self) -> None:
        self._db.execute(self._begin)

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")


def _translate(error: sqlite3.DatabaseError, path: str) -> Exception:
    message = str(error).lower()
    if "not a database" in message or "malformed" in message:
        return ValueError(f"store path {path!r} is not a usable SQLite database: {error}")
    if "readonly" in message or "read-only" in message:
        return StoreError(f"store {path!r} is read-only: {error}")
    if "full" in message:
        return StoreError(f"store {path!r}: disk full: {error}")
    return StoreError(f"store {path!r}: {error}")
