"""The store's operations, written once in the SQL that SQLite and PostgreSQL both speak.

A backend supplies the connection and its transactions (``_run``, which retries transient lock conflicts), the row
and image locks its concurrency model needs, how verbatim text is stored, its full-text index of turns' words, and how
driver errors read to the user. Everything else — argument checks, optimistic concurrency, session versions,
content-addressed images, turns' vectors, schema versions — lives here, so both backends keep one contract. Every
statement is parameterised (``?`` placeholders); the only text spliced into SQL is fixed: column types from
``schema`` and column names chosen here.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from optical_memory.core.types import Page, Role, Turn
from optical_memory.core.validation import validate_int, validate_timestamp
from optical_memory.store.base import (
    SCHEMA_VERSION,
    Erased,
    Scope,
    SearchMatch,
    SessionInfo,
    StaleSession,
    Store,
    StoredPage,
    StoredVectors,
    StoreError,
    TurnVector,
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
from optical_memory.store.search import check_match, query_terms

# Lock conflicts between writers are retried with jittered exponential backoff for this long before they surface.
LOCK_RETRY_SECONDS = 30.0
MAX_HITS = 1000
"""The most hits one search returns (``k``)."""
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
                migrate(query, version, self.types, self._insert_turn)

        self._run(upgrade, write=True)

    def _read_version(self, query: Query) -> int | None:
        return read_version(query, lambda name: self._table_exists(query, name), self.where)

    def schema_version(self) -> int | None:
        """The layout version of the database (``SCHEMA_VERSION`` once opened; ``None`` for an empty database)."""
        return self._run(self._read_version, write=False)

    # -- operations ------------------------------------------------------------------------------------------------

    def _find(self, query: Query, scope: Scope, *, lock: bool = False) -> tuple[int, str] | None:
        """(id, style key) of the session's row, locked until the transaction ends when ``lock``."""
        return query(
            "SELECT id, style_key FROM sessions WHERE user_id = ? AND session_id = ? AND companion = ?"
            + (self.for_update if lock else ""),
            (scope.user, scope.session, scope.companion),
        ).fetchone()

    def session(self, scope: Scope) -> SessionInfo | None:
        _check_scope(scope)
        row = self._run(
            lambda query: query(
                "SELECT id, style_key, created_at, version,"
                " (SELECT COALESCE(MAX(idx) + 1, 0) FROM turns WHERE sid = sessions.id),"
                " (SELECT COALESCE(MAX(idx) + 1, 0) FROM pages WHERE sid = sessions.id)"
                " FROM sessions WHERE user_id = ? AND session_id = ? AND companion = ?",
                (scope.user, scope.session, scope.companion),
            ).fetchone(),
            write=False,
        )
        if row is None:
            return None
        key, style_key, created_at, version, turns, pages = row
        return SessionInfo(scope, int(key), style_key, float(created_at), int(version), int(turns), int(pages))

    def create_session(self, scope: Scope, style_key: str) -> SessionInfo:
        _check_scope(scope)
        _check_key(style_key, "style_key")
        self._run(lambda query: self._create(query, scope, style_key), write=True)
        info = self.session(scope)
        if info is None:
            raise StaleSession(f"session {scope.user!r}/{scope.session!r} was deleted by another writer as it was created")
        return info

    def _create(self, query: Query, scope: Scope, style_key: str) -> None:
        query(
            "INSERT INTO sessions (user_id, session_id, companion, style_key, created_at, version)"
            " VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT DO NOTHING",
            (scope.user, scope.session, scope.companion, style_key, time.time()),
        )

    def load(
        self, scope: Scope, *, after_turn: int = -1, after_page: int | None = None
    ) -> tuple[list[Turn], list[StoredPage]]:
        _check_scope(scope)
        validate_int(after_turn, field_name="after_turn", minimum=-1)
        if after_page is not None:
            validate_int(after_page, field_name="after_page", minimum=-1)

        def read(query: Query) -> tuple[list[Any], list[Any]]:
            found = self._find(query, scope)
            if found is None:
                return [], []
            sid = found[0]
            turn_rows = query(
                "SELECT idx, role, content, timestamp, name, metadata FROM turns WHERE sid = ? AND idx > ? ORDER BY idx",
                (sid, after_turn),
            ).fetchall()
            column, after = ("last_turn", after_turn) if after_page is None else ("idx", after_page)
            page_rows = query(
                f"SELECT page, image_key, image_tier FROM pages WHERE sid = ? AND {column} > ? ORDER BY idx", (sid, after)
            ).fetchall()
            return turn_rows, page_rows

        turn_rows, page_rows = self._run(read, write=False)
        turns = [self._turn_from_row(row) for row in turn_rows]
        pages = [StoredPage(page_from_json(page), image_key, image_tier) for page, image_key, image_tier in page_rows]
        return turns, pages

    def _turn_from_row(self, row: Sequence[Any]) -> Turn:
        idx, role, content, timestamp, name, metadata = row
        return turn_from_row((idx, role, self._decode_text(content), timestamp, self._decode_text(name), metadata))

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
        _check_scope(scope)
        validate_int(expected_turns, field_name="expected_turns", minimum=0)
        _check_key(style_key, "style_key")
        turn_row = None if turn is None else self._turn_row(turn, expected_turns)
        if vector is not None and not isinstance(vector, TurnVector):
            raise TypeError(f"vector must be a TurnVector or None, got {type(vector).__name__}")
        if vector is not None and turn is None:
            raise ValueError("vector is a turn's embedding: it needs a turn to commit with")
        vector_bytes = None if vector is None else _vector_bytes(vector.model, vector.vector, "vector")
        page_rows = _page_rows(pages, turns_after=expected_turns + (turn is not None))

        def write(query: Query) -> int:
            self._lock_images(query, exclusive=False)
            found = self._find(query, scope, lock=True)
            if found is None and expected_turns == 0 and turn_row is not None:
                self._create(query, scope, style_key)
                found = self._find(query, scope, lock=True)
            if found is None:
                raise StaleSession(f"session {scope.user!r}/{scope.session!r} was deleted by another writer")
            sid, stored_style = found
            if stored_style != style_key:
                raise ValueError(
                    f"style_key {style_key!r} is not the style session {scope.user!r}/{scope.session!r} was created with"
                )
            (turn_count,) = query("SELECT COALESCE(MAX(idx) + 1, 0) FROM turns WHERE sid = ?", (sid,)).fetchone()
            if turn_count != expected_turns:
                raise StaleSession(f"session {scope.user!r}/{scope.session!r} has {turn_count} turns, expected {expected_turns}")
            if page_rows:
                (page_count,) = query("SELECT COALESCE(MAX(idx) + 1, 0) FROM pages WHERE sid = ?", (sid,)).fetchone()
                if page_count != page_rows[0][0]:
                    raise StaleSession(
                        f"session {scope.user!r}/{scope.session!r} has {page_count} pages; these start at {page_rows[0][0]}"
                    )
            if turn_row is not None:
                self._insert_turn(query, sid, turn_row)
            if vector_bytes is not None:
                self._check_vector_model(query, scope, sid, vector.model, len(vector_bytes))  # type: ignore[union-attr]
                query(
                    "INSERT INTO turn_vectors (sid, idx, model, vector) VALUES (?, ?, ?, ?)",
                    (sid, expected_turns, vector.model, vector_bytes),  # type: ignore[union-attr]
                )
            for index, first_turn, last_turn, page_json, key, image in page_rows:
                if image:
                    query("INSERT INTO images (key, data) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, image))
                elif query("SELECT 1 FROM images WHERE key = ?", (key,)).fetchone() is None:
                    # The caller saw this image stored and sent no bytes, but another writer has dropped it since.
                    raise StaleSession(f"image {key!r} is no longer stored; render it again")
                query(
                    "INSERT INTO pages (sid, idx, first_turn, last_turn, page, image_key, image_tier)"
                    " VALUES (?, ?, ?, ?, ?, ?, NULL)",
                    (sid, index, first_turn, last_turn, page_json, key),
                )
            return self._bump(query, sid)

        return self._run(write, write=True)

    @staticmethod
    def _bump(query: Query, sid: int) -> int:
        return int(query("UPDATE sessions SET version = version + 1 WHERE id = ? RETURNING version", (sid,)).fetchone()[0])

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
            found = self._find(query, scope, lock=True)
            row = None if found is None else query(
                f"SELECT image_key FROM pages WHERE sid = ? AND idx = ?{self.for_update}", (found[0], page_index)
            ).fetchone()
            if found is None or row is None:
                raise KeyError(f"no page {page_index} in session {scope.user!r}/{scope.session!r}")
            query("INSERT INTO images (key, data) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, bytes(image)))
            query("UPDATE pages SET image_key = ?, image_tier = ? WHERE sid = ? AND idx = ?", (key, tier, found[0], page_index))
            _drop_unused_image(query, row[0])
            self._bump(query, found[0])

        self._run(write, write=True)

    def search(self, scope: Scope, query: str, *, k: int = 10, match: str = "all") -> list[SearchMatch]:
        _check_scope(scope)
        terms = query_terms(query)
        validate_int(k, field_name="k", minimum=1, maximum=MAX_HITS)
        check_match(match)
        if not terms:
            return []

        def read(run: Query) -> list[Any]:
            found = self._find(run, scope)
            return [] if found is None else self._search_rows(run, found[0], terms, match, k)

        return [SearchMatch(self._turn_from_row(row[:6]), float(row[6])) for row in self._run(read, write=False)]

    # -- turns' vectors -------------------------------------------------------------------------------------------

    @staticmethod
    def _check_vector_model(query: Query, scope: Scope, sid: int, model: str, size: int) -> None:
        """``ValueError`` unless vectors of ``model`` with ``size`` bytes may join the session's (one model each)."""
        row = query("SELECT model, LENGTH(vector) FROM turn_vectors WHERE sid = ? LIMIT 1", (sid,)).fetchone()
        if row is not None and (row[0], int(row[1])) != (model, size):
            raise ValueError(
                f"vector model {model!r} ({size // 4} dimensions) is not the model of session"
                f" {scope.user!r}/{scope.session!r}'s vectors, {row[0]!r} ({int(row[1]) // 4} dimensions): use that"
                " embedder, or drop_vectors and backfill with the new one"
            )

    def vector_model(self, scope: Scope) -> tuple[str, int] | None:
        _check_scope(scope)

        def read(query: Query) -> Any:
            found = self._find(query, scope)
            if found is None:
                return None
            return query("SELECT model, LENGTH(vector) FROM turn_vectors WHERE sid = ? LIMIT 1", (found[0],)).fetchone()

        row = self._run(read, write=False)
        return None if row is None else (row[0], int(row[1]) // 4)

    def vectors(self, scope: Scope, *, after_seq: int = 0) -> StoredVectors:
        _check_scope(scope)
        validate_int(after_seq, field_name="after_seq", minimum=0)

        def read(query: Query) -> tuple[int, list[Any], Any]:
            found = self._find(query, scope)
            if found is None:
                return 0, [], None
            (count,) = query("SELECT COUNT(*) FROM turn_vectors WHERE sid = ?", (found[0],)).fetchone()
            rows = query(
                "SELECT seq, idx, vector FROM turn_vectors WHERE sid = ? AND seq > ? ORDER BY seq", (found[0], after_seq)
            ).fetchall()
            model = query("SELECT model FROM turn_vectors WHERE sid = ? LIMIT 1", (found[0],)).fetchone()
            return int(count), rows, model

        count, rows, model = self._run(read, write=False)
        blobs = [bytes(row[2]) for row in rows]
        size = len(blobs[0]) if blobs else 0
        if any(len(blob) != size for blob in blobs) or size % 4:
            raise StoreError(f"store {self.where}: vectors of session {scope!r} differ in size; the store is damaged")
        return StoredVectors(
            model=None if model is None else model[0],
            count=count,
            last_seq=int(rows[-1][0]) if rows else after_seq,
            turns=np.array([row[1] for row in rows], dtype=np.int64),
            matrix=np.frombuffer(b"".join(blobs), dtype="<f4").astype(np.float32).reshape(len(rows), size // 4),
        )

    def add_vectors(self, scope: Scope, model: str, vectors: Sequence[tuple[int, np.ndarray]]) -> int:
        _check_scope(scope)
        if isinstance(vectors, (str, bytes)) or not isinstance(vectors, Sequence):
            raise TypeError(f"vectors must be a sequence of (turn index, vector) pairs, got {type(vectors).__name__}")
        rows = []
        for position, entry in enumerate(vectors):
            if not (isinstance(entry, tuple) and len(entry) == 2):
                raise TypeError(f"vectors[{position}] must be a (turn index, vector) pair, got {type(entry).__name__}")
            index = validate_int(entry[0], field_name=f"vectors[{position}] turn index", minimum=0)
            rows.append((index, _vector_bytes(model, entry[1], f"vectors[{position}]")))
        if len({len(blob) for _, blob in rows}) > 1:
            raise ValueError("vectors must all have the same dimension")
        if not rows:
            return 0

        def write(query: Query) -> int:
            found = self._find(query, scope, lock=True)
            if found is None:
                raise ValueError(f"session {scope.user!r}/{scope.session!r} is not stored")
            sid = found[0]
            self._check_vector_model(query, scope, sid, model, len(rows[0][1]))
            (turn_count,) = query("SELECT COALESCE(MAX(idx) + 1, 0) FROM turns WHERE sid = ?", (sid,)).fetchone()
            written = 0
            for index, blob in rows:
                if index >= turn_count:
                    raise ValueError(f"session {scope.user!r}/{scope.session!r} has no turn {index} ({turn_count} turns)")
                written += query(
                    "INSERT INTO turn_vectors (sid, idx, model, vector) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (sid, index, model, blob),
                ).rowcount
            if written:
                self._bump(query, sid)
            return written

        return self._run(write, write=True)

    def missing_vectors(self, scope: Scope) -> list[int]:
        _check_scope(scope)

        def read(query: Query) -> list[Any]:
            found = self._find(query, scope)
            if found is None:
                return []
            return query(
                "SELECT t.idx FROM turns t WHERE t.sid = ? AND NOT EXISTS"
                " (SELECT 1 FROM turn_vectors v WHERE v.sid = t.sid AND v.idx = t.idx) ORDER BY t.idx",
                (found[0],),
            ).fetchall()

        return [int(index) for (index,) in self._run(read, write=False)]

    def drop_vectors(self, scope: Scope) -> int:
        _check_scope(scope)

        def write(query: Query) -> int:
            found = self._find(query, scope, lock=True)
            if found is None:
                return 0
            dropped = query("DELETE FROM turn_vectors WHERE sid = ?", (found[0],)).rowcount
            if dropped:
                self._bump(query, found[0])
            return dropped

        return self._run(write, write=True)

    # -- erasing ---------------------------------------------------------------------------------------------------

    def clear(self, scope: Scope) -> Erased:
        _check_scope(scope)
        return self._erase([scope])

    def delete_session(self, user: str, session: str) -> Erased:
        scopes = self.scopes(user, session)
        return self._erase(scopes) if scopes else Erased(0, 0, 0, 0)

    def _erase(self, scopes: Sequence[Scope]) -> Erased:
        def write(query: Query) -> Erased:
            self._lock_images(query, exclusive=True)
            erased = Erased(0, 0, 0, 0)
            for scope in scopes:
                found = self._find(query, scope, lock=True)
                if found is None:
                    continue
                sid = found[0]
                keys = [key for (key,) in query("SELECT DISTINCT image_key FROM pages WHERE sid = ?", (sid,)).fetchall()]
                self._erase_words(query, sid)
                query("DELETE FROM turn_vectors WHERE sid = ?", (sid,))
                turns = query("DELETE FROM turns WHERE sid = ?", (sid,)).rowcount
                pages = query("DELETE FROM pages WHERE sid = ?", (sid,)).rowcount
                query("DELETE FROM sessions WHERE id = ?", (sid,))
                images = sum(_drop_unused_image(query, key) for key in keys)
                erased = Erased(erased.scopes + 1, erased.turns + turns, erased.pages + pages, erased.images + images)
            return erased

        erased = self._run(write, write=True)
        if erased.scopes:
            self._after_erase()
        return erased

    def sessions(self, user: str | None = None) -> list[Scope]:
        if user is not None:
            _check_key(user, "user")
        where, params = ("", ()) if user is None else (" WHERE user_id = ?", (user,))
        rows = self._run(
            lambda query: query(
                f"SELECT DISTINCT user_id, session_id FROM sessions{where} ORDER BY user_id, session_id", params
            ).fetchall(),
            write=False,
        )
        return [Scope(u, s) for u, s in rows]

    def scopes(self, user: str, session: str) -> list[Scope]:
        conversation = Scope(user, session)
        rows = self._run(
            lambda query: query(
                "SELECT companion FROM sessions WHERE user_id = ? AND session_id = ? ORDER BY companion",
                (conversation.user, conversation.session),
            ).fetchall(),
            write=False,
        )
        return [Scope(user, session, companion) for (companion,) in rows]

    # -- what a backend adds: its word index ----------------------------------------------------------------------

    @abstractmethod
    def _insert_turn(self, query: Query, sid: int, row: Sequence[Any]) -> None:
        """Insert a turn row (as ``_turn_row`` encodes it) of session ``sid`` and index its words."""

    @abstractmethod
    def _search_rows(self, query: Query, sid: int, terms: Sequence[str], match: str, k: int) -> list[Any]:
        """Rows ``(idx, role, content, timestamp, name, metadata, score)`` of the best ``k`` matches of ``terms``."""

    def _erase_words(self, query: Query, sid: int) -> None:
        """Delete the index rows of session ``sid``'s turns (before the turns; a no-op where they are one row)."""

    def _after_erase(self) -> None:
        """What a backend does after a deletion committed so that no copy of the erased data is left behind."""

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


def _drop_unused_image(query: Query, key: str) -> int:
    """Delete image ``key`` unless a page still shows it (images are shared between sessions); 1 if it went."""
    return query("DELETE FROM images WHERE key = ? AND NOT EXISTS (SELECT 1 FROM pages WHERE image_key = ?)", (key, key)).rowcount


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


def _vector_bytes(model: object, vector: object, field_name: str) -> bytes:
    """``vector`` as stored: little-endian ``float32`` bytes, checked (one dimension, finite) with its model name."""
    _check_key(model, f"{field_name} model")
    if not isinstance(vector, np.ndarray):
        raise TypeError(f"{field_name} must be a numpy array, got {type(vector).__name__}")
    if vector.ndim != 1 or not vector.size or vector.dtype.kind != "f":
        raise ValueError(f"{field_name} must be a non-empty one-dimensional float array, got {vector.dtype} {vector.shape}")
    if not np.isfinite(vector).all():
        raise ValueError(f"{field_name} has NaN or infinite components")
    return vector.astype("<f4").tobytes()


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
