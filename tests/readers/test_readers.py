"""Readers: real OCR engines on a small drawn page, reading order, the on-disk cache and the process pool."""

from __future__ import annotations

import re

import pytest
from PIL import Image, ImageDraw, ImageFont

from benchmarks.metrics import char_accuracy
from optical_memory.core.geometry import Mode
from optical_memory.core.imaging import fit_to_mode
from optical_memory.readers import (
    ReadCache,
    ReadStats,
    get_reader,
    read_key,
    read_many,
    reader_names,
    reading_key,
)
from optical_memory.readers.rapidocr import boxes_to_lines

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
LINES = ("Ticket 4471 was filed on March 3.", "The gate code is RHDM-1092.", "Call Amelia Okafor back.")


def drawn_page(lines=LINES, *, size=(640, 200), font_px=22) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, font_px)
    for row, line in enumerate(lines):
        draw.text((16, 16 + row * int(font_px * 1.6)), line, font=font, fill="black")
    return image


@pytest.mark.parametrize("name", ["rapidocr", "tesseract"])
def test_engine_reads_a_clear_page_in_order(name: str) -> None:
    text = get_reader(name).read(drawn_page())
    assert char_accuracy(text, "\n".join(LINES)) >= 0.95
    assert text.index("Ticket") < text.index("gate") < text.index("Amelia")


def test_boxes_become_lines_top_to_bottom_then_left_to_right() -> None:
    quad = lambda x0, y0, x1, y1: [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]  # noqa: E731
    boxes = [quad(300, 52, 500, 70), quad(10, 10, 200, 30), quad(10, 50, 250, 71), quad(220, 12, 400, 29)]
    texts = ["world", "first", "hello", "line"]
    assert boxes_to_lines(boxes, texts) == "first line\nhello world"
    assert boxes_to_lines([], []) == ""


def test_cache_key_covers_reader_mode_and_pixels(tmp_path) -> None:
    image = drawn_page()
    other = drawn_page(["different text"])
    keys = {
        read_key("rapidocr-a", image, Mode.TINY),
        read_key("rapidocr-b", image, Mode.TINY),
        read_key("rapidocr-a", image, Mode.SMALL),
        read_key("rapidocr-a", other, Mode.TINY),
        read_key("rapidocr-a", image, None),
    }
    assert len(keys) == 5
    assert read_key("rapidocr-a", image, Mode.TINY) == read_key("rapidocr-a", image.copy(), Mode.TINY)
    cache = ReadCache(tmp_path)
    key = read_key("rapidocr-a", image, Mode.TINY)
    assert cache.get(key) is None
    cache.put(key, "héllo\nworld")
    assert cache.get(key) == "héllo\nworld" and cache.cost(key) is None
    cache.put(key, "again", cpu_seconds=2.5)
    assert (cache.get(key), cache.cost(key)) == ("again", 2.5)
    with pytest.raises(ValueError, match="cpu_seconds"):
        cache.put(key, "x", cpu_seconds=-1)
    with pytest.raises(ValueError, match="key"):
        cache.get("../../etc/passwd")


def test_read_many_answers_from_the_cache_without_reading(tmp_path) -> None:
    cache = ReadCache(tmp_path)
    image = fit_to_mode(drawn_page(), Mode.TINY)
    # A text no engine would read from this page proves the answer came from the cache. The CPU engines ignore the
    # mode, so the entry also answers for the same pixels at another mode.
    cache.put(reading_key(get_reader("rapidocr"), image, Mode.TINY), "from the cache")
    assert read_many("rapidocr", [image, image], [Mode.TINY, Mode.SMALL], cache=cache, progress=False) == [
        "from the cache",
        "from the cache",
    ]


def test_read_many_over_a_process_pool_matches_reading_in_process(tmp_path) -> None:
    images = [drawn_page(), drawn_page(list(reversed(LINES)))]
    fresh = ReadStats()
    pooled = read_many("tesseract", [*images, images[0]], [None] * 3, workers=2, cache=ReadCache(tmp_path),
                       progress=False, stats=fresh)
    assert pooled == [*(get_reader("tesseract").read(image) for image in images), pooled[0]]
    assert len(list(tmp_path.rglob("*.txt"))) == 2
    assert (fresh.fresh_reads, fresh.cached_reads, fresh.costed_reads) == (2, 0, 2) and fresh.cpu_seconds > 0
    # A rerun reads nothing yet still knows what the pages cost.
    again = ReadStats()
    read_many("tesseract", images, [None, None], cache=ReadCache(tmp_path), progress=False, stats=again)
    assert (again.fresh_reads, again.cached_reads) == (0, 2)
    assert again.cpu_seconds_per_page == pytest.approx(fresh.cpu_seconds_per_page)
    uncached = read_many("tesseract", images[:1], [None], workers=1, use_cache=False, progress=False)
    assert uncached == pooled[:1]


def test_bad_input_is_rejected() -> None:
    assert set(reader_names()) == {"deepseek-ocr", "rapidocr", "tesseract"}
    with pytest.raises(ValueError, match="reader 'paddle'"):
        get_reader("paddle")
    with pytest.raises(TypeError, match="image"):
        get_reader("tesseract").read("page.png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="upscale_to"):
        get_reader("rapidocr", upscale_to=8)
    with pytest.raises(ValueError, match="same length"):
        read_many("rapidocr", [drawn_page()], [], progress=False)
    with pytest.raises(TypeError, match=r"modes\[0\]"):
        read_many("rapidocr", [drawn_page()], ["tiny"], progress=False)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="workers"):
        read_many("rapidocr", [drawn_page()], [None], workers=0, progress=False)
    with pytest.raises(ValueError, match="tessdata"):
        get_reader("tesseract", tessdata="/nonexistent")


def test_fingerprints_name_the_engine_version_and_settings() -> None:
    assert re.fullmatch(r"rapidocr-\d+\.\d+\S*-onnxruntime-\d+\.\d+\S*-nocls-up1280", get_reader("rapidocr").fingerprint)
    assert get_reader("rapidocr", upscale_to=None).fingerprint.endswith("-upNone")
    assert re.fullmatch(r"tesseract-\d+\.\d+\.\d+-eng-up1280", get_reader("tesseract").fingerprint)
