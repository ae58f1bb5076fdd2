"""The stores' table layout, its version number, and the migrations that bring older layouts up to date.

Both SQL backends keep the same tables; only column types differ per dialect (``ColumnTypes``). The version lives in
``meta`` (``schema_version``). Layouts:

- v0, the prototype before versioning: no ``meta`` table; ``pages`` held only the page JSON and its image key.
- v1: ``pages`` also carries the turn range it shows (so loading a tail of the session never parses page JSON) and
  the tier its pixels were reduced to (``forget_pixels``); an index finds the pages that use an image.

Migrations run inside the caller's transaction, so a failure leaves the store exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from optical_memory.store.base import SCHEMA_VERSION, StoreError, page_from_json

Query = Callable[[str, Sequence[Any]], Any]
"""Runs one parameterised statement (``?`` placeholders) in the current transaction; returns a cursor."""


@dataclass(frozen=True)
class ColumnTypes:
    """How a dialect spells the few column types that differ (``text`` holds verbatim user text)."""

    integer: str
    real: str
    text: str
    blob: str


def create_statements(types: ColumnTypes) -> list[str]:
    """DDL of the current layout, for an empty database."""
    return [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE sessions (
            user_id TEXT NOT NULL, session_id TEXT NOT NULL, style_key TEXT NOT NULL, created_at {types.real} NOT NULL,
            PRIMARY KEY (user_id, session_id))""",
        f"""CREATE TABLE turns (
            user_id TEXT NOT NULL, session_id TEXT NOT NULL, idx {types.integer} NOT NULL, role TEXT NOT NULL,
            content {types.text} NOT NULL, timestamp {types.real} NOT NULL, name {types.text}, metadata TEXT NOT NULL,
            PRIMARY KEY (user_id, session_id, idx))""",
        f"""CREATE TABLE pages (
            user_id TEXT NOT NULL, session_id TEXT NOT NULL, idx {types.integer} NOT NULL,
            first_turn {types.integer} NOT NULL, last_turn {types.integer} NOT NULL, page TEXT NOT NULL,
            image_key TEXT NOT NULL, image_tier TEXT,
            PRIMARY KEY (user_id, session_id, idx))""",
        "CREATE INDEX pages_by_image ON pages (image_key)",
        f"CREATE TABLE images (key TEXT PRIMARY KEY, data {types.blob} NOT NULL)",
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


def migrate(query: Query, version: int, types: ColumnTypes) -> None:
    """Bring a layout of ``version`` up to ``SCHEMA_VERSION``, one step at a time, in the caller's transaction."""
    while version < SCHEMA_VERSION:
        _MIGRATIONS[version](query, types)
        version += 1
    write_version(query)


def _v0_to_v1(query: Query, types: ColumnTypes) -> None:
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


_MIGRATIONS: dict[int, Callable[[Query, ColumnTypes], None]] = {0: _v0_to_v1}
