"""QueryCue: cued pages first in line for the budget at a level that reads, the rest by the wrapped policy."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import make_page
from hypothesis import given, settings
from hypothesis import strategies as st
from optical_memory.policies import (
    AgeSchedule,
    QueryCue,
    RecallAwareBudget,
    TokenBudget,
    is_monotone,
    view_cost,
)
from optical_memory.policies.legibility import CalibratedRecall, CalibrationPoint
from optical_memory.policies.reading import MeasuredCapacity, MeasuredPoint, ReadingGate, ReadingModel, reading_model

from optical_memory.core.consumers import get_consumer
from optical_memory.core.types import LineBox

DEEPSEEK = get_consumer("deepseek-ocr")
GPT4O = get_consumer("openai:gpt-4o")


def readable_from(level: int, consumer=DEEPSEEK) -> ReadingModel:
    """A reading model (no capacity: pixel legibility alone) that reads every page fully at tiers up to ``level``
    of DeepSeek's ladder, and not at all below: so the legible level of a cued page is exactly ``level``."""
    points = [CalibrationPoint(tier.name, 10.0, 10.0, 1.0, 1.0, 1.0 if i <= level else 0.0, 1)
              for i, tier in enumerate(DEEPSEEK.tiers)]
    return ReadingModel(consumer.name, CalibratedRecall(tuple(points)))


def gate_reading(*recalls: float) -> ReadingGate:
    """A gate (floor 90%) whose reading model expects every page read back at ``recalls[i]`` at DeepSeek's tier i:
    that pixel legibility, and a capacity measured to read everything at any compression."""
    legibility = [CalibrationPoint(tier.name, 10.0, 10.0, 1.0, 1.0, recall, 1)
                  for tier, recall in zip(DEEPSEEK.tiers, recalls)]
    capacity = [MeasuredPoint(tier.name, 10, None, 1, 1000.0, 1000.0 / compression, compression, 1, 1, 1.0, 0.2, 1.0)
                for tier in DEEPSEEK.tiers for compression in (0.1, 1000.0)]
    return ReadingGate(ReadingModel(DEEPSEEK.name, CalibratedRecall(tuple(legibility)),
                                    MeasuredCapacity(tuple(capacity))), 0.9)


def pages_of(sizes, spacing=40):
    return [make_page(i, text="word " * n, turns=(i * spacing,)) for i, n in enumerate(sizes)]


def test_a_cued_page_that_age_forgets_is_shown_at_the_cheapest_level_that_reads():
    pages = pages_of([1500] * 30)  # the oldest pages are past every age step: forgotten
    policy = TokenBudget()
    plain = policy.choose(pages, DEEPSEEK, now=0.0, turn_count=1200, budget=2000)
    assert plain[2] is None
    cued = QueryCue(policy, ((2, 7.5),), model=readable_from(2)).choose(
        pages, DEEPSEEK, now=0.0, turn_count=1200, budget=2000
    )
    assert cued[2] == 2  # small: tiny does not read, small is the cheapest that does
    rest = [level for i, level in enumerate(cued) if i != 2]
    assert is_monotone(rest)
    assert sum(view_cost(DEEPSEEK, page, level) for page, level in zip(pages, cued)) <= 2000


def test_cues_are_served_best_first_and_a_cue_that_does_not_fit_competes_as_an_ordinary_page():
    pages = pages_of([1500] * 6, spacing=1)
    model = readable_from(0)  # only LARGE (400 tokens) reads
    cue = QueryCue(TokenBudget(base=None), ((1, 9.0), (4, 8.0), (3, 1.0)), model=model)
    levels = cue.choose(pages, DEEPSEEK, now=0.0, turn_count=6, budget=900)
    # 400 + 400 for the two best cues; the third would need 400 more, so it is an ordinary page sharing the 100 left
    # with the others (TokenBudget keeps the newest at TINY = 64).
    assert levels[1] == 0 and levels[4] == 0
    assert levels[3] is None and levels[5] == 3
    assert sum(view_cost(DEEPSEEK, page, level) for page, level in zip(pages, levels)) <= 900


def test_without_a_budget_a_cue_never_blurs_a_page_and_sharpens_one_that_does_not_read():
    pages = [make_page(i, text="word " * 1500, turns=(t,)) for i, t in enumerate([99, 149, 189, 194])]
    age = AgeSchedule().choose(pages, DEEPSEEK, now=0.0, turn_count=200)
    assert age == [2, 1, 0, 0]
    levels = QueryCue(AgeSchedule(), ((0, 3.0), (3, 2.0)), model=readable_from(1)).choose(
        pages, DEEPSEEK, now=0.0, turn_count=200
    )
    assert levels == [1, 1, 0, 0]  # page 0 sharpened to base (small does not read); page 3 keeps large


def test_budget_left_unused_sharpens_a_cued_page_back_to_its_age_level():
    pages = pages_of([1500] * 3, spacing=1)
    levels = QueryCue(TokenBudget(), ((2, 1.0),), model=readable_from(3)).choose(
        pages, DEEPSEEK, now=0.0, turn_count=3, budget=10_000
    )
    assert levels == [0, 0, 0]  # tiny would read, but the budget pays for the level age gives


def test_a_host_consumer_prices_cued_pages_with_its_own_rule():
    pages = pages_of([2000] * 8, spacing=200)
    levels = QueryCue(RecallAwareBudget(), ((0, 5.0),)).choose(pages, GPT4O, now=0.0, turn_count=1700, budget=1200)
    assert levels[0] is not None
    assert sum(view_cost(GPT4O, page, level) for page, level in zip(pages, levels)) <= 1200


def test_the_best_cue_that_fits_as_text_goes_as_text_rather_than_as_an_image_that_reads_less():
    """An image reads at most what its reading model says; the page's text reads in full. Where the text fits the
    budget beside every cue's legible view, the best cue goes as text, not at its cheapest legible image."""
    pages = pages_of([1500] * 6, spacing=1)
    gate = gate_reading(0.98, 0.97, 0.95, 0.5)  # TINY reads below the floor: its view is the text
    text_tokens = DEEPSEEK.text_tokens(pages[2].text)
    cue = QueryCue(TokenBudget(), ((2, 9.0), (4, 3.0)))
    assert cue.legible_level(pages[2], DEEPSEEK, gate) == 2  # SMALL: the cheapest view reading at 90%
    levels = cue.choose(pages, DEEPSEEK, now=0.0, turn_count=6, budget=text_tokens + 300, gate=gate)
    assert view_cost(DEEPSEEK, pages[2], levels[2], gate) == text_tokens  # as text, expected recall 1.0, not 0.95
    # The second cue is an image: its text does not fit what is left; the 200 tokens left (every uncued page costs
    # its text at TINY, which does not fit either) sharpen it toward its age level as far as they pay, to BASE.
    assert levels[4] == 1
    assert sum(view_cost(DEEPSEEK, page, level, gate) for page, level in zip(pages, levels)) <= text_tokens + 300


def test_only_the_sharpest_cues_are_raised_before_the_other_pages_share_the_budget():
    pages = pages_of([1500] * 8, spacing=1)
    gate = gate_reading(0.98, 0.97, 0.95, 0.93)
    cues = ((6, 9.0), (5, 8.0))
    # Both cues' legible view is TINY (64); LARGE (400) reads best. With one raised first, the second stays at TINY
    # while the uncued pages take what is left; with two, both are at LARGE.
    one = QueryCue(RecallAwareBudget(), cues, sharpest=1).choose(pages, DEEPSEEK, now=0.0, turn_count=8, budget=1000,
                                                                 gate=gate)
    two = QueryCue(RecallAwareBudget(), cues, sharpest=2).choose(pages, DEEPSEEK, now=0.0, turn_count=8, budget=1000,
                                                                 gate=gate)
    assert (one[6], one[5]) == (0, 3) and (two[6], two[5]) == (0, 0)
    for levels in (one, two):
        assert sum(view_cost(DEEPSEEK, page, level, gate) for page, level in zip(pages, levels)) <= 1000
        assert is_monotone([level for i, level in enumerate(levels) if i not in (5, 6)])


def test_budget_the_policy_leaves_unused_raises_every_cue_to_its_most_readable_view():
    pages = pages_of([1500] * 3, spacing=1)
    gate = gate_reading(0.98, 0.97, 0.95, 0.5)
    levels = QueryCue(TokenBudget(), ((0, 3.0), (1, 2.0), (2, 1.0)), sharpest=0).choose(
        pages, DEEPSEEK, now=0.0, turn_count=3, budget=10_000, gate=gate)
    assert levels == [3, 3, 3]  # TINY's view is the text: it reads in full, and the budget pays for all three


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (dict(cues=((1,),)), TypeError),
        (dict(cues=(("page 1", 2.0),)), TypeError),
        (dict(cues=((True, 2.0),)), TypeError),
        (dict(cues=((1, "high"),)), TypeError),
        (dict(cues=(), min_recall=1.5), ValueError),
        (dict(cues=(), min_recall=True), ValueError),
        (dict(cues=(), model="deepseek"), TypeError),
        (dict(cues=(), sharpest=-1), ValueError),
        (dict(cues=(), sharpest=True), ValueError),
    ],
)
def test_bad_cues_are_rejected(options, error):
    with pytest.raises(error, match="cues|min_recall|model|sharpest"):
        QueryCue(TokenBudget(), **options)


def test_the_wrapped_policy_must_be_a_policy():
    with pytest.raises(TypeError, match="policy"):
        QueryCue("age", ())  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=12),
    cue_positions=st.lists(st.integers(0, 11), max_size=4, unique=True),
    budget=st.integers(0, 6000),
    inner=st.sampled_from(["token-budget", "token-budget-no-age", "recall-aware"]),
    consumer_name=st.sampled_from(["deepseek-ocr", "openai:gpt-4o", "anthropic"]),
    spacing=st.integers(1, 200),
    readable=st.integers(0, 3),
)
def test_fits_the_budget_keeps_uncued_pages_monotone_and_drops_cues_last(
    sizes, cue_positions, budget, inner, consumer_name, spacing, readable
):
    consumer = get_consumer(consumer_name)
    pages = pages_of(sizes, spacing)
    policy = {"token-budget": TokenBudget(), "token-budget-no-age": TokenBudget(base=None),
              "recall-aware": RecallAwareBudget()}[inner]
    cues = tuple((position, float(10 - rank)) for rank, position in enumerate(cue_positions) if position < len(pages))
    cue = QueryCue(policy, cues, model=readable_from(readable, consumer))
    turn_count = len(pages) * spacing + 1
    levels = cue.choose(pages, consumer, now=0.0, turn_count=turn_count, budget=budget)
    costs = [view_cost(consumer, page, level) for page, level in zip(pages, levels)]
    assert sum(costs) <= budget
    cued = [position for position, _ in cues]
    assert is_monotone([level for i, level in enumerate(levels) if i not in cued])
    # A cue is dropped only where its own legible view did not fit what better cues left: uncued pages never take
    # budget a cue needed.
    spent_on_better = 0
    for position in cued:
        needed = view_cost(consumer, pages[position], cue.legible_level(pages[position], consumer, None))
        if levels[position] is None:
            assert needed > budget - spent_on_better
        elif needed <= budget - spent_on_better:
            spent_on_better += needed
    # Without a budget, a cue only ever sharpens.
    ceiling = policy.choose(pages, consumer, now=0.0, turn_count=turn_count)
    unbudgeted = cue.choose(pages, consumer, now=0.0, turn_count=turn_count)
    for position, (level, uncued) in enumerate(zip(unbudgeted, ceiling)):
        if position in cued:
            assert level is not None and (uncued is None or level <= uncued)
        else:
            assert level == uncued


def test_under_a_reading_gate_a_cued_page_that_no_image_reads_goes_as_text_where_it_fits():
    """With the memory's gate, a level read back below the floor goes as text; the cue takes the cheapest view that
    reads, so a page whose every image is below the floor goes as text, and one readable at TINY goes at TINY."""
    pages = pages_of([300, 300], spacing=1)  # short pages: their text (~300 tokens) is cheap
    unreadable = ReadingGate(readable_from(-1), 0.9)
    levels = QueryCue(TokenBudget(), ((0, 2.0),)).choose(pages, DEEPSEEK, now=0.0, turn_count=2, budget=2000,
                                                         gate=unreadable)
    assert view_cost(DEEPSEEK, pages[0], levels[0], unreadable) == DEEPSEEK.text_tokens(pages[0].text)
    readable = ReadingGate(readable_from(3), 0.9)
    cue = QueryCue(TokenBudget(), ((0, 2.0),))
    assert cue.legible_level(pages[0], DEEPSEEK, readable) == 3
    assert QueryCue(TokenBudget(), ((0, 2.0),), min_recall=0.0).legible_level(pages[0], DEEPSEEK, unreadable) == 3


@pytest.mark.parametrize(("line_px", "words", "level"), [(24, 400, 3), (24, 900, 2), (12, 400, 1)])
def test_the_default_reading_model_is_the_consumers(line_px, words, level):
    """DeepSeek-OCR's reading model (published capacity x pixel legibility): a dense page must stay sharper to
    read at 90%; TINY reads a sparse page with large glyphs."""
    lines = tuple(LineBox(0, y, 1200, y + line_px, 0, 1) for y in range(0, 3 * line_px, line_px))
    page = replace(make_page(0, text="word " * words), lines=lines)
    assert QueryCue(TokenBudget(), ((0, 1.0),)).legible_level(page, DEEPSEEK, None) == level
    assert reading_model(DEEPSEEK).predict(page, DEEPSEEK, level).value >= 0.9
