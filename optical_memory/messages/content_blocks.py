"""Content blocks of chat messages, in every shape that reaches the memory: parsed, validated and priced.

Messages arrive as LangChain standard blocks (``{"type": "image", "base64": …, "mime_type": …}``), LangChain's older
``source_type`` blocks, OpenAI chat-completions parts (``image_url``) or Anthropic blocks (``{"type": "image",
"source": {…}}``, ``tool_use``, ``tool_result``). This module turns any of them into a few typed parts so that the
adapters can render a turn's text, keep its images as images, and price both with a consumer's own rule. Anything it
does not understand is refused with a ``ValueError`` naming the block, never silently dropped.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

from PIL import Image

from optical_memory.core.consumers import BaseConsumer, DeepSeekOCRConsumer
from optical_memory.core.geometry import Fit, Tier, square_mode

SUPPORTED_BLOCK_TYPES = (
    "text",
    "refusal",
    "reasoning",
    "thinking",
    "redacted_thinking",
    "image",
    "image_url",
    "tool_call",
    "tool_use",
    "tool_result",
    "server_tool_call",
    "server_tool_use",
    "server_tool_result",
)


@dataclass(frozen=True)
class TextPart:
    """Text the model reads. ``reasoning`` marks a model's own thinking, which is priced but never put on a page."""

    text: str
    reasoning: bool = False


@dataclass(frozen=True)
class ImagePart:
    """An inline image: its decoded bytes, pixel size, (OpenAI) ``detail`` and (Gemini 3) ``media_resolution`` level;
    ``block`` is the block as given."""

    data: bytes
    mime_type: str
    width: int
    height: int
    detail: str | None
    block: Mapping[str, Any]
    media_resolution: str | None = None


@dataclass(frozen=True)
class ToolUsePart:
    """A tool call written inside the content (Anthropic ``tool_use``, LangChain ``tool_call`` blocks)."""

    id: str | None
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolResultPart:
    """An Anthropic ``tool_result`` block: what a tool returned, itself made of parts."""

    tool_use_id: str
    parts: tuple["Part", ...]


Part = Union[TextPart, ImagePart, ToolUsePart, ToolResultPart]


def decode_base64(data: object, *, field_name: str) -> bytes:
    if not isinstance(data, str):
        raise TypeError(f"{field_name} must be a base64 string, got {type(data).__name__}")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{field_name} is not valid base64") from None


def _from_data_url(url: object, *, field_name: str) -> tuple[bytes, str]:
    if not isinstance(url, str):
        raise TypeError(f"{field_name} must be a string, got {type(url).__name__}")
    if not url.startswith("data:"):
        raise ValueError(
            f"{field_name}: an image given by URL ({url[:40]!r}…) cannot be priced or kept offline; send it inline as"
            " base64 (a data: URL or a base64 block)"
        )
    header, sep, payload = url[5:].partition(",")
    mime_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64":
        raise ValueError(f"{field_name} must be a base64 data URL (data:<mime>;base64,<data>)")
    return decode_base64(payload, field_name=field_name), mime_type or "application/octet-stream"


def image_size(data: bytes, *, field_name: str = "image") -> tuple[int, int]:
    """Pixel size read from the image header (the pixels are not decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{field_name} is not a readable image: {error}") from None


def _image_part(block: Mapping[str, Any], where: str) -> ImagePart:
    """The image an ``image``/``image_url`` block carries, whichever provider shape it is in."""
    detail = None
    if block["type"] == "image_url":
        spec = block.get("image_url")
        if isinstance(spec, Mapping):
            detail = spec.get("detail")
            spec = spec.get("url")
        data, mime_type = _from_data_url(spec, field_name=f"{where}.image_url.url")
    elif isinstance(block.get("source"), Mapping):
        source = block["source"]
        if source.get("type") != "base64":
            raise ValueError(
                f"{where}.source.type {source.get('type')!r}: only inline base64 images can be priced and kept"
            )
        data = decode_base64(source.get("data"), field_name=f"{where}.source.data")
        mime_type = str(source.get("media_type", "application/octet-stream"))
    elif "base64" in block or block.get("source_type") == "base64":
        payload = block["base64"] if "base64" in block else block.get("data")
        data = decode_base64(payload, field_name=f"{where}.base64")
        mime_type = str(block.get("mime_type", "application/octet-stream"))
    elif "url" in block:
        data, mime_type = _from_data_url(block["url"], field_name=f"{where}.url")
    elif "file_id" in block or block.get("source_type") == "id":
        raise ValueError(f"{where}: an image given by file id cannot be priced or kept offline; send it inline")
    else:
        raise ValueError(f"{where}: image block has no base64 data, data URL or source")
    if isinstance(block.get("extras"), Mapping) and detail is None:
        detail = block["extras"].get("detail")
    width, height = image_size(data, field_name=where)
    detail = detail if isinstance(detail, str) else None
    return ImagePart(data, mime_type, width, height, detail, block, _media_resolution(block, where))


def _media_resolution(block: Mapping[str, Any], where: str) -> str | None:
    """The Gemini 3 ``media_resolution`` level a block asks for (``"MEDIA_RESOLUTION_LOW"``), as LangChain's Gemini
    integration reads it: a level name, or ``{"level": name}`` as the REST part spells it."""
    level = block.get("media_resolution")
    if isinstance(level, Mapping):
        level = level.get("level")
    if level is None:
        return None
    if not isinstance(level, str) or not level.strip():
        raise ValueError(f"{where}.media_resolution must be a level name such as 'MEDIA_RESOLUTION_LOW', got {level!r}")
    level = level.strip().upper()
    return level if level.startswith("MEDIA_RESOLUTION_") else f"MEDIA_RESOLUTION_{level}"


def _arguments(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _optional_id(block: Mapping[str, Any]) -> str | None:
    value = block.get("id")
    return None if value is None else str(value)


def parse_block(block: object, *, where: str = "content[0]") -> Part:
    """One content block (a dict, or a bare string inside a content list) as a typed part."""
    if isinstance(block, str):
        return TextPart(block)
    if not isinstance(block, Mapping):
        raise TypeError(f"{where} must be a string or a content block dict, got {type(block).__name__}")
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise TypeError(f"{where}.text must be a string, got {type(text).__name__}")
        return TextPart(text)
    if kind == "refusal":
        # What an OpenAI model says when it declines: the words of the turn, shown on its page like any text.
        text = block.get("refusal")
        if not isinstance(text, str):
            raise TypeError(f"{where}.refusal must be a string, got {type(text).__name__}")
        return TextPart(text)
    if kind in ("reasoning", "thinking"):
        text = block.get(kind, "")
        return TextPart(text if isinstance(text, str) else "", reasoning=True)
    if kind == "redacted_thinking":
        # Encrypted reasoning that Anthropic needs back verbatim; its real size is unknown, so its payload is priced.
        data = block.get("data", "")
        return TextPart(data if isinstance(data, str) else "", reasoning=True)
    if kind in ("image", "image_url"):
        return _image_part(block, where)
    if kind == "tool_call":
        return ToolUsePart(_optional_id(block), str(block.get("name")), _arguments(block.get("args", {})))
    if kind == "tool_use":
        return ToolUsePart(_optional_id(block), str(block.get("name")), _arguments(block.get("input", {})))
    if kind in ("server_tool_call", "server_tool_use"):
        arguments = block.get("args", block.get("input", {}))
        return ToolUsePart(_optional_id(block), str(block.get("name")), _arguments(arguments))
    if kind == "server_tool_result":
        return TextPart(_arguments(block.get("output", "")))
    if kind == "tool_result":
        inner = block.get("content", "")
        return ToolResultPart(str(block.get("tool_use_id")), tuple(parse_content(inner, where=f"{where}.content")))
    raise ValueError(
        f"{where}: content block type {kind!r} is not supported (supported: {', '.join(SUPPORTED_BLOCK_TYPES)})"
    )


def parse_content(content: object, *, where: str = "content") -> list[Part]:
    """A message's content (a string, ``None`` or a list of blocks) as parts, in order."""
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    if not isinstance(content, Sequence) or isinstance(content, (bytes, bytearray)):
        raise TypeError(f"{where} must be a string or a list of content blocks, got {type(content).__name__}")
    return [parse_block(block, where=f"{where}[{i}]") for i, block in enumerate(content)]


def iter_images(parts: Sequence[Part]) -> list[ImagePart]:
    """Every image in ``parts``, including those inside tool results, in reading order."""
    images: list[ImagePart] = []
    for part in parts:
        if isinstance(part, ImagePart):
            images.append(part)
        elif isinstance(part, ToolResultPart):
            images.extend(iter_images(part.parts))
    return images


def page_text(parts: Sequence[Part], *, first_image: int = 1) -> str:
    """The text a page shows for ``parts``: text as is, ``[image N]`` where an image was, ``[calls f(args)]``.

    A model's reasoning is left off the page: it is kept verbatim but is not part of what was said.
    """
    pieces: list[str] = []
    number = first_image
    for part in parts:
        if isinstance(part, TextPart):
            if not part.reasoning and part.text:
                pieces.append(part.text)
        elif isinstance(part, ImagePart):
            pieces.append(f"[image {number}]")
            number += 1
        elif isinstance(part, ToolUsePart):
            pieces.append(f"[calls {part.name}({part.arguments})]")
        else:
            inner = page_text(part.parts, first_image=number)
            number += len(iter_images(part.parts))
            pieces.append(f"[tool result]\n{inner}" if inner else "[tool result]")
    return "\n".join(pieces)


def tier_as_sent(
    consumer: BaseConsumer, width: int, height: int, detail: str | None, media_resolution: str | None = None
) -> Tier | None:
    """The tier an image of this size is read at, for rules that depend on it.

    The DeepEncoder reads a square image at the mode of that side (a 1024-px square is BASE), anything else in
    GUNDAM; OpenAI's ``detail`` and Gemini 3's ``media_resolution`` travel with the image. Other hosts price by size
    alone.
    """
    if isinstance(consumer, DeepSeekOCRConsumer):
        mode = square_mode(width, height)
        return next((tier for tier in consumer.tiers if mode is not None and tier.mode is mode), None)
    if detail is not None or media_resolution is not None:
        name = "-".join(part for part in (detail, media_resolution) if part is not None)
        return Tier(f"as-sent-{name}", max(width, height), Fit.SCALE, detail=detail, media_resolution=media_resolution)
    return None


def image_tokens(image: ImagePart, consumer: BaseConsumer) -> int:
    """What ``consumer`` charges for ``image`` as sent (its pixel size, and ``detail`` or ``media_resolution`` where
    the rule uses it)."""
    tier = tier_as_sent(consumer, image.width, image.height, image.detail, image.media_resolution)
    return consumer.image_tokens(image.width, image.height, tier)


def parts_tokens(parts: Sequence[Part], consumer: BaseConsumer) -> int:
    """Tokens ``consumer`` charges for ``parts``: text with its tokenizer, images with its image rule."""
    total = 0
    for part in parts:
        if isinstance(part, TextPart):
            total += consumer.text_tokens(part.text) if part.text else 0
        elif isinstance(part, ImagePart):
            total += image_tokens(part, consumer)
        elif isinstance(part, ToolUsePart):
            total += consumer.text_tokens(part.name) + consumer.text_tokens(part.arguments)
        else:
            total += parts_tokens(part.parts, consumer)
    return total
