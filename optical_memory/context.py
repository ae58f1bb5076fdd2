"""What the model sees: pages at their tiers, the recent turns verbatim, and the token report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optical_memory.consumers import BaseConsumer
from optical_memory.imaging import encode_png, png_data_url
from optical_memory.types import PageView, Role, TokenReport, Turn

PAGES_PREAMBLE = (
    "Earlier turns of this conversation, rendered as pages (oldest first). Each page prints its id ('page N'); "
    "call recall_page with that number for a page's exact text."
)


@dataclass(frozen=True)
class Context:
    """An optical context: ``pages`` (oldest first, forgotten ones included with ``level=None``), ``recent`` (turns
    not yet sealed onto a page, verbatim; the first may be the tail of a turn whose head is on the last page) and
    ``report`` (exact token accounting for ``consumer``)."""

    pages: list[PageView]
    recent: list[Turn]
    report: TokenReport
    consumer: BaseConsumer

    @property
    def shown_pages(self) -> list[PageView]:
        """Pages that are sent (as images or, fail-closed, as text)."""
        return [view for view in self.pages if not view.forgotten]

    def to_openai(self, *, system: str | None = None) -> list[dict[str, Any]]:
        """OpenAI chat-completions messages: optional system prompt, one user message holding the pages as
        ``image_url`` parts (data URLs; ``detail`` from the tier), then the recent turns as ordinary messages."""
        messages: list[dict[str, Any]] = []
        if system is not None:
            messages.append({"role": "system", "content": system})
        parts: list[dict[str, Any]] = []
        for view in self.shown_pages:
            if view.as_text:
                parts.append({"type": "text", "text": view.page.text})
            else:
                assert view.image is not None
                image_url: dict[str, Any] = {"url": png_data_url(encode_png(view.image))}
                image_url["detail"] = (view.tier.detail if view.tier is not None else None) or "high"
                parts.append({"type": "image_url", "image_url": image_url})
        if parts:
            messages.append({"role": "user", "content": [{"type": "text", "text": PAGES_PREAMBLE}, *parts]})
        messages.extend(openai_message(turn) for turn in self.recent)
        return messages


def openai_message(turn: Turn) -> dict[str, Any]:
    """One turn as an OpenAI chat message, keeping tool-call plumbing stored in the turn's metadata."""
    message: dict[str, Any] = {"role": turn.role.value, "content": turn.content}
    if turn.name:
        message["name"] = turn.name
    if turn.role is Role.TOOL and "tool_call_id" in turn.metadata:
        message["tool_call_id"] = turn.metadata["tool_call_id"]
    if turn.role is Role.ASSISTANT and turn.metadata.get("tool_calls"):
        message["tool_calls"] = turn.metadata["tool_calls"]
    return message
