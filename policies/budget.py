"""Forgetting under a token budget: downgrade the oldest pages first, then drop the oldest, until it fits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from optical_memory.core.types import Consumer, Page
from optical_memory.policies.age import AgeSchedule
from optical_memory.policies.base import (
    ForgettingPolicy,
    Levels,
    base_levels,
    last_level,
    view_cost,
)
from optical_memory.policies.reading import ReadingGate


@dataclass(frozen=True)
class TokenBudget(ForgettingPolicy):
    """Start from ``base`` (age; ``None`` = every page at the sharpest tier) and blur oldest-first until it fits.

    The oldest page that can still be blurred goes down one tier at a time; once every page sits at the last tier,
    the oldest are dropped. Starting from a monotone base keeps the result monotone: older is never sharper. It only
    ever blurs: budget the age schedule leaves unused stays unused (``RecallAwareBudget`` spends it).
    """

    base: ForgettingPolicy | None = field(default_factory=AgeSchedule)

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
        levels = base_levels(self.base, pages, consumer, now=now, turn_count=turn_count, budget=budget, gate=gate)
        if budget is None:
            return levels
        if budget < 0:
            raise ValueError(f"budget must be non-negative, got {budget}")
        bottom = last_level(consumer)
        costs = [view_cost(consumer, page, level, gate) for page, level in zip(pages, levels)]
        total = sum(costs)
        for i, page in enumerate(pages):
            while total > budget and levels[i] is not None and levels[i] < bottom:
                levels[i] += 1
                new_cost = view_cost(consumer, page, levels[i], gate)
                total += new_cost - costs[i]
                costs[i] = new_cost
        for i in range(len(pages)):
            if total <= budget:
                break
            total -= costs[i]
            costs[i], levels[i] = 0, None
        return levels
