"""The store for deployments that outgrow one machine: PostgreSQL through psycopg 3.

Same tables and contract as the SQLite store. Concurrency: a commit locks its session's row (``FOR UPDATE``), so
writers of one session queue up and each re-checks the turn count; writers of different sessions run in parallel.
Images are shared between sessions, so writers that may delete images (``clear``, ``replace_image``) hold an
exclusive advisory lock that commits hold shared: an image is never dropped under a page being sealed. Loads read one
``REPEATABLE READ`` snapshot, so turns and pages always agree. Deadlocks and serialisation failures are retried.

Turn text is stored as UTF-8 ``BYTEA``: PostgreSQL's ``TEXT`` cannot hold NUL characters, and a chat turn may.
Its words (``optical_memory.store.search``) are a ``tsvector`` column of the turn's own row under a GIN index, ranked
with ``ts_rank_cd``; the vector is built from those words directly (a ``tsvector`` literal), not by a text search
configuration, so both backends search the same words. Use a dedicated database, or a schema of your own via
``?options=-csearch_path%3Dmyschema`` in the URL.

Deletion (``delete_session``, ``clear``) commits in one transaction, after which no query sees the erased rows.
PostgreSQL has no secure delete: the dead row versions stay in the table, index and TOAST pages until ``VACUUM``
reclaims them and later writes reuse the space, and in the WAL, its archives, replicas and backups for as long as
those are kept. Where erasure must reach the disk, run ``VACUUM (FULL)`` on ``turns``, ``turn_vectors``, ``pages``,
``images`` and ``sessions`` (it rewrites them) and keep WAL and backup retention to what your policy allows.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence, TypeVar

from optical_memory.core.extras import require

require("psycopg", "postgres")

import psycopg  # noqa: E402  (after the check, so a missing driver names its extra)
from psycopg import errors as pg_errors  # noqa: E402
from psycopg.conninfo import conninfo_to_dict  # noqa: E402
from psycopg.pq import TransactionStatus  # noqa: E402

from optical_memory.core.retry import retry_transient
from optical_memory.store.base import StoreError
from optical_memory.store.schema import ColumnTypes, Query
from optical_memory.store.search import MAX_POSITION, MAX_POSITIONS_PER_WORD, index_terms
from optical_memory.store.sql import SQLStore

T = TypeVar("T")

# Advisory lock ids (any fixed 64-bit numbers; "om" + a counter) for schema changes and image deletion.
_SCHEMA_LOCK = 0x6F6D_0001
_IMAGES_LOCK = 0x6F6D_0002

_TRANSIENT = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected, pg_errors.LockNotAvailable)


class PostgresStore(SQLStore):
    """PostgreSQL-backed store at ``url`` (``postgresql://user:password@host:port/dbname?…``, any libpq URL).

    One connection, reopened if the server dropped it; safe for several threads (a lock) and many processes.
    """

    types = ColumnTypes(
        integer="BIGINT",
        real="DOUBLE PRECISION",
        text="BYTEA",
        blob="BYTEA",
        identity="BIGINT GENERATED ALWAYS AS IDENTITY",
        never_reused="",  # identity columns never hand a value out twice
        word_column=", words TSVECTOR NOT NULL",
        word_index=("CREATE INDEX turns_by_word ON turns USING GIN (words)",),
    )
    for_update = " FOR UPDATE"

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a string, got {type(url).__name__}")
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as error:
            raise ValueError(f"store URL is not a valid PostgreSQL URL: {error}") from None
        self.url = url
        # Messages name the server and database, never the password.
        self.where = "postgresql://{user}@{host}:{port}/{dbname}".format(
            user=params.get("user", ""), host=params.get("host", ""), port=params.get("port", ""), dbname=params.get("dbname", "")
        )
        self._connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._closed = False
        self._conn = self._connect()
        try:
            self._ensure_schema()
        except BaseException:
            self._conn.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, round(self._connect_timeout)))
            # A lock held by a stuck client must not hang a writer forever: waiting ends as a (retried) conflict.
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{round(self.lock_retry_seconds * 1000)}ms",))
            return conn
        except psycopg.Error as error:
            raise StoreError(f"store {self.where}: cannot connect ({error})") from None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StoreError(f"store {self.where} is closed")
        if self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _run(self, work: Callable[[Query], T], *, write: bool) -> T:
        def attempt() -> T:
            with self._lock:
                conn = self._connection()
                conn.execute("BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try:
                    # The statements are written with SQLite's ``?`` placeholders and contain no literal ``?`` or ``%``.
                    result = work(lambda sql, params: conn.execute(sql.replace("?", "%s"), params))
                    conn.execute("COMMIT")
                except BaseException:
                    if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                        conn.execute("ROLLBACK")
                    raise
                return result

        try:
            return retry_transient(attempt, lambda error: isinstance(error, _TRANSIENT), seconds=self.lock_retry_seconds)
        except psycopg.Error as error:
            raise _translate(error, self.where, self.lock_retry_seconds) from None

    def _table_exists(self, query: Query, name: str) -> bool:
        return query("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]

    def _lock_schema(self, query: Query) -> None:
        query("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))

    def _lock_images(self, query: Query, *, exclusive: bool) -> None:
        if exclusive:
            query("SELECT pg_advisory_xact_lock(?)", (_IMAGES_LOCK,))
        else:
            query("SELECT pg_advisory_xact_lock_shared(?)", (_IMAGES_LOCK,))

    def _insert_turn(self, query: Query, sid: int, row: Sequence[Any]) -> None:
        words = _tsvector(index_terms(self._decode_text(row[2]) or ""))
        query(
            "INSERT INTO turns (sid, idx, role, content, timestamp, name, metadata, words)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, CAST(? AS tsvector))",
            (sid, *row, words),
        )

    def _search_rows(self, query: Query, sid: int, terms: Sequence[str], match: str, k: int) -> list[Any]:
        expression = (" | " if match == "any" else " & ").join(_lexeme(term) for term in terms)
        # Normalisation 1 divides by 1 + log(length): like bm25, a word in a short turn weighs more.
        return query(
            "SELECT idx, role, content, timestamp, name, metadata, ts_rank_cd(words, search.q, 1) AS score"
            " FROM turns CROSS JOIN (SELECT CAST(? AS tsquery) AS q) AS search"
            " WHERE sid = ? AND words @@ search.q ORDER BY score DESC, idx DESC LIMIT ?",
            (expression, sid, k),
        ).fetchall()

    def _encode_text(self, text: str | None) -> Any:
        return None if text is None else text.encode("utf-8")

    def _decode_text(self, value: Any) -> str | None:
        return None if value is None else bytes(value).decode("utf-8")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()


def _lexeme(word: str) -> str:
    """``word`` as a quoted lexeme of ``tsvector``/``tsquery`` input: never an operator, weight or prefix."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def _tsvector(words: Sequence[str]) -> str:
    """A ``tsvector`` literal of ``words`` with their positions (clamped and capped as PostgreSQL requires)."""
    positions: dict[str, list[int]] = {}
    for position, word in enumerate(words, 1):
        spots = positions.setdefault(word, [])
        position = min(position, MAX_POSITION)
        if len(spots) < MAX_POSITIONS_PER_WORD and (not spots or spots[-1] != position):
            spots.append(position)
    return " ".join(f"{_lexeme(word)}:{','.join(map(str, spots))}" for word, spots in positions.items())


def _translate(error: psycopg.Error, where: str, lock_retry_seconds: float) -> Exception:
    """What a PostgreSQL failure means for the user, by its SQLSTATE class."""
    prefix = f"store {where}"
    if isinstance(error, pg_errors.ReadOnlySqlTransaction):
        return StoreError(f"{prefix} is read-only; nothing was written ({error})")
    if isinstance(error, (pg_errors.DiskFull, pg_errors.InsufficientResources)):
        return StoreError(f"{prefix}: the server is out of disk or resources; nothing was written ({error})")
    if isinstance(error, _TRANSIENT):
        return StoreError(f"{prefix}: writers kept conflicting for more than {lock_retry_seconds:g} s ({error})")
    if isinstance(error, psycopg.OperationalError):
        return StoreError(f"{prefix}: lost the connection; the transaction may not have completed ({error})")
    return StoreError(f"{prefix}: {error}")
