"""Remembering what matters now: the pages that hold a query's best hits come first, at a level that reads.

The memory searches its full-text index for the query (one search) and hands the pages of the best hits here as
cues, best score first. ``QueryCue`` wraps any forgetting policy:

1. each cued page, best score first, takes its legible view (the cheapest that reads, see ``QueryCue``) if that
   fits what the budget has left; a cue that does not fit is no cue and competes as an ordinary page;
2. the ``sharpest`` best-scored cues then take, best first, their most readable view (the highest expected recall;
   a view that goes as text reads in full) that what is left, plus what their legible view cost, pays for;
3. the other pages share what is left under ``policy``, which sees them alone, in order, so they stay monotone
   (older never sharper) among themselves;
4. budget the policy leaves unused sharpens the cued pages, best score first, up to the level they would have had
   without a budget, so that a cue never leaves a page blurrier than its age alone would when there is room, and
   then raises them, best score first, to their most readable view where that reads better and what is left pays.

A cued page is thus the last to be dropped: no uncued page takes budget that a better-scored cue needed, and a cue
is refused only where its own view no longer fits. Only the best cues are raised before the other pages share the
budget because a cue's last few points of expected recall cost many tokens (the text of a page is several times its
image), tokens that show many uncued pages, while the best hit is the likeliest to hold what the query asks.
Everything is priced with ``view_cost`` through the caller's reading gate, the cost the memory sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from optical_memory.core.types import Consumer, Page
from optical_memory.policies.base import ForgettingPolicy, Levels, view_cost
from optical_memory.policies.reading import (
    DEFAULT_MIN_RECALL,
    ReadingGate,
    ReadingModel,
    ViewChoice,
    reading_model,
    view_choices,
)

# How many of the best cues are raised to their most readable view before the other pages share the budget. Chosen
# on the tune split of benchmarks/memory_qa.py (1, 2, 3 or every cue): every cue starves the uncued pages (fewer
# facts available at 4,000 tokens for both consumers), 3 did so at 4,000 tokens for DeepSeek-OCR and 8,000 for
# GPT-4o, 2 kept as many facts available as 1 or more at every budget but one (8,000 for DeepSeek-OCR, by 0.1 pt).
SHARPEST_CUES = 2


@dataclass(frozen=True)
class QueryCue(ForgettingPolicy):
    """``policy`` for every page but the cued ones, which are first in line for the budget at a legible level.

    ``cues`` are ``(page index, score)`` pairs, best first (``Page.index``; indices of pages not passed to ``choose``
    are ignored). A cued page's legible view is its cheapest one (so the bluest level) that the consumer's reading
    model expects to be read back at ``min_recall`` or better, or, where no level reads that well, its most legible
    one. A view that goes as text reads in full; an image reads as the gate's reading model predicts (``model``,
    default the consumer's ``reading_model``, when ``choose`` gets no gate), by pixel legibility where the
    consumer's capacity was never measured. ``min_recall`` defaults to the gate's floor (or ``DEFAULT_MIN_RECALL``
    without a gate). Without a budget a cued page keeps the policy's level where that is
    sharper. ``ceiling``: the levels ``policy`` gives the very pages ``choose`` is passed, without a budget, where
    the caller has them already (the memory does), so they are not chosen twice.
    """

    policy: ForgettingPolicy
    cues: tuple[tuple[int, float], ...]
    model: ReadingModel | None = None
    min_recall: float | None = None
    ceiling: tuple[int | None, ...] | None = None
    sharpest: int = SHARPEST_CUES

    def __post_init__(self) -> None:
        if not isinstance(self.policy, ForgettingPolicy):
            raise TypeError(f"policy must be a ForgettingPolicy, got {type(self.policy).__name__}")
        for cue in self.cues:
            if (not isinstance(cue, tuple) or len(cue) != 2 or isinstance(cue[0], bool)
                    or not isinstance(cue[0], int) or not isinstance(cue[1], (int, float))):
                raise TypeError(f"cues must be (page index, score) pairs, got {cue!r}")
        value = self.min_recall
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0.0 <= value <= 1.0):
            raise ValueError(f"min_recall must be a number from 0 to 1, got {value!r}")
        if isinstance(self.sharpest, bool) or not isinstance(self.sharpest, int) or self.sharpest < 0:
            raise ValueError(f"sharpest must be a non-negative integer, got {self.sharpest!r}")
        if self.model is not None and not isinstance(self.model, ReadingModel):
            raise TypeError(f"model must be a ReadingModel, got {type(self.model).__name__}")

    def cued_positions(self, pages: Sequence[Page]) -> list[int]:
        """Positions in ``pages`` of the cued pages, best score first (a page cued twice counts once)."""
        position_of = {page.index: position for position, page in enumerate(pages)}
        return list(dict.fromkeys(position_of[index] for index, _ in self.cues if index in position_of))

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
        cued = self.cued_positions(pages)
        # What every page gets without a budget: the uncued level a cue may sharpen back to (step 4).
        ceiling = self.ceiling
        if ceiling is None:
            ceiling = tuple(self.policy.choose(pages, consumer, now=now, turn_count=turn_count, gate=gate))
        elif len(ceiling) != len(pages):
            raise ValueError(f"ceiling has {len(ceiling)} levels for {len(pages)} pages")
        if budget is None:
            levels = list(ceiling)
            for position in cued:
                legible, level = self.legible_level(pages[position], consumer, gate), ceiling[position]
                levels[position] = legible if level is None else min(level, legible)
            return levels
        if budget < 0:
            raise ValueError(f"budget must be non-negative, got {budget}")
        chosen: dict[int, int] = {}
        left = budget
        for position in cued:
            level = self.legible_level(pages[position], consumer, gate)
            cost = view_cost(consumer, pages[position], level, gate)
            if cost <= left:
                chosen[position] = level
                left -= cost
        for position in list(chosen)[:self.sharpest]:
            chosen[position], left = self._raised(pages[position], consumer, gate, chosen[position], left)
        rest = [position for position in range(len(pages)) if position not in chosen]
        rest_levels = self.policy.choose(
            [pages[position] for position in rest], consumer, now=now, turn_count=turn_count, budget=left, gate=gate
        )
        levels: Levels = [None] * len(pages)
        for position, level in [*zip(rest, rest_levels), *chosen.items()]:
            levels[position] = level
        left -= sum(view_cost(consumer, pages[position], levels[position], gate) for position in rest)
        for position, level in chosen.items():
            page = pages[position]
            sharpened = self._sharpened(page, consumer, gate, level, ceiling[position], left)
            left -= view_cost(consumer, page, sharpened, gate) - view_cost(consumer, page, level, gate)
            levels[position], left = self._raised(page, consumer, gate, sharpened, left)
        return levels

    def legible_level(self, page: Page, consumer: Consumer, gate: ReadingGate | None) -> int:
        """The level of the cheapest view of ``page`` that reads at the floor (ties: the sharper one), or of its most
        legible view (ties: the cheaper one) where none does."""
        floor = self.min_recall if self.min_recall is not None else (
            gate.min_recall if gate is not None else DEFAULT_MIN_RECALL)
        views = [(choice.level, choice.tokens, self._reads(page, consumer, choice))
                 for choice in view_choices(consumer, page, gate)]
        legible = [view for view in views if view[2] >= floor]
        if legible:
            return min(legible, key=lambda view: (view[1], view[0]))[0]
        return max(views, key=lambda view: (view[2], -view[1]))[0]

    def readable_level(self, page: Page, consumer: Consumer, gate: ReadingGate | None, allowance: int) -> int | None:
        """The level of the view of ``page`` expected to read back the most of its text (as text: all of it) among
        those costing at most ``allowance`` tokens (ties: the cheaper, then the sharper); ``None`` where none fits."""
        views = [(self._reads(page, consumer, choice), -choice.tokens, -choice.level)
                 for choice in view_choices(consumer, page, gate) if choice.tokens <= allowance]
        return -max(views)[2] if views else None

    def _raised(
        self, page: Page, consumer: Consumer, gate: ReadingGate | None, level: int, left: int
    ) -> tuple[int, int]:
        """``level`` moved to ``page``'s most readable view where that reads better and ``left`` tokens pay the
        difference; with what is then left."""
        choices = view_choices(consumer, page, gate)
        cost = choices[level].tokens
        readable = self.readable_level(page, consumer, gate, left + cost)
        if readable is None or (self._reads(page, consumer, choices[readable])
                                <= self._reads(page, consumer, choices[level])):
            return level, left
        return readable, left + cost - choices[readable].tokens

    def _reads(self, page: Page, consumer: Consumer, choice: ViewChoice) -> float:
        """The share of ``page``'s text ``choice`` is expected to get across: all of it as text, else the reading's."""
        if choice.as_text:
            return 1.0
        reading = choice.reading
        if reading is None:  # no gate: the fail-closed rule alone priced it, so predict the image here
            reading = (self.model or reading_model(consumer)).predict(page, consumer, choice.level)
        return reading.value

    @staticmethod
    def _sharpened(
        page: Page, consumer: Consumer, gate: ReadingGate | None, level: int, ceiling: int | None, left: int
    ) -> int:
        """``level`` raised toward ``ceiling`` (the page's level without a budget) as far as ``left`` tokens pay."""
        if ceiling is None or ceiling >= level:
            return level
        cost = view_cost(consumer, page, level, gate)
        for sharper in range(ceiling, level):
            if view_cost(consumer, page, sharper, gate) - cost <= left:
                return sharper
        return level
