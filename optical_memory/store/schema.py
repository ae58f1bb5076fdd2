"""The stores' table layout, its version number, and the migrations that bring older layouts up to date.

Both SQL backends keep the same tables; only column types and the word index differ per dialect (``ColumnTypes``).
The version lives in ``meta`` (``schema_version``). Layouts:

- v0, the prototype before versioning: no ``meta`` table; ``pages`` held only the page JSON and its image key.
- v1: ``pages`` also carries the turn range it shows (so loading a tail of the session never parses page JSON) and
  the tier its pixels were reduced to (``forget_pixels``); an index finds the pages that use an image.
- v2: a session row has a numeric ``id`` (never reused, so a deleted and re-created session is a new one), a
  ``companion`` name (``""``: the conversation itself; e.g. ``"system"``: the instructions a LangChain history keeps
  beside it) and a ``version`` every write bumps, which lets a memory tell cheaply whether another process wrote;
  turns and pages refer to their session by ``sid``; every turn's words are in a full-text index written in the same
  transaction (SQLite: an FTS5 table ``turn_words`` whose rowid is the turn's ``id``; PostgreSQL: a ``tsvector``
  column ``words`` under a GIN index). v1 sessions named ``<id>#system`` that hold only system turns and no pages
  (what v1's LangChain history wrote) become the ``system`` companion of ``<id>``; any other name is kept as it is.
- v3: ``turn_vectors`` keeps turns' embeddings for semantic search (written in the turn's transaction when the
  memory has an embedder, or later by ``backfill``): one row per turn (``sid``, ``idx``), the model's name and the
  vector as little-endian ``float32`` bytes (SQLite ``BLOB``, PostgreSQL ``BYTEA``), numbered by ``seq`` in the
  order they were written. Existing turns get no vector by migrating; ``OpticalMemory.backfill`` embeds them.

Migrations run inside the caller's transaction, so a failure leaves the store exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from optical_memory.store.base import SCHEMA_VERSION, StoreError, page_from_json

Query = Callable[[str, Sequence[Any]], Any]
"""Runs one parameterised statement (``?`` placeholders) in the current transaction; returns a cursor."""

V1_COMPANION_SUFFIX = "#system"
"""How v1 named a LangChain history's companion session of system messages."""


@dataclass(frozen=True)
class ColumnTypes:
    """How a dialect spells what differs: column types (``text`` holds verbatim user text), generated keys and the
    full-text index of turns' words."""

    integer: str
    real: str
    text: str
    blob: str
    identity: str
    """A generated 64-bit key column, before its PRIMARY KEY constraint."""
    never_reused: str
    """What follows PRIMARY KEY so that deleted keys are never handed out again."""
    word_column: str
    """Extra column definitions of ``turns`` for its words (empty where the index is a table of its own)."""
    word_index: tuple[str, ...]
    """DDL of the word index over turns."""


def create_statements(types: ColumnTypes) -> list[str]:
    """DDL of the current layout, for an empty database."""
    return [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        *_session_tables(types),
        "CREATE INDEX pages_by_image ON pages (image_key)",
        f"CREATE TABLE images (key TEXT PRIMARY KEY, data {types.blob} NOT NULL)",
        *_vector_tables(types),
    ]


def _session_tables(types: ColumnTypes) -> list[str]:
    # Constraints are named (v1's were not), so v1's tables can stay beside these while they are copied.
    return [
        f"""CREATE TABLE sessions (
            id {types.identity} CONSTRAINT session_key PRIMARY KEY{types.never_reused},
            user_id TEXT NOT NULL, session_id TEXT NOT NULL, companion TEXT NOT NULL, style_key TEXT NOT NULL,
            created_at {types.real} NOT NULL, version {types.integer} NOT NULL,
            CONSTRAINT session_name UNIQUE (user_id, session_id, companion))""",
        f"""CREATE TABLE turns (
            id {types.identity} CONSTRAINT turn_key PRIMARY KEY, sid {types.integer} NOT NULL,
            idx {types.integer} NOT NULL, role TEXT NOT NULL, content {types.text} NOT NULL,
            timestamp {types.real} NOT NULL, name {types.text}, metadata TEXT NOT NULL{types.word_column},
            CONSTRAINT turn_position UNIQUE (sid, idx))""",
        f"""CREATE TABLE pages (
            sid {types.integer} NOT NULL, idx {types.integer} NOT NULL,
            first_turn {types.integer} NOT NULL, last_turn {types.integer} NOT NULL, page TEXT NOT NULL,
            image_key TEXT NOT NULL, image_tier TEXT,
            CONSTRAINT page_position PRIMARY KEY (sid, idx))""",
        *types.word_index,
    ]


def _vector_tables(types: ColumnTypes) -> list[str]:
    # seq is assigned while the writer holds its session's row lock, so within a session it follows commit order:
    # a reader that has seen up to seq n never finds a row below n committed later.
    return [
        f"""CREATE TABLE turn_vectors (
            seq {types.identity} CONSTRAINT turn_vector_key PRIMARY KEY{types.never_reused},
            sid {types.integer} NOT NULL, idx {types.integer} NOT NULL, model TEXT NOT NULL,
            vector {types.blob} NOT NULL,
            CONSTRAINT turn_vector_position UNIQUE (sid, idx))""",
        "CREATE INDEX turn_vectors_by_write ON turn_vectors (sid, seq)",
    ]


def write_version(query: Query) -> None:
    """Record that the layout is now ``SCHEMA_VERSION``."""
    query(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        ("schema_version", str(SCHEMA_VERSION)),
    )


def read_version(query: Query, table_exists: Callable[[str], bool], where: str) -> int | None:
    """The layout version of the database (``None``: empty, no tables yet)."""
    if table_exists("meta"):
        row = query("SELECT value FROM meta WHERE key = ?", ("schema_version",)).fetchone()
        if row is None or not str(row[0]).isdigit():
            raise StoreError(f"store {where}: table 'meta' holds no valid schema_version ({row!r}); not an optical-memory store?")
        return int(row[0])
    if table_exists("turns"):
        return 0
    return None


def check_supported(version: int | None, where: str) -> None:
    """Refuse layouts written by a newer optical-memory: reading them could silently drop what they added."""
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"store {where} was written by a newer optical-memory (schema version {version}; this version reads up"
            f" to {SCHEMA_VERSION}): upgrade optical-memory to open it"
        )


InsertTurn = Callable[[Query, int, Sequence[Any]], None]
"""Writes one turn row (``idx, role, content, timestamp, name, metadata`` as stored) of session ``sid`` together
with its words: the backend's own statement, which ``migrate`` uses to index turns of older layouts."""


def migrate(query: Query, version: int, types: ColumnTypes, insert_turn: InsertTurn) -> None:
    """Bring a layout of ``version`` up to ``SCHEMA_VERSION``, one step at a time, in the caller's transaction."""
    while version < SCHEMA_VERSION:
        _MIGRATIONS[version](query, types, insert_turn)
        version += 1
    write_version(query)


def _v0_to_v1(query: Query, types: ColumnTypes, _insert_turn: InsertTurn) -> None:
    query(f"ALTER TABLE pages ADD COLUMN first_turn {types.integer} NOT NULL DEFAULT -1", ())
    query(f"ALTER TABLE pages ADD COLUMN last_turn {types.integer} NOT NULL DEFAULT -1", ())
    query("ALTER TABLE pages ADD COLUMN image_tier TEXT", ())
    rows = query("SELECT user_id, session_id, idx, page FROM pages", ()).fetchall()
    for user_id, session_id, idx, page_json in rows:
        try:
            turns = page_from_json(page_json).turn_indices
        except (ValueError, KeyError, TypeError) as error:
            raise StoreError(f"cannot migrate page {idx} of {user_id!r}/{session_id!r}: unreadable page record ({error!r})") from None
        if not turns:
            raise StoreError(f"cannot migrate page {idx} of {user_id!r}/{session_id!r}: it shows no turn")
        query(
            "UPDATE pages SET first_turn = ?, last_turn = ? WHERE user_id = ? AND session_id = ? AND idx = ?",
            (min(turns), max(turns), user_id, session_id, idx),
        )
    query("CREATE INDEX pages_by_image ON pages (image_key)", ())
    query("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)", ())




_V1_BATCH = 500  # turns copied per statement: an old store's text never has to fit in memory at once


def _v1_to_v2(query: Query, types: ColumnTypes, insert_turn: InsertTurn) -> None:
    for table in ("sessions", "turns", "pages"):
        query(f"ALTER TABLE {table} RENAME TO {table}_v1", ())
    query("DROP INDEX pages_by_image", ())
    for statement in _session_tables(types):
        query(statement, ())
    query("CREATE INDEX pages_by_image ON pages (image_key)", ())
    sessions = query("SELECT user_id, session_id, style_key, created_at FROM sessions_v1 ORDER BY user_id, session_id", ()).fetchall()
    for user_id, session_id, style_key, created_at in sessions:
        name, companion = _v1_name(query, user_id, session_id)
        query(
            "INSERT INTO sessions (user_id, session_id, companion, style_key, created_at, version) VALUES (?, ?, ?, ?, ?, 0)",
            (user_id, name, companion, style_key, created_at),
        )
        (sid,) = query(
            "SELECT id FROM sessions WHERE user_id = ? AND session_id = ? AND companion = ?", (user_id, name, companion)
        ).fetchone()
        query(
            "INSERT INTO pages (sid, idx, first_turn, last_turn, page, image_key, image_tier)"
            " SELECT ?, idx, first_turn, last_turn, page, image_key, image_tier FROM pages_v1"
            " WHERE user_id = ? AND session_id = ?",
            (sid, user_id, session_id),
        )
        after = -1
        while True:
            rows = query(
                "SELECT idx, role, content, timestamp, name, metadata FROM turns_v1"
                " WHERE user_id = ? AND session_id = ? AND idx > ? ORDER BY idx LIMIT ?",
                (user_id, session_id, after, _V1_BATCH),
            ).fetchall()
            for row in rows:
                insert_turn(query, sid, row)
            if len(rows) < _V1_BATCH:
                break
            after = rows[-1][0]
    for table in ("sessions", "turns", "pages"):
        query(f"DROP TABLE {table}_v1", ())


def _v1_name(query: Query, user_id: str, session_id: str) -> tuple[str, str]:
    """(session id, companion) of a v1 session: a LangChain history's ``<id>#system`` store of system messages
    becomes the ``system`` companion of ``<id>``; a session that only shares the suffix keeps its name."""
    base = session_id[: -len(V1_COMPANION_SUFFIX)]
    if not session_id.endswith(V1_COMPANION_SUFFIX) or not base:
        return session_id, ""
    session = (user_id, session_id)
    other_roles = query(
        "SELECT 1 FROM turns_v1 WHERE user_id = ? AND session_id = ? AND role <> 'system' LIMIT 1", session
    ).fetchone()
    has_pages = query("SELECT 1 FROM pages_v1 WHERE user_id = ? AND session_id = ? LIMIT 1", session).fetchone()
    if other_roles is None and has_pages is None:
        return base, "system"
    return session_id, ""


def _v2_to_v3(query: Query, types: ColumnTypes, _insert_turn: InsertTurn) -> None:
    for statement in _vector_tables(types):
        query(statement, ())


_MIGRATIONS: dict[int, Callable[[Query, ColumnTypes, InsertTurn], None]] = {0: _v0_to_v1, 1: _v1_to_v2, 2: _v2_to_v3}
