"""Consumers: whoever reads the context, each with its own image pricing rule, tier ladder and render preset.

A consumer is the only place that knows what a page costs. Policies choose a fidelity level (an index into
``tiers``, sharpest first); the consumer turns it into pixels and tokens. Each pricing rule follows its provider's
public documentation, and ``tests/core/test_consumers.py`` checks them against the documented examples.

The ladders keep only sizes at which a smaller image really costs fewer tokens *for that consumer*: for GPT-4o a
640-px page costs the same 765 tokens as a 1280-px one, so its ladder is 768-short-side → 512 → ``detail: low``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

from optical_memory.core.geometry import Fit, Mode, Tier, fitted_size, gundam_grid
from optical_memory.core.tokens import TOKENIZER_NAME, count_tokens
from optical_memory.core.types import Consumer, Page


@dataclass(frozen=True)
class BaseConsumer(ABC):
    """Common machinery: text is counted with the project's tokenizer, pages are priced at their fitted size."""

    name: str
    provider: str
    render_preset: str
    tiers: tuple[Tier, ...]

    tokenizer = TOKENIZER_NAME

    def text_tokens(self, text: str) -> int:
        return count_tokens(text)

    def page_tokens(self, page: Page, level: int) -> int:
        tier = self.tier(level)
        width, height = fitted_size(page.width, page.height, tier)
        return self.image_tokens(width, height, tier)

    def tier(self, level: int) -> Tier:
        if not 0 <= level < len(self.tiers):
            raise ValueError(f"level must be in 0..{len(self.tiers) - 1} for consumer {self.name!r}, got {level}")
        return self.tiers[level]

    @abstractmethod
    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        """Tokens charged for an image of this size as sent (``tier`` carries e.g. OpenAI's ``detail``)."""


@dataclass(frozen=True)
class DeepSeekOCRConsumer(BaseConsumer):
    """The DeepEncoder: valid vision tokens per DeepSeek-OCR mode (the paper's count)."""

    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        mode = tier.mode if tier is not None and tier.mode is not None else Mode.GUNDAM
        return mode.valid_tokens(gundam_grid(width, height) if mode is Mode.GUNDAM else (1, 1))

    def decoder_positions(self, page: Page, level: int) -> int:
        """Decoder positions of ``page`` at ``level``: valid tokens plus row newlines and the view separator."""
        mode = self.tier(level).mode
        assert mode is not None
        return mode.decoder_positions(gundam_grid(page.width, page.height) if mode is Mode.GUNDAM else (1, 1))


@dataclass(frozen=True)
class OpenAITileConsumer(BaseConsumer):
    """GPT-4o class, high detail: fit in 2048², shortest side down to 768, then base + per-512-px-tile cost.

    Low detail is a flat ``base``. (OpenAI's vision guide: a 1024² image costs 765, 2048×4096 costs 1105.)
    """

    base: int = 85
    per_tile: int = 170

    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        if tier is not None and tier.detail == "low":
            return self.base
        scale = min(1.0, 2048 / max(width, height))
        width, height = width * scale, height * scale
        scale = min(1.0, 768 / min(width, height))
        width, height = width * scale, height * scale
        return self.base + self.per_tile * math.ceil(width / 512) * math.ceil(height / 512)


@dataclass(frozen=True)
class OpenAIPatchConsumer(BaseConsumer):
    """GPT-4.1-mini class: 32-px patches, capped at 1,536 (image shrunk to fit), times a per-model multiplier."""

    multiplier: float = 1.62
    max_patches: int = 1536

    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        patches = math.ceil(width / 32) * math.ceil(height / 32)
        if patches > self.max_patches:
            shrink = math.sqrt(32 * 32 * self.max_patches / (width * height))
            width, height = width * shrink, height * shrink
            whole_columns = math.floor(width / 32) / (width / 32)
            width, height = width * whole_columns, height * whole_columns
            patches = math.ceil(width / 32) * math.ceil(height / 32)
        return math.ceil(patches * self.multiplier)


@dataclass(frozen=True)
class AnthropicConsumer(BaseConsumer):
    """Claude: about width·height/750 tokens, long edge at most 1568 px and about 1.15 megapixels (1,600 tokens)."""

    max_long_edge: int = 1568
    max_tokens: int = 1600

    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        scale = min(1.0, self.max_long_edge / max(width, height))
        area = width * height * scale * scale
        return min(self.max_tokens, math.ceil(area / 750))


@dataclass(frozen=True)
class GeminiConsumer(BaseConsumer):
    """Gemini 2.x: 258 tokens when both sides are <= 384 px, else 258 per tile.

    The tile side is min(width, height) / 1.5 clamped to [256, 768], so any page over 384 px costs at least four
    tiles (~1,032 tokens): Gemini gains only from dense pages, or from pages shrunk to <= 384 px.
    """

    per_tile: int = 258

    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        if width <= 384 and height <= 384:
            return self.per_tile
        unit = min(768, max(256, math.floor(min(width, height) / 1.5)))
        return self.per_tile * math.ceil(width / unit) * math.ceil(height / unit)


@dataclass(frozen=True)
class QwenVLConsumer(BaseConsumer):
    """Qwen2.5-VL: sides rounded to multiples of 28 (within min/max pixels), one token per 28×28 block."""

    factor: int = 28
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 16384

    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        f = self.factor
        h, w = max(f, round(height / f) * f), max(f, round(width / f) * f)
        if h * w > self.max_pixels:
            beta = math.sqrt(height * width / self.max_pixels)
            h, w = math.floor(height / beta / f) * f, math.floor(width / beta / f) * f
        elif h * w < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (height * width))
            h, w = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
        return (h // f) * (w // f)


def _mode_tiers(*modes: Mode) -> tuple[Tier, ...]:
    return tuple(Tier(mode.value, mode.size, mode.fit, mode=mode) for mode in modes)


def _scaled_tiers(*sizes: int) -> tuple[Tier, ...]:
    return tuple(Tier(f"{size}px", size, Fit.SCALE) for size in sizes)


# A 640-px page costs GPT-4o as much as a 1280-px one (4 tiles), so the ladder is 768 short side, one tile, low.
_OPENAI_TILE_TIERS = (
    Tier("high-768", 768, Fit.SCALE, detail="high"),
    Tier("high-512", 512, Fit.SCALE, detail="high"),
    Tier("low", 512, Fit.SCALE, detail="low"),
)

_REGISTRY: dict[str, BaseConsumer] = {
    consumer.name: consumer
    for consumer in (
        DeepSeekOCRConsumer(
            "deepseek-ocr", "deepseek", "deepseek-ocr", _mode_tiers(Mode.LARGE, Mode.BASE, Mode.SMALL, Mode.TINY)
        ),
        OpenAITileConsumer("openai:gpt-4o", "openai", "openai", _OPENAI_TILE_TIERS),
        OpenAITileConsumer("openai:gpt-4o-mini", "openai", "openai", _OPENAI_TILE_TIERS, base=2833, per_tile=5667),
        OpenAIPatchConsumer("openai:gpt-4.1-mini", "openai", "openai", _scaled_tiers(1024, 768, 512, 384)),
        AnthropicConsumer("anthropic", "anthropic", "anthropic", _scaled_tiers(1092, 768, 512, 384)),
        GeminiConsumer("gemini", "google", "gemini", _scaled_tiers(768, 384)),
        QwenVLConsumer("qwen-vl", "qwen", "qwen-vl", _scaled_tiers(1024, 768, 512, 384)),
    )
}

_ALIASES = {
    "deepseek": "deepseek-ocr",
    "openai": "openai:gpt-4o",
    "gpt-4o": "openai:gpt-4o",
    "gpt-4o-mini": "openai:gpt-4o-mini",
    "gpt-4.1-mini": "openai:gpt-4.1-mini",
    "claude": "anthropic",
    "google": "gemini",
    "google_genai": "gemini",
    "qwen": "qwen-vl",
}


def consumer_names() -> list[str]:
    """Every consumer name ``get_consumer`` accepts (aliases excluded)."""
    return sorted(_REGISTRY)


def get_consumer(consumer: str | Consumer) -> BaseConsumer:
    """Look a consumer up by name: ``deepseek-ocr``, ``openai:gpt-4o``, ``anthropic``, ``gemini``, ``qwen-vl`` ….

    Provider-qualified model names fall back to their provider's rule (``anthropic:claude-sonnet-4`` →
    ``anthropic``, ``openai:gpt-4o-2024-08-06`` → ``openai:gpt-4o``, ``google:gemini-2.5-pro`` → ``gemini``).
    """
    if isinstance(consumer, BaseConsumer):
        return consumer
    if not isinstance(consumer, str):
        raise TypeError(f"consumer must be a name or a Consumer, got {type(consumer).__name__}")
    key = consumer.strip().lower()
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return _REGISTRY[key]
    provider, _, model = key.partition(":")
    if provider == "openai" and model:
        for known in sorted((n for n in _REGISTRY if n.startswith("openai:")), key=len, reverse=True):
            if model.startswith(known.partition(":")[2]):
                return _REGISTRY[known]
    if provider in _ALIASES and model:
        return _REGISTRY[_ALIASES[provider]]
    if model.startswith("gemini") or provider == "gemini":
        return _REGISTRY["gemini"]
    if model.startswith("claude") or provider == "anthropic":
        return _REGISTRY["anthropic"]
    raise ValueError(f"consumer {consumer!r} is unknown; known: {', '.join(consumer_names())}")
