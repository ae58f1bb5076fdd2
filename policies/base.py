"""The forgetting-policy interface: pages (oldest first) → a fidelity level per page.

A level indexes the consumer's tier ladder (0 = sharpest); ``None`` means forgotten. Policies price through the
consumer and never render or run a model, so they stay cheap enough to run on every ``context`` call. A caller that
gates views by expected recall (the memory) passes its ``ReadingGate``, so that a policy prices a page that goes as
text below the floor at its text cost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from optical_memory.core.types import Consumer, Page
from optical_memory.policies.reading import ReadingGate, view_choices

Levels = list[int | None]


def view_cost(consumer: Consumer, page: Page, level: int | None, gate: ReadingGate | None = None) -> int:
    """What showing ``page`` at ``level`` costs: the image, or its text when that is cheaper or when the page could
    not draw all of its text (both fail-closed, as the memory sends them), or when ``gate`` expects the image to be
    read back below its floor."""
    if level is None:
        return 0
    return view_choices(consumer, page, gate)[level].tokens


def last_level(consumer: Consumer) -> int:
    return len(consumer.tiers) - 1


def base_levels(
    base: ForgettingPolicy | None,
    pages: Sequence[Page],
    consumer: Consumer,
    *,
    now: float,
    turn_count: int,
    budget: int | None,
    gate: ReadingGate | None = None,
) -> Levels:
    """Where a budget policy starts: what ``base`` chooses, or every page at the sharpest tier without a base."""
    if base is None:
        return [0] * len(pages)
    return base.choose(pages, consumer, now=now, turn_count=turn_count, budget=budget, gate=gate)


def is_monotone(levels: Sequence[int | None]) -> bool:
    """Older pages (earlier in the list) are never sharper than newer ones; forgotten counts as blurriest."""
    rank = [float("inf") if level is None else level for level in levels]
    return all(older >= newer for older, newer in zip(rank, rank[1:]))


class ForgettingPolicy(ABC):
    """Chooses how sharply each sealed page is shown."""

    @abstractmethod
    def choose(
        self,
        pages: Sequence[Page],
        consumer: Consumer,
        *,
        now: float,
        turn_count: int,
        budget: int | None = None,
        gate: ReadingGate | None = None,
    ) -> Levels:
        """Level per page, oldest first; monotone with age.

        ``turn_count`` is the number of turns in the session (a page's age in turns is measured from its newest turn);
        ``budget`` is the token allowance left for pages after the hot text, or ``None`` for no limit; ``gate``, when
        given, is how the caller will send each view (``view_cost`` prices through it).
        """
