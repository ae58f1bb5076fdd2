"""The embedded default store: one SQLite file (stdlib ``sqlite3``), WAL journal, one transaction per commit.

Turns' words are indexed by an FTS5 table (``turn_words``, rowid = the turn's ``id``) ranked with FTS5's built-in
``bm25()``. Its ``ascii`` tokenizer only splits the word stream ``optical_memory.store.search`` computed at the spaces
put there (every other character of it is a word character), so SQLite's own Unicode tables never decide a word.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from optical_memory.core.retry import retry_transient
from optical_memory.core.validation import validate_int
from optical_memory.store.base import StoreError
from optical_memory.store.schema import ColumnTypes, Query
from optical_memory.store.search import index_terms
from optical_memory.store.sql import SQLStore

T = TypeVar("T")

# SQLite primary result codes (https://www.sqlite.org/rescode.html), read from ``sqlite3.Error.sqlite_errorcode``.
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 8, 10, 11, 13, 14, 26
_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_NOT_A_DATABASE = {_SQLITE_NOTADB, _SQLITE_CORRUPT}


class SQLiteStore(SQLStore):
    """SQLite-backed store. ``path`` may be ``":memory:"``; a new path creates a new store.

    Safe for several threads (one connection, a lock) and several processes: WAL lets readers run beside the one
    writer, writers take the lock up front (``BEGIN IMMEDIATE``), and lock contention is retried with jittered
    backoff for up to ``lock_retry_seconds`` (30 s) before it surfaces as ``StoreError``. ``synchronous = FULL``: a commit that returned
    survives a process kill and a power cut. ``durable=False`` (``synchronous = NORMAL``) skips the fsync of every
    commit, about 0.25 ms of each ``add``: a commit that returned still survives a process kill, and the file is
    never left half-written, but the last commits before a power cut or an OS crash may be lost.

    ``read_only`` opens an existing store for reading (writes raise ``StoreError``). ``max_bytes`` caps the file:
    a commit that would grow it further fails with ``StoreError`` ("disk full") and changes nothing.

    Deletion (``delete_session``, ``clear``): ``secure_delete`` is on for every connection that writes, so the
    database pages that held erased turns, index entries, vectors, pages and images are overwritten with zeros as
    they are freed, not left in the file's free list; the word index is then merged into new segments (FTS5 ``optimize``:
    its older segments would otherwise still hold the erased words), and the WAL is checkpointed and truncated so
    no old copy of a page stays in it. Not covered: a reader in another connection that holds an older snapshot
    (the WAL is then truncated at a later checkpoint), copies of the file (backups, the filesystem's or the SSD's
    own remapping of blocks), and the file's size (``VACUUM`` shrinks it). The merge rewrites the whole word index,
    so a deletion costs time that grows with the store, not with the session.
    """

    types = ColumnTypes(
        integer="INTEGER",
        real="REAL",
        text="TEXT",
        blob="BLOB",
        identity="INTEGER",
        never_reused=" AUTOINCREMENT",
        word_column="",
        word_index=("CREATE VIRTUAL TABLE turn_words USING fts5(words, tokenize = 'ascii')",),
    )

    def __init__(
        self, path: str | os.PathLike[str] = ":memory:", *, read_only: bool = False, max_bytes: int | None = None,
        durable: bool = True,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"store path must be a str or path, got {type(path).__name__}")
        for name, flag in (("read_only", read_only), ("durable", durable)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        if max_bytes is not None:
            validate_int(max_bytes, field_name="max_bytes", minimum=1)
        self.path = os.fspath(path)
        self.where = repr(self.path)
        in_memory = self.path == ":memory:"
        if not in_memory:
            file = Path(self.path).expanduser()
            if not file.parent.resolve().is_dir():
                raise ValueError(f"store path {self.path!r}: directory {str(file.parent.resolve())!r} does not exist")
            if file.is_dir():
                raise ValueError(f"store path {self.path!r} is a directory, not a database file")
            if read_only and not file.is_file():
                raise ValueError(f"store path {self.path!r} does not exist (a read-only store must exist already)")
        elif read_only:
            raise ValueError("an in-memory store cannot be read-only (it would always be empty)")
        self._lock = threading.RLock()
        self._commits = 0  # write transactions committed through this connection (see change_mark)
        try:
            if read_only:
                uri = f"{Path(self.path).expanduser().resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, timeout=1.0, isolation_level=None, check_same_thread=False)
            else:
                self._db = sqlite3.connect(self.path, timeout=1.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise ValueError(f"store path {self.path!r} cannot be opened: {error}") from None
        try:
            self._retrying(lambda: self._configure(in_memory=in_memory, read_only=read_only, max_bytes=max_bytes,
                                                  durable=durable))
            self._ensure_schema()
        except BaseException:
            self._db.close()
            raise

    def _configure(self, *, in_memory: bool, read_only: bool, max_bytes: int | None, durable: bool) -> None:
        # SQLite's own wait for a lock; past it, _retrying backs off and tries again until lock_retry_seconds.
        self._db.execute("PRAGMA busy_timeout = 1000")
        if not read_only:
            self._db.execute("PRAGMA secure_delete = ON")
        if not in_memory and not read_only:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        if max_bytes is not None:
            (page_size,) = self._db.execute("PRAGMA page_size").fetchone()
            self._db.execute(f"PRAGMA max_page_count = {max(1, math.floor(max_bytes / page_size))}")

    def _retrying(self, attempt: Callable[[], T]) -> T:
        def locked_attempt() -> T:
            with self._lock:
                return attempt()

        try:
            return retry_transient(locked_attempt, _is_busy, seconds=self.lock_retry_seconds)
        except sqlite3.Error as error:
            raise _translate(error, self.path, self.lock_retry_seconds) from None

    def _run(self, work: Callable[[Query], T], *, write: bool) -> T:
        def attempt() -> T:
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(self._db.execute)
                self._db.execute("COMMIT")
                self._commits += write
            except BaseException:
                # SQLite may already have rolled back by itself (disk full, I/O error): only roll back what is open.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return result

        return self._retrying(attempt)

    def change_mark(self) -> tuple[int, int]:
        """SQLite's ``data_version`` (it changes when another connection, in any process, commits) with the count
        of this connection's own commits, which ``data_version`` leaves out: one pragma, no transaction."""
        return self._retrying(lambda: (int(self._db.execute("PRAGMA data_version").fetchone()[0]), self._commits))

    def _table_exists(self, query: Query, name: str) -> bool:
        return query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None

    def _insert_turn(self, query: Query, sid: int, row: Sequence[Any]) -> None:
        query(
            "INSERT INTO turns (sid, idx, role, content, timestamp, name, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sid, *row),
        )
        query("INSERT INTO turn_words (rowid, words) VALUES (last_insert_rowid(), ?)", (" ".join(index_terms(row[2])),))

    def _search_rows(self, query: Query, sid: int, terms: Sequence[str], match: str, k: int) -> list[Any]:
        # Each word is an FTS5 string literal ("…", a quote doubled): never an operator, column filter or prefix.
        expression = (" OR " if match == "any" else " ").join('"' + term.replace('"', '""') + '"' for term in terms)
        return query(
            "SELECT t.idx, t.role, t.content, t.timestamp, t.name, t.metadata, -bm25(turn_words) AS score"
            " FROM turn_words JOIN turns t ON t.id = turn_words.rowid"
            " WHERE turn_words MATCH ? AND t.sid = ? ORDER BY score DESC, t.idx DESC LIMIT ?",
            (expression, sid, k),
        ).fetchall()

    def _erase_words(self, query: Query, sid: int) -> None:
        query("DELETE FROM turn_words WHERE rowid IN (SELECT id FROM turns WHERE sid = ?)", (sid,))

    def _after_erase(self) -> None:
        self._run(lambda query: query("INSERT INTO turn_words (turn_words) VALUES ('optimize')", ()), write=True)
        if self.path != ":memory:":
            self._retrying(lambda: self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())

    def integrity_check(self) -> list[str]:
        """SQLite's own consistency check of the file: ``["ok"]`` when sound, else the problems it found."""
        return self._retrying(lambda: [row[0] for row in self._db.execute("PRAGMA integrity_check").fetchall()])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _is_busy(error: Exception) -> bool:
    return isinstance(error, sqlite3.OperationalError) and _code(error) in _BUSY


def _code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _translate(error: sqlite3.Error, path: str, lock_retry_seconds: float) -> Exception:
    """What a SQLite failure means for the user, by its result code (``ValueError``: the path is not a store)."""
    code = _code(error)
    where = f"store {path!r}"
    if isinstance(error, sqlite3.ProgrammingError) and "closed" in str(error).lower():
        return StoreError(f"{where} is closed")
    if code in _NOT_A_DATABASE:
        return ValueError(f"store path {path!r} is not a usable SQLite database ({error})")
    if code == _SQLITE_READONLY:
        return StoreError(f"{where} is read-only; nothing was written ({error})")
    if code == _SQLITE_FULL:
        return StoreError(f"{where}: disk full (or the store's max_bytes reached); nothing was written ({error})")
    if code == _SQLITE_IOERR:
        return StoreError(f"{where}: the disk refused a write or read (full, over quota or failing); the transaction was rolled back ({error})")
    if code in _BUSY:
        return StoreError(f"{where} stayed locked by another writer for more than {lock_retry_seconds:g} s ({error})")
    if code == _SQLITE_CANTOPEN:
        return StoreError(f"{where} cannot be opened ({error})")
    return StoreError(f"{where}: {error}")

