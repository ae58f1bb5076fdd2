"""Compression vs recall: how much text survives a page shrunk to each mode, and what a budgeted memory recalls.

Run ``python -m benchmarks.compression_recall [--quick] [--reader rapidocr|tesseract|deepseek-ocr --weights DIR]
[--consumer NAME] [--out DIR]``. Three parts:

1. **Density sweep.** Real chats (chitchat, one turn per chat so pages are full paragraphs; a few planted facts) are
   rendered at several body font sizes on the consumer's canvas; the first full pages are fitted to every mode
   (DeepSeek-OCR: LARGE, BASE, SMALL, TINY, GUNDAM; a host consumer: its tiers), read back, and scored
   (``benchmarks.metrics``). Text tokens are the consumer's (``consumer.text_tokens``); compression = text tokens /
   valid vision tokens (or the host's image tokens). The effective glyph height is the font's cap height times the
   scale the fit applies. A CPU OCR reader shows whether *the pixels still hold the text*; it is not DeepSeek-OCR
   decoding. For GUNDAM a CPU reader reads the 640-px tiles stitched back together (the sharpest pixels the encoder
   gets); DeepSeek-OCR itself is given the whole page and tiles it.
2. **Calibration and reading model.** Tune-split measurements per tier × density become the pixel-legibility
   calibration (``policies/calibration/<reader>_<consumer>.json`` with provenance). Every swept row also gets the
   reading model's prediction beside what the CPU reader measured: the consumer's capacity at the page's compression
   (DeepSeek-OCR: its published Fox curve, text tokens counted with DeepSeek's tokenizer, flagged where it
   extrapolates; a host: none unless measured) and expected recall = min(calibrated legibility, capacity). Break
   points give the highest compression per level at >= 97% and >= 90% of each.
3. **Budget baselines.** A chat-format conversation with planted facts, at least 10× the largest budget, goes into
   ``OpticalMemory``; at each budget the context each policy builds (through the memory's reading gate) is read back
   (pages at their level; text turns exact). Planted-fact recall is reported twice: found in the CPU reading, and
   expected, each fact on an image page counting with the probability the consumer's capacity gives that page at
   its level; against keeping the last N turns as text.

Densities and the memory's page density are chosen on the ``tune`` split; tables report the ``report`` split. Reads
are cached on disk (``.cache/reads``), so a rerun only reads what changed. ``--from-json FILE`` redraws the
Markdown table and the plots from a results file without reading anything.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from fontTools.ttLib import TTFont
from optical_memory.policies import (
    DEFAULT_MIN_RECALL,
    AgeSchedule,
    ForgettingPolicy,
    ReadingModel,
    RecallAwareBudget,
    TokenBudget,
    reading_model,
)
from optical_memory.policies.legibility import (
    CALIBRATION_DIR,
    CalibratedRecall,
    CalibrationPoint,
    line_height,
)
from optical_memory.policies.reading import DEEPSEEK_OCR_FOX, DEEPSEEK_TOKENIZER_NAME, deepseek_tokens
from optical_memory.renderers import PageRenderer, RenderStyle
from PIL import Image

from benchmarks.datasets import Conversation, planted_fact_conversation
from benchmarks.metrics import facts_found, score
from optical_memory.core.consumers import (
    BaseConsumer,
    DeepSeekOCRConsumer,
    get_consumer,
)
from optical_memory.core.geometry import Fit, Mode, Tier, glyph_scale, gundam_grid
from optical_memory.core.imaging import fit_to_mode, fit_to_tier, gundam_views
from optical_memory.core.types import Page, Turn
from optical_memory.memory import OpticalMemory
from optical_memory.readers import (
    ReadCache,
    Reader,
    ReadStats,
    get_reader,
    read_many,
    reader_fingerprint,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEED = 0
SWEEP_MODES = (Mode.LARGE, Mode.BASE, Mode.SMALL, Mode.TINY, Mode.GUNDAM)
# Body font sizes on the 1280-px DeepSeek-OCR canvas: 20 px is the preset (~1,300 tokens of chat paragraphs per
# page), 12 px packs ~3,700 and 8 px ~6,700; at TINY (0.4x) they leave 5.8, 3.5 and 2.3 px capitals.
DEEPSEEK_DENSITIES = (20, 16, 14, 12, 10, 8, 7, 6)
HOST_DENSITY_FACTORS = (1.5, 1.25, 1.0, 0.85, 0.7)
PRECISION_THRESHOLDS = (0.97, 0.90)
# The memory's page density is the densest swept one whose blurriest tier still keeps this much of the text (tune).
MEMORY_RECALL_FLOOR = 0.95
CPU_READER_LABEL = "pixels still hold the text (CPU OCR), not DeepSeek-OCR decoding"


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on; recorded in the results."""

    reader: str = "rapidocr"
    weights: str | None = None
    device: str | None = None
    consumer: str = "deepseek-ocr"
    out: Path = RESULTS_DIR
    quick: bool = False
    densities: tuple[int, ...] = ()
    modes: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("tune", "report")
    sweep_pages: int = 2
    sweep_tokens: int = 25_000
    sweep_facts: int = 16
    budgets: tuple[int, ...] = (500, 1000, 2000)
    baseline_tokens: int = 0  # 0: ten times the largest budget
    baseline_facts: int = 16
    hot_turns: int = 8
    memory_densities: tuple[int, ...] = ()
    workers: int | None = None
    cache_dir: str | None = None
    calibration_out: Path | None = None

    def __post_init__(self) -> None:
        for name in ("sweep_pages", "sweep_tokens", "sweep_facts", "baseline_facts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("baseline_tokens", "hot_turns"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("densities", "budgets", "memory_densities"):
            if any(value < 1 for value in getattr(self, name)):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.budgets:
            raise ValueError("budgets must name at least one token budget")
        unknown = set(self.splits) - {"tune", "report"}
        if not self.splits or unknown:
            raise ValueError(f"splits must be a non-empty subset of tune, report, got {self.splits}")

    @property
    def suffix(self) -> str:
        """File-name suffix: none for the default full run, so its files are the ones the README shows."""
        parts = []
        if self.reader != "rapidocr":
            parts.append(self.reader)
        if self.consumer != "deepseek-ocr":
            parts.append(self.consumer.replace(":", "-"))
        if self.quick:
            parts.append("quick")
        return "".join(f"_{part}" for part in parts)


# -- geometry and pricing ---------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def cap_height_ratio(font_file: str) -> float:
    """Capital height / em of a font (OS/2 ``sCapHeight``; 0.73 em when the table lacks it)."""
    font = TTFont(font_file, lazy=True)
    units = font["head"].unitsPerEm
    cap = getattr(font["OS/2"], "sCapHeight", 0) if "OS/2" in font else 0
    return cap / units if cap else 0.73


def sweep_tiers(consumer: BaseConsumer, names: Sequence[str]) -> list[tuple[int | None, Tier]]:
    """(consumer level or None, tier) to sweep: DeepSeek-OCR's five modes, or a host's own ladder."""
    if isinstance(consumer, DeepSeekOCRConsumer):
        levels = {tier.mode: level for level, tier in enumerate(consumer.tiers)}
        tiers = [(levels.get(mode), Tier(mode.value, mode.size, mode.fit, mode=mode)) for mode in SWEEP_MODES]
    else:
        tiers = list(enumerate(consumer.tiers))
    if names:
        known = {tier.name for _, tier in tiers}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"--modes {unknown} not among {sorted(known)} for consumer {consumer.name!r}")
        tiers = [(level, tier) for level, tier in tiers if tier.name in names]
    return tiers


def price(consumer: BaseConsumer, page: Page, level: int | None, tier: Tier) -> tuple[int, int | None]:
    """(image tokens, decoder positions or None) of ``page`` at ``tier``: valid vision tokens for DeepSeek-OCR."""
    if tier.mode is not None:
        tiles = gundam_grid(page.width, page.height) if tier.mode is Mode.GUNDAM else (1, 1)
        return tier.mode.valid_tokens(tiles), tier.mode.decoder_positions(tiles)
    assert level is not None, "a host tier is always on the consumer's ladder"
    return consumer.page_tokens(page, level), None


def reading_image(master: Image.Image, tier: Tier, reader: Reader) -> Image.Image:
    """The pixels a reader gets for ``tier``: the fitted page; for GUNDAM and a CPU reader, the stitched tiles."""
    if tier.fit is Fit.TILE and getattr(reader, "ignores_mode", False):
        tiles, global_view, (cols, rows) = gundam_views(master)
        if not tiles:
            return global_view
        side = tiles[0].width
        mosaic = Image.new("RGB", (side * cols, side * rows))
        for number, tile in enumerate(tiles):
            mosaic.paste(tile, ((number % cols) * side, (number // cols) * side))
        return mosaic
    if tier.mode is not None and tier.fit is not Fit.TILE:
        return fit_to_mode(master, tier.mode)
    return fit_to_tier(master, tier)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def as_turns(conversation: Conversation) -> list[Turn]:
    return [Turn(i, turn.role, turn.text, turn.timestamp) for i, turn in enumerate(conversation.turns)]


# -- reading with timings ---------------------------------------------------------------------------------------


@dataclass
class ReadingService:
    """Reads through the cache and the process pool, and keeps per-page costs of fresh reads."""

    reader_name: str
    reader: Reader
    cache: ReadCache
    workers: int | None
    timings: list[dict[str, Any]] = field(default_factory=list)

    def read(self, images: Sequence[Image.Image], modes: Sequence[Mode | None], label: str) -> list[str]:
        stats = ReadStats()
        # A loaded model reads in this process; CPU engines by name, over the pool.
        reader: str | Reader = self.reader if self.reader_name == "deepseek-ocr" else self.reader_name
        texts = read_many(reader, images, modes, workers=self.workers, cache=self.cache, description=label,
                          stats=stats)
        per_page = stats.cpu_seconds_per_page
        self.timings.append(
            {
                "what": label,
                "pages_read": stats.fresh_reads + stats.cached_reads,
                "fresh_reads": stats.fresh_reads,
                "pages_with_cost": stats.costed_reads,
                "cpu_s_per_page": round(per_page, 2) if per_page is not None else None,
                "wall_s": round(stats.wall_seconds, 1),
            }
        )
        return texts


# -- part 1: density sweep --------------------------------------------------------------------------------------


SweptView = tuple[Page, "int | None", Tier]


def sweep(
    settings: Settings, consumer: BaseConsumer, service: ReadingService, split: str, densities: Sequence[int]
) -> tuple[list[dict[str, Any]], Conversation, list[SweptView]]:
    """Rows of the density × tier sweep on ``split``, and the (page, level, tier) each row measured."""
    conversation = planted_fact_conversation(
        split, min_tokens=settings.sweep_tokens, facts=settings.sweep_facts, seed=SEED, one_turn_per_chat=True
    )
    turns = as_turns(conversation)
    tiers = sweep_tiers(consumer, settings.modes)
    base_style = RenderStyle.preset(consumer.render_preset)
    rows: list[dict[str, Any]] = []
    views: list[SweptView] = []
    for font_px in densities:
        style = base_style.with_density(font_px)
        renderer = PageRenderer(style)
        layouts = renderer.paginate(turns)
        chosen = ([layout for layout in layouts if layout.full] or layouts)[: settings.sweep_pages]
        jobs = []
        for layout in chosen:
            master = renderer.draw(layout)
            for level, tier in tiers:
                jobs.append((layout.page, level, tier, reading_image(master, tier, service.reader)))
        texts = service.read(
            [job[3] for job in jobs],
            [job[2].mode for job in jobs],
            f"{split} {font_px}px",
        )
        cap_ratio = cap_height_ratio(style.font_files[0])
        for (page, level, tier, _), text in zip(jobs, texts):
            facts = [fact.answer for fact in conversation.facts if fact.answer in page.text]
            recovery = score(text, page.text, facts)
            text_tokens = consumer.text_tokens(page.text)
            image_tokens, positions = price(consumer, page, level, tier)
            scale = glyph_scale(page.width, page.height, tier)
            views.append((page, level, tier))
            rows.append(
                {
                    "reader": service.reader_name,
                    "reader_fingerprint": reader_fingerprint(service.reader),
                    "tokenizer": consumer.tokenizer,
                    "dataset": "chitchat-paragraphs+planted-facts",
                    "conversation": conversation.id,
                    "split": split,
                    "consumer": consumer.name,
                    "page": page.index,
                    "density_font_px": font_px,
                    "line_height_px": line_height(page),
                    "mode": tier.name,
                    "fitted_px": tier.size,
                    "text_tokens": text_tokens,
                    "text_tokens_deepseek": deepseek_tokens(page.text),
                    "text_chars": len(page.text),
                    "vision_tokens": image_tokens,
                    "decoder_positions": positions,
                    "compression": round(text_tokens / image_tokens, 3),
                    "effective_glyph_px": round(font_px * cap_ratio * scale, 2),
                    "effective_line_px": round((line_height(page) or 0) * scale, 2),
                    "facts_on_page": len(facts),
                    **{name: _round(value) for name, value in recovery.as_dict().items()},
                }
            )
    return rows, conversation, views


def expected_reading(
    consumer: BaseConsumer, model: ReadingModel, page: Page, level: int | None, tier: Tier, image_tokens: int
) -> dict[str, Any]:
    """The reading model's prediction for a swept view, beside what CPU OCR measured on it.

    A tier on the consumer's ladder is predicted as the policies predict it; GUNDAM, which DeepSeek-OCR's ladder
    here does not use, from the same calibrated legibility and the published curve read by compression.
    """
    if level is not None:
        reading = model.predict(page, consumer, level)
        legibility, capacity, notes = reading.legibility, reading.capacity, reading.notes
    else:
        legibility = model.legibility.expected_recall(page, tier)
        estimate = DEEPSEEK_OCR_FOX.estimate(tier.name, deepseek_tokens(page.text) / image_tokens)
        capacity, notes = estimate.recall, estimate.notes
    return {
        "legibility_model": _round(legibility),
        "capacity": None if capacity is None else _round(capacity),
        "expected_recall": None if capacity is None else _round(min(legibility, capacity)),
        "extrapolated": "; ".join(notes) or None,
    }


def _round(value: Any) -> Any:
    return round(value, 5) if isinstance(value, float) else value


def _mean(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.fmean(present) if present else None


def aggregate(rows: Sequence[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """Mean metrics per (density, mode) over the pages of ``split``."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["split"] == split:
            groups[(row["density_font_px"], row["mode"])].append(row)
    table = []
    for (font_px, mode), members in groups.items():
        facts_total = sum(row["facts_on_page"] for row in members)
        facts_hit = sum(round((row["fact_recall"] or 0) * row["facts_on_page"]) for row in members)
        table.append(
            {
                "split": split,
                "density_font_px": font_px,
                "mode": mode,
                "pages": len(members),
                "line_height_px": members[0]["line_height_px"],
                **{
                    name: _round(_mean(row[name] for row in members))
                    for name in (
                        "text_tokens", "vision_tokens", "compression", "effective_glyph_px", "effective_line_px",
                        "char_accuracy", "char_precision", "char_recall", "word_recall",
                    )
                },
                # The reading model's columns (absent from rows a reader measured without one).
                **{
                    name: _round(_mean(row.get(name) for row in members))
                    for name in ("text_tokens_deepseek", "legibility_model", "capacity", "expected_recall")
                },
                "extrapolated": next((row["extrapolated"] for row in members if row.get("extrapolated")), None),
                "facts": facts_total,
                "fact_recall": _round(facts_hit / facts_total) if facts_total else None,
            }
        )
    return sorted(table, key=lambda row: (row["mode"], -row["density_font_px"]))


def break_points(table: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per mode and threshold: the highest compression reached before ``metric`` first falls below the threshold.

    Walking up in compression and stopping at the first failure matters: a reader that returns almost nothing
    from an unreadable page can score a high precision again at a denser point (nothing it said was wrong).
    ``still_passing`` marks a mode whose densest measured page still passes: its break lies beyond the sweep.
    """
    points = []
    for mode in dict.fromkeys(row["mode"] for row in table):
        rows = sorted((row for row in table if row["mode"] == mode), key=lambda row: row["compression"])
        for threshold in PRECISION_THRESHOLDS:
            best, failed = None, False
            for row in rows:
                if row[metric] is None or row[metric] < threshold:
                    failed = True
                    break
                best = row
            points.append(
                {
                    "mode": mode,
                    "metric": metric,
                    "threshold": threshold,
                    "compression": best["compression"] if best else None,
                    "density_font_px": best["density_font_px"] if best else None,
                    "text_tokens": best["text_tokens"] if best else None,
                    "value": best[metric] if best else None,
                    "still_passing": not failed,
                    "sparsest_compression": rows[0]["compression"] if rows else None,
                }
            )
    return points


# -- part 2: calibration ----------------------------------------------------------------------------------------


def calibration(table: Sequence[dict[str, Any]]) -> tuple[CalibrationPoint, ...]:
    return tuple(
        CalibrationPoint(
            tier=row["mode"],
            line_height_px=float(row["line_height_px"]),
            effective_line_px=float(row["effective_line_px"]),
            char_precision=float(row["char_precision"]),
            char_recall=float(row["char_recall"]),
            word_recall=float(row["word_recall"]),
            pages=int(row["pages"]),
        )
        for row in table
    )


def write_calibration(path: Path, points: Sequence[CalibrationPoint], provenance: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"provenance": provenance, "points": [point.__dict__ for point in points]}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


# -- part 3: budget baselines -----------------------------------------------------------------------------------


def truncation_recall(conversation: Conversation, budget: int, consumer: BaseConsumer) -> dict[str, Any]:
    """Keep the newest turns as text while they fit (counted as ``consumer`` counts the memory's text): the facts
    recalled are those in kept turns, verbatim."""
    kept, used = 0, 0
    for turn in reversed(conversation.turns):
        cost = consumer.text_tokens(turn.text)
        if used + cost > budget:
            break
        kept, used = kept + 1, used + cost
    first_kept = len(conversation.turns) - kept
    found = [fact.turn_index >= first_kept for fact in conversation.facts]
    return {"tokens_used": used, "turns_kept": kept, "facts_recalled": sum(found)}


def reading_models(consumer: BaseConsumer, legibility: CalibratedRecall) -> dict[str, ReadingModel]:
    """The consumer's reading model with this run's tune-split legibility: on word recall (the default: an exact
    fact needs every character of its answer read right) and on char recall."""
    capacity = reading_model(consumer).capacity
    return {metric: ReadingModel(consumer.name, replace(legibility, metric=metric), capacity)
            for metric in ("word_recall", "char_recall")}


# (name, policy, legibility metric of the reading model, min_recall): compared at equal budgets. Every strategy runs
# through the memory, so the reading gate (min_recall) applies to all of them; the old default ran without one.
BASELINE_POLICIES: tuple[tuple[str, ForgettingPolicy, str, float], ...] = (
    ("token-budget", TokenBudget(base=None), "word_recall", DEFAULT_MIN_RECALL),
    ("age+token-budget", TokenBudget(), "word_recall", DEFAULT_MIN_RECALL),
    ("age+token-budget, no gate (the old default)", TokenBudget(), "word_recall", 0.0),
    ("recall-aware (the default)", RecallAwareBudget(unbudgeted=AgeSchedule()), "word_recall", DEFAULT_MIN_RECALL),
    ("recall-aware(char recall)", RecallAwareBudget(unbudgeted=AgeSchedule()), "char_recall", DEFAULT_MIN_RECALL),
    ("recall-aware, no gate", RecallAwareBudget(unbudgeted=AgeSchedule()), "word_recall", 0.0),
)


def baselines(
    settings: Settings,
    consumer: BaseConsumer,
    service: ReadingService,
    conversation: Conversation,
    font_px: int,
    legibility: CalibratedRecall,
) -> list[dict[str, Any]]:
    """Fact recall of each strategy at each budget, for a memory whose pages use ``font_px``."""
    style = RenderStyle.preset(consumer.render_preset).with_density(font_px)
    memory = OpticalMemory.open(":memory:", session=conversation.id, hot_turns=settings.hot_turns, consumer=consumer,
                                style=style)
    for turn in conversation.turns:
        memory.add(turn.role, turn.text, timestamp=turn.timestamp)
    # Session end: seal the last partial page too, so only the hot turns stay text and budgets compare pages.
    memory.flush()
    now = conversation.turns[-1].timestamp
    answers = [fact.answer for fact in conversation.facts]
    models = reading_models(consumer, legibility)
    runs: list[tuple[str, int | None, ReadingModel, Any]] = [
        ("age", None, models["word_recall"],
         memory.context(None, consumer, policy=AgeSchedule(), now=now, reading_model=models["word_recall"]))
    ]
    for budget in settings.budgets:
        for name, policy, metric, floor in BASELINE_POLICIES:
            try:
                runs.append((name, budget, models[metric], memory.context(
                    budget, consumer, policy=policy, now=now, min_recall=floor, reading_model=models[metric])))
            except ValueError as error:  # the hot turns alone exceed this budget
                print(f"  skip {name} at {budget}: {error}", file=sys.stderr)
    jobs: dict[tuple[int, int], tuple[Image.Image, Mode | None]] = {}
    for _, _, _, context in runs:
        for view in context.pages:
            if view.level is not None and not view.as_text:
                jobs.setdefault((view.page.index, view.level), (view.image, view.tier.mode))
    keys = list(jobs)
    texts = service.read([jobs[k][0] for k in keys], [jobs[k][1] for k in keys], f"memory {font_px}px")
    decoded = dict(zip(keys, texts))
    rows = []
    for name, budget, model, context in runs:
        texts_sent = [turn.content for turn in context.recent]
        levels: dict[str, int] = defaultdict(int)
        # Per image page: what the CPU reader got back, and the consumer's capacity there (None: unmeasured).
        readings: list[tuple[str, float | None]] = []
        for view in context.pages:
            if view.level is None:
                levels["dropped"] += 1
            elif view.as_text:
                texts_sent.append(view.page.text)
                levels["as text"] += 1
            else:
                capacity = model.predict(view.page, consumer, view.level).capacity
                readings.append((decoded[(view.page.index, view.level)], capacity))
                levels[view.tier.name] += 1
        in_text = facts_found("\n".join(texts_sent), answers)
        on_pages = [(facts_found(text, answers), capacity) for text, capacity in readings]
        found = [sent or any(hits[i] for hits, _ in on_pages) for i, sent in enumerate(in_text)]
        # A fact read back by CPU OCR from an image counts with the probability the consumer's capacity gives that
        # page; one in a text turn or a page sent as text counts in full. Unmeasured capacity: the CPU reading alone.
        expected = [1.0 if sent else max((1.0 if capacity is None else capacity for hits, capacity in on_pages
                                          if hits[i]), default=0.0)
                    for i, sent in enumerate(in_text)]
        unmeasured = any(capacity is None for _, capacity in readings)
        report = context.report
        rows.append(
            {
                "strategy": f"memory:{name}",
                "density_font_px": font_px,
                "budget": budget,
                "tokens_used": report.total_tokens,
                "fits_budget": budget is None or report.total_tokens <= budget,
                "facts": len(answers),
                "facts_recalled": sum(found),
                "fact_recall": round(sum(found) / len(answers), 4),
                "expected_facts_recalled": round(sum(expected), 3),
                "expected_fact_recall": round(sum(expected) / len(answers), 4),
                "capacity_unmeasured": unmeasured,
                "expected_recall": None if report.expected_recall is None else round(report.expected_recall, 4),
                "min_recall": report.min_recall,
                "pages": report.pages_total,
                "pages_by_level": dict(levels),
                "image_tokens": report.image_tokens,
                "compression": round(report.compression, 3),
            }
        )
    return rows


def baseline_rows(
    settings: Settings, consumer: BaseConsumer, service: ReadingService, memory_densities: Sequence[int],
    legibility: CalibratedRecall, split: str,
) -> tuple[list[dict[str, Any]], Conversation]:
    conversation = planted_fact_conversation(
        split, min_tokens=settings.baseline_tokens, facts=settings.baseline_facts, seed=SEED + 1
    )
    rows = []
    for budget in settings.budgets:
        kept = truncation_recall(conversation, budget, consumer)
        rows.append(
            {
                "strategy": "truncation (keep last N turns)",
                "density_font_px": None,
                "budget": budget,
                "tokens_used": kept["tokens_used"],
                "fits_budget": True,
                "facts": len(conversation.facts),
                "facts_recalled": kept["facts_recalled"],
                "fact_recall": round(kept["facts_recalled"] / len(conversation.facts), 4),
                "expected_fact_recall": round(kept["facts_recalled"] / len(conversation.facts), 4),
                "turns_kept": kept["turns_kept"],
            }
        )
    for font_px in memory_densities:
        rows.extend(baselines(settings, consumer, service, conversation, font_px, legibility))
    return rows, conversation


def memory_density(table: Sequence[dict[str, Any]], last_tier: str, default: int) -> int:
    """The densest font size whose blurriest-tier mean char recall is at least ``MEMORY_RECALL_FLOOR``."""
    passing = [row["density_font_px"] for row in table if row["mode"] == last_tier
               and row["char_recall"] is not None and row["char_recall"] >= MEMORY_RECALL_FLOOR]
    return min(passing, default=default)


# -- provenance, outputs ----------------------------------------------------------------------------------------


def provenance(settings: Settings, reader: Reader, consumer: BaseConsumer, argv: Sequence[str]) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                                  cwd=Path(__file__).resolve().parent).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    return {
        "reader": reader.name,
        "reader_fingerprint": reader_fingerprint(reader),
        "consumer": settings.consumer,
        "tokenizer": consumer.tokenizer,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.compression_recall", *argv]),
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        "git_commit": git("describe", "--always", "--dirty"),
    }


def render_markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables (what the README shows), generated from the JSON only."""
    meta = results["meta"]
    cpu = meta["reader"] != "deepseek-ocr"
    lines = [
        "# Compression vs recall",
        "",
        f"Reader **{meta['reader']}** (`{meta['reader_fingerprint']}`)"
        + (f": {CPU_READER_LABEL}." if cpu else ": DeepSeek-OCR decoding."),
        f"Consumer `{meta['consumer']}`; text tokens: {meta['tokenizer']}; compression = text tokens / "
        + ("valid vision tokens." if meta["consumer"] == "deepseek-ocr" else "the host's image tokens."),
        f"Data: chitchat-dataset (real human chats, MIT): tables show the `{meta['report_split']}` split "
        f"({len(meta['chat_ids'].get(meta['report_split'], []))} chats in the sweep, "
        f"{len(meta['chat_ids'].get('baseline', []))} in the budget conversation); "
        + (f"the recall calibration and the memory's page density were chosen on the `{meta['tune_split']}` split."
           if meta["tune_split"] != meta["report_split"] else "this run had no separate tune split.")
        + f" Chat ids are listed in the JSON. Generated by `{meta['command']}` on {meta['date']} ({meta['machine']}, "
        f"commit {meta['git_commit']}).",
    ]
    if meta.get("quick"):
        lines.append("\n**Quick run (smoke test): few pages, not for citing.**")
    reading = meta.get("reading_model", {})
    lines += [
        "",
        "## Density sweep (mean over pages): pixel legibility beside expected recall",
        "",
        f"*CPU OCR* columns are what {meta['reader']} read back: {CPU_READER_LABEL if cpu else 'DeepSeek-OCR'}. "
        f"*Capacity* is {reading.get('capacity', 'the consumer capacity')} at the page's compression (text tokens "
        f"counted with {reading.get('capacity_tokenizer') or meta['tokenizer']}); *expected recall* is the reading "
        f"model the policies use: {reading.get('expected_recall', 'min(legibility, capacity)')}. Rows marked "
        "*extrapolated* lie outside what was published for that mode (the notes below say how they were read).",
        "",
        "| font px | text tokens/page | mode | vision tokens | compression | glyph px | CPU OCR char precision "
        "| CPU OCR char recall | CPU OCR word recall | CPU OCR fact recall | capacity | expected recall | extrapolated |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    notes: dict[str, int] = {}
    for row in sorted(results["sweep_table"], key=lambda r: (-r["density_font_px"], r["vision_tokens"])):
        if row["split"] != meta["report_split"]:
            continue
        note = row.get("extrapolated")
        if note:
            notes.setdefault(note, len(notes) + 1)
        lines.append(
            f"| {row['density_font_px']} | {row['text_tokens']:.0f} | {row['mode']} | {row['vision_tokens']:.0f} | "
            f"{row['compression']:.1f}× | {row['effective_glyph_px']:.1f} | {_pct(row['char_precision'])} | "
            f"{_pct(row['char_recall'])} | {_pct(row['word_recall'])} | {_pct(row['fact_recall'])} | "
            f"{_pct(row.get('capacity'))} | {_pct(row.get('expected_recall'))} | "
            f"{f'yes ({notes[note]})' if note else '–'} |"
        )
    if notes:
        lines += ["", "Extrapolation notes (the first page of each row):", ""]
        lines += [f"{number}. {note}" for note, number in notes.items()]
    lines += [
        "",
        "## Highest compression per level at ≥ 97% and ≥ 90%",
        "",
        "Walking up in compression until the metric first drops below the threshold (report split). Expected recall "
        "is what the reading gate and `RecallAwareBudget` act on; CPU OCR char precision is pixel legibility only.",
        "",
        "*Published capacity alone* reads DeepSeek-OCR's curve as the reading model does (across modes for base, "
        "large and gundam, where nothing was published); the swept columns name the density of the page that set "
        "the figure.",
        "",
        "| mode | published capacity alone ≥ 97% | ≥ 90% | expected recall ≥ 97% | expected recall ≥ 90% "
        "| CPU OCR char precision ≥ 97% | CPU OCR char precision ≥ 90% |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    by_key = {(p["mode"], p["metric"], p["threshold"]): p for p in results["break_points"]}
    for mode in dict.fromkeys(p["mode"] for p in results["break_points"]):
        cells = []
        for threshold in PRECISION_THRESHOLDS:
            limit = curve_limit(mode, threshold) if meta["consumer"] == "deepseek-ocr" else None
            cells.append("–" if limit is None else f"{limit:.1f}×")
        for metric in ("expected_recall", "char_precision"):
            for threshold in PRECISION_THRESHOLDS:
                point = by_key.get((mode, metric, threshold))
                cells.append(_break_cell(point))
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Break points: highest compression before the metric first drops below the threshold",
        "",
        "Char precision alone ignores omissions: a reader that returns a few lines of an unreadable page is precise. "
        "Char recall and char accuracy (Fox-style, the DeepSeek-OCR paper's measure) count what went missing.",
        "",
        "| mode | metric | ≥ threshold | compression | at font px | text tokens/page | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for point in results["break_points"]:
        compression = f"{point['compression']:.1f}×" if point["compression"] is not None else "none measured"
        note = "densest page measured still passes: the break lies beyond" if point["still_passing"] else ""
        label = ("expected recall (reading model)" if point["metric"] == "expected_recall"
                 else f"{'CPU OCR ' if cpu else ''}{point['metric'].replace('_', ' ')}")
        lines.append(
            f"| {point['mode']} | {label} | {point['threshold']:.0%} | {compression} | "
            f"{point['density_font_px'] or '–'} | {point['text_tokens'] or 0:.0f} | {note} |"
        )
    lines += [
        "",
        f"## Planted-fact recall at equal token budgets ({meta['baseline']['facts']} facts in a "
        f"{meta['baseline']['text_tokens']:,}-token chat; hot turns {meta['baseline']['hot_turns']})",
        "",
        "A fact counts when its exact answer string is in the context as the consumer gets it: in a text turn, or in "
        "the reader's output for its page at the level the policy chose. Page densities: "
        f"{meta['memory_density_rule']}. `memory:age` ignores the budget; it is shown at its own cost.",
        "",
        "*CPU OCR fact recall* counts a fact found in the CPU reading of its page; *expected fact recall* counts it "
        "with the probability the consumer's capacity gives that page at its level (a fact in text counts in full), "
        "*expected recall* is the context's own report (share of the session's text read back). Unless marked, the "
        f"reading gate sends pages below min_recall {reading.get('min_recall', 0.9):.0%} as text.",
        "",
        "| strategy | page font px | budget | tokens used | CPU OCR fact recall | expected fact recall "
        "| expected recall | pages by level |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in results["baselines"]:
        levels = ", ".join(f"{k} {v}" for k, v in sorted(row.get("pages_by_level", {}).items()))
        budget = row["budget"] if row["budget"] is not None else "none (age only)"
        lines.append(
            f"| {row['strategy']} | {row['density_font_px'] or '–'} | {budget} | {row['tokens_used']} | "
            f"{_pct(row['fact_recall'])} | {_pct(row.get('expected_fact_recall'))} | "
            f"{_pct(row.get('expected_recall'))} | {levels} |"
        )
    lines += ["", "## Reading cost on this machine", "",
              "CPU seconds per page read (the reading process's own time, all its threads), recorded when each page "
              "was read and kept with the cached reading; wall time is this run's, over the process pool and shared "
              "with whatever else ran (near zero when every reading came from the cache).", "",
              "| what | distinct pages read | read fresh in this run | CPU s per page | wall s |",
              "|---|---:|---:|---:|---:|"]
    for timing in results["timings"]:
        per_page = "–" if timing["cpu_s_per_page"] is None else timing["cpu_s_per_page"]
        lines.append(f"| {timing['what']} | {timing['pages_read']} | {timing['fresh_reads']} | {per_page} | "
                     f"{timing['wall_s']} |")
    lines += ["", f"![precision vs compression]({results['files']['precision_png']})",
              f"![fact recall vs budget]({results['files']['facts_png']})", ""]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def curve_limit(mode: str, threshold: float) -> float | None:
    """The highest compression up to which the published curve (read as the reading model reads it) stays at or
    above ``threshold``; ``None`` when it is below it even at the lowest compression."""
    grid = np.round(np.arange(1.0, 60.0, 0.05), 2)
    passing = [DEEPSEEK_OCR_FOX.estimate(mode, float(c)).recall >= threshold - 1e-9 for c in grid]
    if not passing[0]:
        return None
    return float(grid[passing.index(False) - 1]) if False in passing else float(grid[-1])


def _break_cell(point: dict[str, Any] | None) -> str:
    if point is None:
        return "–"
    if point["compression"] is None:
        sparsest = point.get("sparsest_compression")
        return "below at every density swept" + (f" (sparsest {sparsest:.1f}×)" if sparsest is not None else "")
    beyond = " (still passing at the densest page)" if point["still_passing"] else ""
    return f"{point['compression']:.1f}× ({point['density_font_px']} px){beyond}"


def plot(results: dict[str, Any], out: Path) -> None:
    """Precision/recall vs compression per mode (like the DeepSeek-OCR paper's figure), and fact recall vs budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    times = FuncFormatter(lambda value, _: f"{value:g}×")

    meta = results["meta"]
    table = [row for row in results["sweep_table"] if row["split"] == meta["report_split"]]
    order = [mode.value for mode in SWEEP_MODES]
    modes = sorted(dict.fromkeys(row["mode"] for row in table),
                   key=lambda name: order.index(name) if name in order else len(order))
    deepseek = meta["consumer"] == "deepseek-ocr"
    figure, axes = plt.subplots(1, len(modes), figsize=(max(11.0, 3.6 * len(modes)), 4.8), sharey=True, squeeze=False)
    for axis, mode in zip(axes[0], modes):
        rows = sorted((row for row in table if row["mode"] == mode), key=lambda row: row["compression"])
        x = [row["compression"] for row in rows]
        axis.plot(x, [100 * row["char_precision"] for row in rows], marker="o", color="C0",
                  label=f"{meta['reader']} char precision (pixel legibility)")
        axis.plot(x, [100 * row["word_recall"] for row in rows], marker="s", color="C0", alpha=0.5, linestyle="--",
                  label=f"{meta['reader']} word recall (pixel legibility)")
        expected = [(row["compression"], row["expected_recall"]) for row in rows if row.get("expected_recall") is not None]
        if expected:
            axis.plot([c for c, _ in expected], [100 * value for _, value in expected], marker="x", color="black",
                      linestyle="none", markersize=8, label="expected recall (reading model)")
        if deepseek:
            grid = np.geomspace(min(x + [1.0]), max(x + [60.0]), 200)
            estimates = [DEEPSEEK_OCR_FOX.estimate(mode, c) for c in grid]
            measured = np.array([not e.notes for e in estimates])
            values = np.array([100 * e.recall for e in estimates])
            axis.plot(grid, np.where(measured, values, np.nan), color="C3", linewidth=2,
                      label="DeepSeek-OCR published capacity (Fox)")
            axis.plot(grid, np.where(measured, np.nan, values), color="C3", linestyle=":", linewidth=1.5,
                      label="capacity, extrapolated / read across modes")
            published = DEEPSEEK_OCR_FOX.rows.get(mode, ())
            axis.scatter([p.compression for p in published], [100 * p.precision for p in published], color="C3",
                         zorder=3, s=18)
        for threshold in PRECISION_THRESHOLDS:
            axis.axhline(100 * threshold, color="grey", linewidth=0.6, linestyle=":")
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(times)
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xticks([1, 2, 5, 10, 20, 50])
        axis.set_ylim(0, 102)
        axis.set_xlabel("compression (text / vision tokens)")
        axis.set_title(mode)
        axis.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("% of page text")
    handles, labels = [], []
    for axis in axes[0]:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    who = "CPU OCR, not DeepSeek-OCR decoding" if meta["reader"] != "deepseek-ocr" else "DeepSeek-OCR"
    figure.suptitle(f"Pixel legibility ({meta['reader']}, {who})\nbeside the reading model; consumer "
                    f"{meta['consumer']}, {meta['report_split']} split")
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    figure.savefig(out / results["files"]["precision_png"], dpi=110)
    plt.close(figure)

    baseline_rows = results["baselines"]
    densities = sorted({row["density_font_px"] for row in baseline_rows if row["density_font_px"] is not None},
                       reverse=True)
    strategies = list(dict.fromkeys(row["strategy"] for row in baseline_rows))
    # One colour and marker per strategy across panels; strategies often coincide, so dashes differ too.
    looks = {name: (f"C{number}", "osD^vP"[number % 6], ["-", "--", "-.", ":"][number % 4])
             for number, name in enumerate(strategies)}
    budgets = sorted({row["budget"] for row in baseline_rows if row["budget"] is not None})
    figure, axes = plt.subplots(1, len(densities), figsize=(4.2 * len(densities), 6.0), sharey=True, squeeze=False)
    for axis, font_px in zip(axes[0], densities):
        for name in strategies:
            rows = [row for row in baseline_rows if row["strategy"] == name
                    and row["density_font_px"] in (None, font_px)]
            colour, marker, dashes = looks[name]
            if rows and all(row["budget"] is None for row in rows):
                axis.scatter([row["tokens_used"] for row in rows], [100 * row["fact_recall"] for row in rows],
                             color=colour, marker="x", s=60, label=f"{name} (at its own cost)")
                continue
            rows = sorted(rows, key=lambda row: row["budget"])
            axis.plot([row["budget"] for row in rows], [100 * row["fact_recall"] for row in rows], color=colour,
                      marker=marker, linestyle=dashes, alpha=0.85, label=f"{name}: CPU OCR")
            if name.startswith("memory:"):
                axis.plot([row["budget"] for row in rows], [100 * row["expected_fact_recall"] for row in rows],
                          color=colour, marker=marker, markerfacecolor="none", linestyle=":", alpha=0.85,
                          label=f"{name}: expected (reading model)")
        axis.set_xscale("log")
        axis.set_xticks(budgets)
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("token budget of the whole context")
        axis.set_title(f"memory pages at {font_px} px")
        axis.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("planted facts recalled (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.suptitle(f"Fact recall vs budget ({meta['reader']}, consumer {meta['consumer']}, "
                    f"{meta['baseline']['text_tokens']:,}-token chat)")
    figure.tight_layout(rect=(0, 0.3, 1, 1))
    figure.savefig(out / results["files"]["facts_png"], dpi=110)
    plt.close(figure)


def write_outputs(results: dict[str, Any], out: Path, suffix: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"compression_recall{suffix}.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    plot(results, out)
    (out / f"compression_recall{suffix}.md").write_text(render_markdown(results), encoding="utf-8")


# -- the run ----------------------------------------------------------------------------------------------------


def run(settings: Settings, argv: Sequence[str]) -> dict[str, Any]:
    consumer = get_consumer(settings.consumer)
    reader_options: dict[str, Any] = {}
    if settings.reader == "deepseek-ocr":
        reader_options = {"model": settings.weights, "device": settings.device or _default_device()}
    reader = get_reader(settings.reader, **reader_options)
    cache = ReadCache(settings.cache_dir)
    service = ReadingService(settings.reader, reader, cache, settings.workers)
    preset_px = RenderStyle.preset(consumer.render_preset).font_px
    densities = settings.densities or (
        DEEPSEEK_DENSITIES if isinstance(consumer, DeepSeekOCRConsumer)
        else tuple(max(4, round(preset_px * factor)) for factor in HOST_DENSITY_FACTORS)
    )
    info = provenance(settings, reader, consumer, argv)
    print(f"compression_recall: reader {reader.name}, consumer {consumer.name}, densities {densities}", file=sys.stderr)

    rows: list[dict[str, Any]] = []
    views: list[SweptView] = []
    chat_ids: dict[str, list[str]] = {}
    for split in settings.splits:
        split_rows, conversation, split_views = sweep(settings, consumer, service, split, densities)
        rows += split_rows
        views += split_views
        chat_ids[split] = list(conversation.source_chat_ids)
    report_split = "report" if "report" in settings.splits else settings.splits[-1]
    tune_split = "tune" if "tune" in settings.splits else settings.splits[0]
    tune_table = aggregate(rows, tune_split)
    model = CalibratedRecall(calibration(tune_table), provenance={**info, "split": tune_split})
    reader_model = reading_models(consumer, model)["word_recall"]
    for row, (page, level, tier) in zip(rows, views):
        row.update(expected_reading(consumer, reader_model, page, level, tier, row["vision_tokens"]))
    table = [row for split in settings.splits for row in aggregate(rows, split)]
    report_table = [row for row in table if row["split"] == report_split]
    points = [point for metric in ("char_precision", "char_recall", "char_accuracy", "expected_recall")
              for point in break_points(report_table, metric)]

    calibration_path = settings.calibration_out or (
        CALIBRATION_DIR / f"{settings.reader}_{consumer.name.replace(':', '-')}.json" if not settings.quick
        else settings.out / f"calibration{settings.suffix}.json"
    )
    write_calibration(
        calibration_path, model.points,
        {**info, "split": tune_split, "dataset": "chitchat-paragraphs+planted-facts",
         "chat_ids": chat_ids.get(tune_split, []), "density_measure": "median master line-box height (px)"},
    )

    last_tier = consumer.tiers[-1].name
    tuned_px = memory_density(tune_table, last_tier, preset_px)
    # One step denser than the tuned density shows the regime where blurring loses text and the policies differ.
    denser = [px for px in densities if px < tuned_px]
    memory_densities = settings.memory_densities or tuple(
        dict.fromkeys([preset_px, tuned_px, *([max(denser)] if denser else [])])
    )
    baseline, conversation = baseline_rows(settings, consumer, service, memory_densities, model, report_split)
    chat_ids["baseline"] = list(conversation.source_chat_ids)

    suffix = settings.suffix
    results = {
        "meta": {
            **info,
            "quick": settings.quick,
            "report_split": report_split,
            "tune_split": tune_split,
            "densities_font_px": list(densities),
            "memory_densities_font_px": list(memory_densities),
            "memory_density_rule": f"the consumer preset; the densest swept font px whose {last_tier} char recall >= "
                                   f"{MEMORY_RECALL_FLOOR} on the {tune_split} split; and the next denser one",
            "chat_ids": chat_ids,
            "calibration_file": str(calibration_path),
            "reading_model": {
                "expected_recall": "min(pixel legibility: this run's tune-split CPU OCR calibration, word recall; "
                                   "the consumer's capacity)",
                "capacity": (reader_model.capacity.source if reader_model.capacity is not None
                             else f"none: {consumer.name}'s capacity was never measured (optical-memory calibrate)"),
                "capacity_provenance": dict(DEEPSEEK_OCR_FOX.provenance) if isinstance(consumer, DeepSeekOCRConsumer)
                else None,
                "capacity_tokenizer": DEEPSEEK_TOKENIZER_NAME if isinstance(consumer, DeepSeekOCRConsumer) else None,
                "min_recall": DEFAULT_MIN_RECALL,
            },
            "baseline": {
                "conversation": conversation.id,
                "text_tokens": conversation.text_tokens,
                "turns": len(conversation.turns),
                "facts": len(conversation.facts),
                "budgets": list(settings.budgets),
                "hot_turns": settings.hot_turns,
                "facts_planted": [fact.__dict__ for fact in conversation.facts],
            },
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.__dict__.items()},
        },
        "files": {
            "precision_png": f"compression_recall{suffix}_precision.png",
            "facts_png": f"compression_recall{suffix}_facts.png",
        },
        "sweep": rows,
        "sweep_table": table,
        "break_points": points,
        "baselines": baseline,
        "timings": service.timings,
    }
    write_outputs(results, settings.out, suffix)
    return results


def parse_settings(argv: Sequence[str]) -> tuple[Settings, Path | None]:
    """Settings from the command line (``--quick`` presets first, explicit options over them) and ``--from-json``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compression_recall", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run in under two minutes on two cores")
    parser.add_argument("--reader", default="rapidocr", choices=["rapidocr", "tesseract", "deepseek-ocr"])
    parser.add_argument("--weights", help="DeepSeek-OCR weights directory (for --reader deepseek-ocr)")
    parser.add_argument("--device", help="torch device for --reader deepseek-ocr (default: cuda if available)")
    parser.add_argument("--consumer", default="deepseek-ocr", help="deepseek-ocr or a host: openai:gpt-4o, anthropic…")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--densities", help="body font px to sweep, comma-separated")
    parser.add_argument("--modes", help="modes/tiers to sweep, comma-separated (default: all)")
    parser.add_argument("--splits", help="splits to sweep, comma-separated (default tune,report)")
    parser.add_argument("--sweep-pages", type=int, help="pages per density and split")
    parser.add_argument("--sweep-tokens", type=int, help="tokens of chat text rendered per density")
    parser.add_argument("--sweep-facts", type=int, help="facts planted in the sweep's text")
    parser.add_argument("--budgets", help="token budgets for the baselines, comma-separated")
    parser.add_argument("--baseline-tokens", type=int, help="conversation size (default 10x the largest budget)")
    parser.add_argument("--facts", type=int, help="facts planted in the baseline conversation")
    parser.add_argument("--hot-turns", type=int, help="turns the memory keeps as text")
    parser.add_argument("--memory-densities", help="page font px for the memory (default: preset + tuned)")
    parser.add_argument("--workers", type=int, help="reader processes (default: one per core)")
    parser.add_argument("--cache", help="read cache directory (default .cache/reads)")
    parser.add_argument("--calibration-out", type=Path, help="where to write the recall calibration")
    parser.add_argument("--from-json", type=Path, help="only redraw the Markdown and plots from this results file")
    args = parser.parse_args(argv)
    if args.reader == "deepseek-ocr" and not args.weights:
        parser.error("--reader deepseek-ocr needs --weights DIR")

    def ints(text: str | None) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split(",")) if text else ()

    settings = Settings(reader=args.reader, weights=args.weights, device=args.device, consumer=args.consumer,
                        out=args.out, quick=args.quick)
    if args.quick:
        settings = replace(settings, densities=(20, 12), splits=("report",), sweep_pages=1, sweep_tokens=8000,
                           sweep_facts=8, budgets=(300, 600), baseline_facts=8, hot_turns=4, memory_densities=(20,))
    overrides: dict[str, Any] = {
        "densities": ints(args.densities) or None,
        "modes": tuple(args.modes.split(",")) if args.modes else None,
        "splits": tuple(args.splits.split(",")) if args.splits else None,
        "sweep_pages": args.sweep_pages,
        "sweep_tokens": args.sweep_tokens,
        "sweep_facts": args.sweep_facts,
        "budgets": ints(args.budgets) or None,
        "baseline_tokens": args.baseline_tokens,
        "baseline_facts": args.facts,
        "hot_turns": args.hot_turns,
        "memory_densities": ints(args.memory_densities) or None,
        "workers": args.workers,
        "cache_dir": args.cache,
        "calibration_out": args.calibration_out,
    }
    try:
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as error:
        parser.error(str(error))
    if not settings.baseline_tokens:
        settings = replace(settings, baseline_tokens=10 * max(settings.budgets))
    if settings.baseline_tokens < 10 * max(settings.budgets):
        parser.error("--baseline-tokens must be at least 10x the largest budget")
    return settings, args.from_json


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings, from_json = parse_settings(argv)
    if from_json is not None:
        results = json.loads(from_json.read_text(encoding="utf-8"))
        write_outputs(results, from_json.parent, from_json.stem.removeprefix("compression_recall"))
        return 0
    run(settings, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
