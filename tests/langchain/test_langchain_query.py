"""Remembering what matters now, through LangChain: the latest user message cues the pages of the middleware and the
history by default (``query=`` overrides it, ``None`` turns it off), ``compress_messages`` takes ``query=``, and the
``search_memory`` tool returns an old fact verbatim inside a real ``create_agent`` loop."""

from __future__ import annotations

import random

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_fakes import ScriptedChatModel, ToolRecordingModel
from langgraph.checkpoint.memory import InMemorySaver

from optical_memory import LATEST_USER_MESSAGE, OpticalMemory, compress_messages
from optical_memory.langchain import (
    OpticalChatMessageHistory,
    OpticalMemoryMiddleware,
    count_tokens,
    count_tool_tokens,
    search_memory,
    search_memory_text,
)
from optical_memory.langchain.convert import PAGES_MESSAGE_ID
from optical_memory.memory import REASON_QUERY

CONSUMER = "openai:gpt-4o"
BUDGET = 1000
WORDS = "train ticket Lyon Paris seat window aisle coach platform delay refund luggage".split()
FACT = "By the way, the gate code at my parents' place is 42X17."
QUESTION = "What was the gate code at my parents' place?"


def filler(i: int) -> str:
    return f"Turn {i}: " + " ".join(random.Random(i).choices(WORDS, k=90))


def user_turn(i: int) -> HumanMessage:
    return HumanMessage(filler(i) + (f" {FACT}" if i == 2 else ""), id=f"u{i}")


def cued_pages(context) -> list[int]:
    return [view.page.index for view in context.pages if view.reason.startswith(REASON_QUERY)]


def fact_page(memory: OpticalMemory) -> int:
    return next(page.index for page in memory.pages if "42X17" in page.text)


def run(middleware: OpticalMemoryMiddleware, turns: int = 60) -> ScriptedChatModel:
    model = ScriptedChatModel(provider="openai", model_name="gpt-4o")
    agent = create_agent(model, [], middleware=[middleware], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "q"}}
    for i in range(turns):
        agent.invoke({"messages": [user_turn(i)]}, config)
    agent.invoke({"messages": [HumanMessage(QUESTION, id="question")]}, config)
    return model


@pytest.fixture(scope="module")
def by_default():
    middleware = OpticalMemoryMiddleware(budget=BUDGET, hot_turns=6)
    model = run(middleware)
    return middleware, model


def test_the_middleware_cues_the_pages_of_the_latest_user_message_by_default(by_default):
    middleware, model = by_default
    memory = middleware.memory_for("q")
    last = middleware.last_context("q")
    assert cued_pages(last.context) == [fact_page(memory)]
    assert count_tokens(model.requests[-1], consumer=CONSUMER) + count_tool_tokens(middleware.tools, consumer=CONSUMER) \
        == last.total_tokens <= BUDGET
    assert model.requests[-1][0].id == PAGES_MESSAGE_ID


def test_query_none_turns_the_cue_off_and_a_string_overrides_it(by_default):
    default, _ = by_default
    off = OpticalMemoryMiddleware(budget=BUDGET, hot_turns=6, query=None)
    run(off)
    assert cued_pages(off.last_context("q").context) == []
    assert off.last_context("q").context.pages[fact_page(off.memory_for("q"))].forgotten
    fixed = OpticalMemoryMiddleware(budget=BUDGET, hot_turns=6, query="Turn 30 Lyon")
    run(fixed)
    cued = cued_pages(fixed.last_context("q").context)
    assert cued and fact_page(fixed.memory_for("q")) not in cued
    assert default.query is LATEST_USER_MESSAGE and repr(LATEST_USER_MESSAGE) == "LATEST_USER_MESSAGE"


@pytest.mark.parametrize("query", [3, b"code", ["code"]])
def test_a_bad_query_is_refused_by_name(query, tmp_path):
    with pytest.raises(TypeError, match="query"):
        OpticalMemoryMiddleware(query=query)
    with pytest.raises(TypeError, match="query"):
        OpticalChatMessageHistory("s", tmp_path / "h.db", query=query)
    with pytest.raises(TypeError, match="query"):
        compress_messages([{"role": "user", "content": "hi"}], query=query)


def chat(turns: int = 120) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    for i in range(turns):
        out.append(user_turn(i) if i % 2 == 0 else AIMessage(filler(i), id=f"a{i}"))
    return out


def test_the_history_cues_with_its_latest_user_message_unless_told_otherwise(tmp_path):
    history = OpticalChatMessageHistory("s", tmp_path / "h.db", consumer=CONSUMER, budget=BUDGET, hot_turns=4)
    history.add_messages([*chat(), HumanMessage(QUESTION, id="question"), AIMessage("Let me look.", id="look")])
    page = fact_page(history.memory)
    assert cued_pages(history.context().context) == [page]
    assert cued_pages(history.context(query=None).context) == []
    assert cued_pages(history.context(query="Turn 36 Lyon").context) != [page]
    assert cued_pages(OpticalChatMessageHistory("s", tmp_path / "h.db", consumer=CONSUMER, budget=BUDGET,
                                                hot_turns=4, query=None).context().context) == []
    assert history.context().total_tokens <= BUDGET


def test_compress_messages_takes_a_query():
    messages = [{"role": m.type.replace("human", "user").replace("ai", "assistant"), "content": m.text} for m in chat()]
    messages.append({"role": "user", "content": QUESTION})
    _, plain = compress_messages(messages, budget=BUDGET, hot_turns=4, return_report=True)
    assert not any(view.reason.startswith(REASON_QUERY) for view in plain.pages)
    for query in (QUESTION, LATEST_USER_MESSAGE):
        out, report = compress_messages(messages, budget=BUDGET, hot_turns=4, query=query, return_report=True)
        cued = [view for view in report.pages if view.reason.startswith(REASON_QUERY)]
        assert len(cued) == 1 and "42X17" in cued[0].page.text and not cued[0].forgotten
        assert report.total_tokens <= BUDGET


# -- the search_memory tool -------------------------------------------------------------------------------------------


def test_search_memory_returns_verbatim_passages_with_their_page_ids(tmp_path):
    history = OpticalChatMessageHistory("s", tmp_path / "h.db", consumer=CONSUMER, hot_turns=4)
    history.add_messages(chat())
    found = search_memory_text(history, "gate code parents")
    label = history.memory.pages[fact_page(history.memory)].label
    assert f"{label}, user: " in found and FACT in found
    assert search_memory(history).invoke({"query": "gate code parents"}) == found
    assert search_memory(history.memory).invoke({"query": "gate code parents", "k": 1}) == found
    assert search_memory_text(history, "zeppelin") == "No earlier passage of this conversation matches 'zeppelin'."
    with pytest.raises(ValueError, match="k must be"):
        search_memory_text(history, "gate", k=0)
    with pytest.raises(TypeError, match="query must be a string"):
        search_memory_text(history, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="source must be"):
        search_memory("memory")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="thread_id is required"):
        search_memory_text(OpticalMemoryMiddleware(), "gate")


def searching_agent(messages: list[BaseMessage], n: int) -> AIMessage:
    """Plays an agent that looks up what it cannot read: a question about the gate code calls search_memory, and the
    answer quotes what the tool returned."""
    last = messages[-1]
    if isinstance(last, ToolMessage):
        code = next((word.strip(".") for word in last.text.split() if word.strip(".") == "42X17"), "unknown")
        return AIMessage(f"The gate code is {code}.", id=f"answer-{n}")
    if isinstance(last, HumanMessage) and last.text == QUESTION:
        return AIMessage("", id="call", tool_calls=[{"name": "search_memory", "args": {"query": "gate code parents", "k": 2},
                                                      "id": "search-1"}])
    return AIMessage("Noted. " + " ".join(random.Random(n).choices(WORDS, k=10)), id=f"ai-{n}")


def test_an_agent_finds_an_old_fact_verbatim_with_search_memory():
    model = ToolRecordingModel(script=searching_agent, provider="openai", model_name="gpt-4o")
    middleware = OpticalMemoryMiddleware(budget=BUDGET, hot_turns=4, query=None)  # the cue alone would show the page
    agent = create_agent(model, [], middleware=[middleware], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "agent"}}
    for i in range(60):
        agent.invoke({"messages": [user_turn(i)]}, config)
    memory = middleware.memory_for("agent")
    assert middleware.last_context("agent").context.pages[fact_page(memory)].forgotten
    result = agent.invoke({"messages": [HumanMessage(QUESTION, id="question")]}, config)
    tool_message = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert tool_message.name == "search_memory"
    assert FACT in tool_message.text and memory.pages[fact_page(memory)].label in tool_message.text
    assert result["messages"][-1].text == "The gate code is 42X17."
    for messages, tools in model.calls:
        assert {tool.name for tool in tools} == {"recall_page", "search_memory"}
        assert count_tokens(messages, consumer=CONSUMER) + count_tool_tokens(tools, consumer=CONSUMER) <= BUDGET
    preamble = model.calls[-1][0][0].content[0]["text"]
    assert "search_memory" in preamble and "recall_page" in preamble


class DropSearchMemory(AgentMiddleware):
    """Another middleware that narrows the tools of each call, as tool-selection middleware does."""

    def wrap_model_call(self, request, handler):
        return handler(request.override(tools=[t for t in request.tools if t.name != "search_memory"]))


@pytest.mark.parametrize(("others", "search_tool", "mentioned"),
                         [([], True, True), ([], False, False), ([DropSearchMemory()], True, False)])
def test_the_preamble_mentions_search_memory_only_when_the_call_carries_it(others, search_tool, mentioned):
    model = ToolRecordingModel(provider="openai", model_name="gpt-4o")
    optical = OpticalMemoryMiddleware(hot_turns=2, search_tool=search_tool)
    agent = create_agent(model, [], middleware=[*others, optical])
    config = {"configurable": {"thread_id": "preamble"}}
    for i in range(20):
        agent.invoke({"messages": [user_turn(i)]}, config)
    messages, tools = model.calls[-1]
    assert messages[0].id == PAGES_MESSAGE_ID
    assert ("search_memory" in messages[0].content[0]["text"]) is mentioned
    assert ("search_memory" in {t.name for t in tools}) is mentioned


def test_the_middleware_and_the_history_pass_their_embedder_to_every_memory(tmp_path):
    """With an embedder, a thread's search finds a turn by meaning: "puppies" shares no word with "my puppy's name"
    (the word index alone finds nothing), the hashed-trigram embedder relates them."""
    from embedders import TrigramEmbedder

    embedder = TrigramEmbedder()
    fact = "My puppy's name is Biscuit."
    middleware = OpticalMemoryMiddleware(tmp_path / "m.db", hot_turns=2, embedder=embedder)
    model = ScriptedChatModel(provider="openai", model_name="gpt-4o")
    agent = create_agent(model, [], middleware=[middleware], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "pets"}}
    for text in (fact, *(filler(i) for i in range(6))):
        agent.invoke({"messages": [HumanMessage(text)]}, config)
    memory = middleware.memory_for("pets")
    assert memory.embedder is embedder and middleware.memory_for("other").embedder is embedder
    assert memory.search("puppies") and memory.search("puppies")[0].snippet == fact
    words_only = OpticalMemoryMiddleware(tmp_path / "m.db", hot_turns=2).memory_for("pets")
    assert len(words_only.turns) == len(memory.turns) and words_only.search("puppies") == []

    history = OpticalChatMessageHistory("pets", tmp_path / "h.db", hot_turns=2, embedder=embedder)
    history.add_messages([HumanMessage(fact), *(HumanMessage(filler(i)) for i in range(6))])
    assert history.memory.search("puppies")[0].snippet == fact
    for make in (lambda: OpticalMemoryMiddleware(embedder="minilm"),
                 lambda: OpticalChatMessageHistory("x", tmp_path / "x.db", embedder=object())):
        with pytest.raises(TypeError, match="embedder must be an Embedder"):
            make()
