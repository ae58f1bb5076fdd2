"""Forgetting policies: the age ladder, budget fit, monotonicity, and composition of budget on top of age."""

import pytest
from conftest import make_page
from hypothesis import given, settings
from hypothesis import strategies as st
from optical_memory.policies import (
    DAY,
    WEEK,
    YEAR,
    AgeSchedule,
    TokenBudget,
    is_monotone,
    view_cost,
)

from optical_memory.core.consumers import consumer_names, get_consumer

DEEPSEEK = get_consumer("deepseek-ocr")


def pages_of(sizes):
    return [make_page(i, text="word " * n, turns=(i,)) for i, n in enumerate(sizes)]


def test_default_age_schedule_follows_the_seed_ladder_in_turns():
    pages = [make_page(i, turns=(t,)) for i, t in enumerate([0, 900, 1500, 1550, 1589, 1599])]
    levels = AgeSchedule().choose(pages, DEEPSEEK, now=0.0, turn_count=1600)
    assert levels == [None, 3, 2, 1, 0, 0]


def test_default_age_schedule_follows_the_seed_ladder_in_time():
    now = 10 * YEAR
    ages = [2 * YEAR, 200 * DAY, 20 * DAY, 3 * DAY, 3600.0]
    pages = [make_page(i, timestamp=now - age) for i, age in enumerate(ages)]
    levels = AgeSchedule(turn_steps=None).choose(pages, DEEPSEEK, now=now, turn_count=len(pages))
    assert levels == [None, 3, 2, 1, 0]


def test_blurrier_of_turns_and_time_wins_and_forget_false_keeps_the_last_level():
    page = make_page(0, turns=(0,), timestamp=0.0)
    assert AgeSchedule().level(page, DEEPSEEK, now=2 * WEEK, turn_count=2) == 2
    assert AgeSchedule(forget=False).level(page, DEEPSEEK, now=5 * YEAR, turn_count=2) == 3


def test_levels_are_clamped_to_a_short_ladder():
    page = make_page(0, turns=(0,))
    assert AgeSchedule().level(page, get_consumer("gemini"), now=0.0, turn_count=900) == 1


@pytest.mark.parametrize("steps", [(), ((10, 1), (5, 2)), ((5, 2), (10, 1)), ((5, -1),)])
def test_bad_steps_are_rejected(steps):
    with pytest.raises(ValueError, match="turn_steps"):
        AgeSchedule(turn_steps=steps)


def test_budget_blurs_the_oldest_first_then_drops():
    pages = pages_of([1000] * 4)
    policy = TokenBudget(base=None)
    assert policy.choose(pages, DEEPSEEK, now=0, turn_count=4, budget=None) == [0, 0, 0, 0]
    assert policy.choose(pages, DEEPSEEK, now=0, turn_count=4, budget=1600) == [0, 0, 0, 0]
    assert policy.choose(pages, DEEPSEEK, now=0, turn_count=4, budget=1599) == [1, 0, 0, 0]
    assert policy.choose(pages, DEEPSEEK, now=0, turn_count=4, budget=64 + 3 * 400) == [3, 0, 0, 0]
    assert policy.choose(pages, DEEPSEEK, now=0, turn_count=4, budget=4 * 64) == [3, 3, 3, 3]
    assert policy.choose(pages, DEEPSEEK, now=0, turn_count=4, budget=3 * 64) == [None, 3, 3, 3]
    assert policy.choose(pages, DEEPSEEK, now=0, turn_count=4, budget=0) == [None] * 4


def test_budget_on_top_of_age_never_sharpens_what_age_blurred():
    pages = [make_page(i, turns=(t,)) for i, t in enumerate([0, 100, 190, 199])]
    age = AgeSchedule().choose(pages, DEEPSEEK, now=0, turn_count=200)
    both = TokenBudget().choose(pages, DEEPSEEK, now=0, turn_count=200, budget=10_000)
    assert both == age == [3, 2, 0, 0]


def test_fail_closed_pages_cost_their_text():
    short = make_page(0, text="tiny note")
    assert view_cost(DEEPSEEK, short, 0) == DEEPSEEK.text_tokens("tiny note")
    assert view_cost(DEEPSEEK, short, None) == 0


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3000), min_size=0, max_size=12),
    budget=st.integers(0, 8000),
    consumer_name=st.sampled_from(consumer_names()),
    with_age=st.booleans(),
    spacing=st.integers(1, 300),
)
def test_budget_always_fits_and_stays_monotone(sizes, budget, consumer_name, with_age, spacing):
    consumer = get_consumer(consumer_name)
    pages = [make_page(i, text="word " * n, turns=(i * spacing,)) for i, n in enumerate(sizes)]
    policy = TokenBudget() if with_age else TokenBudget(base=None)
    levels = policy.choose(pages, consumer, now=0.0, turn_count=len(pages) * spacing + 1, budget=budget)
    assert len(levels) == len(pages)
    assert sum(view_cost(consumer, p, lv) for p, lv in zip(pages, levels)) <= budget
    assert is_monotone(levels)
    assert all(lv is None or 0 <= lv < len(consumer.tiers) for lv in levels)


@settings(max_examples=40, deadline=None)
@given(turns=st.lists(st.integers(0, 3000), min_size=1, max_size=10), stamps=st.lists(st.floats(0, 4 * YEAR), min_size=10, max_size=10))
def test_age_schedule_is_monotone_even_with_unordered_timestamps(turns, stamps):
    turns = sorted(turns)
    pages = [make_page(i, turns=(t,), timestamp=stamps[i]) for i, t in enumerate(turns)]
    levels = AgeSchedule().choose(pages, DEEPSEEK, now=4 * YEAR, turn_count=turns[-1] + 1)
    assert is_monotone(levels)


def test_age_levels_kept_between_calls_follow_the_pages_passed_not_the_ones_seen_before():
    # The schedule keeps each page's newest turn and timestamp between calls (by page identity); a fresh schedule,
    # which has seen nothing, is the reference at every step.
    kept = AgeSchedule()
    pages = [make_page(i, turns=(40 * i,), timestamp=i * DAY) for i in range(30)]

    def check(sequence, now, turn_count):
        assert kept.choose(sequence, DEEPSEEK, now=now, turn_count=turn_count) == AgeSchedule().choose(
            sequence, DEEPSEEK, now=now, turn_count=turn_count)

    check(pages[:20], now=25 * DAY, turn_count=900)
    check(pages, now=40 * DAY, turn_count=1300)  # the session grew: the new pages' columns are added
    check(pages[:10], now=40 * DAY, turn_count=1300)  # a shorter one
    check(pages[:5] + pages[6:], now=40 * DAY, turn_count=1300)  # one page left out (a cue's policy sees this)
    check(pages, now=400 * DAY, turn_count=1300)  # the same pages at another instant
    check([], now=0.0, turn_count=0)
    # The same indices and ends but another page in the middle (the session recreated): nothing old is reused.
    kept = AgeSchedule()
    check(pages, now=40 * DAY, turn_count=1300)
    check([*pages[:12], make_page(12, turns=(0,), timestamp=0.0), *pages[13:]], now=40 * DAY, turn_count=1300)
