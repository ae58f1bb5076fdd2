"""Forgetting that maximises expected recalled text under a token budget, from measured recall per density × level.

``TokenBudget`` blurs the oldest page first, whatever that costs in recall. ``RecallAwareBudget`` instead chooses
the monotone level assignment (older never sharper than newer) that fits the budget and recalls the most text in
expectation: Σ text_tokens(page) × expected char recall(page at its level), where a page whose text is cheaper than
its image goes as text (recall 1, the memory's fail-closed rule) and a forgotten page recalls nothing.

The default recall model is the calibration file ``policies/calibration/rapidocr_deepseek-ocr.json``, measured by
``python -m benchmarks.compression_recall`` on the tune split (it records its own provenance). A page's density is
the median height of its drawn line boxes on the master canvas; expected recall at a level is interpolated in
density within that tier's measurements, or, for a tier the calibration never measured (a host's pixel size), in
the line height the page has after fitting to the tier, pooled over all measurements.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from optical_memory.policies.base import (
    ForgettingPolicy,
    Levels,
    base_levels,
    view_cost,
)

from optical_memory.core.geometry import Tier, glyph_scale
from optical_memory.core.types import Consumer, Page
from optical_memory.core.validation import validate_budget

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
DEFAULT_CALIBRATION = CALIBRATION_DIR / "rapidocr_deepseek-ocr.json"
RECALL_METRICS = ("char_recall", "char_precision", "word_recall")


@runtime_checkable
class RecallModel(Protocol):
    """Expected share (0..1) of a page's text that survives being shown at ``tier``."""

    def expected_recall(self, page: Page, tier: Tier) -> float: ...


def line_height(page: Page) -> float | None:
    """Median height in master pixels of the page's drawn line boxes (``None`` for a page without lines)."""
    heights = [line.y1 - line.y0 for line in page.lines if line.y1 > line.y0]
    return float(statistics.median(heights)) if heights else None


def _interpolate(points: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise-linear through ``points`` (x sorted, duplicates averaged), held constant beyond the ends."""
    merged: dict[float, list[float]] = {}
    for px, py in points:
        merged.setdefault(px, []).append(py)
    xs = sorted(merged)
    return float(np.interp(x, xs, [sum(merged[px]) / len(merged[px]) for px in xs]))


@dataclass(frozen=True)
class CalibrationPoint:
    """Measured recovery of pages of one density (master line height) at one tier."""

    tier: str
    line_height_px: float
    effective_line_px: float
    char_precision: float
    char_recall: float
    word_recall: float
    pages: int

    def metric(self, name: str) -> float:
        return float(getattr(self, name))


@dataclass(frozen=True)
class CalibratedRecall:
    """A recall model from measured points; ``metric`` picks which measured share counts as recalled.

    Word recall is the default: an exact fact (a name, a code, a number) survives only if its whole word is read
    right, and on dense pages char recall stays high while every such word is already lost.
    """

    points: tuple[CalibrationPoint, ...]
    metric: str = "word_recall"
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("points must hold at least one calibration point")
        if self.metric not in RECALL_METRICS:
            raise ValueError(f"metric must be one of {RECALL_METRICS}, got {self.metric!r}")

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CALIBRATION, *, metric: str = "word_recall") -> "CalibratedRecall":
        """Read a calibration file written by ``benchmarks.compression_recall``."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"calibration file {str(path)!r} does not exist") from None
        try:
            points = tuple(CalibrationPoint(**point) for point in data["points"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"calibration file {str(path)!r} is malformed: {error}") from None
        return cls(points, metric, data.get("provenance", {}))

    def expected_recall(self, page: Page, tier: Tier) -> float:
        density = line_height(page)
        if density is None:
            # Glyph size unknown: assume the densest page measured, the least recall.
            density = min(point.line_height_px for point in self.points)
        same_tier = [(p.line_height_px, p.metric(self.metric)) for p in self.points if p.tier == tier.name]
        if same_tier:
            recall = _interpolate(same_tier, density)
        else:
            effective = density * glyph_scale(page.width, page.height, tier)
            recall = _interpolate([(p.effective_line_px, p.metric(self.metric)) for p in self.points], effective)
        return min(1.0, max(0.0, recall))


def view_value(consumer: Consumer, model: RecallModel, page: Page, level: int | None) -> float:
    """Expected recalled text tokens of ``page`` shown at ``level`` (text fallback: all of it; forgotten: none)."""
    if level is None:
        return 0.0
    text_tokens = consumer.text_tokens(page.text)
    if consumer.page_tokens(page, level) >= text_tokens:
        return float(text_tokens)
    return text_tokens * model.expected_recall(page, consumer.tiers[level])


def expected_recalled_tokens(
    pages: Sequence[Page], consumer: Consumer, levels: Sequence[int | None], model: RecallModel | None = None
) -> float:
    """Σ expected recalled text tokens of ``pages`` at ``levels`` under ``model`` (default: the calibration file)."""
    if len(pages) != len(levels):
        raise ValueError(f"pages and levels must have the same length, got {len(pages)} and {len(levels)}")
    model = model if model is not None else CalibratedRecall.load()
    return sum(view_value(consumer, model, page, level) for page, level in zip(pages, levels))


@dataclass(frozen=True)
class _Entry:
    """A partial assignment: its cost, its value, and its levels as a linked list ``(level, newer_chain)``."""

    cost: int
    value: float
    chain: tuple[int | None, Any] | None


def _pareto(entries: list[_Entry]) -> list[_Entry]:
    """Entries no other beats on both cost (lower) and value (higher), cheapest first; ties keep the first seen."""
    frontier: list[_Entry] = []
    for entry in sorted(entries, key=lambda e: (e.cost, -e.value)):
        if not frontier or entry.value > frontier[-1].value + 1e-9:
            frontier.append(entry)
    return frontier


@dataclass(frozen=True)
class RecallAwareBudget(ForgettingPolicy):
    """Fit the budget while keeping the most expected recalled text; older pages are never sharper than newer.

    ``model`` defaults to the packaged calibration (``CalibratedRecall.load()``). ``base`` (e.g. an ``AgeSchedule``)
    caps each page's sharpness: a page is never shown sharper than ``base`` says, and never at all if ``base``
    forgets it. Without a budget the result is ``base`` (or every page at the sharpest tier).

    Exact: a dynamic program over pages from newest to oldest keeps, for each sharpness the last page took, the
    Pareto frontier of (tokens spent, expected recall), so the choice is the best monotone assignment within the
    budget. Its cost grows with pages × levels² × frontier size; frontiers stay small because a consumer charges
    the same few prices for every page.
    """

    model: RecallModel | None = None
    base: ForgettingPolicy | None = None

    def recall_model(self) -> RecallModel:
        return self.model if self.model is not None else _default_model()

    def choose(
        self, pages: Sequence[Page], consumer: Consumer, *, now: float, turn_count: int, budget: int | None = None
    ) -> Levels:
        caps = base_levels(self.base, pages, consumer, now=now, turn_count=turn_count, budget=budget)
        if budget is None:
            return caps
        budget = validate_budget(budget)
        model = self.recall_model()
        depth = len(consumer.tiers)
        forgotten = depth  # rank of "forgotten": blurrier than every tier
        # fronts[r]: best partial assignments (newest pages so far) whose oldest page so far has rank r.
        fronts: list[list[_Entry]] = [[] for _ in range(depth + 1)]
        fronts[0] = [_Entry(0, 0.0, None)]
        reachable: list[_Entry]
        for page, cap in zip(reversed(pages), reversed(caps)):
            options = [(forgotten, 0, 0.0)]
            if cap is not None:
                options += [
                    (level, view_cost(consumer, page, level), view_value(consumer, model, page, level))
                    for level in range(cap, depth)
                ]
            reachable = []
            new_fronts: list[list[_Entry]] = [[] for _ in range(depth + 1)]
            by_rank = {rank: (cost, value) for rank, cost, value in options}
            for rank in range(depth + 1):
                reachable = _pareto(reachable + fronts[rank])
                if rank not in by_rank:
                    continue
                cost, value = by_rank[rank]
                level = None if rank == forgotten else rank
                new_fronts[rank] = [
                    _Entry(entry.cost + cost, entry.value + value, (level, entry.chain))
                    for entry in reachable
                    if entry.cost + cost <= budget
                ]
            fronts = new_fronts
        best = max(
            (entry for front in fronts for entry in front),
            key=lambda entry: (round(entry.value, 9), -entry.cost),
        )
        levels: Levels = []
        chain = best.chain
        while chain is not None:
            level, chain = chain
            levels.append(level)
        return levels


@lru_cache(maxsize=1)
def _default_model() -> CalibratedRecall:
    """The packaged calibration, loaded once per process."""
    return CalibratedRecall.load()
