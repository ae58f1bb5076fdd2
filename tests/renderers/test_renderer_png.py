"""Tests of the fixed-filter PNG writer for page images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from optical_memory.renderers import PageRenderer, RenderStyle, encode_page_png
from PIL import Image

from optical_memory.core.imaging import decode_png, pixel_hash
from optical_memory.core.types import Role, Turn


@pytest.fixture(scope="module")
def page_image():
    style = RenderStyle(width=320, height=200, font_px=10, mono_font_px=9, margin_x=8, margin_y=8)
    turns = [Turn(0, Role.USER, "words on a page, then a code block:\n```\nx = 1\n```\n" * 3, 0.0)]
    return PageRenderer(style).render(turns)[0].image


def test_pixels_survive_the_round_trip(page_image):
    data = encode_page_png(page_image)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.mode == "L" and decoded.size == page_image.size
        assert np.array_equal(np.asarray(decoded), np.asarray(page_image))
    assert pixel_hash(decode_png(data)) == pixel_hash(page_image)


def test_every_grey_level_and_sharp_row_changes_round_trip():
    pixels = np.random.default_rng(0).integers(0, 256, size=(37, 53), dtype=np.uint8)
    image = Image.fromarray(pixels)
    with Image.open(io.BytesIO(encode_page_png(image))) as decoded:
        assert np.array_equal(np.asarray(decoded), pixels)


def test_same_pixels_give_same_bytes(page_image):
    assert encode_page_png(page_image) == encode_page_png(page_image.copy())


@pytest.mark.parametrize(("image", "error"), [(Image.new("RGB", (4, 4)), ValueError), ("not an image", TypeError)])
def test_bad_input_is_refused(image, error):
    with pytest.raises(error, match="image"):
        encode_page_png(image)
