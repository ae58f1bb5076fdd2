"""``OpticalChatMessageHistory``: a LangChain chat history whose old turns come back as pages.

Drop-in for any ``BaseChatMessageHistory`` (e.g. behind ``RunnableWithMessageHistory``): ``add_messages`` stores
every message verbatim; ``messages`` returns the system messages untouched, then one human message holding the older
turns as page images (LangChain standard image blocks after a short preamble, oldest first), then the recent turns
as the very messages that were added. ``all_messages`` gives the whole history back verbatim.

System messages are instructions, not memories: they are kept in the session's ``system`` companion (a namespace of
the store's own, so no ``session_id`` reaches another session's system prompt), never drawn on a page, and always
come first.

A history cannot see the prompt it is placed in: a ``ChatPromptTemplate``'s own system message, the question after
the history and the tool schemas bound to the model are not among its messages. ``budget`` covers what
``messages`` returns; pass ``reserve=`` (tokens) for the rest of the prompt so the whole call fits. For the same
reason its default query (``LATEST_USER_MESSAGE``) is the latest user message it holds: behind
``RunnableWithMessageHistory``, the question of the call under way is stored only after the call, so the previous
question cues the pages; ``context(query=question)`` cues them with the question itself.
"""

from __future__ import annotations

import asyncio
import os
import sys
import weakref
from pathlib import Path
from typing import Sequence

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

from optical_memory.core.consumers import BaseConsumer, get_consumer
from optical_memory.core.embedding import Embedder, check_embedder
from optical_memory.core.types import Role
from optical_memory.core.validation import validate_budget, validate_int
from optical_memory.langchain.convert import LANGCHAIN
from optical_memory.langchain.tokens import DEFAULT_CONSUMER
from optical_memory.memory import OpticalMemory, open_memory
from optical_memory.messages.dialect import PLAIN_PREAMBLE
from optical_memory.policies import ForgettingPolicy
from optical_memory.prompt import (
    LATEST_USER_MESSAGE,
    OpticalMessages,
    Query,
    add_drafts,
    build_messages,
    check_query,
    resolve_query,
)
from optical_memory.store.backends import open_store
from optical_memory.store.base import Store

SYSTEM_COMPANION = "system"

# Histories opened on the same file share one connection (RunnableWithMessageHistory builds one per call).
_OPEN_STORES: "weakref.WeakValueDictionary[str, Store]" = weakref.WeakValueDictionary()


def shared_store(target: str | os.PathLike[str] | Store) -> Store:
    """The store for ``target``; file paths already open in this process reuse their connection."""
    if isinstance(target, Store) or not isinstance(target, (str, os.PathLike)):
        return open_store(target)
    path = os.fspath(target)
    if path == ":memory:" or "://" in path:
        return open_store(path)
    key = str(Path(path).expanduser().resolve())
    store = _OPEN_STORES.get(key)
    if store is None:
        store = open_store(path)
        _OPEN_STORES[key] = store
    return store


class _Unset:
    """``context``'s ``query`` default: the history's own query, which may itself be ``None``."""


_UNSET = _Unset()


class OpticalChatMessageHistory(BaseChatMessageHistory):
    """A chat history kept by an ``OpticalMemory``, keyed by ``session_id``.

    ``store`` is a SQLite path, a ``sqlite:///`` URL, a ``Store`` or a ready ``OpticalMemory`` (whose session must be
    ``session_id``; its own consumer, hot window and policy then apply unless given here). ``consumer`` prices pages
    and images for the model that reads them (default ``openai:gpt-4o``); ``budget`` caps what ``messages`` returns
    plus ``reserve`` (``None``: only the age policy applies). The history never sees the prompt it is placed in, so
    ``reserve`` is the tokens that prompt adds around it (the template's system message and question, the tool
    schemas bound to the model: ``count_tokens`` and ``count_tool_tokens`` measure them); ``messages`` then returns
    at most ``budget - reserve`` tokens. ``query`` cues the pages (``OpticalMemory.context``): by default the text
    of the latest user message stored here, a string for a fixed query, ``None`` for none. ``embedder`` (off by
    default): search and cues by meaning as well as by words (``OpticalMemory``; ignored for a ready memory, which
    has its own). Example::

        history = OpticalChatMessageHistory("user-42", "chat.db", consumer="anthropic", budget=8000, reserve=600)
    """

    per_thread = False  # one memory: the ``recall_page`` tool needs no thread id

    def __init__(
        self,
        session_id: str,
        store: str | os.PathLike[str] | Store | OpticalMemory,
        *,
        user: str = "default",
        consumer: str | BaseConsumer | None = None,
        budget: float | None = None,
        reserve: int = 0,
        hot_turns: int = 8,
        policy: ForgettingPolicy | None = None,
        preamble: str = PLAIN_PREAMBLE,
        query: Query = LATEST_USER_MESSAGE,
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__()
        self.query = check_query(query)
        if embedder is not None:
            check_embedder(embedder)
        if isinstance(store, OpticalMemory):
            if store.scope.session != session_id:
                raise ValueError(
                    f"session_id {session_id!r} does not match the memory's session {store.scope.session!r}"
                )
            self.memory = store
        else:
            self.memory = open_memory(
                shared_store(store),
                user=user,
                session=session_id,
                consumer=get_consumer(DEFAULT_CONSUMER if consumer is None else consumer),
                hot_turns=hot_turns,
                policy=policy,
                embedder=embedder,
            )
        self.session_id = session_id
        self.consumer: BaseConsumer = self.memory.consumer if consumer is None else get_consumer(consumer)
        self.budget = None if budget is None else validate_budget(budget)
        self.reserve = validate_int(reserve, field_name="reserve", minimum=0)
        self.policy = policy
        self.preamble = preamble
        self._system = OpticalMemory(
            self.memory.store,
            user=self.memory.scope.user,
            session=session_id,
            companion=SYSTEM_COMPANION,
            hot_turns=sys.maxsize,
            consumer=self.memory.consumer,
            style=self.memory.style,
        )

    def memory_for(self, thread_id: str | None = None) -> OpticalMemory:
        """This history's memory (the ``recall_page`` tool reads pages through it)."""
        return self.memory

    # -- reading -------------------------------------------------------------------------------------------------

    def context(
        self,
        *,
        budget: float | None = None,
        reserve: int | None = None,
        consumer: str | BaseConsumer | None = None,
        query: Query | _Unset = _UNSET,
    ) -> OpticalMessages:
        """The messages ``messages`` returns, with their token report (``budget``, ``reserve``, ``consumer`` and
        ``query`` override the history's own for this call); ``total_tokens`` includes the reserve."""
        query = self.query if isinstance(query, _Unset) else check_query(query)
        system = [LANGCHAIN.restore(turn) for turn in self._system.turns]
        return build_messages(
            self.memory,
            LANGCHAIN,
            system=system,
            budget=self.budget if budget is None else budget,
            reserve=self.reserve if reserve is None else reserve,
            consumer=self.consumer if consumer is None else consumer,
            policy=self.policy,
            preamble=self.preamble,
            query=resolve_query(self.memory, query),
        )

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """System messages, then older turns as pages in one message, then recent turns verbatim."""
        return self.context().messages

    async def aget_messages(self) -> list[BaseMessage]:
        return await asyncio.to_thread(lambda: self.messages)

    @property
    def all_messages(self) -> list[BaseMessage]:
        """The whole history verbatim: system messages, then every other message in the order added."""
        return [LANGCHAIN.restore(turn) for turn in (*self._system.turns, *self.memory.turns)]

    def recall(self, page: int | str) -> str:
        """The exact text of a page, by the id printed on it."""
        return self.memory.recall(page)

    # -- writing -------------------------------------------------------------------------------------------------

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store ``messages`` in order. Every message is validated before any is written."""
        if isinstance(messages, (BaseMessage, str, bytes)) or not isinstance(messages, Sequence):
            raise TypeError(f"messages must be a list of LangChain messages, got {type(messages).__name__}")
        drafts = [LANGCHAIN.to_turn(message, where=f"messages[{i}]") for i, message in enumerate(messages)]
        for draft in drafts:
            if draft.role is Role.SYSTEM:
                self._system.add(draft.role, draft.content, name=draft.name, metadata=draft.metadata)
        add_drafts(self.memory, [draft for draft in drafts if draft.role is not Role.SYSTEM])

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        await asyncio.to_thread(self.add_messages, messages)

    def clear(self) -> None:
        """Forget this session: its turns, pages and system messages."""
        self.memory.clear()
        self._system.clear()

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    def __repr__(self) -> str:
        return f"OpticalChatMessageHistory(session_id={self.session_id!r}, consumer={self.consumer.name!r})"

    def close(self) -> None:
        """Close the underlying store (and so every history sharing its file in this process)."""
        for key, store in list(_OPEN_STORES.items()):
            if store is self.memory.store:
                del _OPEN_STORES[key]
        self.memory.close()
