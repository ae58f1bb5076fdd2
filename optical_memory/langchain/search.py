"""The ``search_memory`` tool: verbatim passages of the whole conversation that match a query, with their page ids.

``recall_page`` needs an id the model has read on a page; a page blurred past reading, or forgotten, shows none.
``search_memory`` finds the passage by its words instead (the memory's full-text index, ``OpticalMemory.search``)
and returns it character for character, with the id of the page it is on, so the model can ``recall_page`` the
rest of that page.
"""

from __future__ import annotations

from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from optical_memory.core.validation import validate_int
from optical_memory.langchain.recall import PageSource, check_source, memory_of
from optical_memory.memory import OpticalMemory, SearchHit
from optical_memory.messages.dialect import passage_text

TOOL_NAME = "search_memory"
# Every call that carries the tool pays for its schema, so it says only what the model needs to use it.
TOOL_DESCRIPTION = (
    "Find earlier passages of this conversation by their words, even on pages too blurred to read or no longer "
    "shown: returns them word for word, each with its page id."
)
DEFAULT_PASSAGES = 5
MAX_PASSAGES = 20


class SearchMemoryInput(BaseModel):
    query: str = Field(description="Words to look for, e.g. 'gate code parents'.")
    k: int = Field(default=DEFAULT_PASSAGES, ge=1, le=MAX_PASSAGES, description="Most passages to return.")


def format_passages(query: str, hits: list[SearchHit]) -> str:
    """What the tool returns: a header, then each passage after its page and speaker (``passage_text``)."""
    if not hits:
        return f"No earlier passage of this conversation matches {query!r}."
    lines = [f"{len(hits)} passage{'s' if len(hits) > 1 else ''} matching {query!r}, best first"
             " ('recent' = still among the recent messages):"]
    for hit in hits:
        lines.append(f"\n{passage_text(hit)}")
    return "\n".join(lines)


def search_memory_text(
    source: OpticalMemory | PageSource, query: str, *, k: int = DEFAULT_PASSAGES, thread_id: str | None = None
) -> str:
    """The passages of a memory, a history or a middleware's thread (``thread_id`` required there) that best match
    ``query`` (any of its words; ``OpticalMemory.search``), verbatim, each after its page id, as the tool returns
    them."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    k = validate_int(k, field_name="k", minimum=1, maximum=MAX_PASSAGES)
    return format_passages(query, memory_of(source, thread_id).search(query, k, match="any"))


def search_memory(source: OpticalMemory | PageSource, *, name: str = TOOL_NAME) -> BaseTool:
    """A LangChain tool returning the verbatim passages that match a query. Bound to a memory or a history it
    searches that one; bound to the middleware, the thread of the run it is called in."""
    check_source(source)

    def search(query: str, k: int = DEFAULT_PASSAGES) -> str:
        return search_memory_text(source, query, k=k)

    def search_in_thread(query: str, runtime: ToolRuntime, k: int = DEFAULT_PASSAGES) -> str:
        thread_id = (runtime.config or {}).get("configurable", {}).get("thread_id")
        if thread_id is None:
            raise ToolException(f"{name} needs the agent to run with a thread_id in its config")
        return search_memory_text(source, query, k=k, thread_id=str(thread_id))

    threaded = isinstance(source, PageSource) and source.per_thread
    return StructuredTool.from_function(
        func=search_in_thread if threaded else search,
        name=name,
        description=TOOL_DESCRIPTION,
        args_schema=SearchMemoryInput,
        handle_tool_error=True,
    )
