"""The ``recall_page`` tool: a page's exact text, by the id printed on the page ("page 3").

Pages are what the model reads cheaply; when it needs a detail verbatim (a number, a name, a quote) it asks for the
page by the id it sees printed on it and gets the page's source text back, character for character.
"""

from __future__ import annotations

from typing import Protocol, Union, runtime_checkable

from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from optical_memory.memory import OpticalMemory

TOOL_NAME = "recall_page"
TOOL_DESCRIPTION = (
    "Return the exact text of an earlier page of this conversation. Pass the id printed at the top of the page, "
    "e.g. 'page 3' (or just 3). Use it when you need a detail from a page word for word."
)


@runtime_checkable
class PageSource(Protocol):
    """What holds pages: a chat history (one memory), or the middleware (one memory per thread, ``per_thread``)."""

    per_thread: bool

    def memory_for(self, thread_id: str | None) -> OpticalMemory: ...


class RecallPageInput(BaseModel):
    page: Union[int, str] = Field(description="The page id printed on the page, e.g. 'page 3' or 3.")


def check_source(source: object) -> None:
    """``TypeError`` unless ``source`` holds pages (the tools of this package are built on one)."""
    if not isinstance(source, (OpticalMemory, PageSource)):
        raise TypeError(
            "source must be an OpticalMemory, OpticalChatMessageHistory or OpticalMemoryMiddleware, got"
            f" {type(source).__name__}"
        )


def memory_of(source: OpticalMemory | PageSource, thread_id: str | None) -> OpticalMemory:
    """The memory ``source`` reads for ``thread_id`` (itself, a history's memory, or a middleware's thread)."""
    check_source(source)
    return source if isinstance(source, OpticalMemory) else source.memory_for(thread_id)


def recall_page_text(source: OpticalMemory | PageSource, page: int | str, *, thread_id: str | None = None) -> str:
    """The exact source text of ``page`` (``3``, ``"3"`` or ``"page 3"``) of a memory, a history or a middleware's
    thread (``thread_id`` required there). Raises ``ValueError`` for a page that does not exist."""
    return memory_of(source, thread_id).recall(page)


def recall_page(source: OpticalMemory | PageSource, *, name: str = TOOL_NAME) -> BaseTool:
    """A LangChain tool returning a page's verbatim text. Bound to a memory or a history it reads that one; bound to
    the middleware it reads the thread of the run it is called in. A page that does not exist comes back to the
    model as an error message (not an exception), so it can try another id."""
    check_source(source)

    def recall(page: Union[int, str]) -> str:
        try:
            return recall_page_text(source, page)
        except ValueError as error:
            raise ToolException(str(error)) from None

    def recall_in_thread(page: Union[int, str], runtime: ToolRuntime) -> str:
        thread_id = (runtime.config or {}).get("configurable", {}).get("thread_id")
        if thread_id is None:
            raise ToolException("recall_page needs the agent to run with a thread_id in its config")
        try:
            return recall_page_text(source, page, thread_id=str(thread_id))
        except ValueError as error:
            raise ToolException(str(error)) from None

    threaded = isinstance(source, PageSource) and source.per_thread
    return StructuredTool.from_function(
        func=recall_in_thread if threaded else recall,
        name=name,
        description=TOOL_DESCRIPTION,
        args_schema=RecallPageInput,
        handle_tool_error=True,
    )
