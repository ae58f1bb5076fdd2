"""A page whose text cannot all be drawn goes to the consumer as text, and the context says why.

It lives beside the renderer tests because ``Page.missing_glyphs`` is what the renderer counts; the memory's
``_view`` and the CLI's page table only act on it.
"""

from __future__ import annotations

import random

from optical_memory import OpticalMemory
from optical_memory.cli.main import page_table

WORDS = "memory page vision token encoder recall forget older context window budget blur".split()
PRIVATE_USE = "\ue000"  # no font maps a private-use code point


def long_text(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(900))


SAID_AT = 1_683_500_000.0


def paged_context(content: str):
    memory = OpticalMemory.open(":memory:", hot_turns=0)
    memory.add("user", content, timestamp=SAID_AT)
    memory.flush()
    return memory, memory.context(now=SAID_AT + 60)  # a minute later: every page is shown at the sharpest tier


def test_a_page_with_missing_glyphs_goes_as_text_with_its_reason():
    memory, clean = paged_context(long_text(0))
    with memory:
        first = clean.pages[0]
        assert first.level == 0 and first.page.missing_glyphs == 0
        assert not first.as_text and first.image is not None and first.tokens < first.text_tokens
    marked = long_text(0).replace(" ", f" {PRIVATE_USE} ", 2)
    memory, ctx = paged_context(marked)
    with memory:
        view = ctx.pages[0]
        assert view.page.missing_glyphs == 2
        assert view.as_text and view.image is None and view.tokens == view.text_tokens
        assert view.reason.startswith("fail-closed: 2 glyphs missing")
        assert ctx.report.pages_as_text >= 1
        row = page_table(ctx).splitlines()[2]
        assert row.split()[-4:] == ["text", "(missing", "glyphs)", "fail-closed"]


def test_the_budget_prices_a_page_with_missing_glyphs_as_the_text_it_goes_as():
    marked = long_text(1).replace(" ", f" {PRIVATE_USE} ", 1)
    with OpticalMemory.open(":memory:", hot_turns=0) as memory:
        memory.add("user", marked, timestamp=SAID_AT)
        memory.add("assistant", long_text(2), timestamp=SAID_AT + 1)
        memory.flush()
        unlimited = memory.context(now=SAID_AT + 60)
        text_cost = sum(view.tokens for view in unlimited.pages if view.page.missing_glyphs)
        assert text_cost > 0
        budget = text_cost + 100  # room for the marked page as text and little else
        ctx = memory.context(budget=budget, now=SAID_AT + 60)
        assert ctx.report.total_tokens <= budget


def test_a_page_of_modern_emoji_goes_as_an_image():
    # Emoji newer than Symbola (Unicode 13-15), ZWJ sequences and flags come from Noto Color Emoji.
    chat = long_text(3).replace(" ", " 🫠 🥲 🧋 🦩 👩\u200d👩\u200d👧\u200d👦 🧑🏿\u200d🚀 🇺🇦 ", 4)
    memory, ctx = paged_context(chat)
    with memory:
        view = ctx.pages[0]
        assert view.page.missing_glyphs == 0
        assert not view.as_text and view.image is not None
