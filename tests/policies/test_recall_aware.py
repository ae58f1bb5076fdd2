"""RecallAwareBudget: budget fit, monotone levels, near-optimality, the gate in its prices, and spending the budget."""

from __future__ import annotations

import itertools
import random
import json
from dataclasses import replace

import pytest
from conftest import make_page
from hypothesis import given, settings
from hypothesis import strategies as st
from optical_memory.policies import (
    AgeSchedule,
    ReadingGate,
    ReadingModel,
    TokenBudget,
    is_monotone,
    view_cost,
)
from optical_memory.policies.legibility import (
    DEFAULT_CALIBRATION,
    CalibratedRecall,
    CalibrationPoint,
    line_height,
)
from optical_memory.policies.reading import CapacityEstimate, reading_model
from optical_memory.policies.reading import view_prices
from optical_memory.policies.recall_aware import RecallAwareBudget, _PagePrices, expected_recalled_tokens

from optical_memory.core.consumers import get_consumer
from optical_memory.core.geometry import Fit, Mode, Tier, glyph_scale
from optical_memory.core.types import LineBox

DEEPSEEK = get_consumer("deepseek-ocr")
TIER_SCALE = {"large": 1.0, "base": 0.8, "small": 0.5, "tiny": 0.4}


def synthetic_model() -> CalibratedRecall:
    """Recall rises with the line height a tier leaves, from 0 at 4 px to 1 at 10 px (a made-up but OCR-like curve)."""
    points = []
    for tier, scale in TIER_SCALE.items():
        for height in (8, 12, 16, 24):
            recall = min(1.0, max(0.0, (height * scale - 4) / 6))
            points.append(CalibrationPoint(tier, height, height * scale, recall, recall, recall, 1))
    return CalibratedRecall(tuple(points))


class Unbounded:
    """A capacity that never limits: expected recall is the synthetic pixel legibility alone."""

    source = "no token bottleneck (test)"

    def estimate(self, page, consumer, level):
        return CapacityEstimate(1.0, 1.0)


LEGIBILITY = synthetic_model()
MODEL = ReadingModel("deepseek-ocr", LEGIBILITY, Unbounded())
GATE = ReadingGate(MODEL, 0.0)


def page(index: int, words: int, height: int, *, turn: int | None = None):
    lines = tuple(LineBox(0, y, 1200, y + height, 0, 1) for y in range(0, 3 * height, height))
    return replace(make_page(index, text="word " * words, turns=(index if turn is None else turn,)), lines=lines)


def brute_force_best(pages, budget, gate=GATE) -> float:
    """The best expected recall over every monotone assignment that fits."""
    choices = [None, *range(len(DEEPSEEK.tiers))]
    best = 0.0
    for levels in itertools.product(choices, repeat=len(pages)):
        if not is_monotone(levels):
            continue
        if sum(view_cost(DEEPSEEK, p, level, gate) for p, level in zip(pages, levels)) > budget:
            continue
        best = max(best, expected_recalled_tokens(pages, DEEPSEEK, levels, gate))
    return best


def largest_page_value(pages, gate=GATE) -> float:
    """The most expected recall one page can hold: the slack the optimiser is allowed against the optimum."""
    return max((expected_recalled_tokens([p], DEEPSEEK, [level], gate) for p in pages for level in range(4)),
               default=0.0)


page_specs = st.lists(st.tuples(st.integers(20, 3000), st.sampled_from([8, 12, 16, 24])), max_size=9)
floors = st.sampled_from([0.0, 0.5, 0.9])


@settings(max_examples=80, deadline=None)
@given(specs=page_specs, budget=st.integers(0, 4000), floor=floors)
def test_fits_the_budget_is_monotone_and_close_to_token_budget_or_better(specs, budget, floor) -> None:
    pages = [page(i, words, height) for i, (words, height) in enumerate(specs)]
    gate = ReadingGate(MODEL, floor)
    levels = RecallAwareBudget().choose(pages, DEEPSEEK, now=0.0, turn_count=len(pages), budget=budget, gate=gate)
    assert len(levels) == len(pages)
    assert sum(view_cost(DEEPSEEK, p, level, gate) for p, level in zip(pages, levels)) <= budget
    assert is_monotone(levels)
    ours = expected_recalled_tokens(pages, DEEPSEEK, levels, gate)
    baseline = TokenBudget(base=None).choose(pages, DEEPSEEK, now=0.0, turn_count=len(pages), budget=budget, gate=gate)
    assert ours >= expected_recalled_tokens(pages, DEEPSEEK, baseline, gate) - largest_page_value(pages, gate) - 1e-6


@settings(max_examples=60, deadline=None)
@given(specs=page_specs.filter(lambda s: len(s) <= 4), budget=st.integers(0, 2000), floor=floors)
def test_is_within_one_page_of_the_brute_force_optimum(specs, budget, floor) -> None:
    # Exact search over every monotone assignment is exponential; the optimiser runs on every context call. Its
    # promise: never more than one page's worth of expected recall below the optimum.
    pages = [page(i, words, height) for i, (words, height) in enumerate(specs)]
    gate = ReadingGate(MODEL, floor)
    levels = RecallAwareBudget().choose(pages, DEEPSEEK, now=0.0, turn_count=len(pages), budget=budget, gate=gate)
    ours = expected_recalled_tokens(pages, DEEPSEEK, levels, gate)
    assert ours >= brute_force_best(pages, budget, gate) - largest_page_value(pages, gate) - 1e-6


@settings(max_examples=60, deadline=None)
@given(specs=page_specs, budget=st.integers(0, 4000), floor=floors)
def test_leaves_no_affordable_sharpening_unspent(specs, budget, floor) -> None:
    # "Use the budget up to what the levels allow": no single page can go one tier sharper (or be shown at all)
    # within what is left without making an older page sharper than a newer one.
    pages = [page(i, words, height) for i, (words, height) in enumerate(specs)]
    gate = ReadingGate(MODEL, floor)
    levels = RecallAwareBudget().choose(pages, DEEPSEEK, now=0.0, turn_count=len(pages), budget=budget, gate=gate)
    left = budget - sum(view_cost(DEEPSEEK, p, level, gate) for p, level in zip(pages, levels))
    for i, level in enumerate(levels):
        for sharper in range(0 if level is None else level):
            trial = [*levels[:i], sharper, *levels[i + 1:]]
            extra = view_cost(DEEPSEEK, pages[i], sharper, gate) - view_cost(DEEPSEEK, pages[i], level, gate)
            assert not (is_monotone(trial) and extra <= left and expected_recalled_tokens(
                pages, DEEPSEEK, trial, gate) >= expected_recalled_tokens(pages, DEEPSEEK, levels, gate)), (i, sharper)


@settings(max_examples=40, deadline=None)
@given(specs=page_specs, turns=st.lists(st.integers(0, 1500), min_size=9, max_size=9), budget=st.integers(0, 4000))
def test_with_an_age_cap_it_never_is_sharper_than_age_and_beats_token_budget_on_it(specs, turns, budget) -> None:
    turns = sorted(turns)
    pages = [page(i, words, height, turn=turns[i]) for i, (words, height) in enumerate(specs)]
    age = AgeSchedule(time_steps=None)
    caps = age.choose(pages, DEEPSEEK, now=0.0, turn_count=1600)
    levels = RecallAwareBudget(model=MODEL, base=age).choose(pages, DEEPSEEK, now=0.0, turn_count=1600, budget=budget)
    for cap, level in zip(caps, levels):
        assert level is None or (cap is not None and level >= cap)
    assert sum(view_cost(DEEPSEEK, p, level) for p, level in zip(pages, levels)) <= budget
    assert is_monotone(levels)
    baseline = TokenBudget(base=age).choose(pages, DEEPSEEK, now=0.0, turn_count=1600, budget=budget)
    assert expected_recalled_tokens(pages, DEEPSEEK, levels, GATE) >= (
        expected_recalled_tokens(pages, DEEPSEEK, baseline, GATE) - largest_page_value(pages) - 1e-6
    )


def test_blurs_a_sparse_new_page_to_keep_a_dense_old_one_readable() -> None:
    # Page 0 is old and dense (8-px lines: recall 0.4 at BASE, 0 at SMALL); page 1 is newer and sparse (24-px lines:
    # recall 1 down to SMALL). Both LARGE costs 800 > 600. TokenBudget blurs the oldest first, to SMALL (500 tokens,
    # 2000 tokens recalled); BASE + BASE costs 512 and recalls 0.4 * 2000 + 2000 = 2800.
    pages = [page(0, 2000, 8), page(1, 2000, 24)]
    ours = RecallAwareBudget(model=MODEL).choose(pages, DEEPSEEK, now=0.0, turn_count=2, budget=600)
    theirs = TokenBudget(base=None).choose(pages, DEEPSEEK, now=0.0, turn_count=2, budget=600)
    assert (ours, theirs) == ([1, 1], [2, 0])
    assert expected_recalled_tokens(pages, DEEPSEEK, ours, GATE) == pytest.approx(
        expected_recalled_tokens(pages, DEEPSEEK, theirs, GATE) + 800, rel=0.01
    )


def test_without_a_budget_it_returns_the_unbudgeted_policy_else_the_cap() -> None:
    pages = [page(i, 500, 12, turn=t) for i, t in enumerate([0, 100, 199])]
    assert RecallAwareBudget(model=MODEL).choose(pages, DEEPSEEK, now=0.0, turn_count=200) == [0, 0, 0]
    age = AgeSchedule(time_steps=None)
    assert RecallAwareBudget(base=age).choose(pages, DEEPSEEK, now=0.0, turn_count=200) == [3, 2, 0]
    assert RecallAwareBudget(unbudgeted=age).choose(pages, DEEPSEEK, now=0.0, turn_count=200) == [3, 2, 0]


def test_interpolates_within_a_tier_and_by_effective_size_for_unmeasured_tiers() -> None:
    model = CalibratedRecall(
        (
            CalibrationPoint("large", 10, 10, 0.9, 0.6, 0.5, 1),
            CalibrationPoint("large", 20, 20, 1.0, 1.0, 1.0, 1),
        ),
        metric="char_recall",
    )
    assert model.expected_recall(page(0, 10, 15), Tier("large", 1280, Fit.PAD, Mode.LARGE)) == pytest.approx(0.8)
    assert model.expected_recall(page(0, 10, 30), Tier("large", 1280, Fit.PAD, Mode.LARGE)) == 1.0
    # A 640-px host tier halves a 1280-px page: 30-px lines become 15 px, between the two measured points.
    assert model.expected_recall(page(0, 10, 30), Tier("640px", 640, Fit.SCALE)) == pytest.approx(0.8)


def test_geometry_helpers() -> None:
    assert line_height(page(0, 10, 14)) == 14
    assert line_height(make_page(0)) is None
    assert glyph_scale(1280, 1600, Tier("base", 1024, Fit.PAD, Mode.BASE)) == pytest.approx(0.64)
    assert glyph_scale(1280, 1600, Tier("tiny", 512, Fit.RESIZE, Mode.TINY)) == pytest.approx(0.32)
    assert glyph_scale(4000, 1000, Tier("1024px", 1024, Fit.SCALE)) == pytest.approx(0.256)


def test_calibration_file_round_trip_and_errors(tmp_path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"provenance": {"reader": "x"}, "points": [
        {"tier": "large", "line_height_px": 10, "effective_line_px": 10, "char_precision": 1.0, "char_recall": 0.7,
         "word_recall": 0.5, "pages": 2}]}))
    loaded = CalibratedRecall.load(path)
    assert loaded.provenance == {"reader": "x"} and loaded.points[0].char_recall == 0.7
    assert CalibratedRecall.load(path, metric="word_recall").expected_recall(page(0, 1, 10), DEEPSEEK.tiers[0]) == 0.5
    path.write_text(json.dumps({"points": [{"tier": "large"}]}))
    with pytest.raises(ValueError, match="malformed"):
        CalibratedRecall.load(path)
    with pytest.raises(ValueError, match="does not exist"):
        CalibratedRecall.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="metric"):
        CalibratedRecall(loaded.points, metric="accuracy")


def test_bad_budget_is_rejected() -> None:
    with pytest.raises(ValueError, match="budget"):
        RecallAwareBudget(model=MODEL).choose([page(0, 10, 12)], DEEPSEEK, now=0.0, turn_count=1, budget=-1)


def test_word_recall_is_the_default_metric() -> None:
    assert CalibratedRecall(LEGIBILITY.points).metric == "word_recall"
    assert CalibratedRecall.load(DEFAULT_CALIBRATION).metric == "word_recall"


def test_packaged_calibration_names_its_provenance() -> None:
    model = CalibratedRecall.load(DEFAULT_CALIBRATION)
    assert {"reader", "consumer", "date", "command", "machine", "git_commit"} <= set(model.provenance)
    assert {point.tier for point in model.points} >= {mode.value for mode in (Mode.LARGE, Mode.BASE, Mode.SMALL, Mode.TINY)}
    assert all(0.0 <= point.char_recall <= 1.0 for point in model.points)


def test_default_model_is_the_consumers_reading_model_and_fits_the_budget() -> None:
    pages = [page(i, 1500, height) for i, height in enumerate([12, 14, 17, 24])]
    levels = RecallAwareBudget().choose(pages, DEEPSEEK, now=0.0, turn_count=4, budget=700)
    assert is_monotone(levels)
    assert sum(view_cost(DEEPSEEK, p, level) for p, level in zip(pages, levels)) <= 700
    default = ReadingGate(reading_model(DEEPSEEK), 0.0)
    assert expected_recalled_tokens(pages, DEEPSEEK, levels) == pytest.approx(
        expected_recalled_tokens(pages, DEEPSEEK, levels, default)
    )


def test_a_policy_that_kept_the_prices_of_earlier_sequences_chooses_what_a_fresh_one_chooses() -> None:
    # A session growing a page at a time, its newest page laid out anew with more text, the same session without an
    # old page (what a cue's policy sees: too far from every kept sequence to extend one), another gate, an age cap.
    rng = random.Random(3)
    sealed = [page(i, rng.randint(20, 400), rng.choice([8, 12, 16, 24]), turn=4 * i) for i in range(160)]
    gates = [GATE, ReadingGate(MODEL, 0.5)]
    warm = [RecallAwareBudget(), RecallAwareBudget(model=MODEL, base=AgeSchedule(time_steps=None))]
    for step in range(12):
        count = 100 + 5 * step
        words = rng.randint(20, 300)
        newest, grown = page(count, words, 12, turn=4 * count), page(count, words + 90, 24, turn=4 * count + 1)
        session = [*sealed[:count], newest]
        sequences = [session, session[:-1] + [grown], session[:count - 2] + [newest], session[:3] + session[4:],
                     session[:40] + session[41:]]
        for pages, gate, budget in itertools.product(sequences, gates, (300, 2500, 9000)):
            for kept in warm:
                fresh = replace(kept)
                options = dict(now=0.0, turn_count=4 * count + 1, budget=budget, gate=gate)
                assert kept.choose(pages, DEEPSEEK, **options) == fresh.choose(pages, DEEPSEEK, **options), (step, budget)


def test_prices_found_by_page_identity_in_a_kept_sequence_are_those_pages_own() -> None:
    # What a cue's policy sees: the session without some old pages, its newest page laid out anew or a page sealed
    # since; pages loaded again (equal, not the same objects); pages in another order; another gate.
    rng = random.Random(5)
    session = [page(i, rng.randint(20, 400), rng.choice([8, 12, 16, 24]), turn=4 * i) for i in range(200)]
    grown = page(199, 500, 24, turn=4 * 199 + 1)
    reloaded = [replace(p) for p in session]
    left_out = [p for i, p in enumerate(session) if i not in {7, 60, 61, 130}]
    sequences = [
        session, left_out, left_out[:-1] + [grown], left_out + [page(200, 90, 12, turn=800)],
        [p for i, p in enumerate(reloaded) if i != 20], session[:50] + session[100:], session[:30] + session[31:90],
        session[:10] + session[60:70] + session[20:30] + session[100:], left_out[::-1],
    ]
    prices = _PagePrices()
    for pages, gate in itertools.product(sequences, [GATE, ReadingGate(MODEL, 0.5)]):
        found = prices.of(pages, DEEPSEEK, gate)
        if found is None:  # too far from every kept sequence: the policy prices the newest pages one by one
            continue
        expected = [view_prices(DEEPSEEK, p, gate) for p in pages]
        assert found[0].tolist() == [costs for costs, _ in expected]
        assert found[1].tolist() == [values for _, values in expected]
        for kept in (RecallAwareBudget(), RecallAwareBudget(model=MODEL, base=AgeSchedule(time_steps=None))):
            for budget in (300, 2500, 9000):
                options = dict(now=0.0, turn_count=801, budget=budget, gate=gate)
                kept.choose(session, DEEPSEEK, **options)
                assert kept.choose(pages, DEEPSEEK, **options) == replace(kept).choose(pages, DEEPSEEK, **options)
