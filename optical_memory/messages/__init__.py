"""Chat messages as data: the ``Dialect`` interface, the OpenAI and Anthropic dialects and the content blocks they
share (LangChain's dialect lives in ``optical_memory.langchain``). Pure encoding, parsing and pricing: this layer
sits below the context and the memory; fitting a context into a budget as messages is ``optical_memory.prompt``'s
work, and ``compress_messages`` is in ``optical_memory.compress``."""
