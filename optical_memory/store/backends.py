"""Choosing a store backend from what the user passes: a path, a URL, or a ready ``Store``."""

from __future__ import annotations

import os
from urllib.parse import parse_qs

from optical_memory.store.base import Store
from optical_memory.store.sqlite import SQLiteStore

SQLITE_PREFIX = "sqlite://"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(target: str | os.PathLike[str] | Store) -> Store:
    """A store for ``target``.

    - a ``Store``: returned as is;
    - ``":memory:"`` or a file path: SQLite (created if new);
    - ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://`` (in memory); ``?mode=ro`` opens an
      existing file read-only;
    - ``postgresql://…`` or ``postgres://…``: PostgreSQL (any libpq URL).
    """
    if isinstance(target, Store):
        return target
    if not isinstance(target, (str, os.PathLike)):
        raise TypeError(f"store must be a path, a URL or a Store, got {type(target).__name__}")
    location = os.fspath(target)
    if not isinstance(location, str):
        raise TypeError(f"store path must be text, got {type(location).__name__}")
    if not location.strip():
        raise ValueError("store must not be an empty path or URL")
    if location.startswith(POSTGRES_SCHEMES):
        from optical_memory.store.postgres import (
            PostgresStore,  # psycopg loads only for PostgreSQL users
        )

        return PostgresStore(location)
    if location.startswith(SQLITE_PREFIX):
        return _sqlite_from_url(location)
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise ValueError(f"store URL scheme {scheme!r} is not supported (use a file path, sqlite:///path.db or postgresql://…)")
    return SQLiteStore(location)


def _sqlite_from_url(url: str) -> SQLiteStore:
    rest = url[len(SQLITE_PREFIX) :]
    path, _, query = rest.partition("?")
    options = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query)) if query else {}
    unknown = sorted(set(options) - {"mode"})
    if unknown:
        raise ValueError(f"store URL {url!r}: unknown option(s) {', '.join(unknown)} (only mode=ro is supported)")
    modes = options.get("mode", [])
    if modes not in ([], ["ro"]):
        raise ValueError(f"store URL {url!r}: mode must be ro (or left out), got {', '.join(modes)}")
    if path in ("", "/", "/:memory:"):
        path = ":memory:"
    elif path.startswith("/"):
        path = path[1:]
    else:
        raise ValueError(f"store URL {url!r}: expected sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return SQLiteStore(path, read_only=modes == ["ro"])
