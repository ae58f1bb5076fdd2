"""LangChain messages as turns and back: the LangChain dialect of ``optical_memory.messages.dialect``.

A stored turn keeps its message verbatim (``message_to_dict``), so ids, names, tool calls, usage metadata and image
blocks come back unchanged. Pages go out as LangChain's standard image blocks
(``{"type": "image", "base64": …, "mime_type": "image/png"}``), except at OpenAI's low-detail tier: standard blocks
carry no ``detail``, so those pages go as OpenAI ``image_url`` blocks with ``detail: "low"`` — the price the memory
charged for them. A Gemini 3 page carries its tier's ``media_resolution`` level on the block, the key
langchain-google-genai turns into the part's per-part level.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)

from optical_memory.core.consumers import BaseConsumer
from optical_memory.core.geometry import Tier
from optical_memory.core.imaging import png_base64, png_data_url
from optical_memory.core.types import Role, Turn
from optical_memory.langchain.tokens import count_tokens
from optical_memory.messages.content_blocks import (
    ToolUsePart,
    iter_images,
    page_text,
    parse_content,
)
from optical_memory.messages.dialect import (
    NO_TEXT,
    Dialect,
    TurnDraft,
    continued_text,
    tool_exchange_metadata,
)

PAGES_MESSAGE_ID = "optical-memory-pages"

_ROLES = {"human": Role.USER, "ai": Role.ASSISTANT, "tool": Role.TOOL, "system": Role.SYSTEM}


def message_identity(message: BaseMessage, serialized: dict[str, Any] | None = None) -> str:
    """The message's id, or (for a message without one) a hash of its content, so it is stored only once."""
    if message.id:
        return message.id
    data = message_to_dict(message) if serialized is None else serialized
    return "sha256:" + hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _json_message(message: BaseMessage, where: str) -> dict[str, Any]:
    """``message_to_dict`` checked to survive the store's JSON round trip unchanged.

    A tool's ``artifact`` never reaches the model; one that is not JSON is left out rather than refusing the message.
    """
    serialized = message_to_dict(message)
    try:
        return json.loads(json.dumps(serialized, ensure_ascii=False))
    except (TypeError, ValueError) as error:
        if isinstance(message, ToolMessage) and message.artifact is not None:
            return _json_message(message.model_copy(update={"artifact": None}), where)
        raise TypeError(f"{where} must hold only JSON values to be stored: {error}") from None


def _plain_message(turn: Turn) -> BaseMessage:
    name = turn.name
    if turn.role is Role.SYSTEM:
        return SystemMessage(turn.content, name=name)
    if turn.role is Role.TOOL and turn.metadata.get("tool_call_id"):
        return ToolMessage(turn.content, tool_call_id=str(turn.metadata["tool_call_id"]), name=name)
    if turn.role is Role.ASSISTANT:
        calls = []
        for call in turn.metadata.get("tool_calls") or []:
            function = call.get("function", {}) if isinstance(call, Mapping) else {}
            try:
                args = json.loads(function.get("arguments") or "{}")
            except (TypeError, ValueError):
                continue
            if isinstance(function.get("name"), str) and isinstance(args, dict):
                calls.append({"id": call.get("id"), "name": function["name"], "args": args})
        return AIMessage(turn.content, name=name, tool_calls=calls)
    return HumanMessage(turn.content, name=name)


class LangChainDialect(Dialect):
    """``BaseMessage`` in and out; costs counted by ``optical_memory.langchain.count_tokens``."""

    format = "langchain"

    def to_turn(self, message: Any, *, where: str = "message") -> TurnDraft:
        if not isinstance(message, BaseMessage):
            raise TypeError(f"{where} must be a LangChain message (BaseMessage), got {type(message).__name__}")
        role = _ROLES.get(message.type)
        if role is None and message.type == "chat":
            role = Role.parse(getattr(message, "role", None), field_name=f"{where}.role")
        if role is None:
            raise ValueError(f"{where}: {type(message).__name__} ({message.type!r}) cannot be stored; use human, ai, tool or system messages")
        parts = parse_content(message.content, where=f"{where}.content")
        pieces = [page_text(parts)]
        if isinstance(message, AIMessage) and not any(isinstance(part, ToolUsePart) for part in parts):
            for call in message.tool_calls:
                pieces.append(f"[calls {call['name']}({json.dumps(call['args'], sort_keys=True, ensure_ascii=False)})]")
        serialized = _json_message(message, where)
        metadata = {"format": self.format, "message": serialized, "identity": message_identity(message, serialized)}
        calls = message.tool_calls if isinstance(message, AIMessage) else []
        metadata.update(
            tool_exchange_metadata(
                [(c["id"], c["name"], json.dumps(c["args"], sort_keys=True, ensure_ascii=False)) for c in calls],
                message.tool_call_id if isinstance(message, ToolMessage) else None,
            )
        )
        name = message.name if isinstance(message.name, str) and message.name.strip() else None
        return TurnDraft(role, "\n".join(piece for piece in pieces if piece) or NO_TEXT, name, metadata)

    def restore(self, turn: Turn) -> BaseMessage:
        """The stored message verbatim; a turn added without one (e.g. by ``OpticalMemory.add``) as a plain message
        of its role, with the tool plumbing its metadata names."""
        stored = turn.metadata.get("message")
        if turn.metadata.get("format") == self.format and isinstance(stored, Mapping):
            return messages_from_dict([stored])[0]
        return _plain_message(turn)

    def continued(self, turn: Turn, tail: str, page_label: str) -> BaseMessage:
        text = continued_text(tail, page_label)
        images = self.image_blocks(turn)
        content: Any = [self.text_block(text), *images] if images else text
        if turn.role is Role.TOOL:
            # Its call is on a page: sent as a tool message it would have no call to answer.
            return HumanMessage(content=content, id=self.restore(turn).id)
        return self.restore(turn).model_copy(update={"content": content})

    def image_blocks(self, turn: Turn) -> list[Any]:
        if turn.metadata.get("format") != self.format:
            return []
        content = turn.metadata["message"]["data"].get("content")
        return [dict(image.block) for image in iter_images(parse_content(content))]

    def text_block(self, text: str) -> dict[str, Any]:
        return {"type": "text", "text": text}

    def page_block(self, png: bytes, tier: Tier) -> dict[str, Any]:
        if tier.detail == "low":
            return {"type": "image_url", "image_url": {"url": png_data_url(png), "detail": "low"}}
        block: dict[str, Any] = {"type": "image", "base64": png_base64(png), "mime_type": "image/png"}
        if tier.media_resolution is not None:
            # langchain-google-genai sends this key as the part's media_resolution on Gemini 3, which sets its price.
            block["media_resolution"] = tier.media_resolution
        return block

    def pages_message(self, blocks: Sequence[Any]) -> HumanMessage:
        return HumanMessage(content=list(blocks), id=PAGES_MESSAGE_ID)

    def cost(self, messages: Sequence[Any], consumer: BaseConsumer) -> int:
        return count_tokens(messages, consumer=consumer)


LANGCHAIN = LangChainDialect()
