"""The memory QA benchmark's logic: conversations, what counts as available, every strategy within the budget."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import make_page
from embedders import TrigramEmbedder

from benchmarks.memory_qa import (
    ALL_STRATEGIES,
    ATTRIBUTES,
    HYBRID_STRATEGIES,
    QUICK,
    STRATEGIES,
    Bench,
    CachedEmbedder,
    Question,
    Sent,
    Settings,
    _Legibility,
    conversations,
    multi_session_conversation,
    planted_conversation,
    render_table,
    run,
    summarise,
    targets,
)
from optical_memory.core.consumers import get_consumer
from optical_memory.core.types import Role


def test_availability_is_text_first_then_the_best_page_then_nothing():
    page, other = make_page(0, text="... code 42X17 ..."), make_page(1, text="code 42X17 again")
    sent = Sent(texts=["nothing here"], pages=[(page, 0.4, "model"), (other, 0.7, "model")])
    assert sent.availability("42X17") == (0.7, "model")
    assert sent.availability("99Q00") == (0.0, "absent")
    sent.texts.append("it is 42X17")
    assert sent.availability("42X17") == (1.0, "text")


@pytest.fixture(scope="module")
def multi():
    return multi_session_conversation("tune", min_tokens=6000, seed=3)


def test_multi_session_facts_are_stated_restated_and_some_updated_in_order(multi):
    assert multi_session_conversation("tune", min_tokens=6000, seed=3) == multi  # seeded
    text = [turn.text for turn in multi.conversation.turns]
    kinds = [question.kind for question in multi.questions]
    assert kinds.count("updated") == len(ATTRIBUTES) // 2 and len(kinds) == len(ATTRIBUTES)
    answers = [question.answer for question in multi.questions]
    assert len(set(answers)) == len(answers)
    for attribute, question in zip(ATTRIBUTES, multi.questions):
        said = [i for i, t in enumerate(text) if question.answer in t]
        assert said and all(multi.conversation.turns[i].role is Role.USER for i in said)
        if question.kind == "updated":
            # The latest value is said once, by the update, after the first value was stated and restated.
            assert len(said) == 1 and attribute.update.format(v=question.answer) in text[said[0]]
            old = [i for i, t in enumerate(text) if attribute.state.split("{v}")[0] in t]
            assert old and max(old) < said[0]
        else:
            assert len(said) == 2 and attribute.restate.format(v=question.answer) in text[said[1]]
        assert question.text == attribute.question  # asked in other words than it was said


def test_every_strategy_fits_the_budget_and_retrieval_finds_a_planted_fact():
    qa = planted_conversation("tune", min_tokens=6000, seed=1, facts=3)
    bench = Bench(qa, get_consumer("deepseek-ocr"), _Legibility())
    try:
        question = qa.questions[0]
        for strategy in STRATEGIES:
            sent = bench.run(strategy, question, 1000)
            assert 0 < sent.tokens <= 1000, strategy
        assert bench.run("text RAG", question, 1000).availability(question.answer) == (1.0, "text")
        assert bench.run("query-aware + search", question, 1000).availability(question.answer) == (1.0, "text")
        kept = bench.run("truncation", question, 1000).texts
        assert kept[0] == qa.conversation.turns[-1].text  # newest first, as many as fit
    finally:
        bench.close()


def figure_rows(strategies, figures_by_budget):
    return [{"consumer": "deepseek-ocr", "strategy": strategy, "budget": budget, "dataset": "d",
             "availability": figures.get(strategy, 0.0), "tokens": budget - 10, "source": "text"}
            for budget, figures in figures_by_budget for strategy in strategies]


FIGURES = ((1000, {"text RAG": 0.5, "age-only": 0.2, "query-aware": 0.6,
                   "text RAG (hybrid)": 0.7, "query-aware (hybrid)": 0.7}),
           (2000, {"text RAG": 0.8, "age-only": 0.5, "query-aware": 0.7,
                   "text RAG (hybrid)": 0.9, "query-aware (hybrid)": 0.8}))
BM25_CHECKS = {("query-aware >= text RAG", 1000): True, ("query-aware >= text RAG", 2000): False,
               ("query-aware >= 2x age-only", 1000): True, ("query-aware >= 2x age-only", 2000): False}


def test_targets_and_the_table_come_from_the_summary():
    settings = Settings(budgets=(1000, 2000), consumers=("deepseek-ocr",))
    summary = summarise(figure_rows(STRATEGIES, FIGURES), settings)
    checks = {(c["target"], c["budget"]): c["met"] for c in targets(summary, settings)}
    assert checks == BM25_CHECKS
    meta = {"settings": {"budgets": [1000, 2000], "consumers": ["deepseek-ocr"]}, "tokenizers": {"deepseek-ocr": "t"}}
    table = render_table({"meta": meta, "summary": summary, "targets": targets(summary, settings)})
    assert "| query-aware | 60.0% (990) | 70.0% (1,990) |" in table
    assert "hybrid" not in table  # a run without an embedder has no hybrid rows

    hybrid = summarise(figure_rows(ALL_STRATEGIES, FIGURES), settings)
    checks = {(c["target"], c["budget"]): c["met"] for c in targets(hybrid, settings)}
    assert checks == {**BM25_CHECKS, ("query-aware (hybrid) >= text RAG (hybrid)", 1000): True,
                      ("query-aware (hybrid) >= text RAG (hybrid)", 2000): False}
    table = render_table({"meta": meta, "summary": hybrid, "targets": targets(hybrid, settings)})
    assert "| query-aware (hybrid) | 70.0% (990) | 80.0% (1,990) |" in table
    assert "| query-aware (hybrid) >= text RAG (hybrid) | deepseek-ocr | 2,000 | 80.0% | 90.0% | no |" in table


def test_the_cached_embedder_embeds_each_text_once_and_returns_the_embedders_vectors():
    inner = TrigramEmbedder(dimension=512)
    cached = CachedEmbedder(inner)
    assert (cached.name, cached.dimension) == (inner.name, 512)
    texts = ["the locker is B417", "cabin wifi", "the locker is B417"]
    first = cached(texts)
    assert cached.embedded == 2 and np.allclose(first, inner(texts), atol=1e-6)
    again = cached(["cabin wifi", "a new text"])
    assert cached.embedded == 3 and np.array_equal(again[0], first[1])
    with pytest.raises(TypeError, match="embedder must be an Embedder"):
        CachedEmbedder("minilm")  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_quick_run_with_an_embedder_adds_the_hybrid_strategies_and_leaves_the_others_as_they_were():
    settings = replace(QUICK, split="tune")
    embedder = TrigramEmbedder()
    hybrid = run(settings, embedder=embedder, progress=False)
    plain = run(replace(settings, consumers=settings.consumers[:1]), progress=False)
    assert hybrid["meta"]["strategies"] == list(ALL_STRATEGIES) and plain["meta"]["strategies"] == list(STRATEGIES)
    # Every turn and question embedded once for both consumers' memories and every budget.
    texts = {turn.text for qa in conversations(settings) for turn in qa.conversation.turns}
    texts |= {question.text for qa in conversations(settings) for question in qa.questions}
    assert hybrid["meta"]["embedder"]["texts_embedded"] == len(texts)

    def keyed(rows):
        return {(r["consumer"], r["conversation"], r["question"], r["budget"], r["strategy"]): r for r in rows}

    with_embedder, without = keyed(hybrid["rows"]), keyed(plain["rows"])
    assert without and all(with_embedder[key] == row for key, row in without.items())
    cells = {(s["consumer"], s["strategy"], s["budget"]): s for s in hybrid["summary"]}
    questions = sum(len(qa.questions) for qa in conversations(settings))
    for consumer in settings.consumers:
        for budget in settings.budgets:
            for strategy in HYBRID_STRATEGIES:
                cell = cells[(consumer, strategy, budget)]
                assert cell["questions"] == questions and 0 < cell["tokens"] <= budget
            # Fusion keeps BM25's hits among RAG's 200 candidates, so most facts are still found as text.
            assert cells[(consumer, "text RAG (hybrid)", budget)]["availability"] > 0.5
    hybrid["targets"] = targets(hybrid["summary"], settings)
    assert {c["target"] for c in hybrid["targets"]} == {
        "query-aware >= text RAG", "query-aware (hybrid) >= text RAG (hybrid)", "query-aware >= 2x age-only"}
    assert "| text RAG (hybrid) |" in render_table(hybrid)


def test_a_question_is_counted_in_the_budget():
    qa = planted_conversation("tune", min_tokens=3000, seed=2, facts=1)
    bench = Bench(qa, get_consumer("openai:gpt-4o"), _Legibility())
    try:
        short, long = Question("planted", "Why?", "x"), Question("planted", "Why? " * 300, "x")
        assert bench.question_cost(long) > 300
        for strategy in ("truncation", "text RAG", "token-budget"):
            assert bench.run(strategy, long, 1000).tokens <= 1000
        assert len(bench.run("truncation", long, 1000).texts) < len(bench.run("truncation", short, 1000).texts)
    finally:
        bench.close()
