"""The OpenAI chat-completions and Anthropic Messages dialects: plain dicts in, plain dicts out.

A turn added through a dialect keeps its message verbatim (``metadata["message"]``) and goes back out unchanged; a
turn added with ``OpticalMemory.add`` goes out as the message its role, name and tool plumbing describe.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Mapping, Sequence

from optical_memory.core.consumers import BaseConsumer
from optical_memory.core.geometry import Tier
from optical_memory.core.imaging import png_base64, png_data_url
from optical_memory.core.types import Role, Turn
from optical_memory.messages.content_blocks import (
    ToolResultPart,
    ToolUsePart,
    iter_images,
    page_text,
    parse_content,
    parts_tokens,
)
from optical_memory.messages.dialect import (
    NO_TEXT,
    TOKENS_PER_MESSAGE,
    Dialect,
    TurnDraft,
    continued_text,
    tool_exchange_metadata,
)


def _require_mapping(message: object, where: str) -> Mapping[str, Any]:
    if not isinstance(message, Mapping):
        raise TypeError(f"{where} must be a message dict with 'role' and 'content', got {type(message).__name__}")
    return message


def _json_copy(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A deep copy that is guaranteed to survive the store's JSON round trip unchanged."""
    try:
        return json.loads(json.dumps(dict(message), ensure_ascii=False))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{where} must hold only JSON values: {error}") from None


def _optional_name(message: Mapping[str, Any], where: str) -> str | None:
    name = message.get("name")
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError(f"{where}.name must be a string, got {type(name).__name__}")
    return name if name.strip() else None


def _refusal(message: Mapping[str, Any], where: str) -> str:
    """An OpenAI assistant message's ``refusal`` (the model declining, sent beside ``content``), or ``""``."""
    refusal = message.get("refusal")
    if refusal is not None and not isinstance(refusal, str):
        raise TypeError(f"{where}.refusal must be a string, got {type(refusal).__name__}")
    return refusal or ""


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


class _DictDialect(Dialect):
    """What OpenAI and Anthropic share: messages are plain dicts with ``role`` and ``content``."""

    def restore(self, turn: Turn) -> dict[str, Any]:
        if "message" not in turn.metadata:
            return self.described(turn)
        return copy.deepcopy(dict(turn.metadata["message"]))

    def described(self, turn: Turn) -> dict[str, Any]:
        """The message a turn added without a verbatim message stands for: its role, content and name."""
        message: dict[str, Any] = {"role": turn.role.value, "content": turn.content}
        if turn.name:
            message["name"] = turn.name
        return message

    def image_blocks(self, turn: Turn) -> list[Any]:
        if "message" not in turn.metadata:
            return []
        content = turn.metadata["message"].get("content")
        return [copy.deepcopy(dict(image.block)) for image in iter_images(parse_content(content))]

    def text_block(self, text: str) -> dict[str, Any]:
        return _text_block(text)

    def pages_message(self, blocks: Sequence[Any]) -> dict[str, Any]:
        return {"role": "user", "content": list(blocks)}

    def _extra_tokens(self, message: Mapping[str, Any], consumer: BaseConsumer) -> int:
        return 0

    def cost(self, messages: Sequence[Any], consumer: BaseConsumer) -> int:
        total = 0
        for i, message in enumerate(messages):
            message = _require_mapping(message, f"messages[{i}]")
            parts = parse_content(message.get("content"), where=f"messages[{i}].content")
            total += TOKENS_PER_MESSAGE + parts_tokens(parts, consumer) + self._extra_tokens(message, consumer)
        return total


class OpenAIDialect(_DictDialect):
    """OpenAI chat completions: ``image_url`` parts, ``tool_calls`` on assistant messages, ``role: tool`` results."""

    format = "openai"
    _roles = {"user": Role.USER, "assistant": Role.ASSISTANT, "tool": Role.TOOL, "system": Role.SYSTEM, "developer": Role.SYSTEM}

    def to_turn(self, message: Any, *, where: str = "message") -> TurnDraft:
        message = _require_mapping(message, where)
        role = self._roles.get(message.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise ValueError(f"{where}.role {message.get('role')!r} is not one of: {', '.join(self._roles)}")
        parts = parse_content(message.get("content"), where=f"{where}.content")
        pieces = [page_text(parts), _refusal(message, where)]
        tool_calls = message.get("tool_calls") or []
        if not isinstance(tool_calls, (list, tuple)):
            raise TypeError(f"{where}.tool_calls must be a list of tool calls, got {type(tool_calls).__name__}")
        calls = []
        for j, call in enumerate(tool_calls):
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
                raise ValueError(f"{where}.tool_calls[{j}] must have a function with a name and arguments")
            arguments = str(function.get("arguments", ""))
            calls.append((call.get("id"), function["name"], arguments))
            pieces.append(f"[calls {function['name']}({arguments})]")
        content = "\n".join(piece for piece in pieces if piece) or NO_TEXT
        answers = message.get("tool_call_id") if role is Role.TOOL else None
        metadata = {"format": self.format, "message": _json_copy(message, where)}
        metadata.update(tool_exchange_metadata(calls, None if answers is None else str(answers)))
        return TurnDraft(role, content, _optional_name(message, where), metadata)

    def described(self, turn: Turn) -> dict[str, Any]:
        message = super().described(turn)
        if turn.role is Role.TOOL and "tool_call_id" in turn.metadata:
            message["tool_call_id"] = turn.metadata["tool_call_id"]
        if turn.role is Role.ASSISTANT and turn.metadata.get("tool_calls"):
            message["tool_calls"] = copy.deepcopy(turn.metadata["tool_calls"])
        return message

    def continued(self, turn: Turn, tail: str, page_label: str) -> dict[str, Any]:
        message = self.restore(turn)
        text = continued_text(tail, page_label)
        images = self.image_blocks(turn)
        content: Any = [_text_block(text), *images] if images else text
        if turn.role is Role.TOOL:
            return {"role": "user", "content": content}
        message["content"] = content
        return message

    def page_block(self, png: bytes, tier: Tier) -> dict[str, Any]:
        image_url: dict[str, Any] = {"url": png_data_url(png)}
        if tier.detail is not None:
            image_url["detail"] = tier.detail
        return {"type": "image_url", "image_url": image_url}

    def _extra_tokens(self, message: Mapping[str, Any], consumer: BaseConsumer) -> int:
        refusal = message.get("refusal")
        total = consumer.text_tokens(refusal) if isinstance(refusal, str) and refusal else 0
        for call in message.get("tool_calls") or []:
            function = call.get("function", {}) if isinstance(call, Mapping) else {}
            total += consumer.text_tokens(str(function.get("name", ""))) + consumer.text_tokens(str(function.get("arguments", "")))
        return total


class AnthropicDialect(_DictDialect):
    """Anthropic messages: ``user``/``assistant`` only, ``tool_use`` and ``tool_result`` blocks, base64 ``source``."""

    format = "anthropic"

    def to_turn(self, message: Any, *, where: str = "message") -> TurnDraft:
        message = _require_mapping(message, where)
        role_name = message.get("role")
        if role_name not in ("user", "assistant"):
            hint = " (pass the system prompt as system=…)" if role_name == "system" else ""
            raise ValueError(f"{where}.role {role_name!r} must be 'user' or 'assistant'{hint}")
        parts = parse_content(message.get("content"), where=f"{where}.content")
        role = Role.USER if role_name == "user" else Role.ASSISTANT
        results = [part for part in parts if isinstance(part, ToolResultPart)]
        if role is Role.USER and results:
            role = Role.TOOL
        calls = [(part.id, part.name, part.arguments) for part in parts if isinstance(part, ToolUsePart)]
        metadata = {"format": self.format, "message": _json_copy(message, where)}
        metadata.update(tool_exchange_metadata(calls, results[0].tool_use_id if role is Role.TOOL else None))
        return TurnDraft(role, page_text(parts) or NO_TEXT, _optional_name(message, where), metadata)

    def continued(self, turn: Turn, tail: str, page_label: str) -> dict[str, Any]:
        message = self.restore(turn)
        text_block = _text_block(continued_text(tail, page_label))
        if turn.role is Role.TOOL:
            return {"role": "user", "content": [text_block, *self.image_blocks(turn)]}
        content = message.get("content")
        kept = [b for b in content if isinstance(b, Mapping) and b.get("type") in ("tool_use", "image")] if isinstance(content, list) else []
        message["content"] = [text_block, *kept]
        return message

    def page_block(self, png: bytes, tier: Tier) -> dict[str, Any]:
        return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png_base64(png)}}


_DIALECTS: dict[str, Dialect] = {"openai": OpenAIDialect(), "anthropic": AnthropicDialect()}


def get_dialect(format: object) -> Dialect:
    """The dialect named ``format`` (``"openai"`` or ``"anthropic"``)."""
    if format not in _DIALECTS:
        raise ValueError(f"format {format!r} is not one of: {', '.join(_DIALECTS)}")
    return _DIALECTS[format]  # type: ignore[index]


