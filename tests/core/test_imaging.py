"""What a consumer receives is a greyscale page, pixel for pixel what the RGB fit gave; the DeepEncoder still reads RGB."""

import io

import pytest
from PIL import Image, ImageDraw

from optical_memory.core.geometry import Fit, Mode, Tier
from optical_memory.core.imaging import (
    decode_png,
    encode_png,
    fit_to_mode,
    fit_to_tier,
    pad_to_square,
    pixel_hash,
    resize_square,
    scale_longest_side,
)

TIERS = [
    Tier("high-768", 768, Fit.SCALE, detail="high"),
    Tier("large", 1280, Fit.PAD, mode=Mode.LARGE),
    Tier("base", 1024, Fit.PAD, mode=Mode.BASE),
    Tier("tiny", 512, Fit.RESIZE, mode=Mode.TINY),
    Tier("gundam", 1024, Fit.TILE, mode=Mode.GUNDAM),
]


@pytest.fixture(scope="module")
def page() -> Image.Image:
    """A text-like greyscale page: rows of dark strokes on a light background, not square so padding shows."""
    image = Image.new("L", (900, 1200), 250)
    draw = ImageDraw.Draw(image)
    for row in range(40, 1160, 28):
        for column in range(30, 860, 37):
            draw.text((column, row), "ab", fill=(row * column) % 90)
    return image


@pytest.mark.parametrize("tier", TIERS, ids=lambda tier: tier.name)
def test_pages_go_to_consumers_as_greyscale_pngs(page, tier):
    sent = fit_to_tier(page, tier)
    assert sent.mode == "L"
    rgb = page.convert("RGB")  # what consumers were sent before: the same fit done in three bands
    before = {Fit.SCALE: scale_longest_side, Fit.PAD: pad_to_square, Fit.RESIZE: resize_square}.get(tier.fit)
    assert pixel_hash(sent) == pixel_hash(before(rgb, tier.size) if before else rgb)
    png = encode_png(sent)
    with Image.open(io.BytesIO(png)) as decoded:
        assert decoded.mode == "L"
    assert len(png) < len(encode_png(sent.convert("RGB")))


def test_stored_greyscale_pages_decode_as_greyscale_and_the_encoder_still_gets_rgb(page):
    decoded = decode_png(encode_png(page))
    assert decoded.mode == "L" and decoded.tobytes() == page.tobytes()
    assert decode_png(encode_png(page.convert("RGB"))).mode == "RGB"
    assert fit_to_mode(decoded, Mode.TINY).mode == "RGB"
    assert fit_to_mode(decoded, Mode.BASE).getpixel((0, 0)) == (127, 127, 127)  # the pad colour, in three bands
