"""The ``store_backend`` fixture: every store test runs once on SQLite and once on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psycopg
import pytest
from postgres import PostgresServer

from optical_memory.store.backends import open_store
from optical_memory.store.base import Store
from optical_memory.store.postgres import PostgresStore
from optical_memory.store.schema import ColumnTypes
from optical_memory.store.sqlite import SQLiteStore


@dataclass
class StoreBackend:
    """Where a fresh, empty store lives, and a side door to its database for setting up old or odd layouts."""

    name: str
    target: str
    read_only_target: str
    types: ColumnTypes
    raw: Callable[[str], list[tuple[Any, ...]]]

    def open(self) -> Store:
        return open_store(self.target)


def sqlite_backend(path: Path) -> StoreBackend:
    def raw(sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(path) as db:
            rows = db.execute(sql).fetchall()
        db.close()
        return rows

    return StoreBackend("sqlite", str(path), f"sqlite:///{path}?mode=ro", SQLiteStore.types, raw)


def postgres_backend(server: PostgresServer, schema: str) -> StoreBackend:
    url = server.url(schema)

    def raw(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    read_only = server.url(schema, default_transaction_read_only="on")
    return StoreBackend("postgres", url, read_only, PostgresStore.types, raw)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    if request.param == "sqlite":
        return sqlite_backend(tmp_path / "store.db")
    return postgres_backend(request.getfixturevalue("postgres_server"), request.getfixturevalue("postgres_schema"))
