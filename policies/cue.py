"""Remembering what matters now: the pages that hold a query's best hits come first, at a level that reads.

The memory searches its full-text index for the query (one search) and hands the pages of the best hits here as
cues, best score first. ``QueryCue`` wraps any forgetting policy:

1. each cued page, best score first, takes its legible view (the cheapest that reads, see ``QueryCue``) if that
   fits what the budget has left; a cue that does not fit is no cue and competes as an ordinary page;
2. the other pages share what is left under ``policy``, which sees them alone, in order, so they stay monotone
   (older never sharper) among themselves;
3. budget the policy leaves unused sharpens the cued pages, best score first, up to the level they would have had
   without a budget, so that a cue never leaves a page blurrier than its age alone would when there is room.

A cued page is so the last to be dropped: no uncued page takes budget that a better-scored cue needed, and a cue is
refused only where its own view no longer fits. Everything is priced with ``view_cost``, the cost the memory sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from optical_memory.core.types import Consumer, Page
from optical_memory.policies.base import ForgettingPolicy, Levels, view_cost
from optical_memory.policies.recall_aware import RecallModel
from optical_memory.policies.recall_aware import _default_model as default_recall_model


@dataclass(frozen=True)
class QueryCue(ForgettingPolicy):
    """``policy`` for every page but the cued ones, which are first in line for the budget at a legible level.

    ``cues`` are ``(page index, score)`` pairs, best first (``Page.index``; indices of pages not passed to ``choose``
    are ignored). A cued page's legible view is its cheapest one that ``model`` (default: the packaged CPU-OCR
    calibration) expects to be read back at ``min_recall`` or better (a page that goes as text reads in full), or,
    where no level reads that well, its most legible one. Without a budget a cued page keeps the policy's level
    where that is sharper. ``ceiling``: the levels ``policy`` gives the very pages ``choose`` is passed, without a
    budget, where the caller has them already (the memory does), so they are not chosen twice.
    """

    policy: ForgettingPolicy
    cues: tuple[tuple[int, float], ...]
    model: RecallModel | None = None
    min_recall: float = 0.9
    ceiling: tuple[int | None, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.policy, ForgettingPolicy):
            raise TypeError(f"policy must be a ForgettingPolicy, got {type(self.policy).__name__}")
        for cue in self.cues:
            if (not isinstance(cue, tuple) or len(cue) != 2 or isinstance(cue[0], bool)
                    or not isinstance(cue[0], int) or not isinstance(cue[1], (int, float))):
                raise TypeError(f"cues must be (page index, score) pairs, got {cue!r}")
        if isinstance(self.min_recall, bool) or not isinstance(self.min_recall, (int, float)) or not (
            0.0 <= self.min_recall <= 1.0
        ):
            raise ValueError(f"min_recall must be a number from 0 to 1, got {self.min_recall!r}")

    def cued_positions(self, pages: Sequence[Page]) -> list[int]:
        """Positions in ``pages`` of the cued pages, best score first (a page cued twice counts once)."""
        position_of = {page.index: position for position, page in enumerate(pages)}
        return list(dict.fromkeys(position_of[index] for index, _ in self.cues if index in position_of))

    def choose(
        self, pages: Sequence[Page], consumer: Consumer, *, now: float, turn_count: int, budget: int | None = None
    ) -> Levels:
        cued = self.cued_positions(pages)
        # What every page gets without a budget: the uncued level a cue may sharpen back to (step 3).
        ceiling = self.ceiling
        if ceiling is None:
            ceiling = tuple(self.policy.choose(pages, consumer, now=now, turn_count=turn_count))
        elif len(ceiling) != len(pages):
            raise ValueError(f"ceiling has {len(ceiling)} levels for {len(pages)} pages")
        if budget is None:
            levels = list(ceiling)
            for position in cued:
                legible, level = self._legible_level(pages[position], consumer), ceiling[position]
                levels[position] = legible if level is None else min(level, legible)
            return levels
        if budget < 0:
            raise ValueError(f"budget must be non-negative, got {budget}")
        chosen: dict[int, int] = {}
        left = budget
        for position in cued:
            level = self._legible_level(pages[position], consumer)
            cost = view_cost(consumer, pages[position], level)
            if cost <= left:
                chosen[position] = level
                left -= cost
        rest = [position for position in range(len(pages)) if position not in chosen]
        rest_levels = self.policy.choose(
            [pages[position] for position in rest], consumer, now=now, turn_count=turn_count, budget=left
        )
        levels: Levels = [None] * len(pages)
        for position, level in [*zip(rest, rest_levels), *chosen.items()]:
            levels[position] = level
        sharpenable = [position for position, level in chosen.items()
                       if ceiling[position] is not None and ceiling[position] < level]  # type: ignore[operator]
        if sharpenable:  # what the policy left unused is only worth pricing when a cue can take it
            left -= sum(view_cost(consumer, pages[position], levels[position]) for position in rest)
        for position in sharpenable:
            level = chosen[position]
            levels[position] = self._sharpened(pages[position], consumer, level, ceiling[position], left)
            left -= view_cost(consumer, pages[position], levels[position]) - view_cost(consumer, pages[position], level)
        return levels

    def _legible_level(self, page: Page, consumer: Consumer) -> int:
        """The level of the cheapest view of ``page`` that reads at ``min_recall`` (ties: the sharper one), or of
        its most legible view (ties: the cheaper one) where none does."""
        model = self.model if self.model is not None else default_recall_model()
        views = []
        for level in range(len(consumer.tiers)):
            cost = view_cost(consumer, page, level)
            as_text = cost == consumer.text_tokens(page.text) and cost <= consumer.page_tokens(page, level)
            views.append((level, cost, 1.0 if as_text else model.expected_recall(page, consumer.tiers[level])))
        legible = [view for view in views if view[2] >= self.min_recall]
        if legible:
            return min(legible, key=lambda view: (view[1], view[0]))[0]
        return max(views, key=lambda view: (view[2], -view[1]))[0]

    @staticmethod
    def _sharpened(page: Page, consumer: Consumer, level: int, ceiling: int | None, left: int) -> int:
        """``level`` raised toward ``ceiling`` (the page's level without a budget) as far as ``left`` tokens pay."""
        if ceiling is None or ceiling >= level:
            return level
        cost = view_cost(consumer, page, level)
        for sharper in range(ceiling, level):
            if view_cost(consumer, page, sharper) - cost <= left:
                return sharper
        return level
