"""Each consumer's image pricing against its provider's documented examples, and the ladders it exposes."""

import pytest

from optical_memory.core.consumers import consumer_names, get_consumer
from optical_memory.core.geometry import Fit, Mode, Tier, fitted_size


@pytest.mark.parametrize(
    ("size", "tokens"),
    [((1024, 1024), 765), ((2048, 4096), 1105), ((640, 640), 765), ((512, 512), 255), ((1280, 1280), 765)],
)
def test_openai_gpt4o_high_detail_matches_the_vision_guide(size, tokens):
    assert get_consumer("openai:gpt-4o").image_tokens(*size) == tokens


def test_openai_low_detail_is_flat_85():
    consumer = get_consumer("openai:gpt-4o")
    assert consumer.image_tokens(4096, 8192, Tier("low", 512, Fit.SCALE, detail="low")) == 85


def test_openai_patch_models_match_the_documented_examples():
    consumer = get_consumer("openai:gpt-4.1-mini")
    assert consumer.image_tokens(1024, 1024) == 1659  # 1024 patches x 1.62, rounded up
    assert consumer.image_tokens(1800, 2400) == 2353  # shrunk to 1056x1408 = 33x44 = 1452 patches x 1.62


@pytest.mark.parametrize(("size", "tokens"), [((200, 200), 54), ((1000, 1000), 1334), ((1092, 1092), 1590)])
def test_anthropic_area_rule(size, tokens):
    assert get_consumer("anthropic").image_tokens(*size) == tokens


def test_anthropic_caps_long_edge_and_megapixels():
    consumer = get_consumer("anthropic")
    assert consumer.image_tokens(3000, 3000) == 1600
    assert consumer.image_tokens(4000, 400) == 328  # scaled to 1568x156.8 first


@pytest.mark.parametrize(("size", "tokens"), [((384, 384), 258), ((300, 200), 258), ((768, 768), 1032), ((1280, 1280), 1032)])
def test_gemini_tiles(size, tokens):
    assert get_consumer("gemini").image_tokens(*size) == tokens


@pytest.mark.parametrize(("size", "tokens"), [((1280, 1280), 46 * 46), ((28, 28), 4), ((640, 640), 23 * 23), ((1000, 500), 36 * 18)])
def test_qwen_vl_one_token_per_28px_block(size, tokens):
    assert get_consumer("qwen-vl").image_tokens(*size) == tokens


def test_deepseek_prices_by_mode(page_factory):
    consumer = get_consumer("deepseek-ocr")
    page = page_factory(0)
    assert [consumer.page_tokens(page, level) for level in range(4)] == [400, 256, 100, 64]
    assert [consumer.decoder_positions(page, level) for level in range(4)] == [421, 273, 111, 73]
    assert [t.mode for t in consumer.tiers] == [Mode.LARGE, Mode.BASE, Mode.SMALL, Mode.TINY]


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


def test_lookup_by_provider_model_names():
    assert get_consumer("anthropic:claude-sonnet-4-5").name == "anthropic"
    assert get_consumer("openai:gpt-4o-2024-08-06").name == "openai:gpt-4o"
    assert get_consumer("openai:gpt-4o-mini").name == "openai:gpt-4o-mini"
    assert get_consumer("google:gemini-2.5-flash").name == "gemini"
    with pytest.raises(ValueError, match="unknown"):
        get_consumer("mystery-model")
    with pytest.raises(TypeError, match="consumer"):
        get_consumer(42)  # type: ignore[arg-type]


def test_levels_outside_the_ladder_are_rejected(page_factory):
    with pytest.raises(ValueError, match="level"):
        get_consumer("gemini").page_tokens(page_factory(0), 2)
