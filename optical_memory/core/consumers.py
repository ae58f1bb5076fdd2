"""Consumers: whoever reads the context, each with its own image pricing rule, tier ladder, render preset and tokenizer.

A consumer is the only place that knows what a page costs. Policies choose a fidelity level (an index into
``tiers``, sharpest first); the consumer turns it into pixels and tokens, and counts text with its own tokenizer.

The pricing *rules* are code (one class per rule, below); which model follows which rule with which numbers, which
tokenizer counts its text, and where each fact was read is *data*: ``models.json`` beside this file. A model name
no family of ``models.json`` lists is a ``ValueError`` naming the known ones, never a guess; an unlisted model (a
fine-tune, a model newer than the table) is priced by naming its rule: ``get_consumer("openai:my-tune",
rule="openai-tile")``. ``tests/core/test_consumers.py`` checks every rule against its provider's worked examples.

The ladders keep only sizes at which a smaller image really costs fewer tokens *for that rule*: for GPT-4o a 640-px
page costs the same 765 tokens as a 1280-px one, so its ladder is 768-short-side → 512 → ``detail: low``.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources
from typing import Any, ClassVar, Mapping

from optical_memory.core.geometry import Fit, Mode, Tier, fitted_size, gundam_grid
from optical_memory.core.tokens import count_tokens, encoding_label
from optical_memory.core.types import Consumer, Page


def _mode_tiers(*modes: Mode) -> tuple[Tier, ...]:
    return tuple(Tier(mode.value, mode.size, mode.fit, mode=mode) for mode in modes)


def _scaled_tiers(*sizes: int) -> tuple[Tier, ...]:
    return tuple(Tier(f"{size}px", size, Fit.SCALE) for size in sizes)


@dataclass(frozen=True)
class BaseConsumer(ABC):
    """Common machinery: text counted with ``encoding``, pages priced at their fitted size.

    ``name`` is the model as asked for (``openai:gpt-4o-2024-08-06``) or a family's name; ``family`` names the
    ``models.json`` family whose numbers it uses (``rule:<rule>`` when built from a rule name). ``tokenizer_proxy``
    says why the text count is only a stand-in when the provider's own tokenizer is not available (``None``: exact).
    """

    name: str
    provider: str
    render_preset: str
    tiers: tuple[Tier, ...]
    encoding: str = "o200k_base"
    tokenizer_proxy: str | None = None
    family: str = ""

    rule: ClassVar[str]
    default_provider: ClassVar[str]
    default_preset: ClassVar[str]
    default_tiers: ClassVar[tuple[Tier, ...]]
    default_tokenizer_proxy: ClassVar[str | None] = None

    @property
    def tokenizer(self) -> str:
        """The tokenizer that counts this consumer's text, as the token report names it (proxies say so)."""
        label = encoding_label(self.encoding)
        return label if self.tokenizer_proxy is None else f"{label}; proxy: {self.tokenizer_proxy}"

    @property
    def tokenizer_exact(self) -> bool:
        """Whether text is counted with the tokenizer the provider itself bills with."""
        return self.tokenizer_proxy is None

    def text_tokens(self, text: str) -> int:
        return count_tokens(text, self.encoding)

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

    rule: ClassVar[str] = "deepseek-ocr"
    default_provider: ClassVar[str] = "deepseek"
    default_preset: ClassVar[str] = "deepseek-ocr"
    default_tiers: ClassVar[tuple[Tier, ...]] = _mode_tiers(Mode.LARGE, Mode.BASE, Mode.SMALL, Mode.TINY)
    default_tokenizer_proxy: ClassVar[str | None] = "DeepSeek-OCR's own tokenizer ships with its weights"

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
    """GPT-4o class, high detail: fit in 2048², shortest side down to 768, then ``base`` + ``per_tile`` per 512-px
    tile; low detail is a flat ``base``. (OpenAI's vision guide: a 1024² image costs 765, 2048×4096 costs 1105.)"""

    base: int = 85
    per_tile: int = 170

    rule: ClassVar[str] = "openai-tile"
    default_provider: ClassVar[str] = "openai"
    default_preset: ClassVar[str] = "openai"
    # A 640-px page costs GPT-4o as much as a 1280-px one (4 tiles), so the ladder is 768 short side, one tile, low.
    default_tiers: ClassVar[tuple[Tier, ...]] = (
        Tier("high-768", 768, Fit.SCALE, detail="high"),
        Tier("high-512", 512, Fit.SCALE, detail="high"),
        Tier("low", 512, Fit.SCALE, detail="low"),
    )

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
    """GPT-4.1-mini / GPT-5.x class: 32-px patches times ``multiplier`` (rounded up), after an image over
    ``max_side`` px or over ``max_patches`` patches is shrunk, aspect kept, to fit the tighter of the two (the shrink
    then trimmed so that whole patches fit the budget). ``detail`` does not change what these models are billed for
    a page, so the ladder is pixel sizes. (OpenAI's vision guide: 1800×2400 → 1056×1408 = 1,452 patches.)"""

    multiplier: float = 1.62
    max_patches: int = 1536
    max_side: int = 2048

    rule: ClassVar[str] = "openai-patch"
    default_provider: ClassVar[str] = "openai"
    default_preset: ClassVar[str] = "openai"
    default_tiers: ClassVar[tuple[Tier, ...]] = _scaled_tiers(1024, 768, 512, 384)

    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        scale = min(1.0, self.max_side / max(width, height))
        if math.ceil(width * scale / 32) * math.ceil(height * scale / 32) > self.max_patches:
            scale = min(scale, math.sqrt(32 * 32 * self.max_patches / (width * height)))
            scale *= min(math.floor(side * scale / 32) / (side * scale / 32) for side in (width, height))
        # Pixel sizes rounded up (after float noise is rounded off) so that no started patch is missed.
        columns = math.ceil(math.ceil(round(width * scale, 6)) / 32)
        rows = math.ceil(math.ceil(round(height * scale, 6)) / 32)
        patches = min(self.max_patches, columns * rows)
        # Rounded first so that float noise (150 x 1.62 = 243.00000000000003) does not add a token.
        return math.ceil(round(patches * self.multiplier, 6))


@dataclass(frozen=True)
class AnthropicAreaConsumer(BaseConsumer):
    """Claude as its docs first priced images: about width·height/750 tokens, the long edge at most
    ``max_long_edge`` and the image at most ~1.15 megapixels (``max_tokens``)."""

    max_long_edge: int = 1568
    max_tokens: int = 1600

    rule: ClassVar[str] = "anthropic-area"
    default_provider: ClassVar[str] = "anthropic"
    default_preset: ClassVar[str] = "anthropic"
    default_tiers: ClassVar[tuple[Tier, ...]] = _scaled_tiers(1092, 768, 512, 384)
    default_tokenizer_proxy: ClassVar[str | None] = "Anthropic publishes no tokenizer"

    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        scale = min(1.0, self.max_long_edge / max(width, height))
        area = width * height * scale * scale
        return min(self.max_tokens, math.ceil(area / 750))


@dataclass(frozen=True)
class AnthropicPatchConsumer(BaseConsumer):
    """Claude's current rule: one visual token per 28×28-px patch, ⌈w/28⌉·⌈h/28⌉, after an image too large for the
    model is shrunk to the largest aspect-kept size whose padded sides fit ``max_long_edge`` and whose patches fit
    ``max_visual_tokens`` (1568/1568 for most models, 2576/4784 for the high-resolution ones)."""

    max_long_edge: int = 1568
    max_visual_tokens: int = 1568

    rule: ClassVar[str] = "anthropic-patch"
    default_provider: ClassVar[str] = "anthropic"
    default_preset: ClassVar[str] = "anthropic"
    default_tiers: ClassVar[tuple[Tier, ...]] = _scaled_tiers(1092, 768, 512, 384)
    default_tokenizer_proxy: ClassVar[str | None] = "Anthropic publishes no tokenizer"

    def _fits(self, width: int, height: int) -> bool:
        columns, rows = math.ceil(width / 28), math.ceil(height / 28)
        return 28 * max(columns, rows) <= self.max_long_edge and columns * rows <= self.max_visual_tokens

    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        long_side, short_side = max(width, height), min(width, height)
        if not self._fits(long_side, short_side):
            # Both limits only tighten as the long side grows, so the largest long side that fits is found by
            # bisection, the short side following it at the image's aspect ratio.
            low, high = 1, long_side
            while low < high:
                middle = (low + high + 1) // 2
                if self._fits(middle, max(1, round(middle * short_side / long_side))):
                    low = middle
                else:
                    high = middle - 1
            long_side, short_side = low, max(1, round(low * short_side / long_side))
        return math.ceil(long_side / 28) * math.ceil(short_side / 28)


@dataclass(frozen=True)
class GeminiTileConsumer(BaseConsumer):
    """Gemini 1.5–2.5: ``per_tile`` tokens when both sides are <= 384 px, else ``per_tile`` per tile.

    The tile side is min(width, height) / 1.5 clamped to [256, 768], so any page over 384 px costs at least four
    tiles (~1,032 tokens): Gemini gains only from dense pages, or from pages shrunk to <= 384 px.
    """

    per_tile: int = 258

    rule: ClassVar[str] = "gemini-tile"
    default_provider: ClassVar[str] = "google"
    default_preset: ClassVar[str] = "gemini"
    default_tiers: ClassVar[tuple[Tier, ...]] = _scaled_tiers(768, 384)
    default_tokenizer_proxy: ClassVar[str | None] = "Google publishes no offline Gemini tokenizer"

    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        if width <= 384 and height <= 384:
            return self.per_tile
        unit = min(768, max(256, math.floor(min(width, height) / 1.5)))
        return self.per_tile * math.ceil(width / unit) * math.ceil(height / unit)


def _media_resolution_tiers(*rungs: tuple[str, int]) -> tuple[Tier, ...]:
    return tuple(Tier(level.lower(), size, Fit.SCALE, media_resolution=f"MEDIA_RESOLUTION_{level}") for level, size in rungs)


@dataclass(frozen=True)
class GeminiFlatConsumer(BaseConsumer):
    """Gemini 3: an image costs the flat budget of the ``media_resolution`` level it is sent at, whatever its pixels:
    ``high_tokens`` (also for an image sent without a level, the default for images), ``medium_tokens``,
    ``low_tokens``, and ``ultra_high_tokens`` (a per-part level for computer use, priced when an image arrives with
    it but not on the ladder, which starts at the default).

    The ladder is HIGH → MEDIUM → LOW, each level sent on the page's image part. Pixels do not change the price, so
    each rung renders the page at the size that keeps the pixels per token of the 768-px HIGH rung (768² / 1,120):
    768 → 544 → 384 px. Pixel legibility at a rung then claims no more detail than its token budget carries.
    """

    high_tokens: int = 1120
    medium_tokens: int = 560
    low_tokens: int = 280
    ultra_high_tokens: int = 2240

    rule: ClassVar[str] = "gemini-flat"
    default_provider: ClassVar[str] = "google"
    default_preset: ClassVar[str] = "gemini"
    default_tiers: ClassVar[tuple[Tier, ...]] = _media_resolution_tiers(("HIGH", 768), ("MEDIUM", 544), ("LOW", 384))
    default_tokenizer_proxy: ClassVar[str | None] = "Google publishes no offline Gemini tokenizer"

    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        level = None if tier is None else tier.media_resolution
        budgets = {
            None: self.high_tokens,
            "MEDIA_RESOLUTION_UNSPECIFIED": self.high_tokens,
            "MEDIA_RESOLUTION_HIGH": self.high_tokens,
            "MEDIA_RESOLUTION_MEDIUM": self.medium_tokens,
            "MEDIA_RESOLUTION_LOW": self.low_tokens,
            "MEDIA_RESOLUTION_ULTRA_HIGH": self.ultra_high_tokens,
        }
        if level not in budgets:
            known = ", ".join(name for name in budgets if name is not None)
            raise ValueError(f"media_resolution {level!r} is not a Gemini 3 level; known: {known}")
        return budgets[level]


@dataclass(frozen=True)
class QwenVLConsumer(BaseConsumer):
    """Qwen-VL: sides rounded to multiples of ``factor`` (28 for Qwen2/2.5-VL, 32 for Qwen3-VL) with the area kept
    within ``min_tokens``..``max_tokens`` blocks, one token per ``factor``×``factor`` block."""

    factor: int = 28
    min_tokens: int = 4
    max_tokens: int = 16384

    rule: ClassVar[str] = "qwen-vl"
    default_provider: ClassVar[str] = "qwen"
    default_preset: ClassVar[str] = "qwen-vl"
    default_tiers: ClassVar[tuple[Tier, ...]] = _scaled_tiers(1024, 768, 512, 384)
    default_tokenizer_proxy: ClassVar[str | None] = "Qwen's tokenizer ships with its weights, not installed here"

    def image_tokens(self, width: int, height: int, tier: Tier | None = None) -> int:
        f = self.factor
        min_pixels, max_pixels = self.min_tokens * f * f, self.max_tokens * f * f
        h, w = max(f, round(height / f) * f), max(f, round(width / f) * f)
        if h * w > max_pixels:
            beta = math.sqrt(height * width / max_pixels)
            h, w = math.floor(height / beta / f) * f, math.floor(width / beta / f) * f
        elif h * w < min_pixels:
            beta = math.sqrt(min_pixels / (height * width))
            h, w = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
        return (h // f) * (w // f)


RULES: dict[str, type[BaseConsumer]] = {
    cls.rule: cls
    for cls in (
        DeepSeekOCRConsumer,
        OpenAITileConsumer,
        OpenAIPatchConsumer,
        AnthropicAreaConsumer,
        AnthropicPatchConsumer,
        GeminiTileConsumer,
        GeminiFlatConsumer,
        QwenVLConsumer,
    )
}

_BASE_FIELDS = {f.name for f in fields(BaseConsumer)}


def rule_params(rule: str) -> dict[str, Any]:
    """The numbers ``rule`` takes, with their defaults (``ValueError`` naming the rules for an unknown one)."""
    return {f.name: f.default for f in fields(_rule_class(rule)) if f.name not in _BASE_FIELDS}


def _rule_class(rule: object) -> type[BaseConsumer]:
    if not isinstance(rule, str):
        raise TypeError(f"rule must be a string, got {type(rule).__name__}")
    try:
        return RULES[rule]
    except KeyError:
        raise ValueError(f"rule {rule!r} is unknown; known: {', '.join(RULES)}") from None


def make_consumer(
    rule: str,
    *,
    name: str,
    provider: str | None = None,
    encoding: str | None = None,
    tokenizer_proxy: str | None = None,
    family: str | None = None,
    **params: Any,
) -> BaseConsumer:
    """A consumer priced by ``rule`` (one of ``RULES``) with ``params`` in place of the rule's defaults.

    Without ``encoding``, text counts with ``o200k_base`` (``deepseek-v4`` for the DeepEncoder), and the rule says
    whether that is a proxy for its provider. ``ValueError``/``TypeError`` name the bad argument.
    """
    cls = _rule_class(rule)
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    known = rule_params(rule)
    for key, value in params.items():
        if key not in known:
            raise TypeError(f"{key} is not a parameter of rule {rule!r}; it takes: {', '.join(known) or 'none'}")
        wanted = type(known[key])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (wanted is int and not isinstance(value, int)):
            raise TypeError(f"{key} must be {'an int' if wanted is int else 'a number'}, got {value!r}")
        if not value > 0:
            raise ValueError(f"{key} must be positive, got {value!r}")
    if encoding is None:
        encoding = "deepseek-v4" if cls is DeepSeekOCRConsumer else "o200k_base"
        tokenizer_proxy = cls.default_tokenizer_proxy if tokenizer_proxy is None else tokenizer_proxy
    else:
        encoding_label(encoding)
    return cls(
        name=name,
        provider=provider or cls.default_provider,
        render_preset=cls.default_preset,
        tiers=cls.default_tiers,
        encoding=encoding,
        tokenizer_proxy=tokenizer_proxy,
        family=family if family is not None else f"rule:{rule}",
        **params,
    )


# -- the model registry -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFamily:
    """One entry of ``models.json``: the models that share a rule and its numbers, and where that was read."""

    name: str
    provider: str
    models: tuple[str, ...]
    rule: str
    params: Mapping[str, Any]
    encoding: str
    tokenizer_proxy: str | None
    sources: tuple[Mapping[str, str], ...]

    def consumer(self, name: str | None = None) -> BaseConsumer:
        return make_consumer(
            self.rule,
            name=name or self.name,
            provider=self.provider,
            encoding=self.encoding,
            tokenizer_proxy=self.tokenizer_proxy,
            family=self.name,
            **self.params,
        )


def _load_registry() -> tuple[dict[str, ModelFamily], dict[str, str]]:
    data = json.loads(resources.files("optical_memory.core").joinpath("models.json").read_text(encoding="utf-8"))
    families: dict[str, ModelFamily] = {}
    for entry in data["families"]:
        family = ModelFamily(
            name=entry["name"],
            provider=entry["provider"],
            models=tuple(entry["models"]),
            rule=entry["rule"],
            params=dict(entry["params"]),
            encoding=entry["tokenizer"]["encoding"],
            tokenizer_proxy=entry["tokenizer"].get("proxy"),
            sources=tuple(entry["sources"]),
        )
        if family.name in families:
            raise ValueError(f"models.json lists family {family.name!r} twice")
        family.consumer()  # an unknown rule, parameter or encoding fails here, at import, not at first use
        families[family.name] = family
    aliases = dict(data["aliases"])
    for alias, target in aliases.items():
        if target not in families:
            raise ValueError(f"models.json alias {alias!r} points at unknown family {target!r}")
    return families, aliases


_FAMILIES, _ALIASES = _load_registry()
_EXACT: dict[str, ModelFamily] = {}
_GLOBS: list[tuple[re.Pattern[str], str, ModelFamily]] = []
for _family in _FAMILIES.values():
    for _pattern in _family.models:
        if any(char in _pattern for char in "*?["):
            _GLOBS.append((re.compile(fnmatch.translate(_pattern)), _pattern, _family))
        elif _EXACT.setdefault(_pattern, _family) is not _family:
            raise ValueError(f"models.json lists model {_pattern!r} in two families")
# The glob with the longest literal part is the most specific: it wins over a broader one.
_GLOBS.sort(key=lambda item: -len(item[1].replace("*", "").replace("?", "")))

_PROVIDER_PREFIX = re.compile(r"([a-z][a-z0-9_-]*):(.+)")
_BEDROCK_PREFIX = re.compile(r"(?:(?:us|eu|apac|global|jp|au|ca)\.)?(?:anthropic|openai|google|qwen|deepseek)\.")
_VERTEX_VERSION = re.compile(r"@[a-z0-9.-]+$")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def normalize_model(text: str) -> tuple[str | None, str, str]:
    """(provider prefix or ``None``, model id, model family name) for a model name as people and SDKs write it.

    Lower-cased; a ``provider:`` prefix, a vendor path (``models/``, ``Qwen/``), Bedrock's region and vendor prefix
    and version suffix (``us.anthropic.…-v1:0``) and Vertex's ``@version`` are taken off to give the model id; the
    family name also drops a snapshot suffix (``-2024-08-06``, ``-20250929``, ``-latest``).
    """
    text = text.strip().lower()
    provider = None
    match = _PROVIDER_PREFIX.fullmatch(text)
    if match and not match.group(2).isdigit():
        provider, text = match.group(1), match.group(2)
    text = text.rsplit("/", 1)[-1]
    text = _BEDROCK_PREFIX.sub("", text, count=1) if _BEDROCK_PREFIX.match(text) else text
    text = _BEDROCK_VERSION.sub("", _VERTEX_VERSION.sub("", text))
    return provider, text, _SNAPSHOT.sub("", text)


def find_family(model: str) -> ModelFamily | None:
    """The ``models.json`` family a model name belongs to, or ``None``."""
    _, _, base = normalize_model(model)
    if base in _EXACT:
        return _EXACT[base]
    return next((family for regex, _, family in _GLOBS if regex.fullmatch(base)), None)


def families() -> list[ModelFamily]:
    """Every family of ``models.json``, in its order."""
    return list(_FAMILIES.values())


def consumer_names() -> list[str]:
    """The family names ``get_consumer`` accepts as they are (aliases and model names excluded)."""
    return sorted(_FAMILIES)


def model_names() -> list[str]:
    """Every model name or glob a family lists (snapshots of them are accepted too)."""
    return sorted(model for family in _FAMILIES.values() for model in family.models)


@lru_cache(maxsize=512)
def _lookup(key: str) -> BaseConsumer:
    key = _ALIASES.get(key, key)
    if key in _FAMILIES:
        return _FAMILIES[key].consumer()
    _, model, _ = normalize_model(key)
    family = find_family(key) if model else None
    if family is None:
        raise ValueError(
            f"consumer {key!r} is unknown: no family of models.json lists this model, and it is not priced by"
            f" guessing. Known families: {', '.join(consumer_names())}; models: {', '.join(model_names())}."
            f" For another model name its rule: get_consumer(name, rule=...), one of {', '.join(RULES)}"
        )
    return family.consumer(f"{family.provider}:{model}")


def get_consumer(consumer: str | Consumer, *, rule: str | None = None, **params: Any) -> BaseConsumer:
    """The consumer for a family or model name: ``deepseek-ocr``, ``openai:gpt-4o``, ``anthropic``, ``gemini``,
    ``qwen-vl`` …, or any model a family lists, snapshots and SDK spellings included (``openai:gpt-4.1-nano``,
    ``claude-opus-4-7``, ``models/gemini-2.5-pro``, ``us.anthropic.claude-sonnet-4-5-20250929-v1:0``).

    ``rule=`` prices a model the registry does not list by a named rule (``params`` replace the rule's numbers,
    ``encoding=`` its tokenizer): ``get_consumer("openai:my-tune", rule="openai-tile")``. An unknown name is a
    ``ValueError`` listing the known ones.
    """
    if isinstance(consumer, BaseConsumer):
        if rule is not None or params:
            raise TypeError("rule= and its parameters apply to a consumer name, not to a consumer object")
        return consumer
    if not isinstance(consumer, str):
        raise TypeError(f"consumer must be a name or a Consumer, got {type(consumer).__name__}")
    key = consumer.strip().lower()
    if not key:
        raise ValueError("consumer must not be empty")
    if rule is not None:
        provider, _, _ = normalize_model(key)
        return make_consumer(rule, name=key, provider=provider, **params)
    if params:
        raise TypeError(f"{', '.join(params)}: parameters need rule= (one of {', '.join(RULES)})")
    return _lookup(key)
