"""LangChain integration: a chat history, an agent middleware, recall and search tools, an image-aware token counter.

``OpticalChatMessageHistory`` (for ``RunnableWithMessageHistory`` and anything else that takes a
``BaseChatMessageHistory``), ``OpticalMemoryMiddleware`` (for ``langchain.agents.create_agent``), ``recall_page``
(a tool returning a page's exact text by the id printed on it), ``search_memory`` (a tool returning the verbatim
passages that match a query, with their page ids), ``count_tokens`` (for ``trim_messages`` and
``SummarizationMiddleware``, pricing images by the provider's rule) and ``count_tool_tokens`` (what the tool schemas
bound to a model call cost).
"""

from optical_memory.core.extras import require

for _module in ("langchain_core", "langchain"):
    require(_module, "langchain")

from optical_memory.langchain.history import OpticalChatMessageHistory
from optical_memory.langchain.middleware import OpticalMemoryMiddleware
from optical_memory.langchain.provider import detect_consumer
from optical_memory.langchain.recall import recall_page, recall_page_text
from optical_memory.langchain.search import search_memory, search_memory_text
from optical_memory.prompt import LATEST_USER_MESSAGE
from optical_memory.langchain.tokens import count_tokens, count_tool_tokens

__all__ = [
    "LATEST_USER_MESSAGE",
    "OpticalChatMessageHistory",
    "OpticalMemoryMiddleware",
    "count_tokens",
    "count_tool_tokens",
    "detect_consumer",
    "recall_page",
    "recall_page_text",
    "search_memory",
    "search_memory_text",
]
