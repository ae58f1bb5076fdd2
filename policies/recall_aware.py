"""Forgetting that spends a token budget on what the consumer can read: maximise expected recall under the budget.

``TokenBudget`` only ever blurs or drops, starting from the age schedule, so budget the schedule leaves unused stays
unused and a page that would read better one tier sharper never gets it. ``RecallAwareBudget`` instead chooses the
monotone assignment (older never sharper than newer) that fits the budget and recalls the most text in expectation:
Σ text_tokens(page) × expected recall(page at its level) under the consumer's reading model
(``optical_memory.policies.reading``), where a page that goes as text (cheaper than its image, or read back below
the gate's floor) recalls all of it and a forgotten page nothing.

A monotone assignment is a run of the newest pages at the sharpest tier, then a run at the next tier, and so on,
then the forgotten rest: it is fixed by one boundary per tier. The optimiser maximises the Lagrangian
Σ value − λ·Σ cost over those boundaries, exactly for each λ by a dynamic program over the tiers (vectorised over a
grid of λ, then refined where the budget binds), keeps the best assignment that fits, and then spends what is left
one page at a time, newest first, on the move that adds the most expected recall per token (or, once nothing adds
recall, on sharpening the newest pages). Only the newest pages whose cheapest views fit the budget together are
looked at, so its cost follows the pages a context can show, not the length of the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Sequence

import numpy as np

from optical_memory.core.types import Consumer, Page, pages_in_common
from optical_memory.core.validation import validate_budget
from optical_memory.policies.base import ForgettingPolicy, Levels, base_levels
from optical_memory.policies.reading import (
    ReadingGate,
    ReadingModel,
    _gate_key,
    reading_model,
    view_choices,
    view_prices,
)

# λ is expected recalled text tokens per token spent: a coarse grid over every ratio a page can have, then two
# finer grids between the last λ that overspends and the first that fits.
_LAMBDAS = np.concatenate([[0.0], np.logspace(-4, 3, 29)])
_REFINE_STEPS = 12
_REFINE_ROUNDS = 2


def view_value(consumer: Consumer, gate: ReadingGate, page: Page, level: int | None) -> float:
    """Expected recalled text tokens of ``page`` shown at ``level`` under ``gate`` (forgotten: none)."""
    if level is None:
        return 0.0
    return view_choices(consumer, page, gate)[level].value


def expected_recalled_tokens(
    pages: Sequence[Page], consumer: Consumer, levels: Sequence[int | None], gate: ReadingGate | None = None
) -> float:
    """Σ expected recalled text tokens of ``pages`` at ``levels`` (default: the consumer's reading model, no floor)."""
    if len(pages) != len(levels):
        raise ValueError(f"pages and levels must have the same length, got {len(pages)} and {len(levels)}")
    gate = gate if gate is not None else ReadingGate(reading_model(consumer), 0.0)
    return sum(view_value(consumer, gate, page, level) for page, level in zip(pages, levels))


# A kept price sequence is extended by at most this many pages; a sequence that differs earlier, and is no kept one
# with pages left out, is priced from its newest page back, as far as the budget reaches, and not kept.
_EXTEND_AT_MOST = 64

# A kept sequence's pages, their costs, values and cheapest views, and the row of each page by its id (filled when
# first needed: the sequence holds its pages, so no id in it can be another page's).
_Entry = tuple[list[Page], np.ndarray, np.ndarray, np.ndarray, dict[int, int]]


class _PagePrices:
    """Every page's tokens and expected recalled text tokens at every level (``view_prices``) as arrays, oldest
    first, kept between calls per consumer and gate and extended as a session grows.

    The memory passes every page on every ``context`` call and the budget is looked at from the newest page back:
    fetching each candidate's prices from the per-page cache cost more than the optimiser's arrays. Pages are
    immutable, so the pages a sequence shares with a kept one keep their rows and only the rest are priced: its
    leading pages (``pages_in_common``), or, for a kept sequence with some of its pages left out (a cue's policy
    sees the session without its cued pages), the leading pages found in it in order, by identity. A few
    sequences are kept per consumer and gate.
    """

    _KEPT = 4

    def __init__(self) -> None:
        # Newest first per key; replaced as a whole, so a thread reading it never sees half an update.
        self._entries: dict[tuple[Any, ...], tuple[_Entry, ...]] = {}

    def of(
        self, pages: Sequence[Page], consumer: Consumer, gate: ReadingGate
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(costs, values, cheapest) of ``pages``, one row per page, one column per level; ``cheapest[p][c]`` is
        page ``p``'s cheapest view at level ``c`` or blurrier. ``None`` when more than ``_EXTEND_AT_MOST`` pages
        follow what ``pages`` shares with every kept sequence: pricing them all would cost more than looking at the
        newest ones one by one."""
        key = _gate_key(consumer, gate)
        kept = self._entries.get(key, ())
        depth = len(consumer.tiers)
        shared, known = 0, None
        for entry in kept:
            common = pages_in_common(entry[0], pages)
            if known is None or common > shared:
                shared, known = common, entry
        if known is not None and shared == len(known[0]) == len(pages):
            return known[1], known[2], known[3]
        rows = None
        if known is not None and len(pages) - shared > _EXTEND_AT_MOST:
            rows = _rows_in(known, pages)
            if len(pages) - len(rows) > _EXTEND_AT_MOST:
                return None
        # Rows of the known sequence up to ``end`` are kept; the pages after those found are priced and follow them.
        found = shared if rows is None else len(rows)
        end = shared if rows is None else rows[-1] + 1
        added = list(islice(pages, found, None))
        priced = [view_prices(consumer, page, gate) for page in added]
        costs = np.array([row for row, _ in priced], dtype=np.int64).reshape(len(added), depth)
        values = np.array([worth for _, worth in priced], dtype=float).reshape(len(added), depth)
        cheapest = np.minimum.accumulate(costs[:, ::-1], axis=1)[:, ::-1]
        if known is not None:
            costs, values, cheapest = (np.concatenate([old[:end], new]) for old, new in
                                       ((known[1], costs), (known[2], values), (known[3], cheapest)))
        if added or known is None or end < len(known[0]):
            # The entry this one extends is kept only where it holds pages this one does not.
            superseded = known if known is not None and end == len(known[0]) else None
            entry = ((known[0][:end] if known is not None else []) + added, costs, values, cheapest, {})
            self._entries = {**self._entries,
                             key: (entry, *(old for old in kept if old is not superseded))[: self._KEPT]}
        if rows is None:
            return costs, values, cheapest
        index = np.concatenate([np.asarray(rows, dtype=np.intp), np.arange(end, end + len(added))])
        return costs[index], values[index], cheapest[index]


def _rows_in(known: _Entry, pages: Sequence[Page]) -> list[int]:
    """Rows in ``known`` of the leading pages of ``pages`` found there, in order, by identity (as many as are)."""
    sequence, row_of = known[0], known[4]
    if not row_of:
        row_of.update(zip(map(id, sequence), range(len(sequence))))
    rows = list(map(row_of.get, map(id, pages)))
    found = rows.index(None) if None in rows else len(rows)
    rows = rows[:found]
    if found > 1:
        steps = np.diff(np.asarray(rows))
        if (steps <= 0).any():
            rows = rows[:int(np.argmax(steps <= 0)) + 1]
    return rows


@dataclass(frozen=True)
class RecallAwareBudget(ForgettingPolicy):
    """Fit the budget while keeping the most expected recalled text; older pages are never sharper than newer.

    ``model`` is the reading model used when the caller passes no gate (default: the consumer's,
    ``reading_model(consumer)``); a caller that passes a ``gate`` (the memory does) has every view priced and
    valued through it, so the context it builds is the one chosen. ``base`` (e.g. an ``AgeSchedule``) caps each
    page's sharpness: never sharper than ``base`` says, never shown if ``base`` forgets it. Without a budget the
    levels are ``unbudgeted``'s (default ``base``'s, else every page at the sharpest tier).
    """

    model: ReadingModel | None = None
    base: ForgettingPolicy | None = None
    unbudgeted: ForgettingPolicy | None = None
    _prices: _PagePrices = field(default_factory=_PagePrices, init=False, repr=False, compare=False)

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
        if budget is None:
            without = self.unbudgeted if self.unbudgeted is not None else self.base
            return base_levels(without, pages, consumer, now=now, turn_count=turn_count, budget=None, gate=gate)
        budget = validate_budget(budget)
        caps = None
        if self.base is not None:
            caps = self.base.choose(pages, consumer, now=now, turn_count=turn_count, budget=budget, gate=gate)
        if gate is None:
            gate = ReadingGate(self.model if self.model is not None else reading_model(consumer), 0.0)
        count = len(pages)
        levels: Levels = [None] * count
        # Newest first: a page can be shown only if base shows it and every newer page, and it and every newer page
        # fit at their cheapest views.
        allowed = count if caps is None or None not in caps else caps[::-1].index(None)
        if not allowed:
            return levels
        newest = slice(count - 1, count - 1 - allowed if allowed < count else None, -1)
        floors = [0] * allowed if caps is None else caps[newest]
        prices = self._prices.of(pages, consumer, gate)
        if prices is None:
            costs, values = _newest_prices(pages[newest], floors, consumer, gate, budget)
        else:
            all_costs, all_values, all_cheapest = prices
            spent = np.cumsum(all_cheapest[newest][np.arange(allowed), floors])
            shown = int(np.searchsorted(spent, budget, side="right"))
            newest = slice(count - 1, count - 1 - shown if shown < count else None, -1)
            costs, values = all_costs[newest], all_values[newest]
        if not len(costs):
            return levels
        bounds = _optimise(costs, values, floors[:len(costs)], budget)
        position = 0
        for rank, bound in enumerate(bounds):
            while position < bound:
                levels[count - 1 - position] = rank
                position += 1
        return levels


def _newest_prices(
    newest: Sequence[Page], floors: Sequence[int], consumer: Consumer, gate: ReadingGate, budget: int
) -> tuple[np.ndarray, np.ndarray]:
    """Costs and values of the newest pages (``newest``, newest first, sharpest allowed levels ``floors``) that fit
    the budget together at their cheapest views, one row per page."""
    costs: list[list[int]] = []
    values: list[list[float]] = []
    cheapest_total = 0
    for page, floor in zip(newest, floors):
        row, worth = view_prices(consumer, page, gate)
        cheapest_total += min(row[floor:])
        if cheapest_total > budget:
            break
        costs.append(row)
        values.append(worth)
    depth = len(consumer.tiers)
    return (np.array(costs, dtype=np.int64).reshape(len(costs), depth),
            np.array(values, dtype=float).reshape(len(values), depth))


def _optimise(costs: np.ndarray, values: np.ndarray, caps: list[int], budget: int) -> list[int]:
    """Boundaries ``B`` (``B[r]``: how many of the newest pages sit at rank ≤ r) of a good assignment that fits.

    ``costs[p][r]`` and ``values[p][r]`` (arrays, whole-number costs) are page ``p`` (0 = newest) at rank ``r``;
    ``caps[p]`` is its sharpest allowed rank (non-decreasing with age). The assignment's value is Σ_r ΔV_r[B_r] with
    ΔV_r the prefix sums of (value at r − value at r+1), the forgotten rank being worth 0; likewise its cost.
    """
    depth, count = costs.shape[1], len(caps)
    # Rows are ranks, columns the number of newest pages counted (0..count). Built in place: this runs on every
    # context call and each array made costs about as much as the arithmetic on it.
    cost_prefix = np.zeros((depth, count + 1))
    cost_prefix[:, 1:] = np.cumsum(costs, axis=0).T  # whole numbers: the same sums as in floating point
    value_prefix = np.zeros((depth, count + 1))
    value_prefix[:, 1:] = np.cumsum(values, axis=0).T
    step_cost, step_value = cost_prefix.copy(), value_prefix.copy()
    step_cost[:-1] -= cost_prefix[1:]
    step_value[:-1] -= value_prefix[1:]
    # B[r] may not pass the first page whose cap is blurrier than r.
    blurrier = np.asarray(caps)[None, :] > np.arange(depth)[:, None]
    limit_array = np.where(blurrier.any(axis=1), blurrier.argmax(axis=1), count)
    limits = limit_array.tolist()

    positions = np.arange(count + 1)
    # A barred boundary scores -inf whatever λ (a finite cost times λ taken from -inf leaves -inf).
    open_value = np.where(positions[None, :] > limit_array[:, None], -np.inf, step_value)[:, None, :]
    ranks = np.arange(depth)

    def solve(lambdas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Every rank's scores in one array operation: the DP below only chains them.
        scores = open_value - lambdas[None, :, None] * step_cost[:, None, :]
        best = scores[0]
        running_args = []
        for rank in range(1, depth):
            running = np.maximum.accumulate(best, axis=1)
            running_args.append(np.maximum.accumulate(np.where(best >= running, positions, 0), axis=1))
            best = scores[rank] + running
        bounds = np.empty((len(lambdas), depth), dtype=int)
        bounds[:, -1] = np.argmax(best, axis=1)
        rows = np.arange(len(lambdas))
        for rank in range(depth - 1, 0, -1):
            bounds[:, rank - 1] = running_args[rank - 1][rows, bounds[:, rank]]
        # Costs are whole numbers, so their sum is exact in any order; values are added rank by rank as before.
        total_cost = step_cost[ranks, bounds].sum(axis=1)
        step_values = step_value[ranks, bounds]
        total_value = step_values[:, 0].copy()
        for rank in range(1, depth):
            total_value += step_values[:, rank]
        return bounds, total_cost, total_value

    found = [solve(_LAMBDAS)]
    fits = _LAMBDAS[found[0][1] <= budget]
    # The budget binds between the largest λ that overspends and the smallest that fits: look closer there.
    low = _LAMBDAS[_LAMBDAS < fits[0]].max(initial=-1.0) if len(fits) else -1.0
    high = fits[0] if len(fits) else -1.0
    for _ in range(_REFINE_ROUNDS if low >= 0 else 0):
        lambdas = _inside(low, high)
        found.append(solve(lambdas))
        spent = found[-1][1]
        low = lambdas[spent > budget].max(initial=low)
        high = lambdas[spent <= budget].min(initial=high)
    bounds_all = np.vstack([bounds for bounds, _, _ in found])
    spent_all = np.concatenate([spent for _, spent, _ in found])
    value_all = np.concatenate([value for _, _, value in found])
    value_all[spent_all > budget] = -np.inf
    chosen = int(np.argmax(value_all))
    starts = [([int(bound) for bound in bounds_all[chosen]], float(spent_all[chosen]))]
    if not np.isfinite(value_all[chosen]):
        starts = []
    # The best assignment may lie under the convex hull the λ search walks (a dense old page readable only once a
    # sparse newer one is shown too): the newest pages all at one tier, as many as fit, are starts as well.
    affordable = (cost_prefix <= budget).sum(axis=1) - 1  # each row only grows: the most pages that fit at it
    prefix_rows = cost_prefix.tolist()
    for rank in range(depth):
        shown = min(limits[rank], int(affordable[rank]))
        starts.append(([0] * rank + [shown] * (depth - rank), prefix_rows[rank][shown]))
    # The same start fills the same way: fill each once.
    unique = {(tuple(bounds), spent): bounds for bounds, spent in starts}
    cost_rows, value_rows = costs.tolist(), values.tolist()  # _fill reads one page at a time
    filled = [_fill(bounds, cost_rows, value_rows, limits, budget - spent) for (_, spent), bounds in unique.items()]
    step_rows = step_value.tolist()
    return max(filled, key=lambda bounds: sum(step_rows[rank][bound] for rank, bound in enumerate(bounds)))


_INSIDE = np.arange(1, _REFINE_STEPS + 1, dtype=float)


def _inside(low: float, high: float) -> np.ndarray:
    """``np.linspace(low, high, _REFINE_STEPS + 2)[1:-1]``, the very same numbers (linspace's own arithmetic),
    without the set-up of its general case, which cost as much as a round of the λ search."""
    delta = np.subtract(high, low, dtype=float)
    step = delta / (_REFINE_STEPS + 1)
    if step == 0:  # as linspace, for a step too small to be a number
        return _INSIDE / (_REFINE_STEPS + 1) * delta + low
    return _INSIDE * step + low


def _fill(bounds: list[int], costs: list[list[int]], values: list[list[float]], limits: list[int],
          left: float) -> list[int]:
    """Spend what is left one page at a time: the move that adds the most expected recall per token first, ties
    to the newest page and the sharpest tier, so that once nothing adds recall the newest pages are sharpened."""
    depth = len(bounds)
    while True:
        best: tuple[float, int, int] | None = None
        move: tuple[int, int, int, float] | None = None
        for rank in range(depth):
            page = bounds[rank]
            if page >= limits[rank]:
                continue
            current = rank + 1  # the rank the page sits at now (depth: forgotten)
            while current < depth and bounds[current] <= page:
                current += 1
            page_costs, page_values = costs[page], values[page]
            extra_cost = page_costs[rank] - (page_costs[current] if current < depth else 0)
            extra_value = page_values[rank] - (page_values[current] if current < depth else 0.0)
            if extra_cost > left or extra_value < -1e-9:
                continue
            key = (float("inf") if extra_cost <= 0 else extra_value / extra_cost, -page, -rank)
            if best is None or key > best:
                best, move = key, (page, rank, current, extra_cost)
        if move is None:
            return bounds
        page, rank, current, extra_cost = move
        for r in range(rank, current):
            bounds[r] = page + 1
        left -= extra_cost
