"""``OpticalMemoryMiddleware``: the model of a ``create_agent`` loop reads old turns as pages.

Before every model call (``wrap_model_call``) the middleware mirrors the conversation into an ``OpticalMemory`` kept
per thread (the ``thread_id`` of the run's config), then hands the model the optical context instead of the raw
history: the system prompt untouched, one message of pages, the recent turns verbatim, all within ``budget`` tokens
as the model's provider prices them, together with the JSON schemas of the tools bound to the call. The agent's
state is never rewritten, so the full history stays in the checkpointer; the memory keeps it verbatim too
(``history``). The ``recall_page`` tool it registers gives the model any page's exact text back, and
``search_memory`` the verbatim passages matching a query, with their page ids. By default the latest user message is
the query of every call (``OpticalMemory.context``): the pages holding its best hits stay readable and go last.

Mirroring is append-only and by message id: a message is stored the first time the middleware sees it (in a model
request, or in the final state after the run), so resuming a thread from a checkpointer, or invoking without one,
both add each message once. Edits or removals of already-stored messages do not rewrite sealed pages.

A thread's memory is its user's data: ``threads``, ``export_thread`` and ``delete_thread`` list, export (JSONL) and
erase what the middleware stored per thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO, Any, Awaitable, Callable, Sequence

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import BaseMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime

from optical_memory.core.consumers import BaseConsumer, get_consumer
from optical_memory.core.embedding import Embedder, check_embedder
from optical_memory.core.validation import validate_budget
from optical_memory.langchain.convert import LANGCHAIN
from optical_memory.langchain.provider import detect_consumer
from optical_memory.langchain.recall import TOOL_NAME as RECALL_TOOL
from optical_memory.langchain.recall import recall_page
from optical_memory.langchain.search import TOOL_NAME as SEARCH_TOOL
from optical_memory.langchain.search import search_memory
from optical_memory.langchain.tokens import DEFAULT_CONSUMER, count_tool_tokens, tool_schema
from optical_memory.memory import OpticalMemory, delete_session, export_session, open_memory, validate_options
from optical_memory.messages.dialect import PAGES_PREAMBLE, PLAIN_PREAMBLE, TurnDraft
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
from optical_memory.store.base import Erased, Store


# Appended to the preamble in calls that carry search_memory (the recall_page sentence is PAGES_PREAMBLE's own).
SEARCH_SENTENCE = " To find an earlier detail by its words, even where no page shows it readably, call search_memory."


@dataclass
class _Thread:
    memory: OpticalMemory
    known: set[str]
    lock: threading.Lock = field(default_factory=threading.Lock)
    last: OpticalMessages | None = None


class OpticalMemoryMiddleware(AgentMiddleware):
    """Agent middleware that shows the model older turns as page images.

    ``store``: a SQLite path, ``sqlite:///`` URL or ``Store`` (one session per thread id; the default keeps memories
    for this process only). ``budget``: tokens the model may be sent per call, everything counted: the system
    prompt, the JSON schemas of the tools bound to the call (``recall_page`` included), the pages message and the
    recent turns with their framing (``None``: only the age policy). ``hot_turns``: recent turns kept verbatim.
    ``policy``: a ``ForgettingPolicy``. ``consumer``: whose image pricing applies; by default told from the chat
    model (``ls_provider``/model name). ``recall_tool``: register the ``recall_page`` tool; ``search_tool``: the
    ``search_memory`` tool. ``preamble``: the text before the pages (by default it mentions each of those tools only
    in calls that carry it). ``query``: what cues the pages of each call (``OpticalMemory.context``); by default
    (``LATEST_USER_MESSAGE``) the text of the thread's latest user message, a string for a fixed query, ``None``
    for none. ``embedder`` (e.g. ``MiniLMEmbedder()``, off by default) lets every thread's search and cues find
    turns by meaning as well as by words (``OpticalMemory``). Example::

        agent = create_agent(model, tools, middleware=[OpticalMemoryMiddleware("memory.db", budget=8000)],
                             checkpointer=checkpointer)
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | Store = ":memory:",
        *,
        budget: float | None = None,
        hot_turns: int = 8,
        policy: ForgettingPolicy | None = None,
        consumer: str | BaseConsumer | None = None,
        user: str = "default",
        recall_tool: bool = True,
        search_tool: bool = True,
        preamble: str | None = None,
        query: Query = LATEST_USER_MESSAGE,
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__()
        validate_options(hot_turns, policy)
        if embedder is not None:
            check_embedder(embedder)
        if not isinstance(user, str) or not user.strip():
            raise TypeError(f"user must be a non-empty string, got {user!r}")
        if preamble is not None and not isinstance(preamble, str):
            raise TypeError(f"preamble must be a string, got {type(preamble).__name__}")
        self.store = open_store(store)
        self.budget = None if budget is None else validate_budget(budget)
        self.hot_turns = hot_turns
        self.policy = policy
        self.consumer = None if consumer is None else get_consumer(consumer)
        self.user = user
        self.preamble = preamble
        self.query = check_query(query)
        self.embedder = embedder
        self.tools = [*([recall_page(self)] if recall_tool else []), *([search_memory(self)] if search_tool else [])]
        self._threads: OrderedDict[str, _Thread] = OrderedDict()
        self._lock = threading.Lock()

    per_thread = True  # the recall_page tool reads the thread of the run it is called in
    OPEN_THREADS = 128  # memories kept loaded; a thread used less recently is reopened from the store when needed

    # -- threads -------------------------------------------------------------------------------------------------

    def _thread(self, thread_id: str, consumer: BaseConsumer | None = None) -> _Thread:
        with self._lock:
            thread = self._threads.get(thread_id)
            if thread is None:
                memory = open_memory(
                    self.store,
                    user=self.user,
                    session=thread_id,
                    consumer=consumer or self.consumer or get_consumer(DEFAULT_CONSUMER),
                    hot_turns=self.hot_turns,
                    policy=self.policy,
                    embedder=self.embedder,
                )
                known = {turn.metadata["identity"] for turn in memory.turns if "identity" in turn.metadata}
                thread = self._threads[thread_id] = _Thread(memory, known)
                while len(self._threads) > self.OPEN_THREADS:
                    self._threads.popitem(last=False)
            self._threads.move_to_end(thread_id)
            return thread

    def memory_for(self, thread_id: str | None) -> OpticalMemory:
        """The memory of a thread (opened from the store if this process has not seen it yet)."""
        if thread_id is None:
            raise ValueError("thread_id is required: the middleware keeps one memory per thread")
        return self._thread(str(thread_id)).memory

    def history(self, thread_id: str) -> list[BaseMessage]:
        """Every message of the thread the middleware has seen, verbatim, in order."""
        return [LANGCHAIN.restore(turn) for turn in self.memory_for(thread_id).turns]

    def last_context(self, thread_id: str) -> OpticalMessages | None:
        """What the model of ``thread_id`` was last sent from this process, with its token report."""
        thread = self._threads.get(str(thread_id))
        return None if thread is None else thread.last

    # -- mirroring and the model call ------------------------------------------------------------------------------

    def _mirror(self, thread: _Thread, messages: Sequence[BaseMessage]) -> None:
        with thread.lock:
            drafts: list[TurnDraft] = []
            for i, message in enumerate(messages):
                if isinstance(message, BaseMessage) and message.id and message.id in thread.known:
                    continue
                draft = LANGCHAIN.to_turn(message, where=f"messages[{i}]")
                identity = draft.metadata["identity"]
                if identity not in thread.known:
                    drafts.append(draft)
                    thread.known.add(identity)
            if drafts:
                add_drafts(thread.memory, drafts)

    @staticmethod
    def _thread_id(runtime: Runtime[Any] | None) -> str:
        try:
            thread_id = get_config().get("configurable", {}).get("thread_id")
        except RuntimeError:
            thread_id = None
        if thread_id is None:
            thread_id = getattr(getattr(runtime, "execution_info", None), "thread_id", None)
        if thread_id is None:
            raise ValueError(
                "OpticalMemoryMiddleware needs a thread id: invoke the agent with"
                " config={'configurable': {'thread_id': '…'}}"
            )
        return str(thread_id)

    def optical_request(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        """``request`` with its messages replaced by the optical context of its thread, fitted to the budget with
        the system prompt and the schemas of the tools bound to this call counted."""
        thread_id = self._thread_id(request.runtime)
        consumer = self.consumer or detect_consumer(request.model)
        thread = self._thread(thread_id, consumer)
        self._mirror(thread, request.messages)
        system = [request.system_message] if request.system_message is not None else []
        tools = list(request.tools or [])
        preamble = self.preamble
        if preamble is None:
            # The model is told about recall_page and search_memory only when this call can actually use them.
            offered = {tool_schema(tool).get("function", tool).get("name") for tool in tools}
            preamble = PAGES_PREAMBLE if RECALL_TOOL in offered else PLAIN_PREAMBLE
            if SEARCH_TOOL in offered:
                preamble += SEARCH_SENTENCE
        with thread.lock:
            result = build_messages(
                thread.memory,
                LANGCHAIN,
                system=system,
                budget=self.budget,
                reserve=count_tool_tokens(tools, consumer=consumer),
                consumer=consumer,
                preamble=preamble,
                query=resolve_query(thread.memory, self.query),
            )
            thread.last = result
        return request.override(messages=result.messages[len(system):])

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> ModelResponse[Any]:
        return handler(self.optical_request(request))

    async def awrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]
    ) -> ModelResponse[Any]:
        return await handler(await asyncio.to_thread(self.optical_request, request))

    def after_agent(self, state: Any, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Store what the run added after its last model call (the final answer, a ``return_direct`` result)."""
        thread = self._thread(self._thread_id(runtime))
        self._mirror(thread, state["messages"])
        return None

    async def aafter_agent(self, state: Any, runtime: Runtime[Any]) -> dict[str, Any] | None:
        thread_id = self._thread_id(runtime)
        await asyncio.to_thread(lambda: self._mirror(self._thread(thread_id), state["messages"]))
        return None

    # -- threads as data their user owns ---------------------------------------------------------------------------

    def threads(self) -> list[str]:
        """Ids of the threads whose memory this middleware's ``user`` has stored (sorted)."""
        return [scope.session for scope in self.store.sessions(self.user)]

    def delete_thread(self, thread_id: str) -> Erased:
        """Erase a thread's memory as ``optical_memory.memory.delete_session`` does (turns, index rows, pages,
        images no other thread shows). The agent's own checkpointer keeps its state: delete that thread there too."""
        thread_id = _check_thread_id(thread_id)
        with self._lock:
            self._threads.pop(thread_id, None)
        return delete_session(self.store, thread_id, user=self.user)

    def export_thread(self, thread_id: str, out: IO[str]) -> int:
        """Write a thread's stored messages to ``out`` as JSON lines (``optical_memory.memory.export_session``)."""
        return export_session(self.store, _check_thread_id(thread_id), out, user=self.user)


def _check_thread_id(thread_id: object) -> str:
    if not isinstance(thread_id, str):
        raise TypeError(f"thread_id must be a string, got {type(thread_id).__name__}")
    return thread_id
