"""What ``context`` keeps between calls (forgotten pages' views and their token sums, age columns, priced view choices,
the recall-aware policy's price arrays) never shows.

A memory that has served many contexts must give exactly what a memory opened afresh on the same store gives, which
has kept nothing: across a newly sealed page, another process's commit, and another consumer, budget, reading
gate, instant, policy or query.
"""

import random

import pytest
from optical_memory.policies import YEAR, AgeSchedule, RecallAwareBudget, TokenBudget

from optical_memory import OpticalMemory

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()
DAYS = 86_400.0
START = 1_000_000.0


def sentence(rng: random.Random, turn: int) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(20, 70))]
    words.insert(rng.randrange(len(words)), f"marker{turn % 17}")  # a rarer word a query can find
    return " ".join(words)


def add(mem: OpticalMemory, rng: random.Random, count: int) -> None:
    for _ in range(count):
        turn = len(mem.turns)
        # Three days apart: at the last turn's instant the oldest pages are over a year old, forgotten by age.
        mem.add("user" if turn % 2 == 0 else "assistant", sentence(rng, turn), timestamp=START + 3 * DAYS * turn)


def digest(ctx):
    views = [(v.page.index, v.level, v.tokens, v.text_tokens, v.as_text, v.reason, v.expected_recall) for v in ctx.pages]
    return views, ctx.report.as_dict(), [(t.index, t.content) for t in ctx.recent]


CALLS = [
    {"budget": 6000},
    {"budget": 2500},
    {"budget": None},
    {"budget": 6000, "consumer": "openai:gpt-4o"},
    {"budget": None, "consumer": "openai:gpt-4o"},
    {"budget": 2500, "consumer": "anthropic"},
    {"budget": 6000, "min_recall": 0.5},
    {"budget": 6000, "now_offset": 2 * YEAR},
    {"budget": 6000, "query": "marker3 marker11"},
    {"budget": 3000, "query": "marker5", "policy": "capped"},
    {"budget": 3000, "policy": "token"},
    {"budget": None, "policy": "age", "query": "marker7"},
]
POLICIES = {"capped": RecallAwareBudget(base=AgeSchedule()), "token": TokenBudget(), "age": AgeSchedule()}


def counted_from_views(ctx) -> dict:
    """What the report says of the views, worked out from the views themselves (the report counts the forgotten
    ones from sums it keeps)."""
    dropped = [v for v in ctx.pages if v.level is None]
    images = [v for v in ctx.pages if v.level is not None and not v.as_text]
    return {"pages_dropped": len(dropped), "dropped_text_tokens": sum(v.text_tokens for v in dropped),
            "pages_as_images": len(images), "paged_text_tokens": sum(v.text_tokens for v in images),
            "image_tokens": sum(v.tokens for v in images), "pages_total": len(ctx.pages)}


def served(mem: OpticalMemory, call: dict, now: float, policies: dict = POLICIES):
    options = dict(call)
    instant = now + options.pop("now_offset", 0.0)
    if "policy" in options:
        options["policy"] = policies[options["policy"]]
    ctx = mem.context(now=instant, **options)
    expected = counted_from_views(ctx)
    assert {key: ctx.report.as_dict()[key] for key in expected} == expected, call
    return digest(ctx)


def unkept(path, call: dict, now: float):
    """The context ``call`` asks for, from a memory (and policies) that served nothing before it."""
    policies = {"capped": RecallAwareBudget(base=AgeSchedule()), "token": TokenBudget(), "age": AgeSchedule()}
    with OpticalMemory.open(path, hot_turns=4) as fresh:
        return served(fresh, call, now, policies)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_memory_that_kept_what_it_computed_gives_what_a_fresh_one_gives(tmp_path, seed):
    path = tmp_path / "memory.db"
    rng = random.Random(seed)
    with OpticalMemory.open(path, hot_turns=4) as warm, OpticalMemory.open(path, hot_turns=4) as other:
        add(warm, rng, 150)
        checked_forgotten = checked_cue = False
        sealed_by = set()
        for step in range(8):
            pages_before = len(warm.pages)
            # Alternate who writes: the warm memory itself, or another one (another process's commit).
            writer = warm if step % 2 == 0 else other
            if step == 5:  # the other one erases the session and writes it anew: the same page numbers, new pages
                other.clear()
                add(other, random.Random(seed + 100), 150)
                pages_before = 0
            add(writer, rng, 9)
            if len(warm.pages) > pages_before:
                sealed_by.add(writer)
            now = START + 3 * DAYS * len(warm.turns)
            reference = [unkept(path, call, now) for call in CALLS]
            for _ in range(2):  # the second time from what the first kept
                for call, expected in zip(CALLS, reference):
                    assert served(warm, call, now) == expected, f"step {step}, {call}"
            for views, _, _ in reference:
                reasons = [view[5] for view in views]
                checked_forgotten |= sum("older than a forgotten page" in reason for reason in reasons) > 2
                checked_cue |= any(reason.startswith("relevant to the query") for reason in reasons)
        # The cases the kept state is for did occur: pages sealed by either writer, many forgotten pages, cues.
        assert sealed_by == {warm, other}
    assert checked_forgotten and checked_cue
