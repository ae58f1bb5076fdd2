"""Token counting for LangChain messages that prices images the way the model's provider does.

LangChain's ``count_tokens_approximately`` charges every image a flat 85 tokens. A page or a photo can cost ten or
twenty times that (and far less at OpenAI's low detail), so a trimmer or summariser counting that way misjudges any
conversation with pictures. ``count_tokens`` decodes each inline image's size and applies the consumer's rule.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages
from langchain_core.messages.utils import MessageLikeRepresentation
from langchain_core.utils.function_calling import convert_to_openai_tool

from optical_memory.core.consumers import BaseConsumer, get_consumer
from optical_memory.messages.content_blocks import (
    ToolUsePart,
    parse_content,
    parts_tokens,
)
from optical_memory.messages.dialect import TOKENS_PER_MESSAGE

DEFAULT_CONSUMER = "openai:gpt-4o"


def message_tokens(message: BaseMessage, consumer: BaseConsumer, *, where: str = "message") -> int:
    """Tokens of one message: its content blocks, its tool calls, and the per-message framing."""
    parts = parse_content(message.content, where=f"{where}.content")
    total = TOKENS_PER_MESSAGE + parts_tokens(parts, consumer)
    if isinstance(message, AIMessage) and not any(isinstance(part, ToolUsePart) for part in parts):
        for call in message.tool_calls:
            total += consumer.text_tokens(call["name"])
            total += consumer.text_tokens(json.dumps(call["args"], sort_keys=True, ensure_ascii=False))
    return total


def count_tokens(
    messages: Iterable[MessageLikeRepresentation], *, consumer: str | BaseConsumer = DEFAULT_CONSUMER
) -> int:
    """Tokens ``consumer`` charges for ``messages``: text with the consumer's tokenizer (``o200k_base`` for
    gpt-4o-class models; a stated proxy where the provider publishes none), inline images by the consumer's own rule
    (size read from the base64 data; OpenAI's ``detail`` respected), tool calls as their JSON, plus 3 framing tokens
    per message.

    Usable as ``token_counter=`` in ``trim_messages`` and in ``SummarizationMiddleware`` (use
    ``functools.partial(count_tokens, consumer="anthropic")`` for another provider). Accepts anything LangChain
    accepts as messages (``BaseMessage``, OpenAI-style dicts, ``(role, text)`` tuples, strings). Raises ``TypeError``
    for objects that are not messages and ``ValueError`` for content it cannot price (images given by URL or file
    id, audio, video, files).
    """
    consumer = get_consumer(consumer)
    if isinstance(messages, (BaseMessage, str, bytes, dict)) or not isinstance(messages, Iterable):
        raise TypeError(f"messages must be a list of messages, got {type(messages).__name__}")
    total = 0
    for i, item in enumerate(messages):
        if isinstance(item, BaseMessage):
            message = item
        else:
            try:
                [message] = convert_to_messages([item])
            except NotImplementedError:
                raise TypeError(f"messages[{i}] is not a message: {type(item).__name__}") from None
            except ValueError as error:
                raise ValueError(f"messages[{i}] is not a valid message: {str(error).splitlines()[0]}") from None
        total += message_tokens(message, consumer, where=f"messages[{i}]")
    return total


def tool_schema(tool: object, *, where: str = "tool") -> dict[str, Any]:
    """The JSON a provider is sent for ``tool``: a provider tool given as a dict as is, anything else (a
    ``BaseTool``, a function, a pydantic model) as ``convert_to_openai_tool`` writes it."""
    if isinstance(tool, dict):
        return tool
    try:
        return convert_to_openai_tool(tool)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise TypeError(f"{where} is not a tool LangChain can describe: {error}") from None


def count_tool_tokens(tools: Iterable[object], *, consumer: str | BaseConsumer = DEFAULT_CONSUMER) -> int:
    """Tokens the tool definitions bound to a model call cost: each tool's JSON schema (``tool_schema``, written
    with ``json.dumps``) counted as text with the consumer's tokenizer. Providers do not document how they frame
    tool definitions, so this counts what is sent, not a provider's private framing."""
    consumer = get_consumer(consumer)
    if isinstance(tools, (str, bytes, dict)) or not isinstance(tools, Iterable):
        raise TypeError(f"tools must be a list of tools, got {type(tools).__name__}")
    total = 0
    for i, tool in enumerate(tools):
        total += consumer.text_tokens(json.dumps(tool_schema(tool, where=f"tools[{i}]"), ensure_ascii=False))
    return total
