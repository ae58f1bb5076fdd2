"""Forgetting by age: the seed's ladder, in turns and in wall-clock time."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from optical_memory.core.types import Consumer, Page
from optical_memory.policies.base import ForgettingPolicy, Levels, last_level
from optical_memory.policies.reading import ReadingGate

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
MONTH = 30 * DAY
YEAR = 365 * DAY

Steps = tuple[tuple[float, int], ...]


@lru_cache(maxsize=64)
def _max_ages(steps: Steps) -> tuple[float, ...]:
    return tuple(age for age, _ in steps)


def _validate_steps(steps: Steps, field_name: str) -> Steps:
    steps = tuple((float(max_age), int(level)) for max_age, level in steps)
    if not steps:
        raise ValueError(f"{field_name} must have at least one (max_age, level) step")
    ages = [age for age, _ in steps]
    levels = [level for _, level in steps]
    if ages != sorted(ages) or len(set(ages)) != len(ages):
        raise ValueError(f"{field_name} max ages must be strictly increasing, got {ages}")
    if levels != sorted(levels) or min(levels) < 0:
        raise ValueError(f"{field_name} levels must be non-negative and non-decreasing, got {levels}")
    return steps


@dataclass(frozen=True)
class AgeSchedule(ForgettingPolicy):
    """A page's level from its age: ``(max_age, level)`` steps in turns and in seconds; the blurrier one wins.

    Default = the seed's ladder: sharpest (LARGE) within a day / 24 turns, BASE within a week / 64 turns, SMALL
    within a month / 128 turns, TINY within a year / 1,024 turns, forgotten after that (``forget=False`` keeps such
    pages at the last level). Levels past a consumer's ladder are clamped to its last tier.
    """

    turn_steps: Steps | None = ((24, 0), (64, 1), (128, 2), (1024, 3))
    time_steps: Steps | None = ((DAY, 0), (WEEK, 1), (MONTH, 2), (YEAR, 3))
    forget: bool = True

    def __post_init__(self) -> None:
        if self.turn_steps is None and self.time_steps is None:
            raise ValueError("AgeSchedule needs turn_steps, time_steps or both")
        for name in ("turn_steps", "time_steps"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _validate_steps(getattr(self, name), name))

    def level(self, page: Page, consumer: Consumer, *, now: float, turn_count: int) -> int | None:
        """The level of one page at this moment."""
        return self._own_levels([page], consumer, now=now, turn_count=turn_count)[0]

    def _own_levels(self, pages: Sequence[Page], consumer: Consumer, *, now: float, turn_count: int) -> Levels:
        """Each page's level from its own age alone (``choose`` then makes the sequence monotone)."""
        columns = []
        if self.turn_steps is not None:
            columns.append(self._column((turn_count - 1 - page.turn_indices[-1] for page in pages), self.turn_steps))
        if self.time_steps is not None:
            columns.append(self._column((now - page.timestamp for page in pages), self.time_steps))
        blurriest = last_level(consumer)
        return [None if None in levels else min(max(levels), blurriest) for levels in zip(*columns)]  # type: ignore[type-var]

    def _column(self, ages: Iterable[float], steps: Steps) -> Levels:
        """The level of every age on one ladder (``None`` past its end, unless ``forget`` is off)."""
        max_ages = _max_ages(steps)
        by_index: list[int | None] = [level for _, level in steps]
        by_index.append(None if self.forget else steps[-1][1])
        return [by_index[bisect.bisect_left(max_ages, age)] for age in ages]

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
        """Levels by age alone (``budget`` and ``gate`` do not move them)."""
        levels = self._own_levels(pages, consumer, now=now, turn_count=turn_count)
        # Timestamps supplied by a caller may go backwards; age must still never make an older page sharper.
        for i in range(len(levels) - 2, -1, -1):
            newer, older = levels[i + 1], levels[i]
            if older is not None and (newer is None or newer > older):
                levels[i] = newer
        return levels
