"""The compression-vs-recall benchmark: its data sources, its pieces, and the script end to end on tiny input."""

from __future__ import annotations

import json

import pytest
from conftest import make_page
from optical_memory.policies import CalibratedRecall, reading_model
from PIL import Image

from benchmarks.compression_recall import (
    aggregate,
    break_points,
    expected_reading,
    main,
    memory_density,
    reading_image,
    truncation_recall,
)
from benchmarks.datasets import (
    FACT_TEMPLATES,
    ChatTurn,
    Conversation,
    PlantedFact,
    chat_split,
    chitchat_ids,
    chitchat_session,
    chitchat_sessions,
    planted_fact_conversation,
)
from optical_memory.core.consumers import get_consumer
from optical_memory.core.geometry import Fit, Mode, Tier
from optical_memory.core.imaging import fit_to_mode
from optical_memory.core.types import Role
from optical_memory.readers import get_reader

# -- datasets --------------------------------------------------------------------------------------------------


def test_splits_are_a_fixed_function_of_the_chat_id_and_disjoint() -> None:
    tune, report = set(chitchat_ids("tune")), set(chitchat_ids("report"))
    assert tune and report and not tune & report
    assert all(chat_split(chat_id) == "tune" for chat_id in list(tune)[:50])
    with pytest.raises(ValueError, match="split"):
        chitchat_ids("train")


def test_sessions_are_seeded_long_enough_and_keep_time_moving_forward() -> None:
    session = chitchat_session("report", min_tokens=3000, seed=3)
    assert session == chitchat_session("report", min_tokens=3000, seed=3)
    assert session.text_tokens >= 3000
    assert all(chat_split(chat_id) == "report" for chat_id in session.source_chat_ids)
    stamps = [turn.timestamp for turn in session.turns]
    assert stamps == sorted(stamps)
    assert {turn.role for turn in session.turns} == {Role.USER, Role.ASSISTANT}
    other = chitchat_session("report", min_tokens=3000, seed=4)
    assert other.source_chat_ids != session.source_chat_ids
    first, second = chitchat_sessions("tune", count=2, min_tokens=1500, seed=0)
    assert not set(first.source_chat_ids) & set(second.source_chat_ids)


def test_one_turn_per_chat_keeps_the_text_in_long_paragraphs() -> None:
    chats = chitchat_session("tune", min_tokens=3000, seed=1)
    paragraphs = chitchat_session("tune", min_tokens=3000, seed=1, one_turn_per_chat=True)
    assert paragraphs.source_chat_ids == chats.source_chat_ids
    assert len(paragraphs.turns) == len(chats.source_chat_ids)
    assert sum(len(turn.text.split()) for turn in paragraphs.turns) == sum(len(t.text.split()) for t in chats.turns)


@pytest.mark.parametrize("one_turn_per_chat", [False, True])
def test_planted_facts_are_in_their_turns_unique_and_nowhere_else(one_turn_per_chat: bool) -> None:
    conversation = planted_fact_conversation(
        "report", min_tokens=4000, facts=8, seed=2, one_turn_per_chat=one_turn_per_chat
    )
    assert conversation == planted_fact_conversation(
        "report", min_tokens=4000, facts=8, seed=2, one_turn_per_chat=one_turn_per_chat
    )
    answers = [fact.answer for fact in conversation.facts]
    assert len(set(answers)) == 8 and len({fact.question for fact in conversation.facts}) == 8
    for fact in conversation.facts:
        assert fact.answer in fact.sentence
        assert fact.sentence in conversation.turns[fact.turn_index].text
        if not one_turn_per_chat:
            assert conversation.turns[fact.turn_index].role is Role.USER
        holders = [i for i, turn in enumerate(conversation.turns) if fact.answer in turn.text]
        assert holders == [fact.turn_index]
    with pytest.raises(ValueError, match="facts"):
        planted_fact_conversation("report", min_tokens=4000, facts=len(FACT_TEMPLATES) + 1)


# -- benchmark pieces -------------------------------------------------------------------------------------------


def test_truncation_keeps_the_newest_turns_that_fit() -> None:
    texts = ["alpha beta gamma", "code RHDM-1092 here", "delta", "epsilon zeta"]
    turns = tuple(ChatTurn(Role.USER, text, float(i)) for i, text in enumerate(texts))
    fact = PlantedFact("code", "code RHDM-1092 here", "?", "RHDM-1092", 1)
    conversation = Conversation("hand", "report", 0, turns, ("x",), (fact,))
    consumer = get_consumer("deepseek-ocr")
    newest_two = consumer.text_tokens(texts[3]) + consumer.text_tokens(texts[2])
    assert truncation_recall(conversation, newest_two, consumer) == {"tokens_used": newest_two, "turns_kept": 2,
                                                                     "facts_recalled": 0}
    with_fact = newest_two + consumer.text_tokens(texts[1])
    assert truncation_recall(conversation, with_fact, consumer)["facts_recalled"] == 1


def test_break_points_take_the_highest_compression_that_passes() -> None:
    rows = [
        {"split": "report", "density_font_px": px, "mode": "tiny", "line_height_px": px, "text_tokens": tokens,
         "vision_tokens": 64, "compression": tokens / 64, "effective_glyph_px": 1.0, "effective_line_px": 1.0,
         "char_accuracy": precision, "char_precision": precision, "char_recall": precision, "word_recall": precision,
         "facts_on_page": 0, "fact_recall": None}
        for px, tokens, precision in ((20, 640, 0.99), (14, 1280, 0.94), (10, 2560, 0.80))
    ]
    table = aggregate(rows, "report")
    points = {point["threshold"]: point for point in break_points(table, "char_precision")}
    assert points[0.97]["compression"] == 10 and points[0.97]["density_font_px"] == 20
    assert points[0.90]["compression"] == 20 and not points[0.90]["still_passing"]
    # A denser page that passes again after a failure (a reader returning almost nothing) does not move the break.
    rebound = [*rows, {**rows[2], "density_font_px": 8, "text_tokens": 5120, "compression": 80.0,
                       "char_precision": 0.99}]
    points = {point["threshold"]: point for point in break_points(aggregate(rebound, "report"), "char_precision")}
    assert points[0.90]["compression"] == 20
    assert memory_density(table, "tiny", default=20) == 20
    assert memory_density([{**row, "char_recall": 0.96} for row in table], "tiny", default=20) == 10


def test_the_reading_model_predicts_gundam_from_the_curve_read_across_modes() -> None:
    page = make_page(0, text="the ferry to Kos leaves at 9:40 from pier 7 " * 150)
    consumer = get_consumer("deepseek-ocr")
    model = reading_model(consumer)
    gundam = Tier("gundam", 1024, Fit.TILE, mode=Mode.GUNDAM)
    row = expected_reading(consumer, model, page, None, gundam, 656)
    assert "nothing was published for gundam" in row["extrapolated"]
    assert row["expected_recall"] == pytest.approx(min(row["legibility_model"], row["capacity"]), abs=1e-4)
    tiny = expected_reading(consumer, model, page, 3, consumer.tiers[3], 64)
    assert tiny["capacity"] == pytest.approx(model.predict(page, consumer, 3).capacity, abs=1e-4)


def test_gundam_is_read_from_its_stitched_tiles_and_other_modes_from_the_fitted_page() -> None:
    master = Image.effect_noise((1280, 1280), 64).convert("RGB")
    cpu = get_reader("tesseract")
    gundam = Tier("gundam", 1024, Fit.TILE, mode=Mode.GUNDAM)
    # A 1280-px square page is cut into 2x2 tiles of 640 px: stitched back, they are the master's pixels.
    assert reading_image(master, gundam, cpu).tobytes() == master.tobytes()
    tiny = Tier("tiny", 512, Fit.RESIZE, mode=Mode.TINY)
    assert reading_image(master, tiny, cpu).tobytes() == fit_to_mode(master, Mode.TINY).tobytes()


# -- the script end to end --------------------------------------------------------------------------------------


def test_script_runs_end_to_end_on_tiny_input(tmp_path) -> None:
    out = tmp_path / "out"
    calibration = tmp_path / "calibration.json"
    argv = [
        "--reader", "tesseract", "--densities", "24", "--modes", "large,tiny", "--splits", "tune,report",
        "--sweep-pages", "1", "--sweep-tokens", "500", "--sweep-facts", "1", "--budgets", "250",
        "--baseline-tokens", "2500", "--facts", "4", "--hot-turns", "1", "--memory-densities", "24",
        "--workers", "1", "--out", str(out), "--cache", str(tmp_path / "cache"), "--calibration-out", str(calibration),
    ]
    assert main(argv) == 0
    results = json.loads((out / "compression_recall_tesseract.json").read_text())
    assert {row["mode"] for row in results["sweep"]} == {"large", "tiny"}
    assert {row["split"] for row in results["sweep"]} == {"tune", "report"}
    for row in results["sweep"]:
        assert row["reader"] == "tesseract" and row["consumer"] == "deepseek-ocr" and row["density_font_px"] == 24
        assert row["tokenizer"] == get_consumer("deepseek-ocr").tokenizer  # text counted as the memory counts it
        assert row["vision_tokens"] == {"large": 400, "tiny": 64}[row["mode"]]
        assert row["compression"] == pytest.approx(row["text_tokens"] / row["vision_tokens"], rel=1e-3)
        assert 0.9 <= row["char_precision"] <= 1.0  # 24-px type is clear at both modes
    for row in results["sweep"]:
        # The published capacity beside the CPU reading, for every level: expected recall never above either.
        assert row["capacity"] is not None and row["expected_recall"] == pytest.approx(
            min(row["legibility_model"], row["capacity"]), abs=1e-4)
        assert row["text_tokens_deepseek"] > 0
    strategies = {row["strategy"] for row in results["baselines"]}
    assert {"truncation (keep last N turns)", "memory:age", "memory:token-budget", "memory:recall-aware (the default)",
            "memory:age+token-budget, no gate (the old default)"} <= strategies
    for row in results["baselines"]:
        assert 0.0 <= row["expected_fact_recall"] <= row["fact_recall"] <= 1.0
        assert row["fits_budget"] or row["budget"] is None
    assert {point["metric"] for point in results["break_points"]} >= {"expected_recall", "char_precision"}
    assert results["meta"]["reading_model"]["capacity"] == "DeepSeek-OCR published Fox curve"
    assert results["meta"]["baseline"]["text_tokens"] >= 10 * 250
    assert (out / results["files"]["precision_png"]).stat().st_size > 0
    assert (out / results["files"]["facts_png"]).stat().st_size > 0
    model = CalibratedRecall.load(calibration)
    assert model.provenance["split"] == "tune" and {p.tier for p in model.points} == {"large", "tiny"}

    markdown = (out / "compression_recall_tesseract.md").read_text()
    assert "pixels still hold the text" in markdown and "| 24 |" in markdown
    assert "expected recall ≥ 97%" in markdown and "DeepSeek-OCR published Fox curve" in markdown
    (out / "compression_recall_tesseract.md").unlink()
    assert main(["--from-json", str(out / "compression_recall_tesseract.json")]) == 0
    assert (out / "compression_recall_tesseract.md").read_text() == markdown
