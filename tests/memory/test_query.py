"""context(query=...): one search cues the pages of the best hits; they read, go last, say why; the budget holds."""

from __future__ import annotations

import math
import random

import pytest
from embedders import TrigramEmbedder
from optical_memory.policies import is_monotone
from optical_memory.policies.reading import ReadingGate, reading_model, view_choices

from optical_memory import OpticalMemory
from optical_memory import memory as memory_module
from optical_memory.memory import QUERY_FUSED_PAGES, QUERY_PAGES, REASON_QUERY
from optical_memory.messages.dialects import OpenAIDialect

WORDS = "seat window aisle coach platform delay refund luggage bicycle quiet carriage connection".split()
FACT = "The gate code at my parents' place is 42X17."
QUESTION = "What is the gate code at my parents' place?"


def fill(memory: OpticalMemory, turns: int = 400, fact_turn: int = 30) -> None:
    """Turns of common words (each in nearly every turn), the fact once, and "zeppelin" every 12th turn."""
    rng = random.Random(7)
    for i in range(turns):
        text = " ".join(rng.choices(WORDS, k=60))
        if i == fact_turn:
            text += " " + FACT
        if i % 12 == 1:
            text += " Zeppelin overhead."
        memory.add("user" if i % 2 == 0 else "assistant", text, timestamp=float(i))


@pytest.fixture(scope="module")
def mem():
    memory = OpticalMemory.open(":memory:", hot_turns=6)
    fill(memory)
    yield memory
    memory.close()


def fact_page(memory: OpticalMemory) -> int:
    return next(page.index for page in memory.pages if FACT in page.text)


def cued_pages(context) -> list[int]:
    return [view.page.index for view in context.pages if view.reason.startswith(REASON_QUERY)]


def test_the_page_holding_the_best_hit_is_shown_and_says_why(mem):
    page = fact_page(mem)
    plain = mem.context(budget=1500, now=400.0)
    assert plain.pages[page].forgotten  # age and budget alone forget it
    cued = mem.context(budget=1500, now=400.0, query=QUESTION)
    view = cued.pages[page]
    assert not view.forgotten
    # A hit scores the rarity of the query words it holds: the fact holds 8 of the question's ("what" is in no
    # turn), each in 1 turn of 400 (BM25's inverse document frequency, kept positive).
    score = 8 * math.log(1 + (400 - 1 + 0.5) / (1 + 0.5))
    # The best cue: at the cheapest level DeepSeek-OCR's reading model expects to read at min_recall (tiny), with
    # what it predicts, since the hit itself goes verbatim beside it.
    assert view.reason.startswith(f"{REASON_QUERY}: score {score:.3g}; image at ")
    choices = view_choices(mem.consumer, view.page, ReadingGate(reading_model(mem.consumer), mem.min_recall))
    tiny = choices[-1]
    assert tiny.recall >= mem.min_recall and not tiny.as_text
    assert (view.level, view.expected_recall) == (tiny.level, tiny.recall)
    assert FACT in cued.passages[0].snippet
    assert cued.report.total_tokens <= 1500
    others = [v for v in cued.pages if not v.reason.startswith(REASON_QUERY)]
    assert is_monotone([v.level for v in others])
    assert all(v.reason.startswith(("age", "budget", "fail-closed", "below min_recall")) for v in others)


def test_messages_keep_the_cue_and_the_whole_budget_when_they_reprice(mem):
    cued = mem.context(budget=1500, now=400.0, query=QUESTION)
    built = cued.messages(OpenAIDialect(), system=[{"role": "system", "content": "Be brief. " * 40}])
    assert built.total_tokens <= 1500
    assert not built.context.pages[fact_page(mem)].forgotten
    assert OpenAIDialect().cost(built.messages, mem.consumer) == built.total_tokens


def test_a_query_costs_one_search_even_when_messages_reprice(mem):
    searches = []
    search = mem.store.search

    def counted(*args, **kwargs):
        searches.append(args)
        return search(*args, **kwargs)

    mem.store.search = counted
    try:
        mem.context(budget=1500, now=400.0, query=QUESTION).to_openai(system="Be brief. " * 40)
    finally:
        del mem.store.search
    assert len(searches) == 1


def test_at_most_a_few_pages_are_cued_and_weak_hits_cue_none(mem):
    cued = mem.context(budget=4000, now=400.0, query="zeppelin")  # on many pages, equally well
    assert sum(v.reason.startswith(REASON_QUERY) for v in cued.pages) == QUERY_PAGES
    # The fact's words are rare; "zeppelin" is on other pages too but scores far below the fact's three words.
    cued = mem.context(budget=4000, now=400.0, query="the gate code of the zeppelin?")
    assert [v.page.index for v in cued.pages if v.reason.startswith(REASON_QUERY)] == [fact_page(mem)]


def test_with_an_embedder_more_pages_are_cued_since_fused_scores_cut_none(mem):
    hybrid = OpticalMemory(mem.store, hot_turns=6, embedder=TrigramEmbedder())  # the same session
    hybrid.backfill(progress=False)
    # "zeppelin" is on 33 turns across the pages: the 16 best fused hits show more pages than BM25's cap of 8.
    cued = cued_pages(hybrid.context(budget=4000, now=400.0, query="zeppelin"))
    assert QUERY_PAGES < len(cued) <= QUERY_FUSED_PAGES
    assert len(cued_pages(mem.context(budget=4000, now=400.0, query="zeppelin"))) == QUERY_PAGES

def test_words_in_most_turns_are_not_searched(mem, monkeypatch):
    """A word in more turns than the cap would make the search rank much of the session."""
    monkeypatch.setattr(memory_module, "QUERY_POSTINGS", 300)  # below the 400 turns each common word is in
    searched = []
    search = mem.store.search
    mem.store.search = lambda scope, query, **options: searched.append(query) or search(scope, query, **options)
    try:
        assert cued_pages(mem.context(budget=1500, now=400.0, query="seat, coach and refund")) == []
        assert cued_pages(mem.context(budget=1500, now=400.0, query="coach seat gate")) == [fact_page(mem)]
    finally:
        del mem.store.search
    assert searched == ["gate"]


def test_without_hits_on_pages_the_context_is_the_one_without_a_query():
    memory = OpticalMemory.open(":memory:", hot_turns=6)
    fill(memory, turns=200, fact_turn=196)  # the fact is still in the recent text
    plain = memory.context(budget=1500, now=200.0)
    for query in (QUESTION, "dirigible", "", "?!"):
        cued = memory.context(budget=1500, now=200.0, query=query)
        assert [(v.level, v.reason) for v in cued.pages] == [(v.level, v.reason) for v in plain.pages]
    assert FACT in cued.recent[-4].content


def test_without_a_budget_the_cued_page_reads_and_nothing_else_moves(mem):
    plain = mem.context(now=400.0)
    cued = mem.context(now=400.0, query=QUESTION)
    page = fact_page(mem)
    assert not cued.pages[page].forgotten
    assert [v.level for i, v in enumerate(cued.pages) if i != page] == [
        v.level for i, v in enumerate(plain.pages) if i != page
    ]


@pytest.mark.parametrize("query", [42, b"gate", ["gate"]])
def test_a_query_must_be_text(mem, query):
    with pytest.raises(TypeError, match="query"):
        mem.context(budget=1500, query=query)
