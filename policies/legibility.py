"""Pixel legibility: how much of a page's text the pixels of a tier still hold, as CPU OCR measured it.

The calibration file ``policies/calibration/rapidocr_deepseek-ocr.json`` is written by
``python -m benchmarks.compression_recall`` on the tune split (it records its own provenance). A page's density is
the median height of its drawn line boxes on the master canvas; legibility at a tier is interpolated in density
within that tier's measurements, or, for a tier the calibration never measured (a host's pixel size), in the line
height the page has after fitting to the tier, pooled over all measurements.

A CPU OCR engine reads pixels and has no token bottleneck, so these figures are an upper bound on what a consumer
reads back, never its recall: ``optical_memory.policies.reading`` combines them with the consumer's capacity.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from optical_memory.core.geometry import Tier, glyph_scale
from optical_memory.core.types import Page

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


def curve(points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The knots ``interpolate`` goes through: ``points``' x sorted, the y of duplicate x averaged."""
    merged: dict[float, list[float]] = {}
    for px, py in points:
        merged.setdefault(px, []).append(py)
    xs = sorted(merged)
    return np.asarray(xs, dtype=float), np.asarray([sum(merged[px]) / len(merged[px]) for px in xs], dtype=float)


def interpolate(points: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise-linear through ``points`` (x sorted, duplicates averaged), held constant beyond the ends."""
    return float(np.interp(x, *curve(points)))


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
    """Pixel legibility from measured points; ``metric`` picks which measured share counts as recalled.

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

    @property
    def source(self) -> str:
        """Who measured these points, for reports: the reader and the metric."""
        reader = self.provenance.get("reader", "unnamed reader")
        return f"{reader} (CPU OCR) {self.metric.replace('_', ' ')}"

    @cached_property
    def _curves(self) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray], float]:
        """Per measured tier its curve in line height, the curve in effective line height over all points, and the
        densest line height measured: worked out once, since every page a memory prices is looked up here."""
        by_tier: dict[str, list[tuple[float, float]]] = {}
        for p in self.points:
            by_tier.setdefault(p.tier, []).append((p.line_height_px, p.metric(self.metric)))
        pooled = curve([(p.effective_line_px, p.metric(self.metric)) for p in self.points])
        return ({tier: curve(points) for tier, points in by_tier.items()}, pooled,
                min(point.line_height_px for point in self.points))

    def expected_recall(self, page: Page, tier: Tier) -> float:
        by_tier, pooled, densest = self._curves
        density = line_height(page)
        if density is None:
            # Glyph size unknown: assume the densest page measured, the least recall.
            density = densest
        same_tier = by_tier.get(tier.name)
        if same_tier is not None:
            recall = float(np.interp(density, *same_tier))
        else:
            recall = float(np.interp(density * glyph_scale(page.width, page.height, tier), *pooled))
        return min(1.0, max(0.0, recall))
