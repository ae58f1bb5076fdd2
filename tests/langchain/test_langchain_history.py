"""OpticalChatMessageHistory: the BaseChatMessageHistory contract, verbatim round trips, pages, budgets, images."""

from __future__ import annotations

import asyncio
import io
import json
import random

import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    get_buffer_string,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_fakes import ScriptedChatModel, png_b64

from optical_memory import OpticalMemory
from optical_memory.langchain import (
    OpticalChatMessageHistory,
    count_tokens,
    recall_page,
)
from optical_memory.langchain.convert import PAGES_MESSAGE_ID

WORDS = "harbour lantern copper meadow violet summit pepper orbit canvas willow ember quartz".split()


def chatter(n: int, *, seed: int = 0, words: int = 50) -> list[BaseMessage]:
    rng = random.Random(seed)
    out: list[BaseMessage] = []
    for i in range(n):
        text = f"message {i}: " + " ".join(rng.choice(WORDS) for _ in range(words))
        out.append(HumanMessage(text, id=f"h{i}") if i % 2 == 0 else AIMessage(text, id=f"a{i}"))
    return out


@pytest.fixture
def history(tmp_path):
    return OpticalChatMessageHistory("s1", tmp_path / "h.db", consumer="anthropic", hot_turns=4)


# -- the BaseChatMessageHistory contract ----------------------------------------------------------------------------


def test_starts_empty_and_returns_what_was_added(tmp_path):
    history = OpticalChatMessageHistory("s1", tmp_path / "h.db", consumer="anthropic", hot_turns=8)
    assert history.messages == []
    history.add_user_message("hello")
    history.add_ai_message("hi there")
    history.add_message(HumanMessage("how are you?", id="m3"))
    history.add_messages([AIMessage("fine", id="m4"), HumanMessage("good", id="m5")])
    assert [m.text for m in history.messages] == ["hello", "hi there", "how are you?", "fine", "good"]
    assert [type(m) for m in history.messages] == [HumanMessage, AIMessage, HumanMessage, AIMessage, HumanMessage]
    assert str(history) == get_buffer_string(history.messages)


def test_clear_forgets_everything_and_the_history_stays_usable(history):
    history.add_messages([SystemMessage("be brief"), *chatter(30)])
    history.clear()
    assert history.messages == [] and history.all_messages == [] and history.memory.pages == []
    history.add_user_message("again")
    assert [m.text for m in history.messages] == ["again"]


def test_async_variants(history):
    async def run() -> list[BaseMessage]:
        await history.aadd_messages([HumanMessage("one", id="1"), AIMessage("two", id="2")])
        first = await history.aget_messages()
        await history.aclear()
        assert await history.aget_messages() == []
        return first

    assert [m.id for m in asyncio.run(run())] == ["1", "2"]


def test_ids_names_and_tool_calls_round_trip(history):
    sent = [
        SystemMessage("You are a booking agent.", id="sys"),
        HumanMessage("Book Lyon", id="u1", name="ada"),
        AIMessage(
            "Checking.",
            id="a1",
            name="planner",
            tool_calls=[{"name": "search", "args": {"to": "Lyon", "seats": 2}, "id": "call-1"}],
            additional_kwargs={"refusal": None},
            response_metadata={"model_name": "m", "finish_reason": "tool_calls"},
            usage_metadata={"input_tokens": 10, "output_tokens": 4, "total_tokens": 14},
        ),
        ToolMessage("2 seats at 9:40", tool_call_id="call-1", name="search", id="t1", status="success"),
        AIMessage("Booked the 9:40.", id="a2"),
    ]
    history.add_messages(sent)
    assert history.messages == sent
    reopened = OpticalChatMessageHistory("s1", history.memory.store, consumer="anthropic", hot_turns=4)
    assert reopened.messages == sent


def test_persists_across_instances_on_the_same_file(tmp_path):
    first = OpticalChatMessageHistory("s", tmp_path / "p.db", hot_turns=3)
    first.add_messages(chatter(40))
    expected = first.messages
    first.close()
    second = OpticalChatMessageHistory("s", tmp_path / "p.db", hot_turns=3)
    assert second.messages == expected
    assert second.all_messages == chatter(40)


def test_a_session_keeps_its_page_style_when_the_consumer_changes(tmp_path):
    first = OpticalChatMessageHistory("s", tmp_path / "s.db", consumer="openai:gpt-4o", hot_turns=3)
    first.add_messages(chatter(40))
    pages = first.memory.pages
    second = OpticalChatMessageHistory("s", tmp_path / "s.db", consumer="anthropic", hot_turns=3)
    assert second.memory.pages == pages and second.memory.style == first.memory.style
    assert second.context().report.consumer == "anthropic"


# -- pages ------------------------------------------------------------------------------------------------------------


def test_old_turns_come_back_as_one_pages_message(history):
    conversation = chatter(60)
    history.add_messages([SystemMessage("Answer in French.", id="sys"), *conversation])
    messages = history.messages
    assert messages[0] == SystemMessage("Answer in French.", id="sys")
    pages = messages[1]
    assert isinstance(pages, HumanMessage) and pages.id == PAGES_MESSAGE_ID
    assert pages.content[0]["type"] == "text" and "rendered as pages (oldest first)" in pages.content[0]["text"]
    images = [b for b in pages.content if b.get("type") == "image"]
    assert images and all(b["mime_type"] == "image/png" and b["base64"] for b in images)
    hot = messages[2:]
    if hot[0].text.startswith("(continued from page "):
        hot = hot[1:]
    assert hot == conversation[-len(hot):]
    assert len(hot) < len(conversation)
    assert history.all_messages[1:] == conversation
    assert all("Answer in French." not in page.text for page in history.memory.pages)


@pytest.mark.parametrize("budget", [1800, 3000, 6000])
def test_messages_fit_the_budget(tmp_path, budget):
    history = OpticalChatMessageHistory("b", tmp_path / "b.db", consumer="anthropic", hot_turns=4, budget=budget)
    history.add_messages([SystemMessage("Be brief."), *chatter(80)])
    context = history.context()
    assert count_tokens(history.messages, consumer="anthropic") == context.total_tokens <= budget
    assert context.report.budget == budget


def test_a_budget_below_the_recent_turns_is_refused(history):
    history.add_messages(chatter(10))
    with pytest.raises(ValueError, match="smaller than what every call must send"):
        history.context(budget=50)


def test_reserve_leaves_room_for_the_prompt_the_history_is_placed_in(tmp_path):
    """The history cannot see the template's system message, the question or the tool schemas: ``reserve`` keeps
    their tokens free, so the whole prompt fits the budget."""
    system, question = SystemMessage("You are a terse assistant. " * 30), HumanMessage("And the last ferry?")
    around = count_tokens([system, question], consumer="anthropic")
    history = OpticalChatMessageHistory("r", tmp_path / "r.db", consumer="anthropic", hot_turns=4, budget=2500,
                                        reserve=around)
    history.add_messages(chatter(80))
    prompt = ChatPromptTemplate.from_messages([system, MessagesPlaceholder("history"), question])
    sent = prompt.invoke({"history": history.messages}).to_messages()
    assert count_tokens(sent, consumer="anthropic") <= 2500
    assert history.context().total_tokens == count_tokens(history.messages, consumer="anthropic") + around <= 2500
    with pytest.raises(ValueError, match="smaller than what every call must send"):
        history.context(reserve=2400)
    with pytest.raises(ValueError, match="reserve"):
        OpticalChatMessageHistory("r", tmp_path / "r.db", reserve=-1)


def test_a_turn_split_across_the_boundary_continues_as_text(tmp_path):
    """The tail of a turn past the hot window is on the open page; where a wider hot window holds it again, it goes
    as text after its mark."""
    writer = OpticalChatMessageHistory("c", tmp_path / "c.db", consumer="anthropic", hot_turns=2)
    long_turn = HumanMessage(" ".join(f"w{i}" for i in range(4000)), id="long")
    writer.add_messages([long_turn, AIMessage("ok", id="a"), HumanMessage("next", id="n")])
    assert writer.messages[1:] == [AIMessage("ok", id="a"), HumanMessage("next", id="n")]
    history = OpticalChatMessageHistory("c", tmp_path / "c.db", consumer="anthropic", hot_turns=3)
    messages = history.messages
    assert messages[0].id == PAGES_MESSAGE_ID
    tail = messages[1]
    assert tail.id == "long" and tail.text.startswith("(continued from page ")
    last_page = history.memory.pages[-1]
    assert tail.text.endswith(long_turn.text[last_page.segments[-1].end:])
    assert messages[2:] == [AIMessage("ok", id="a"), HumanMessage("next", id="n")]


def test_user_images_stay_images_on_both_sides_of_the_boundary(tmp_path):
    photo = {"type": "image", "base64": png_b64(600, 400), "mime_type": "image/png"}
    with_photo = HumanMessage([{"type": "text", "text": "Here is my ticket."}, photo], id="photo")
    history = OpticalChatMessageHistory("i", tmp_path / "i.db", consumer="anthropic", hot_turns=4)
    history.add_messages([with_photo])
    assert history.messages == [with_photo]
    text_only = count_tokens([HumanMessage("Here is my ticket.")], consumer="anthropic")
    assert count_tokens([with_photo], consumer="anthropic") == text_only + (600 * 400 + 749) // 750

    history.add_messages(chatter(40))
    assert history.memory.pages and "[image 1]" in history.memory.recall(0)
    assert photo["base64"] not in history.memory.recall(0)
    pages = history.messages[0]
    position = pages.content.index(photo)
    assert pages.content[position - 1] == {"type": "text", "text": "Image 1 of turn 0 (on page 0):"}
    assert all("photo" != m.id for m in history.messages[1:])


def test_tool_exchanges_never_straddle_the_page_text_boundary(tmp_path):
    """Long calls and long results fill pages at random places; what is sent as text is exactly the hot window and
    the tool exchange at its edge, so it never starts inside an exchange whose other half is on a page (tool calls
    are marked in the turn metadata the memory reads)."""
    rng = random.Random(7)
    history = OpticalChatMessageHistory("t", ":memory:", consumer="anthropic", hot_turns=3)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    for i in range(0, 90, 3):
        call = AIMessage(words(5, 300), id=f"c{i}", tool_calls=[{"name": "lookup", "args": {"n": i}, "id": f"k{i}"}])
        history.add_messages([HumanMessage(words(200, 600), id=f"h{i}"), call,
                              ToolMessage(words(5, 400), tool_call_id=f"k{i}", name="lookup", id=f"t{i}")])
        everything = history.all_messages
        edge = len(everything) - 3
        while isinstance(everything[edge], ToolMessage):
            edge -= 1
        assert [m for m in history.messages if m.id != PAGES_MESSAGE_ID] == everything[edge:]
    assert any(0 < s.end < len(history.memory.turns[s.turn_index].content) for p in history.memory.pages
               for s in p.segments)  # page boundaries do fall inside turns
    call_turn = next(t for t in history.memory.turns if t.metadata["identity"] == "c0")
    assert call_turn.metadata["tool_calls"][0]["id"] == "k0"
    assert next(t for t in history.memory.turns if t.metadata["identity"] == "t0").metadata["tool_call_id"] == "k0"


def test_a_memory_filled_without_langchain_reads_as_plain_messages():
    memory = OpticalMemory.open(":memory:", session="plain", hot_turns=3, consumer="anthropic")
    memory.add("user", "Where is my cabin?", name="ada")
    memory.add("assistant", "Looking it up.", metadata={"tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "cabin", "arguments": '{"deck": 3}'}}]})
    memory.add("tool", "Cabin 312", metadata={"tool_call_id": "c1"})
    history = OpticalChatMessageHistory("plain", memory)
    assert history.messages == [
        HumanMessage("Where is my cabin?", name="ada"),
        AIMessage("Looking it up.", tool_calls=[{"name": "cabin", "args": {"deck": 3}, "id": "c1"}]),
        ToolMessage("Cabin 312", tool_call_id="c1"),
    ]


def test_a_tool_artifact_that_is_not_json_is_left_out(history):
    result = ToolMessage("3 rows", tool_call_id="c", id="t", artifact={"frame": object()})
    history.add_messages([AIMessage("", id="a", tool_calls=[{"name": "q", "args": {}, "id": "c"}]), result])
    assert history.messages[1] == result.model_copy(update={"artifact": None})
    with pytest.raises(TypeError, match="JSON"):
        history.add_messages([AIMessage("x", additional_kwargs={"raw": object()})])


# -- integration ------------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_works_behind_runnable_with_message_history(tmp_path):
    model = ScriptedChatModel()
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are helpful."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    chat = RunnableWithMessageHistory(
        prompt | model,
        lambda session_id: OpticalChatMessageHistory(session_id, tmp_path / "chat.db", consumer="anthropic", hot_turns=4),
        input_messages_key="question",
        history_messages_key="history",
    )
    config = {"configurable": {"session_id": "s"}}
    for i in range(30):
        chat.invoke({"question": f"question {i}: " + " ".join(WORDS * 4)}, config)
    asyncio.run(chat.ainvoke({"question": "last one"}, config))
    last_request = model.requests[-1]
    assert isinstance(last_request[0], SystemMessage)
    assert last_request[1].id == PAGES_MESSAGE_ID
    assert last_request[-1].text == "last one"
    stored = OpticalChatMessageHistory("s", tmp_path / "chat.db", consumer="anthropic", hot_turns=4).all_messages
    assert len(stored) == 62 and stored[-1].text == "reply 31"


def test_recall_tool_bound_to_a_history(history):
    history.add_messages(chatter(80))
    tool = recall_page(history)
    assert tool.invoke({"page": "page 0"}) == history.memory.recall(0) == history.recall(0)
    assert tool.invoke({"page": 1}) == history.memory.recall(1)
    assert "no page 999" in tool.invoke({"page": "page 999"})


# -- bad input --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, error, match",
    [
        ("just a string", TypeError, "list of LangChain messages"),
        ([HumanMessage("ok"), {"role": "user", "content": "dict"}], TypeError, r"messages\[1\] must be a LangChain message"),
        ([HumanMessage([{"type": "audio", "base64": "AAAA", "mime_type": "audio/wav"}])], ValueError, "'audio' is not supported"),
        ([HumanMessage([{"type": "image", "url": "https://example.com/x.png"}])], ValueError, "send it inline"),
        ([HumanMessage([{"type": "image", "base64": "not base64!", "mime_type": "image/png"}])], ValueError, "not valid base64"),
        ([HumanMessage([{"type": "image", "base64": "aGVsbG8=", "mime_type": "image/png"}])], ValueError, "not a readable image"),
    ],
)
def test_bad_messages_are_rejected_and_nothing_is_written(history, bad, error, match):
    history.add_messages([HumanMessage("kept", id="k")])
    with pytest.raises(error, match=match):
        history.add_messages(bad)
    assert [m.id for m in history.all_messages] == ["k"]


def test_bad_construction(tmp_path):
    memory = OpticalMemory.open(":memory:", session="one")
    with pytest.raises(ValueError, match="does not match"):
        OpticalChatMessageHistory("two", memory)
    with pytest.raises(ValueError, match="budget"):
        OpticalChatMessageHistory("s", tmp_path / "x.db", budget=-1)
    with pytest.raises(ValueError, match="unknown"):
        OpticalChatMessageHistory("s", tmp_path / "x.db", consumer="nobody")
    with pytest.raises(TypeError, match="store"):
        OpticalChatMessageHistory("s", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="hot_turns"):
        OpticalChatMessageHistory("s", tmp_path / "x.db", hot_turns=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="session"):
        OpticalChatMessageHistory(7, tmp_path / "x.db")  # type: ignore[arg-type]


# -- companions and threads -------------------------------------------------------------------------------------------


def test_no_session_id_reaches_another_sessions_system_prompt(tmp_path):
    db = tmp_path / "tenants.db"
    tenant = OpticalChatMessageHistory("tenant-a", db, hot_turns=4)
    tenant.add_messages([SystemMessage("tenant-a's secret prompt", id="sys"), HumanMessage("hi from a", id="a")])
    for session_id in ("tenant-a#system", "tenant-a#system#system", "tenant-a ", "TENANT-A"):
        other = OpticalChatMessageHistory(session_id, db, hot_turns=4)
        assert other.messages == [] and other.all_messages == []
        other.add_messages([SystemMessage(f"{session_id}'s prompt"), HumanMessage(f"hi from {session_id}")])
        assert [m.text for m in other.all_messages] == [f"{session_id}'s prompt", f"hi from {session_id}"]
        other.clear()
    assert [m.text for m in tenant.all_messages] == ["tenant-a's secret prompt", "hi from a"]
    assert tenant.messages[0] == SystemMessage("tenant-a's secret prompt", id="sys")
    assert [scope.session for scope in tenant.memory.store.sessions()] == ["tenant-a"]


def test_the_middleware_lists_exports_and_deletes_threads(tmp_path):
    from optical_memory.langchain import OpticalMemoryMiddleware

    middleware = OpticalMemoryMiddleware(tmp_path / "agent.db", hot_turns=2)
    for thread_id in ("t1", "t2", "t1#system"):
        middleware.memory_for(thread_id).add("user", f"hello from {thread_id}")
    assert middleware.threads() == ["t1", "t1#system", "t2"]
    out = io.StringIO()
    assert middleware.export_thread("t1", out) == 1
    assert json.loads(out.getvalue())["content"] == "hello from t1"
    erased = middleware.delete_thread("t1")
    assert (erased.scopes, erased.turns) == (1, 1)
    assert middleware.threads() == ["t1#system", "t2"] and middleware.history("t1") == []
    assert [m.text for m in middleware.history("t1#system")] == ["hello from t1#system"]
    with pytest.raises(TypeError, match="thread_id"):
        middleware.delete_thread(None)  # type: ignore[arg-type]
    assert middleware.threads() == ["t1#system", "t2"]
