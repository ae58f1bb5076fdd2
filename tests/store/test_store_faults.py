"""Faults: writers killed mid-write, many writers at once, a full disk, a read-only store, a held lock, a lost server.

The crash and concurrency scenarios are ``benchmarks/reliability.py``'s, at test sizes; the benchmark runs them at
larger counts and records the figures the README quotes.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from benchmarks.reliability import (
    TINY_PAGE,
    concurrent_writers,
    crash_trials,
    disk_full_trials,
    turn_text,
)
from optical_memory.memory import OpticalMemory
from optical_memory.store.backends import open_store
from optical_memory.store.base import Scope, StoreError
from optical_memory.store.sqlite import SQLiteStore


def small_memory(store, **options) -> OpticalMemory:
    return OpticalMemory(store, hot_turns=1, style=TINY_PAGE, consumer="gemini", **options)


@pytest.mark.slow
@pytest.mark.parametrize("durable", [True, False], ids=["synchronous=FULL", "synchronous=NORMAL"])
def test_writers_killed_at_random_moments_lose_no_confirmed_turn(tmp_path, durable):
    result = crash_trials(tmp_path / "crash.db", 100, seed=8, durable=durable)
    print(
        f"\ncrash: {result.trials} SIGKILLs, {result.turns_confirmed} turns confirmed, {result.turns_stored} stored,"
        f" lost={result.lost}, {result.pages} pages, {result.images_decoded} images decoded after kills,"
        f" {result.contexts_completed} contexts, {result.replaced_images} images replaced,"
        f" integrity failures={result.integrity_failures}"
    )
    assert result.problems == []
    assert (result.lost, result.integrity_failures) == (0, 0)
    assert result.kills_mid_run == result.trials == 100
    assert result.turns_stored >= result.turns_confirmed >= 100  # enough happened for the check to mean something
    assert result.pages >= 20 and result.contexts_completed > 0 and result.replaced_images > 0


def test_a_sqlite_file_syncs_every_commit_unless_it_need_not_be_durable(tmp_path):
    def synchronous(store: SQLiteStore) -> int:
        with store:
            return store._db.execute("PRAGMA synchronous").fetchone()[0]

    assert synchronous(SQLiteStore(tmp_path / "durable.db")) == 2  # FULL
    assert synchronous(SQLiteStore(tmp_path / "fast.db", durable=False)) == 1  # NORMAL
    with pytest.raises(TypeError, match="durable must be a bool"):
        SQLiteStore(tmp_path / "bad.db", durable="no")  # type: ignore[arg-type]
    assert not (tmp_path / "bad.db").exists()


@pytest.mark.slow
def test_eight_processes_writing_at_once_into_sqlite_lose_nothing(tmp_path):
    result = concurrent_writers(f"sqlite:///{tmp_path / 'concurrent.db'}", processes=8, turns=200, shared=4)
    print(f"\nsqlite: {result.turns_written} turns from 8 processes, {result.turns_stored} stored, lost={result.lost},"
          f" {result.pages} pages, {result.seconds:.1f} s")
    assert result.writer_errors == [] and result.problems == []
    assert (result.turns_stored, result.lost, result.out_of_order) == (1600, 0, 0)
    assert result.pages > 0
    assert SQLiteStore(tmp_path / "concurrent.db").integrity_check() == ["ok"]


@pytest.mark.slow
@pytest.mark.postgres
def test_eight_processes_writing_at_once_into_postgres_lose_nothing(postgres_server, postgres_schema):
    result = concurrent_writers(postgres_server.url(postgres_schema), processes=8, turns=200, shared=4)
    print(f"\npostgres: {result.turns_written} turns from 8 processes, {result.turns_stored} stored, lost={result.lost},"
          f" {result.pages} pages, {result.seconds:.1f} s")
    assert result.writer_errors == [] and result.problems == []
    assert (result.turns_stored, result.lost, result.out_of_order) == (1600, 0, 0)
    assert result.pages > 0


def test_a_full_disk_refuses_the_write_and_the_memory_keeps_what_was_persisted(tmp_path):
    path = tmp_path / "capped.db"
    memory = small_memory(SQLiteStore(path, max_bytes=48 * 4096))
    with pytest.raises(StoreError, match="disk full"):
        for index in range(10_000):
            before = memory.turns
            memory.add("user", turn_text(index) * 10)
    assert memory.turns == before  # the refused turn is not in memory either
    assert memory.recall(0)  # and the memory still reads
    memory.context()
    with pytest.raises(StoreError, match="disk full"):
        memory.add("user", turn_text(0) * 10)
    memory.close()
    with SQLiteStore(path) as store:
        assert store.integrity_check() == ["ok"]
        assert store.load(memory.scope)[0] == before


def test_disk_full_trials_never_diverge(tmp_path):
    result = disk_full_trials(tmp_path, 4, seed=3)
    assert result.refused_writes == result.trials == 4
    assert (result.diverged, result.integrity_failures) == (0, 0)
    assert all("disk full" in message for message in result.messages)


# Runs in its own process: the file-size limit and SIGXFSZ handling apply to the whole process.
_FILE_SIZE_LIMIT_WRITER = """
import json, resource, signal, sys
from benchmarks.reliability import TINY_PAGE, turn_text
from optical_memory.memory import OpticalMemory
from optical_memory.store.base import StoreError

memory = OpticalMemory.open(sys.argv[1], hot_turns=1, style=TINY_PAGE, consumer="gemini")
memory.add("user", "first turn, written before the limit")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel then fails the write with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
error = None
try:
    for index in range(100_000):
        before = memory.turns
        memory.add("user", turn_text(index) * 20)
except StoreError as refused:
    error = str(refused)
print(json.dumps({"error": error, "unchanged": memory.turns == before, "turns": len(memory.turns)}))
"""


def test_the_operating_system_refusing_writes_leaves_memory_and_disk_in_agreement(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse to grow the file — a disk that fills up, and it binds root too."""
    path = tmp_path / "limited.db"
    done = subprocess.run([sys.executable, "-c", _FILE_SIZE_LIMIT_WRITER, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["error"] is not None and "the disk refused a write" in outcome["error"]
    assert outcome["unchanged"]
    with SQLiteStore(path) as store:
        assert store.integrity_check() == ["ok"]
        turns = store.load(Scope("default", "default"))[0]
    assert len(turns) == outcome["turns"] > 1


def test_a_read_only_store_refuses_writes_but_still_reads(store_backend):
    with OpticalMemory.open(store_backend.target, hot_turns=1, style=TINY_PAGE, consumer="gemini") as writer:
        for index in range(12):
            writer.add("user", turn_text(index))
        expected = writer.turns
    # Root ignores file permissions, so read-only is asked of the database itself: SQLite's mode=ro, PostgreSQL's
    # default_transaction_read_only.
    memory = OpticalMemory.open(store_backend.read_only_target, hot_turns=1, style=TINY_PAGE, consumer="gemini")
    assert memory.turns == expected
    with pytest.raises(StoreError, match="read-only"):
        memory.add("user", "one more")
    assert memory.turns == expected
    assert memory.recall(0) and [v.page for v in memory.context().pages if v.sealed] == memory.pages != []
    # Opening a new session writes nothing, so it opens; only its first turn meets the read-only store.
    fresh = OpticalMemory.open(store_backend.read_only_target, session="new session", style=TINY_PAGE, consumer="gemini")
    assert fresh.turns == [] and fresh.context().recent == []
    with pytest.raises(StoreError, match="read-only"):
        fresh.add("user", "first turn")
    fresh.close()
    memory.close()


def test_a_lock_held_by_another_process_is_waited_out(tmp_path):
    path = tmp_path / "locked.db"
    memory = small_memory(SQLiteStore(path))
    memory.add("user", "before the lock")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.5, lambda: holder.execute("COMMIT"))
    release.start()
    memory.add("user", "waits for the lock, then lands")  # longer than SQLite's own 1 s busy wait
    release.join()
    holder.close()
    assert [t.content for t in memory.turns] == ["before the lock", "waits for the lock, then lands"]


def test_a_lock_held_too_long_surfaces_as_a_clear_error(tmp_path):
    path = tmp_path / "locked.db"
    store = SQLiteStore(path)
    store.lock_retry_seconds = 0.2
    memory = small_memory(store)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="stayed locked by another writer for more than 0.2 s"):
            memory.add("user", "cannot get in")
        assert memory.turns == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    memory.add("user", "gets in now")
    assert len(memory.turns) == 1


@pytest.mark.postgres
def test_a_dropped_postgres_connection_fails_one_call_then_reconnects(postgres_server, postgres_schema):
    url = postgres_server.url(postgres_schema)
    memory = OpticalMemory.open(url, hot_turns=1, style=TINY_PAGE, consumer="gemini")
    memory.add("user", "before the drop")
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND datname = current_database() AND backend_type = 'client backend'"
        )
    time.sleep(0.2)
    with pytest.raises(StoreError, match="lost the connection"):
        memory.add("user", "during the drop")
    assert [t.content for t in memory.turns] == ["before the drop"]
    memory.add("user", "after the drop")
    assert [t.content for t in open_store(url).load(memory.scope)[0]] == ["before the drop", "after the drop"]
    memory.close()


def test_an_unreachable_postgres_server_is_a_clear_error_that_keeps_the_password_secret():
    with pytest.raises(StoreError, match="cannot connect") as refused:
        open_store("postgresql://ada:hunter2@127.0.0.1:1/memories")
    assert "127.0.0.1" in str(refused.value) and "hunter2" not in str(refused.value)
