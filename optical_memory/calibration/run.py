"""``run_calibration``: planted-fact pages at each density and tier, sent to a chat endpoint, scored, written out.

Each page is sent once per tier, fitted as the consumer receives it, with one question per fact whose sentence it
shows. A fact counts as recalled when its exact answer string is in the reply (both NFKC-normalised, whitespace
collapsed). Recall per tier and density comes with a 95% Wilson interval over the facts asked. Text and image tokens
are the consumer's own counts, so compression here is what the consumer is charged.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import statistics
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from optical_memory.calibration.client import ChatEndpoint, ResponseCache
from optical_memory.calibration.pages import CalibrationPage, Fact, planted_pages
from optical_memory.core.consumers import BaseConsumer, get_consumer
from optical_memory.core.imaging import encode_png, fit_to_tier
from optical_memory.core.validation import validate_int
from optical_memory.policies.legibility import line_height
from optical_memory.policies.reading import CALIBRATION_FORMAT, wilson_interval
from optical_memory.renderers import RenderStyle

PROMPT = (
    "The image is one page of an earlier conversation. Answer each question with the exact text the page shows "
    "(names, numbers, codes and dates as written), one numbered answer per line; write 'unknown' where the page does "
    "not say."
)
SCORING = "exact match: the answer string occurs in the reply (both NFKC-normalised, whitespace collapsed)"
# The densities measured by default, as multiples of the consumer's preset font size: the preset and two denser.
DENSITY_FACTORS = (1.0, 0.8, 0.65)
_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
_WHITESPACE = re.compile(r"\s+")


def _normalise(text: str) -> str:
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


@dataclass(frozen=True)
class CalibrationSettings:
    """What to measure and where. ``model`` defaults to the consumer name's model part (``openai:gpt-4o`` →
    ``gpt-4o``); ``api_key_env`` to ``OPENAI_API_KEY``/``ANTHROPIC_API_KEY`` (unset: no key is sent, as a local
    server wants); ``max_requests`` caps the requests sent in this run (cached replies are free)."""

    consumer: str
    endpoint: str
    out: Path
    cache_dir: Path
    model: str | None = None
    api_format: str = "openai"
    api_key_env: str | None = None
    tiers: tuple[str, ...] = ()
    densities: tuple[int, ...] = ()
    pages: int = 3
    words_between_facts: int = 60
    seed: int = 0
    max_requests: int | None = None
    max_output_tokens: int = 400
    timeout: float = 120.0
    command: str = ""

    def __post_init__(self) -> None:
        validate_int(self.pages, field_name="pages", minimum=1)
        validate_int(self.max_output_tokens, field_name="max_output_tokens", minimum=1)
        if self.max_requests is not None:
            validate_int(self.max_requests, field_name="max_requests", minimum=0)
        for density in self.densities:
            validate_int(density, field_name="densities", minimum=4)


@dataclass(frozen=True)
class Job:
    """One request: a page at one of the consumer's levels."""

    page: CalibrationPage
    level: int
    body: dict
    key: str

    @property
    def facts(self) -> tuple[Fact, ...]:
        return self.page.facts


@dataclass
class CalibrationResult:
    """What a run did: the file written, requests sent and answered from the cache, and whether every one was."""

    path: Path
    requests: int
    sent: int
    cached: int
    complete: bool
    points: list[dict] = field(default_factory=list)


def prompt_for(facts: Sequence[Fact]) -> str:
    return PROMPT + "\n" + "\n".join(f"{number}. {fact.question}" for number, fact in enumerate(facts, start=1))


def endpoint_of(settings: CalibrationSettings, consumer: BaseConsumer) -> ChatEndpoint:
    model = settings.model or consumer.name.partition(":")[2] or consumer.name
    variable = settings.api_key_env or _KEY_ENV.get(settings.api_format)
    key = os.environ.get(variable) if variable else None
    if settings.api_key_env and key is None:
        raise ValueError(f"api_key_env: the environment variable {settings.api_key_env!r} is not set")
    return ChatEndpoint(settings.endpoint, model, settings.api_format, key, settings.max_output_tokens,
                        settings.timeout)


def plan(settings: CalibrationSettings, consumer: BaseConsumer, endpoint: ChatEndpoint) -> list[Job]:
    """Every request of the calibration, in order: densities, then pages, then tiers sharpest first."""
    names = [tier.name for tier in consumer.tiers]
    unknown = [name for name in settings.tiers if name not in names]
    if unknown:
        raise ValueError(f"tiers {unknown} are not on {consumer.name}'s ladder {names}")
    levels = [level for level, name in enumerate(names) if not settings.tiers or name in settings.tiers]
    style = RenderStyle.preset(consumer.render_preset)
    densities = settings.densities or tuple(dict.fromkeys(max(4, round(style.font_px * f)) for f in DENSITY_FACTORS))
    jobs = []
    for font_px in densities:
        for page in planted_pages(style, font_px, pages=settings.pages, seed=settings.seed,
                                  words_between_facts=settings.words_between_facts):
            for level in levels:
                png = encode_png(fit_to_tier(page.image, consumer.tiers[level]))
                body = endpoint.body(png, consumer.tiers[level], prompt_for(page.facts))
                jobs.append(Job(page, level, body, ResponseCache.key(endpoint, body)))
    return jobs


def cost_estimate(jobs: Sequence[Job], consumer: BaseConsumer, cache: ResponseCache, settings: CalibrationSettings,
                  ) -> dict[str, int]:
    """Requests to send and their tokens as ``consumer`` prices them (input: image + prompt; output: the cap)."""
    uncached = [job for job in jobs if cache.get(job.key) is None]
    pending = uncached if settings.max_requests is None else uncached[: settings.max_requests]
    image = sum(consumer.page_tokens(job.page.page, job.level) for job in pending)
    prompt = sum(consumer.text_tokens(prompt_for(job.facts)) for job in pending)
    return {"requests": len(jobs), "cached": len(jobs) - len(uncached),
            "to_send": len(pending), "image_tokens": image, "prompt_tokens": prompt,
            "output_tokens_at_most": len(pending) * settings.max_output_tokens}


def describe_estimate(estimate: dict[str, int], consumer: BaseConsumer) -> str:
    return (f"{estimate['requests']} requests, {estimate['cached']} answered from the cache, {estimate['to_send']} to "
            f"send now: about {estimate['image_tokens'] + estimate['prompt_tokens']:,} input tokens "
            f"({estimate['image_tokens']:,} image + {estimate['prompt_tokens']:,} prompt, priced by {consumer.name}) "
            f"and at most {estimate['output_tokens_at_most']:,} output tokens")


def run_calibration(settings: CalibrationSettings, *, log: Callable[[str], None] = print,
                    progress: bool = True, dry_run: bool = False) -> CalibrationResult:
    """Measure, print the cost estimate first, and write ``settings.out`` (also after a capped, partial run)."""
    consumer = get_consumer(settings.consumer)
    endpoint = endpoint_of(settings, consumer)
    cache = ResponseCache(settings.cache_dir)
    jobs = plan(settings, consumer, endpoint)
    estimate = cost_estimate(jobs, consumer, cache, settings)
    log(describe_estimate(estimate, consumer))
    if dry_run:
        return CalibrationResult(settings.out, len(jobs), 0, estimate["cached"], False)
    replies: dict[str, str] = {}
    sent = cached = 0
    for job in tqdm(jobs, desc="calibrating", unit="request", disable=not progress):
        reply = cache.get(job.key)
        if reply is not None:
            cached += 1
        elif settings.max_requests is not None and sent >= settings.max_requests:
            continue
        else:
            reply = endpoint.send(job.body)
            cache.put(job.key, reply)
            sent += 1
        replies[job.key] = reply
    complete = len(replies) == len(jobs)
    if not complete:
        log(f"stopped at --max-requests {settings.max_requests}: {len(jobs) - len(replies)} requests left; run the "
            "same command again to continue (answered requests come from the cache)")
    points = _points(jobs, replies, consumer)
    _write(settings, consumer, endpoint, jobs, points, complete)
    return CalibrationResult(settings.out, len(jobs), sent, cached, complete, points)


def _points(jobs: Sequence[Job], replies: dict[str, str], consumer: BaseConsumer) -> list[dict]:
    groups: dict[tuple[int, int], list[tuple[Job, int]]] = {}
    for job in jobs:
        if job.key not in replies:
            continue
        reply = _normalise(replies[job.key])
        recalled = sum(_normalise(fact.answer) in reply for fact in job.facts)
        groups.setdefault((job.level, job.page.density_font_px), []).append((job, recalled))
    points = []
    for (level, font_px), members in sorted(groups.items()):
        text_tokens = statistics.fmean(consumer.text_tokens(job.page.page.text) for job, _ in members)
        image_tokens = statistics.fmean(consumer.page_tokens(job.page.page, level) for job, _ in members)
        facts = sum(len(job.facts) for job, _ in members)
        recalled = sum(count for _, count in members)
        low, high = wilson_interval(recalled, facts)
        heights = [height for job, _ in members if (height := line_height(job.page.page)) is not None]
        points.append({
            "tier": consumer.tiers[level].name, "density_font_px": font_px,
            "line_height_px": statistics.median(heights) if heights else None, "pages": len(members),
            "text_tokens": round(text_tokens, 1), "image_tokens": round(image_tokens, 1),
            "compression": round(text_tokens / image_tokens, 3), "facts": facts, "recalled": recalled,
            "recall": round(recalled / facts, 5) if facts else 0.0, "ci_low": round(low, 5), "ci_high": round(high, 5),
        })
    return points


def _write(settings: CalibrationSettings, consumer: BaseConsumer, endpoint: ChatEndpoint, jobs: Sequence[Job],
           points: list[dict], complete: bool) -> None:
    densities = sorted({job.page.density_font_px for job in jobs}, reverse=True)
    data = {
        "format": CALIBRATION_FORMAT,
        "provenance": {
            "consumer": consumer.name,
            "model": endpoint.model,
            "endpoint": endpoint.request_url,
            "api_format": endpoint.api_format,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": settings.command,
            "tokenizer": consumer.tokenizer,
            "render_preset": consumer.render_preset,
            "seed": settings.seed,
            "pages_per_density": settings.pages,
            "words_between_facts": settings.words_between_facts,
            "prompt": PROMPT,
            "scoring": SCORING,
            "interval": "95% Wilson score interval over the facts asked",
            "requests": len(jobs),
            "complete": complete,
        },
        "tiers": [tier.name for level, tier in enumerate(consumer.tiers) if any(job.level == level for job in jobs)],
        "densities_font_px": densities,
        "points": points,
    }
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
