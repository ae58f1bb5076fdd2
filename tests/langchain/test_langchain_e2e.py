"""End to end: a real ``create_agent`` loop of more than 200 turns with parallel tool calls, under budget 3,000 at
hot_turns=8, where every model request is counted by a counter written here, independently of the library's.

The counter follows the documented rules, not the library's code: text with o200k_base (the encoding GPT-4o class
models use, through bpe-openai's tiktoken-compatible ``Encoding``), 3 framing tokens per message (OpenAI's
documented per-message overhead, the one the README states), tool calls as their name and JSON arguments, each tool bound to
the call as the JSON schema the provider is sent, and every image by decoding its base64 PNG and applying OpenAI's
published GPT-4o rule (below).
"""

from __future__ import annotations

import base64
import io
import json
import math
import random
import warnings

from langchain.agents import create_agent
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_fakes import ToolRecordingModel, png_b64
from langgraph.checkpoint.memory import InMemorySaver
from PIL import Image

from optical_memory.langchain import OpticalMemoryMiddleware
from optical_memory.langchain.convert import PAGES_MESSAGE_ID

BUDGET = 3000
HOT_TURNS = 8
USER_TURNS = 80
SYSTEM = "You are a rail travel agent. Check fares and weather with the tools before you answer; be brief."
CITIES = ["Lyon", "Paris", "Turin", "Basel", "Ghent", "Nantes", "Dijon", "Lille"]
WORDS = "seat window aisle coach platform delay refund luggage bicycle quiet carriage connection".split()

with warnings.catch_warnings():  # bpe-openai reads its data with a deprecated importlib call when imported
    warnings.filterwarnings("ignore", "open_binary is deprecated", DeprecationWarning)
    import bpe_openai

    ENCODING = bpe_openai.get_encoding("o200k_base")
FRAMING = 3  # tokens OpenAI adds around every message of a chat


def text_tokens(text: str) -> int:
    return len(ENCODING.encode(text, disallowed_special=()))


def gpt4o_image_tokens(data: str, detail: str) -> int:
    """OpenAI's vision guide ("Calculating costs", GPT-4o): ``low`` costs 85 tokens; otherwise the image is scaled
    to fit in 2048 x 2048, then so that its shortest side is 768 px (never enlarged), and costs 85 + 170 per 512-px
    tile. A block without ``detail`` is priced as high detail, the dearer reading of ``auto``."""
    if detail == "low":
        return 85
    width, height = Image.open(io.BytesIO(base64.b64decode(data))).size
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


def block_tokens(block: object) -> int:
    if isinstance(block, str):
        return text_tokens(block)
    assert isinstance(block, dict), block
    if block["type"] == "text":
        return text_tokens(block["text"])
    if block["type"] == "image" and "base64" in block:
        return gpt4o_image_tokens(block["base64"], "high")
    if block["type"] == "image_url":
        header, data = block["image_url"]["url"].split(",", 1)
        assert header == "data:image/png;base64"
        return gpt4o_image_tokens(data, block["image_url"].get("detail", "high"))
    raise AssertionError(f"a block this counter does not know: {block['type']}")


def message_tokens(message: BaseMessage) -> int:
    content = message.content
    total = FRAMING + (text_tokens(content) if isinstance(content, str) else sum(map(block_tokens, content)))
    for call in getattr(message, "tool_calls", None) or []:
        total += text_tokens(call["name"]) + text_tokens(json.dumps(call["args"]))
    return total


def tool_tokens(tools: list) -> int:
    return sum(text_tokens(json.dumps(convert_to_openai_tool(t))) for t in tools)


@tool
def weather(city: str) -> str:
    """Today's weather for a city."""
    return f"{city}: sunny, 21 C, light wind from the west; rain after 18:00. " * 3


@tool
def fares(route: str) -> str:
    """Second-class fares on a route, cheapest first."""
    return f"{route}: 29 EUR (09:40), 45 EUR (12:10), 61 EUR (17:55), rail pass valid on all. " * 2


@tool
def seats(train: str) -> str:
    """Free seats on a train."""
    return f"{train}: 14 window seats in coach 5, 3 in the quiet carriage, bicycle spaces full."


def agent_script(messages: list[BaseMessage], n: int) -> AIMessage:
    """Plays the agent: after a question it calls one to three tools at once, after the results it answers."""
    human = next(m for m in reversed(messages) if isinstance(m, HumanMessage) and m.id != PAGES_MESSAGE_ID)
    turn = int(human.id.removeprefix("u"))
    rng = random.Random(turn)
    if isinstance(messages[-1], ToolMessage):
        said = " ".join(m.text[:40] for m in messages if isinstance(m, ToolMessage))[-200:]
        return AIMessage(f"Answer {turn}: {said} " + " ".join(rng.choices(WORDS, k=30)), id=f"a{turn}-final")
    if turn % 2 == 0:
        city = CITIES[turn % len(CITIES)]
        calls = [{"name": "weather", "args": {"city": city}, "id": f"c{turn}-w"},
                 {"name": "fares", "args": {"route": f"Paris-{city}"}, "id": f"c{turn}-f"},
                 {"name": "seats", "args": {"train": f"TGV {6000 + turn}"}, "id": f"c{turn}-s"}][: 1 + turn % 3]
        if turn % 10 == 6:
            calls.append({"name": "recall_page", "args": {"page": "page 0"}, "id": f"c{turn}-r"})
        return AIMessage("", id=f"a{turn}-calls", tool_calls=calls)
    return AIMessage(f"Reply {turn}: " + " ".join(rng.choices(WORDS, k=60)), id=f"a{turn}")


def user_message(turn: int) -> HumanMessage:
    text = f"Question {turn}: " + " ".join(random.Random(-turn).choices(WORDS, k=35))
    if turn == 1:  # a photo early on: it is paged with its turn and sent beside the pages
        return HumanMessage([{"type": "text", "text": text},
                             {"type": "image", "base64": png_b64(500, 300), "mime_type": "image/png"}], id="u1")
    return HumanMessage(text, id=f"u{turn}")


def run_agent() -> dict:
    """Runs the loop and measures every request: the largest request, the most recent messages sent, and more."""
    model = ToolRecordingModel(script=agent_script, provider="openai", model_name="gpt-4o")
    middleware = OpticalMemoryMiddleware(budget=BUDGET, hot_turns=HOT_TURNS)
    agent = create_agent(model, [weather, fares, seats], system_prompt=SYSTEM, middleware=[middleware],
                         checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "e2e"}}
    for turn in range(USER_TURNS):
        agent.invoke({"messages": [user_message(turn)]}, config)
    state = agent.get_state(config).values["messages"]
    memory = middleware.memory_for("e2e")
    widest_group = max(1 + len(m.tool_calls) for m in state if isinstance(m, AIMessage))
    stats = dict(turns=len(state), requests=len(model.calls), pages=len(memory.pages), max_sent=0, max_recent=0,
                 widest_group=widest_group, requests_with_pages=0)
    by_id = {m.id: m for m in state}
    position = {m.id: i for i, m in enumerate(state)}
    for messages, tools in model.calls:
        sent = sum(map(message_tokens, messages)) + tool_tokens(tools)
        assert sent <= BUDGET, f"a request of {sent} tokens"
        assert isinstance(messages[0], SystemMessage) and messages[0].text == SYSTEM
        assert sum(isinstance(m, SystemMessage) for m in messages) == 1
        assert {t.name for t in tools} == {"weather", "fares", "seats", "recall_page", "search_memory"}
        has_pages = len(messages) > 1 and messages[1].id == PAGES_MESSAGE_ID
        recent = messages[2:] if has_pages else messages[1:]
        stats["requests_with_pages"] += has_pages
        stats["max_sent"] = max(stats["max_sent"], sent)
        stats["max_recent"] = max(stats["max_recent"], len(recent))
        # Recent text is exactly the hot window plus the tool group at its edge, counted here from the roles alone.
        end = position[recent[-1].id] + 1
        edge = max(0, end - HOT_TURNS)
        while 0 < edge < end and isinstance(state[edge], ToolMessage):
            edge -= 1
        assert [m.id for m in recent] == [m.id for m in state[edge:end]]
        # Tool pairs are whole: every result follows its call, every call is answered within the request.
        for j, message in enumerate(recent):
            if isinstance(message, ToolMessage):
                caller = next(m for m in reversed(recent[:j]) if not isinstance(m, ToolMessage))
                assert message.tool_call_id in {c["id"] for c in caller.tool_calls}
            elif not message.text.startswith("(continued from page "):
                assert message == by_id[message.id]  # recent turns go verbatim
    return stats


def test_a_long_agent_run_with_parallel_tool_calls_never_exceeds_the_budget():
    stats = run_agent()
    assert stats["turns"] >= 200 and stats["requests"] > USER_TURNS
    assert stats["requests_with_pages"] > stats["requests"] // 2  # pages do the work for most of the run
    # Recent text: the hot window and the tool group at its edge (the turns of a page still being filled are on
    # the open page); before, sealing stalled on tool calls and requests carried up to 91.
    assert stats["max_recent"] <= HOT_TURNS + stats["widest_group"]
    assert stats["max_sent"] <= BUDGET
