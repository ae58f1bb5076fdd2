"""context(query=...) sends the best hits' passages verbatim beside the pages: priced before any page, within the
budget, never twice, and as the search finds them."""

from __future__ import annotations

import math

import pytest
from embedders import TrigramEmbedder
from test_query import FACT, QUESTION, cued_pages, fact_page, fill, mem  # noqa: F401  (mem: the same session's fixture)

from optical_memory import OpticalMemory
from optical_memory.memory import QUERY_HITS, QUERY_PASSAGE_SHARE
from optical_memory.messages.dialect import PASSAGES_HEADER, passage_text, passages_text
from optical_memory.messages.dialects import OpenAIDialect


def pages_message_texts(messages: list[dict]) -> list[str]:
    return [part["text"] for part in messages[0]["content"] if part["type"] == "text"]


def test_the_best_hit_goes_verbatim_with_the_page_it_is_on(mem):
    context = mem.context(budget=1500, now=400.0, query=QUESTION)
    best = context.passages[0]
    turn = mem.turns[best.turn_index]
    assert FACT in best.snippet and best.snippet == turn.content[best.start:best.end]
    assert best.page == f"page {fact_page(mem)}" and best.role.value == turn.role.value
    assert mem.recall(best.page).count(best.snippet) == 1
    scores = [hit.score for hit in context.passages]
    assert scores == sorted(scores, reverse=True) and len(scores) <= QUERY_HITS


def test_passages_are_counted_in_the_report_and_sent_after_the_pages(mem):
    context = mem.context(budget=1500, now=400.0, query=QUESTION)
    consumer = mem.consumer
    counted = consumer.text_tokens("\n\n".join([PASSAGES_HEADER, *(
        f"{hit.page}, {hit.role.value}: {hit.snippet}" for hit in context.passages)]))
    report = context.report
    assert report.passage_tokens == counted > 0
    assert report.total_tokens == report.hot_text_tokens + report.image_tokens + report.fallback_text_tokens + counted
    assert report.total_tokens <= 1500
    built = context.messages(OpenAIDialect(), system=[{"role": "system", "content": "Be brief. " * 40}])
    assert built.total_tokens <= 1500
    texts = pages_message_texts(built.messages[1:])
    block = texts[-1]
    assert block.startswith(PASSAGES_HEADER) and FACT in block
    assert block == "\n\n".join([PASSAGES_HEADER, *map(passage_text, built.context.passages)])
    assert built.messages[1]["content"][-1]["type"] == "text"  # after every page image


def test_passages_come_before_pages_when_the_budget_is_tight(mem):
    plain = mem.context(budget=10_000, now=400.0)
    hot = plain.report.hot_text_tokens
    tight = mem.context(budget=hot + 120, now=400.0, query=QUESTION)
    assert FACT in tight.passages[0].snippet and len(tight.passages) == 1
    assert tight.report.image_tokens + tight.report.fallback_text_tokens <= 120 - tight.report.passage_tokens
    assert tight.report.total_tokens <= hot + 120
    # Too tight for even the header and one passage: none, and no error.
    none = mem.context(budget=hot + 5, now=400.0, query=QUESTION)
    assert none.passages == () and none.report.passage_tokens == 0


def test_no_query_no_passages_and_hits_in_the_recent_turns_give_none():
    memory = OpticalMemory.open(":memory:", hot_turns=6)
    fill(memory, turns=200, fact_turn=196)  # the fact is still in the recent text
    assert memory.context(budget=1500, now=200.0).passages == ()
    assert memory.context(budget=1500, now=200.0, query=QUESTION).passages == ()
    assert "Passages" not in str(memory.context(budget=1500, now=200.0, query=QUESTION).to_openai())


def test_a_page_sent_as_text_is_not_quoted_again(mem):
    context = mem.context(now=400.0, query=QUESTION, min_recall=1.0)  # no image reads in full: every page as text
    assert all(view.as_text for view in context.shown_pages)
    assert context.passages == () and context.report.passage_tokens == 0


def test_passages_take_at_most_their_share_of_the_budget_and_all_without_one(mem):
    zeppelins = [turn.index for turn in mem.turns if "Zeppelin" in turn.content]
    context = mem.context(budget=4000, now=400.0, query="zeppelin")  # on many pages, equally well
    share = int((4000 - context.report.hot_text_tokens) * QUERY_PASSAGE_SHARE)
    assert 1 < len(context.passages) < len(zeppelins) and context.report.passage_tokens <= share
    assert all("Zeppelin" in hit.snippet and hit.page != "recent" for hit in context.passages)
    unbudgeted = mem.context(now=400.0, query="zeppelin")
    on_pages = [index for index in zeppelins if index < len(mem.turns) - 6]
    searched = [hit.turn_index for hit in mem.search("zeppelin", QUERY_HITS, match="any") if hit.page != "recent"]
    assert sorted(hit.turn_index for hit in unbudgeted.passages) == sorted(searched)
    assert set(searched) <= set(on_pages)


def test_the_passages_are_priced_as_the_one_block_they_are_sent_as():
    # A passage ending in CJK or a code fence shares no token with the separator after it, so counting each passage
    # alone undercounts the block the messages send.
    memory = OpticalMemory.open(":memory:", hot_turns=6, consumer="openai:gpt-4o")
    for turn in range(120):
        memory.add("user", f"note {turn}: the zeppelin docks at {'日本' if turn % 2 else '```'}")
        memory.add("assistant", f"Noted, number {turn}.")
    hot = memory.context(budget=4000).report.hot_text_tokens
    context = memory.context(budget=hot + 200, query="zeppelin")  # too tight for a page as text
    block = memory.consumer.text_tokens(passages_text(context.passages))
    assert len(context.passages) > 1 and context.report.passage_tokens == block
    budget = hot + int(block / QUERY_PASSAGE_SHARE)  # the passages' share is exactly their block
    exact = memory.context(budget=budget, query="zeppelin")
    assert exact.passages == context.passages[:len(exact.passages)] and exact.passages
    assert exact.report.passage_tokens == memory.consumer.text_tokens(passages_text(exact.passages)) <= block
    assert exact.messages(OpenAIDialect()).total_tokens <= budget


def test_a_long_turn_holding_the_rarest_word_is_quoted_before_short_ones_holding_a_common_one():
    memory = OpticalMemory.open(":memory:", hot_turns=6)
    chatter = "well I was just thinking about the weekend and how the week went for all of us here " * 4
    for turn in range(300):
        text = f"so where were you on day {turn}?" if turn % 10 == 0 else f"ok, see you on day {turn}"
        if turn == 151:
            text = f"{chatter}\nI left the car in the garage at spot P3-201."
        memory.add("user" if turn % 2 else "assistant", text)
    question = "Where is my car parked?"
    # BM25 also weighs a word by how short its turn is: the short turns holding only "where" come first.
    assert "where" in memory.search(question, match="any")[0].snippet
    best = memory.context(budget=4000, query=question).passages[0]
    assert best.turn_index == 151 and "P3-201" in best.snippet
    # Its score is the rarity of the query words it holds: "car" alone, in 1 turn of 300 (BM25's inverse document
    # frequency, kept positive).
    assert best.score == pytest.approx(math.log(1 + (300 - 1 + 0.5) / (1 + 0.5)))


def test_a_query_quotes_and_cues_alike_on_both_backends(store_backend):
    # The stores rank differently (BM25, ts_rank_cd); the context ranks their hits by the rarity of the query words
    # each holds, counted in the session, so it quotes and cues the same turns on either.
    memory = OpticalMemory(store_backend.open(), hot_turns=6)
    fill(memory, turns=200)
    context = memory.context(budget=1500, now=200.0, query=QUESTION)
    assert FACT in context.passages[0].snippet and fact_page(memory) in cued_pages(context)
    unbudgeted = memory.context(now=200.0, query="zeppelin")
    as_text = {view.page.label for view in unbudgeted.shown_pages if view.as_text}
    found = memory.search("zeppelin", 32)
    assert len(found) == 17  # "Zeppelin" is in every 12th turn
    quoted = unbudgeted.passages
    assert sorted(hit.turn_index for hit in quoted) == sorted(
        hit.turn_index for hit in found if hit.page != "recent" and hit.page not in as_text)
    assert len(quoted) >= 15
    assert len({hit.score for hit in quoted}) == 1  # each holds the one word: they tie, whatever the store says
    memory.close()


def test_with_an_embedder_passages_are_the_fused_hits(mem):
    hybrid = OpticalMemory(mem.store, hot_turns=6, embedder=TrigramEmbedder())  # the same session
    hybrid.backfill(progress=False)
    context = hybrid.context(budget=1500, now=400.0, query=QUESTION)
    assert FACT in context.passages[0].snippet
    assert context.passages[0].score <= 2 / 61  # a reciprocal rank fusion score
