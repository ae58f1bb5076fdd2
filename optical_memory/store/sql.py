"""The store's operations, written once in the SQL that SQLite and PostgreSQL both speak.

A backend supplies the connection and its transactions (``_run``, which retries transient lock conflicts), the row
and image locks its concurrency model needs, how verbatim text is stored, and how driver errors read to the user.
Everything else — argument checks, optimistic concurrency, content-addressed images, schema versions — lives here,
so both backends keep one contract. Every statement is parameterised (``?`` placeholders); the only text spliced
into SQL is column types from ``store_schema``.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any, Callable, Sequence, TypeVar

from optical_memory.core.types import Page, Role, Turn
from optical_memory.core.validation import validate_int, validate_timestamp
from optical_memory.store.base import (
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
from optical_memory.store.schema import (
    ColumnTypes,
    Query,
    check_supported,
    create_statements,
    migrate,
    read_version,
    write_version,
)

# Lock conflicts between writers are retried with jittered exponential backoff for this long before they surface.
LOCK_RETRY_SECONDS = 30.0
T = TypeVar("T")


class SQLStore(Store):
    """``Store`` over a SQL database; subclasses bind it to a driver."""

    types: ColumnTypes
    """Column types of this dialect."""

    for_update = ""
    """Suffix that locks the rows a SELECT reads until the transaction ends (empty where writers are serialised)."""

    where = ""
    """How error messages name this store (a path or a URL without its password)."""

    lock_retry_seconds = LOCK_RETRY_SECONDS
    """How long lock conflicts are retried before they surface as ``StoreError``."""

    @abstractmethod
    def _run(self, work: Callable[[Query], T], *, write: bool) -> T:
        """Run ``work`` in one transaction (a consistent snapshot when not ``write``), committed on return.

        Transient conflicts retry the whole of ``work``; other driver errors become ``StoreError``/``ValueError``.
        """

    @abstractmethod
    def _table_exists(self, query: Query, name: str) -> bool: ...

    def _lock_schema(self, query: Query) -> None:
        """Serialise schema creation and migration between processes (a no-op where writers already are)."""

    def _lock_images(self, query: Query, *, exclusive: bool) -> None:
        """Writers that add references to images take this shared, writers that delete images take it exclusive,
        so an image is never dropped while another transaction is sealing a page that points at it."""

    def _encode_text(self, text: str | None) -> Any:
        """How verbatim turn text is bound to its column."""
        return text

    def _decode_text(self, value: Any) -> str | None:
        return value

    # -- schema ----------------------------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        """Create the tables of an empty database, migrate an older layout, refuse a newer one."""
        version = self._run(self._read_version, write=False)
        check_supported(version, self.where)
        if version == SCHEMA_VERSION:
            return

        def upgrade(query: Query) -> None:
            self._lock_schema(query)
            version = self._read_version(query)  # again under the lock: another process may have done it meanwhile
            check_supported(version, self.where)
            if version is None:
                for statement in create_statements(self.types):
                    query(statement, ())
                write_version(query)
            elif version < SCHEMA_VERSION:
                migrate(query, version, self.types)

        self._run(upgrade, write=True)

    def _read_version(self, query: Query) -> int | None:
        return read_version(query, lambda name: self._table_exists(query, name), self.where)

    def schema_version(self) -> int | None:
        """The layout version of the database (``SCHEMA_VERSION`` once opened; ``None`` for an empty database)."""
        return self._run(self._read_version, write=False)

    # -- operations ------------------------------------------------------------------------------------------------

    def open_session(self, scope: Scope, style_key: str) -> str:
        _check_scope(scope)
        _check_key(style_key, "style_key")
        select = "SELECT style_key FROM sessions WHERE user_id = ? AND session_id = ?"
        row = self._run(lambda query: query(select, (scope.user, scope.session)).fetchone(), write=False)
        if row is not None:
            return row[0]

        def create(query: Query) -> str:
            query(
                "INSERT INTO sessions (user_id, session_id, style_key, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (scope.user, scope.session, style_key, time.time()),
            )
            return query(select, (scope.user, scope.session)).fetchone()[0]

        return self._run(create, write=True)

    def load(self, scope: Scope, *, after_turn: int = -1) -> tuple[list[Turn], list[StoredPage]]:
        _check_scope(scope)
        validate_int(after_turn, field_name="after_turn", minimum=-1)

        def read(query: Query) -> tuple[list[Turn], list[StoredPage]]:
            turn_rows = query(
                "SELECT idx, role, content, timestamp, name, metadata FROM turns"
                " WHERE user_id = ? AND session_id = ? AND idx > ? ORDER BY idx",
                (scope.user, scope.session, after_turn),
            ).fetchall()
            page_rows = query(
                "SELECT page, image_key, image_tier FROM pages"
                " WHERE user_id = ? AND session_id = ? AND last_turn > ? ORDER BY idx",
                (scope.user, scope.session, after_turn),
            ).fetchall()
            return turn_rows, page_rows

        turn_rows, page_rows = self._run(read, write=False)
        turns = [
            turn_from_row((idx, role, self._decode_text(content), timestamp, self._decode_text(name), metadata))
            for idx, role, content, timestamp, name, metadata in turn_rows
        ]
        pages = [StoredPage(page_from_json(page), image_key, image_tier) for page, image_key, image_tier in page_rows]
        return turns, pages

    def commit(
        self, scope: Scope, turn: Turn | None, pages: Sequence[tuple[Page, bytes]], *, expected_turns: int
    ) -> None:
        _check_scope(scope)
        validate_int(expected_turns, field_name="expected_turns", minimum=0)
        turn_row = None if turn is None else self._turn_row(turn, expected_turns)
        page_rows = _page_rows(pages, turns_after=expected_turns + (turn is not None))

        def write(query: Query) -> None:
            self._lock_images(query, exclusive=False)
            session = (scope.user, scope.session)
            if query(f"SELECT 1 FROM sessions WHERE user_id = ? AND session_id = ?{self.for_update}", session).fetchone() is None:
                raise StoreError(f"session {scope.user!r}/{scope.session!r} is not open (cleared by another writer?); reopen it")
            (turn_count,) = query(
                "SELECT COALESCE(MAX(idx) + 1, 0) FROM turns WHERE user_id = ? AND session_id = ?", session
            ).fetchone()
            if turn_count != expected_turns:
                raise StaleSession(f"session {scope.user!r}/{scope.session!r} has {turn_count} turns, expected {expected_turns}")
            if page_rows:
                (page_count,) = query(
                    "SELECT COALESCE(MAX(idx) + 1, 0) FROM pages WHERE user_id = ? AND session_id = ?", session
                ).fetchone()
                if page_count != page_rows[0][0]:
                    raise StaleSession(
                        f"session {scope.user!r}/{scope.session!r} has {page_count} pages; these start at {page_rows[0][0]}"
                    )
            if turn_row is not None:
                query(
                    "INSERT INTO turns (user_id, session_id, idx, role, content, timestamp, name, metadata)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*session, *turn_row),
                )
            for index, first_turn, last_turn, page_json, key, image in page_rows:
                if image:
                    query("INSERT INTO images (key, data) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, image))
                elif query("SELECT 1 FROM images WHERE key = ?", (key,)).fetchone() is None:
                    # The caller saw this image stored and sent no bytes, but another writer has dropped it since.
                    raise StaleSession(f"image {key!r} is no longer stored; render it again")
                query(
                    "INSERT INTO pages (user_id, session_id, idx, first_turn, last_turn, page, image_key, image_tier)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                    (*session, index, first_turn, last_turn, page_json, key),
                )

        self._run(write, write=True)

    def image(self, key: str) -> bytes:
        _check_key(key, "key")
        row = self._run(lambda query: query("SELECT data FROM images WHERE key = ?", (key,)).fetchone(), write=False)
        if row is None:
            raise KeyError(key)
        return bytes(row[0])

    def has_image(self, key: str) -> bool:
        _check_key(key, "key")
        return self._run(lambda query: query("SELECT 1 FROM images WHERE key = ?", (key,)).fetchone(), write=False) is not None

    def replace_image(self, scope: Scope, page_index: int, key: str, image: bytes, tier: str) -> None:
        _check_scope(scope)
        validate_int(page_index, field_name="page_index", minimum=0)
        _check_key(key, "key")
        _check_key(tier, "tier")
        if not isinstance(image, (bytes, bytearray)):
            raise TypeError(f"image must be bytes, got {type(image).__name__}")
        if not image:
            raise ValueError("image must not be empty")

        def write(query: Query) -> None:
            self._lock_images(query, exclusive=True)
            row = query(
                f"SELECT image_key FROM pages WHERE user_id = ? AND session_id = ? AND idx = ?{self.for_update}",
                (scope.user, scope.session, page_index),
            ).fetchone()
            if row is None:
                raise KeyError(f"no page {page_index} in session {scope.user!r}/{scope.session!r}")
            query("INSERT INTO images (key, data) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, bytes(image)))
            query(
                "UPDATE pages SET image_key = ?, image_tier = ? WHERE user_id = ? AND session_id = ? AND idx = ?",
                (key, tier, scope.user, scope.session, page_index),
            )
            _drop_unused_image(query, row[0])

        self._run(write, write=True)

    def clear(self, scope: Scope) -> None:
        _check_scope(scope)
        session = (scope.user, scope.session)

        def write(query: Query) -> None:
            self._lock_images(query, exclusive=True)
            keys = [
                key
                for (key,) in query(
                    "SELECT DISTINCT image_key FROM pages WHERE user_id = ? AND session_id = ?", session
                ).fetchall()
            ]
            query("DELETE FROM pages WHERE user_id = ? AND session_id = ?", session)
            query("DELETE FROM turns WHERE user_id = ? AND session_id = ?", session)
            query("DELETE FROM sessions WHERE user_id = ? AND session_id = ?", session)
            for key in keys:
                _drop_unused_image(query, key)

        self._run(write, write=True)

    def sessions(self, user: str | None = None) -> list[Scope]:
        if user is None:
            rows = self._run(
                lambda query: query("SELECT user_id, session_id FROM sessions ORDER BY user_id, session_id", ()).fetchall(),
                write=False,
            )
        else:
            _check_key(user, "user")
            rows = self._run(
                lambda query: query(
                    "SELECT user_id, session_id FROM sessions WHERE user_id = ? ORDER BY session_id", (user,)
                ).fetchall(),
                write=False,
            )
        return [Scope(u, s) for u, s in rows]

    def _turn_row(self, turn: Turn, expected_turns: int) -> tuple[Any, ...]:
        if not isinstance(turn, Turn):
            raise TypeError(f"turn must be a Turn or None, got {type(turn).__name__}")
        if turn.index != expected_turns:
            raise ValueError(f"turn index {turn.index} must be {expected_turns} (the session's turn count)")
        if not isinstance(turn.role, Role):
            raise TypeError(f"turn role must be a Role, got {type(turn.role).__name__}")
        if not isinstance(turn.content, str) or not (turn.name is None or isinstance(turn.name, str)):
            raise TypeError("turn content must be a string and its name a string or None")
        validate_timestamp(turn.timestamp, field_name="turn timestamp")
        try:
            index, role, content, timestamp, name, metadata = turn_to_row(turn)
        except (TypeError, ValueError) as error:
            raise TypeError(f"turn metadata must be JSON-serialisable: {error}") from None
        for field_name, text in (("content", content), ("name", name), ("metadata", metadata)):
            if text is not None:
                _check_encodable(text, field_name)
        return index, role, self._encode_text(content), timestamp, self._encode_text(name), metadata


def _drop_unused_image(query: Query, key: str) -> None:
    query("DELETE FROM images WHERE key = ? AND NOT EXISTS (SELECT 1 FROM pages WHERE image_key = ?)", (key, key))


def _page_rows(pages: Sequence[tuple[Page, bytes]], *, turns_after: int) -> list[tuple[Any, ...]]:
    """Rows for ``pages``, checked: consecutive indices, turns that exist once the commit lands, bytes for images."""
    if isinstance(pages, (str, bytes)) or not isinstance(pages, Sequence):
        raise TypeError(f"pages must be a sequence of (Page, bytes) pairs, got {type(pages).__name__}")
    rows = []
    for position, entry in enumerate(pages):
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], Page)):
            raise TypeError(f"pages[{position}] must be a (Page, bytes) pair, got {type(entry).__name__}")
        page, image = entry
        if not isinstance(image, (bytes, bytearray)):
            raise TypeError(f"pages[{position}] image must be bytes, got {type(image).__name__}")
        turns = page.turn_indices
        if not turns:
            raise ValueError(f"pages[{position}] (page {page.index}) shows no turn")
        if min(turns) < 0 or max(turns) >= turns_after:
            raise ValueError(f"pages[{position}] (page {page.index}) shows turns {turns}, but the session has {turns_after}")
        if rows and page.index != rows[-1][0] + 1:
            raise ValueError(f"pages[{position}] has index {page.index}; pages must be consecutive")
        _check_key(page.render_key, f"pages[{position}].render_key")
        page_json = page_to_json(page)
        _check_encodable(page_json, f"pages[{position}] text")
        rows.append((page.index, min(turns), max(turns), page_json, page.render_key, bytes(image)))
    return rows


def _check_scope(scope: object) -> None:
    if not isinstance(scope, Scope):
        raise TypeError(f"scope must be a Scope, got {type(scope).__name__}")


def _check_key(value: object, field_name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{field_name} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{field_name} must not be empty")
    _check_encodable(value, field_name)


def _check_encodable(text: str, field_name: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field_name} contains a lone surrogate code point, which cannot be stored as UTF-8") from None
