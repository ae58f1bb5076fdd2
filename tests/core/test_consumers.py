"""Each pricing rule against its provider's worked examples, the model registry that maps models to rules, and the
ladders each consumer exposes."""

import math
import re

import pytest

from optical_memory.core.consumers import (
    RULES,
    consumer_names,
    families,
    find_family,
    get_consumer,
    model_names,
    normalize_model,
    rule_params,
)
from optical_memory.core.geometry import Fit, Mode, Tier, fitted_size
from optical_memory.core.tokens import ENCODINGS

LOW = Tier("low", 512, Fit.SCALE, detail="low")


# -- OpenAI ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "tokens"),
    [((1024, 1024), 765), ((2048, 4096), 1105), ((640, 640), 765), ((512, 512), 255), ((1280, 1280), 765)],
)
def test_openai_gpt4o_high_detail_matches_the_vision_guide(size, tokens):
    assert get_consumer("openai:gpt-4o").image_tokens(*size) == tokens


def test_openai_low_detail_is_the_flat_base():
    assert get_consumer("openai:gpt-4o").image_tokens(4096, 8192, LOW) == 85
    assert get_consumer("openai:o3").image_tokens(4096, 8192, LOW) == 75
    assert get_consumer("openai:gpt-4o-mini").image_tokens(4096, 8192, LOW) == 2833


def test_openai_tile_models_bill_their_own_base_and_tile():
    # Measured bills for a 128 x 64 image at high detail (one tile), less the text around it.
    assert get_consumer("openai:gpt-4.1-2025-04-14").image_tokens(128, 64) == 255
    assert get_consumer("openai:gpt-4o-mini-2024-07-18").image_tokens(128, 64) == 8500
    assert get_consumer("openai:o3-2025-04-16").image_tokens(128, 64) == 225
    assert get_consumer("openai:gpt-4-turbo-2024-04-09").image_tokens(128, 64) == 255


def test_openai_patch_models_match_the_documented_examples():
    mini = get_consumer("openai:gpt-4.1-mini")
    assert mini.image_tokens(1024, 1024) == 1659  # 32 x 32 = 1024 patches x 1.62, rounded up
    assert mini.image_tokens(1800, 2400) == 2353  # shrunk to 1056 x 1408 = 33 x 44 = 1452 patches x 1.62
    assert get_consumer("openai:o4-mini").image_tokens(1024, 1024) == 1762  # x 1.72
    assert get_consumer("openai:gpt-4.1-nano").image_tokens(1024, 1024) == 2520  # x 2.46 = 2519.04
    assert mini.image_tokens(320, 480) == 243  # 10 x 15 = 150 patches x 1.62 = 243 exactly (not 244)


@pytest.mark.parametrize(
    ("model", "size", "tokens"),
    [
        # The guide's tile table: gpt-5, gpt-5-chat-latest 70 + 140 per tile; 1024² is 4 tiles, 2048x4096 is 6.
        ("openai:gpt-5", (1024, 1024), 70 + 4 * 140),
        ("openai:gpt-5-2025-08-07", (2048, 4096), 70 + 6 * 140),
        ("openai:gpt-5-chat-latest", (1024, 1024), 630),
        # o1, o1-pro, o3: 75 + 150 per tile (o1 bills less than that: the documented price is kept).
        ("openai:o1", (1024, 1024), 75 + 4 * 150),
        ("openai:o1-pro-2025-03-19", (2048, 4096), 75 + 6 * 150),
        ("openai:o1-2024-12-17", (128, 64), 225),
        # computer-use-preview: 65 + 129 per tile.
        ("openai:computer-use-preview-2025-03-11", (1024, 1024), 65 + 4 * 129),
        # 4o, 4.1, 4.5 share 85 + 170; gpt-4.5-preview's measured bill for 128 x 64 is 267 less 12 of text.
        ("openai:gpt-4.5-preview-2025-02-27", (128, 64), 255),
        ("openai:gpt-4.5-preview", (1024, 1024), 765),
    ],
)
def test_openai_tile_models_match_the_guides_table(model, size, tokens):
    assert get_consumer(model).image_tokens(*size) == tokens


def test_openai_tile_models_at_low_detail_bill_their_base():
    for model, base in (("gpt-5", 70), ("gpt-5-chat-latest", 70), ("o1-pro", 75), ("computer-use-preview", 65)):
        assert get_consumer(model).image_tokens(4096, 8192, LOW) == base


@pytest.mark.parametrize(
    ("model", "size", "tokens"),
    [
        ("openai:gpt-5.4-mini", (1024, 1024), 1659),  # the guide's 1,024 patches x 1.62
        ("openai:gpt-5.4-mini", (1800, 2400), 2353),  # its 1,452 patches x 1.62
        ("openai:gpt-5.4-nano", (1024, 1024), 2520),  # x 2.46
        # Largest side at most 2048: 4096 x 32 goes as 2048 x 16, 64 patches (not 128).
        ("openai:gpt-5-mini", (4096, 32), math.ceil(64 * 1.62)),
        # gpt-5.2 class: 1,536 patches, 1.2 per patch as billed; 2048² shrinks to 1248² = 39 x 39.
        ("openai:gpt-5.2", (1024, 1024), 1229),
        ("openai:gpt-5.2-chat-latest", (2048, 2048), math.ceil(39 * 39 * 1.2)),
        ("openai:gpt-5.3-codex", (4000, 2500), 1728),  # shrunk to 1536 x 960: 48 x 30 patches x 1.2
        # gpt-5.4: 2,500 patches or 2048 px (the calculator's examples: 1024² 1229, 2048² and 4096² 3000).
        ("openai:gpt-5.4", (1024, 1024), 1229),
        ("openai:gpt-5.4", (2048, 2048), 3000),
        ("openai:gpt-5.4-2026-03-05", (4096, 4096), 3000),
        # gpt-5.5 sizes a page without detail as original: 10,000 patches or 6000 px (4096² -> 3200² -> 12000).
        ("openai:gpt-5.5", (4096, 4096), 12000),
        ("openai:gpt-5.5", (32, 8000), math.ceil(188 * 1.2)),  # 24 x 6000: 1 x 188 patches
    ],
)
def test_openai_patch_models_match_the_guides_sizing(model, size, tokens):
    assert get_consumer(model).image_tokens(*size) == tokens


def test_gpt_5_2_never_bills_over_the_published_cap():
    """GPT-5.2 and later at standard detail: at most ceil(1.2 x 1,536) = 1,844 tokens an image."""
    consumer = get_consumer("gpt-5.2")
    sizes = [(w, h) for w in (31, 500, 1000, 1567, 2048, 3000, 4097) for h in (17, 640, 1024, 2049, 6000)]
    assert max(consumer.image_tokens(w, h) for w, h in sizes) <= 1844


@pytest.mark.parametrize(
    ("model", "family", "tokens_768"),
    [
        ("openai:gpt-4.1-nano", "openai:gpt-4.1-nano", 1417),
        ("openai:gpt-4.1-nano-2025-04-14", "openai:gpt-4.1-nano", 1417),
        ("openai:gpt-5-nano", "openai:gpt-4.1-nano", 1417),
        ("openai:gpt-5-mini-2025-08-07", "openai:gpt-4.1-mini", 934),
        ("openai:o4-mini", "openai:o4-mini", 991),
        ("openai:o3", "openai:o3", 675),
        ("openai:gpt-4.1", "openai:gpt-4o", 765),
    ],
)
def test_openai_models_are_priced_by_their_own_rule_not_gpt4o(model, family, tokens_768):
    """A 768-px page: 576 patches x the model's multiplier, or its own base + 4 tiles; never gpt-4o's 765 by default."""
    consumer = get_consumer(model)
    assert consumer.family == family
    assert consumer.image_tokens(768, 768, consumer.tiers[0]) == tokens_768


# -- Anthropic --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "tokens"), [((200, 200), 54), ((1000, 1000), 1334), ((1092, 1092), 1590)])
def test_anthropic_area_rule(size, tokens):
    assert get_consumer("anthropic").image_tokens(*size) == tokens


def test_anthropic_area_rule_caps_long_edge_and_megapixels():
    consumer = get_consumer("anthropic")
    assert consumer.image_tokens(3000, 3000) == 1600
    assert consumer.image_tokens(4000, 400) == 328  # scaled to 1568x156.8 first


@pytest.mark.parametrize(
    ("model", "size", "tokens"),
    [
        ("anthropic:claude-sonnet-4-5", (1928, 1928), 1521),  # shrunk to 1092 x 1092 = 39 x 39 patches
        ("anthropic:claude-opus-4-7", (1928, 1928), 4761),  # fits the high-resolution limits: 69 x 69
        ("anthropic:claude-sonnet-4-5", (1568, 728), 1456),  # 56 x 26, no resize
        ("anthropic:claude-opus-4-7", (1568, 728), 1456),
        ("anthropic:claude-haiku-4-5", (1000, 1000), 1296),  # 36 x 36: every started patch counts
        ("anthropic:claude-haiku-4-5", (4000, 400), 336),  # long edge to 1568, 157 px high: 56 x 6
        ("anthropic:claude-opus-4-8", (5000, 5000), 4761),  # largest square within 4784 patches
    ],
)
def test_anthropic_patch_rule_matches_the_documented_examples(model, size, tokens):
    assert get_consumer(model).image_tokens(*size) == tokens


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("anthropic:claude-sonnet-4-5-20250929", "anthropic:claude-standard"),
        ("claude-3-5-sonnet-latest", "anthropic:claude-standard"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic:claude-standard"),
        ("claude-3-5-sonnet-v2@20241022", "anthropic:claude-standard"),
        ("anthropic:claude-opus-4-7", "anthropic:claude-high-res"),
        ("claude-sonnet-5", "anthropic:claude-high-res"),
    ],
)
def test_claude_families_by_their_docs_resolution_table(model, family):
    assert get_consumer(model).family == family


# -- Gemini, Qwen, DeepSeek -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "tokens"), [((384, 384), 258), ((300, 200), 258), ((768, 768), 1032), ((1280, 1280), 1032)])
def test_gemini_tiles(size, tokens):
    assert get_consumer("gemini").image_tokens(*size) == tokens
    assert get_consumer("google_genai:gemini-2.5-flash").image_tokens(*size) == tokens


def test_gemini_3_bills_the_flat_budget_of_its_media_resolution(page_factory):
    consumer = get_consumer("models/gemini-3-pro-preview")
    assert consumer.family == "google:gemini-3"
    # Google's token table for Gemini 3 images: HIGH (and unspecified) 1120, MEDIUM 560, LOW 280, whatever the pixels.
    assert [tier.media_resolution for tier in consumer.tiers] == [
        "MEDIA_RESOLUTION_HIGH", "MEDIA_RESOLUTION_MEDIUM", "MEDIA_RESOLUTION_LOW"
    ]
    for tier, tokens in zip(consumer.tiers, (1120, 560, 280)):
        assert {consumer.image_tokens(*size, tier) for size in ((64, 64), (768, 768), (3000, 2000))} == {tokens}
    assert [consumer.page_tokens(page_factory(0), level) for level in range(3)] == [1120, 560, 280]
    assert consumer.image_tokens(3000, 2000) == 1120  # sent without a level: the default for images, HIGH
    ultra = Tier("as-sent", 768, Fit.SCALE, media_resolution="MEDIA_RESOLUTION_ULTRA_HIGH")
    assert consumer.image_tokens(768, 768, ultra) == 2240  # per-part only: priced when sent, not on the ladder
    with pytest.raises(ValueError, match="media_resolution 'MEDIA_RESOLUTION_HUGE' is not a Gemini 3 level"):
        consumer.image_tokens(768, 768, Tier("x", 768, Fit.SCALE, media_resolution="MEDIA_RESOLUTION_HUGE"))


def test_gemini_3_ladder_keeps_pixels_per_token_and_gets_blurrier():
    tiers = get_consumer("gemini-3.1-pro-preview").tiers
    sizes = [tier.size for tier in tiers]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    for tier, tokens in zip(tiers, (1120, 560, 280)):
        assert tier.size**2 / tokens == pytest.approx(768**2 / 1120, rel=0.02)


@pytest.mark.parametrize(("size", "tokens"), [((1280, 1280), 46 * 46), ((28, 28), 4), ((640, 640), 23 * 23), ((1000, 500), 36 * 18)])
def test_qwen_vl_one_token_per_28px_block(size, tokens):
    assert get_consumer("qwen-vl").image_tokens(*size) == tokens
    assert get_consumer("Qwen/Qwen2.5-VL-7B-Instruct").image_tokens(*size) == tokens


@pytest.mark.parametrize(("size", "tokens"), [((1024, 1024), 32 * 32), ((640, 640), 20 * 20), ((32, 32), 4)])
def test_qwen3_vl_one_token_per_32px_block(size, tokens):
    assert get_consumer("qwen3-vl-8b-instruct").image_tokens(*size) == tokens


def test_deepseek_prices_by_mode(page_factory):
    consumer = get_consumer("deepseek-ocr")
    page = page_factory(0)
    assert [consumer.page_tokens(page, level) for level in range(4)] == [400, 256, 100, 64]
    assert [consumer.decoder_positions(page, level) for level in range(4)] == [421, 273, 111, 73]
    assert [t.mode for t in consumer.tiers] == [Mode.LARGE, Mode.BASE, Mode.SMALL, Mode.TINY]
    assert get_consumer("deepseek-ai/DeepSeek-OCR").family == "deepseek-ocr"


def test_every_ladder_really_gets_cheaper(page_factory):
    page = page_factory(0)
    for name in consumer_names():
        consumer = get_consumer(name)
        prices = [consumer.page_tokens(page, level) for level in range(len(consumer.tiers))]
        assert all(a > b for a, b in zip(prices, prices[1:])), (name, prices)


def test_fitted_size_keeps_aspect_for_hosts():
    assert fitted_size(1280, 640, Tier("x", 768, Fit.SCALE)) == (768, 384)
    assert fitted_size(300, 200, Tier("x", 768, Fit.SCALE)) == (300, 200)
    assert fitted_size(1280, 640, Tier("x", 1024, Fit.PAD)) == (1024, 1024)


def test_levels_outside_the_ladder_are_rejected(page_factory):
    with pytest.raises(ValueError, match="level"):
        get_consumer("gemini").page_tokens(page_factory(0), 2)


# -- the registry ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("deepseek-ocr", "deepseek-ocr"), ("deepseek", "deepseek-ocr"),
        ("openai:gpt-4o", "openai:gpt-4o"), ("openai", "openai:gpt-4o"), ("gpt-4o", "openai:gpt-4o"),
        ("openai:gpt-4o-mini", "openai:gpt-4o-mini"), ("gpt-4o-mini", "openai:gpt-4o-mini"),
        ("openai:gpt-4.1-mini", "openai:gpt-4.1-mini"), ("gpt-4.1-mini", "openai:gpt-4.1-mini"),
        ("anthropic", "anthropic"), ("claude", "anthropic"),
        ("gemini", "gemini"), ("google", "gemini"), ("google_genai", "gemini"),
        ("qwen-vl", "qwen-vl"), ("qwen", "qwen-vl"), (" OpenAI:GPT-4o ", "openai:gpt-4o"),
    ],
)
def test_the_established_names_keep_working(name, family):
    assert get_consumer(name).family == family


def test_snapshots_keep_their_name_and_take_their_familys_price():
    consumer = get_consumer("openai:gpt-4o-2024-08-06")
    assert consumer.name == "openai:gpt-4o-2024-08-06" and consumer.family == "openai:gpt-4o"
    assert consumer.image_tokens(1024, 1024) == 765


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("openai:gpt-4o-2024-08-06", ("openai", "gpt-4o-2024-08-06", "gpt-4o")),
        ("models/gemini-2.5-pro", (None, "gemini-2.5-pro", "gemini-2.5-pro")),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", (None, "claude-sonnet-4-5-20250929", "claude-sonnet-4-5")),
        ("Qwen/Qwen3-VL-8B-Instruct", (None, "qwen3-vl-8b-instruct", "qwen3-vl-8b-instruct")),
        ("chatgpt-4o-latest", (None, "chatgpt-4o-latest", "chatgpt-4o")),
    ],
)
def test_model_names_are_read_as_sdks_write_them(text, expected):
    assert normalize_model(text) == expected


@pytest.mark.parametrize(
    "name",
    ["mystery-model", "openai:gpt-5.1", "openai:o3-pro", "gpt-5-codex-mini", "openai:gpt-4.5-turbo-super", "anthropic:claude-9",
     "gemini-1.0-pro"],
)
def test_an_unknown_model_is_an_error_naming_the_known_ones(name):
    with pytest.raises(ValueError, match="unknown") as error:
        get_consumer(name)
    message = str(error.value)
    assert "openai:gpt-4o" in message and "gpt-4.1-nano" in message and "rule=" in message


def test_an_unlisted_model_is_priced_by_naming_its_rule():
    tune = get_consumer("openai:my-finetune", rule="openai-tile")
    assert tune.name == "openai:my-finetune" and tune.family == "rule:openai-tile"
    assert tune.image_tokens(1024, 1024) == 765 and tune.encoding == "o200k_base" and tune.tokenizer_exact
    custom = get_consumer("my-host", rule="openai-patch", multiplier=1.2, encoding="cl100k_base")
    assert custom.image_tokens(1024, 1024) == 1229 and custom.encoding == "cl100k_base"
    claude_like = get_consumer("proxy:claude-tomorrow", rule="anthropic-patch", max_long_edge=2576, max_visual_tokens=4784)
    assert claude_like.image_tokens(1928, 1928) == 4761 and not claude_like.tokenizer_exact
    assert set(rule_params("qwen-vl")) == {"factor", "min_tokens", "max_tokens"}


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: get_consumer("x", rule="magic"), ValueError, "rule 'magic' is unknown"),
        (lambda: get_consumer("x", rule="openai-tile", tiles=3), TypeError, "tiles is not a parameter"),
        (lambda: get_consumer("x", rule="openai-tile", base=-1), ValueError, "base must be positive"),
        (lambda: get_consumer("x", rule="openai-tile", base=1.5), TypeError, "base must be an int"),
        (lambda: get_consumer("x", rule="openai-patch", multiplier="1.2"), TypeError, "multiplier must be a number"),
        (lambda: get_consumer("x", rule="openai-tile", encoding="p50k"), ValueError, "encoding 'p50k' is unknown"),
        (lambda: get_consumer("gpt-4o", base=10), TypeError, "parameters need rule="),
        (lambda: get_consumer(get_consumer("gpt-4o"), rule="openai-tile"), TypeError, "rule="),
        (lambda: get_consumer(42), TypeError, "consumer must be a name"),  # type: ignore[arg-type]
        (lambda: get_consumer("  "), ValueError, "consumer must not be empty"),
    ],
)
def test_bad_lookups_name_the_bad_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_every_family_says_where_its_numbers_come_from():
    listed = families()
    assert {family.name for family in listed} == set(consumer_names())
    for family in listed:
        assert family.rule in RULES and family.encoding in ENCODINGS, family.name
        assert family.sources, family.name
        for source in family.sources:
            assert source["url"].startswith("https://"), family.name
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", source["read"]), family.name
            assert source["says"], family.name
    assert all(find_family(model.replace("*", "x").replace("?", "0")) is not None for model in model_names())
