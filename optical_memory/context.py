"""What the model sees: pages at their tiers, the recent turns verbatim, and the token report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optical_memory.core.consumers import BaseConsumer
from optical_memory.core.imaging import encode_png
from optical_memory.core.types import PageView, TokenReport, Turn
from optical_memory.messages.dialect import PLAIN_PREAMBLE
from optical_memory.messages.dialects import OpenAIDialect


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
        ``image_url`` parts (data URLs; ``detail`` as the tier was priced), then the recent turns as ordinary messages
        (a turn whose head is on the last page starts with its "(continued from page N)" mark)."""
        dialect = OpenAIDialect()
        messages: list[dict[str, Any]] = [] if system is None else [{"role": "system", "content": system}]
        parts: list[dict[str, Any]] = []
        for view in self.shown_pages:
            if view.as_text or view.tier is None or view.image is None:
                parts.append(dialect.text_block(view.page.text))
            else:
                parts.append(dialect.page_block(encode_png(view.image), view.tier))
        if parts:
            messages.append(dialect.pages_message([dialect.text_block(PLAIN_PREAMBLE), *parts]))
        for turn in self.recent:
            if turn.metadata.get("continued"):
                messages.append(dialect.continued(turn, turn.content, self.page_of(turn.index)))
            else:
                messages.append(dialect.restore(turn))
        return messages

    def page_of(self, turn_index: int) -> str:
        """The label of the last page that shows part of turn ``turn_index``."""
        label = next((view.page.label for view in reversed(self.pages) if turn_index in view.page.turn_indices), None)
        if label is None:
            raise ValueError(f"turn {turn_index} is on no page of this context")
        return label
