"""Forgetting by age: the seed's ladder, in turns and in wall-clock time."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from typing import Sequence

import numpy as np

from optical_memory.core.types import Consumer, Page, pages_in_common
from optical_memory.policies.base import ForgettingPolicy, Levels, last_level
from optical_memory.policies.reading import ReadingGate

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
MONTH = 30 * DAY
YEAR = 365 * DAY

Steps = tuple[tuple[float, int], ...]
_FORGOTTEN = float("inf")  # the rank of a forgotten page: blurrier than every level


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


class _PageColumns:
    """Each page's newest turn index and timestamp as arrays, kept between calls and extended as a session grows.

    The memory passes every page of the session on every ``context`` call, and reading two attributes of every page
    in Python cost more than the rest of the schedule. Pages are immutable, so the leading pages a sequence shares
    with a kept one (``pages_in_common``) keep their columns and only the rest are read. A few sequences are kept
    (a cue's policy sees the session without its cued pages).
    """

    _KEPT = 4

    def __init__(self) -> None:
        # Newest first; replaced as a whole, so a thread reading it never sees half an update.
        self._entries: tuple[tuple[list[Page], np.ndarray, np.ndarray], ...] = ()

    def of(self, pages: Sequence[Page]) -> tuple[np.ndarray, np.ndarray]:
        """(newest turn index, timestamp) of every page of ``pages``, as float arrays."""
        shared, known, last_turns, stamps = 0, [], np.empty(0), np.empty(0)
        for entry in self._entries:
            common = pages_in_common(entry[0], pages)
            if common > shared or not known:
                shared, (known, last_turns, stamps) = common, entry
        if shared == len(known) == len(pages):
            return last_turns, stamps
        added = list(islice(pages, shared, None))
        last_turns = np.concatenate([last_turns[:shared], np.fromiter((page.turn_indices[-1] for page in added),
                                                                      dtype=float, count=len(added))])
        stamps = np.concatenate([stamps[:shared], np.fromiter((page.timestamp for page in added), dtype=float,
                                                              count=len(added))])
        # The entry this one extends is kept only where it holds pages this one does not.
        superseded = known if shared == len(known) else None
        entry = (known[:shared] + added, last_turns, stamps)
        self._entries = (entry, *(kept for kept in self._entries if kept[0] is not superseded))[: self._KEPT]
        return last_turns, stamps


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
    _columns: _PageColumns = field(default_factory=_PageColumns, init=False, repr=False, compare=False)

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
        ranks = self._ranks(pages, consumer, now=now, turn_count=turn_count)
        return [None if rank == _FORGOTTEN else int(rank) for rank in ranks.tolist()]

    def _ranks(self, pages: Sequence[Page], consumer: Consumer, *, now: float, turn_count: int) -> np.ndarray:
        """Each page's level by age as a number, ``_FORGOTTEN`` past the ladder's end; the blurrier ladder wins.

        Vectorised because the memory asks on every ``context`` call, for every page of the session.
        """
        ranks = np.zeros(len(pages))
        last_turns, stamps = self._columns.of(pages)
        if self.turn_steps is not None:
            ranks = np.maximum(ranks, self._column(turn_count - 1 - last_turns, self.turn_steps))
        if self.time_steps is not None:
            ranks = np.maximum(ranks, self._column(now - stamps, self.time_steps))
        return np.where(ranks == _FORGOTTEN, _FORGOTTEN, np.minimum(ranks, last_level(consumer)))

    def _column(self, ages: np.ndarray, steps: Steps) -> np.ndarray:
        """The level of every age on one ladder (``_FORGOTTEN`` past its end, unless ``forget`` is off)."""
        by_index = np.array([float(level) for _, level in steps] + [_FORGOTTEN if self.forget else steps[-1][1]])
        return by_index[np.searchsorted(_max_ages(steps), ages, side="left")]

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
        ranks = self._ranks(pages, consumer, now=now, turn_count=turn_count)
        # Timestamps supplied by a caller may go backwards; age must still never make an older page sharper: each
        # page is at least as blurry as every newer one.
        ranks = np.maximum.accumulate(ranks[::-1])[::-1]
        # So the forgotten pages are the oldest ones: a run of None, then the levels.
        forgotten = int(np.count_nonzero(ranks == _FORGOTTEN))
        return [None] * forgotten + ranks[forgotten:].astype(int).tolist()
