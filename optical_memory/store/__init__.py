"""Persistence: the ``Store`` interface, the SQL shared by both backends, SQLite, PostgreSQL, schema versions and
``open_store(url)``. Turns are the source of truth; pages are derived from them and stored beside them."""

from optical_memory.store.backends import open_store
from optical_memory.store.base import Erased, Scope, SearchMatch, SessionInfo, StaleSession, Store, StoredPage, StoreError

__all__ = [
    "Erased", "Scope", "SearchMatch", "SessionInfo", "StaleSession", "Store", "StoreError", "StoredPage", "open_store",
]
