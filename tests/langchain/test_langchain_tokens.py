"""count_tokens: every image shape priced by the consumer's own rule; usable by trim_messages and summarisation."""

from __future__ import annotations

import base64
import io
import math
import random
from functools import partial

import pytest
from langchain.agents.middleware import SummarizationMiddleware
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage, trim_messages
from langchain_core.messages.utils import count_tokens_approximately
from langchain_fakes import ScriptedChatModel
from PIL import Image

from optical_memory import OpticalMemory
from optical_memory.core.consumers import get_consumer
from optical_memory.langchain import count_tokens
from optical_memory.langchain.convert import LANGCHAIN
from optical_memory.prompt import build_messages
from optical_memory.store.sqlite import SQLiteStore

# What the default consumer (gpt-4o) charges for text: o200k_base tokens.
text_tokens = get_consumer("openai:gpt-4o").text_tokens


def solid_png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (240, 240, 240)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


SQUARE = solid_png(1024, 1024)


def shapes(data: str) -> dict[str, dict]:
    url = "data:image/png;base64," + data
    return {
        "standard": {"type": "image", "base64": data, "mime_type": "image/png"},
        "standard-url": {"type": "image", "url": url},
        "v0": {"type": "image", "source_type": "base64", "data": data, "mime_type": "image/png"},
        "openai": {"type": "image_url", "image_url": {"url": url}},
        "openai-bare": {"type": "image_url", "image_url": url},
        "anthropic": {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
    }


def test_text_costs_its_tokens_plus_framing():
    assert count_tokens([HumanMessage("hello world")]) == text_tokens("hello world") + 3
    assert count_tokens([("user", "hello world"), {"role": "assistant", "content": "hi"}]) == (
        text_tokens("hello world") + text_tokens("hi") + 6
    )
    call = AIMessage("", tool_calls=[{"name": "search", "args": {"q": "Lyon"}, "id": "c"}])
    assert count_tokens([call]) == 3 + text_tokens("search") + text_tokens('{"q": "Lyon"}')


@pytest.mark.parametrize(
    "consumer, expected",
    [
        ("openai:gpt-4o", 765),  # OpenAI's documented example: a 1024 x 1024 image at high detail
        ("anthropic", math.ceil(1024 * 1024 / 750)),
        ("deepseek-ocr", 256),  # a 1024-px square is the encoder's BASE mode
        ("gemini", 1032),
        ("qwen-vl", 37 * 37),
    ],
)
def test_images_are_priced_by_the_consumer_rule(consumer, expected):
    for name, block in shapes(SQUARE).items():
        message = HumanMessage([{"type": "text", "text": "look"}, block])
        assert count_tokens([message], consumer=consumer) == 3 + text_tokens("look") + expected, name


def test_text_is_counted_with_the_consumers_own_tokenizer():
    birthday = HumanMessage("お誕生日おめでとう")
    assert count_tokens([birthday]) == 3 + 8  # gpt-4o bills o200k_base: 8 tokens (cl100k_base would say 9)
    assert count_tokens([birthday], consumer="openai:gpt-4-turbo") == 3 + 9
    assert count_tokens([birthday], consumer="deepseek-ocr") == 3 + get_consumer("deepseek-ocr").text_tokens(birthday.text)


def test_images_are_priced_for_the_model_not_its_providers_flagship():
    message = HumanMessage([shapes(solid_png(768, 768))["openai"]])
    assert count_tokens([message], consumer="openai:gpt-4.1-nano-2025-04-14") == 3 + 1417  # 576 patches x 2.46
    assert count_tokens([message], consumer="openai:gpt-4o") == 3 + 765
    assert count_tokens([HumanMessage([shapes(solid_png(1928, 1928))["anthropic"]])], consumer="claude-opus-4-7") == 3 + 4761


def test_openai_detail_low_is_flat_and_langchain_default_is_not_our_price():
    low = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + SQUARE, "detail": "low"}}
    assert count_tokens([HumanMessage([low])], consumer="openai:gpt-4o") == 3 + 85
    high = HumanMessage([shapes(SQUARE)["standard"]])
    assert count_tokens([high], consumer="openai:gpt-4o") == 3 + 765
    assert count_tokens_approximately([high]) < 200  # LangChain's flat guess for the same image


def test_server_side_tool_blocks_are_priced_as_their_json():
    call = {"type": "server_tool_call", "id": "s1", "name": "web_search", "args": {"q": "ferry"}}
    result = {"type": "server_tool_result", "tool_call_id": "s1", "status": "success", "output": "two ferries"}
    message = AIMessage([call, result, {"type": "text", "text": "Found it."}])
    expected = text_tokens("web_search") + text_tokens('{"q": "ferry"}') + text_tokens("two ferries") + text_tokens("Found it.")
    assert count_tokens([message]) == 3 + expected


def test_consumer_objects_and_tool_messages():
    consumer = get_consumer("anthropic")
    message = ToolMessage([{"type": "text", "text": "chart"}, shapes(solid_png(300, 150))["standard"]], tool_call_id="c")
    assert count_tokens([message], consumer=consumer) == 3 + text_tokens("chart") + math.ceil(300 * 150 / 750)


def test_trim_messages_drops_what_the_image_really_costs():
    conversation = [
        HumanMessage([{"type": "text", "text": "my ticket"}, shapes(SQUARE)["standard"]], id="1"),
        AIMessage("Seen it.", id="2"),
        HumanMessage("Which platform?", id="3"),
    ]
    ours = trim_messages(conversation, max_tokens=300, token_counter=count_tokens, strategy="last")
    approximate = trim_messages(conversation, max_tokens=300, token_counter=count_tokens_approximately, strategy="last")
    assert [m.id for m in ours] == ["2", "3"]
    assert [m.id for m in approximate] == ["1", "2", "3"]


def test_summarization_middleware_sees_the_image_cost():
    conversation = [
        HumanMessage([{"type": "text", "text": "two scans"}, shapes(SQUARE)["standard"], shapes(SQUARE)["openai"]], id="1"),
        AIMessage("Got both.", id="2"),
        HumanMessage("Summarise them.", id="3"),
        AIMessage("They are blank.", id="4"),
        HumanMessage("Thanks.", id="5"),
    ]
    options = dict(trigger=("tokens", 1000), keep=("messages", 2))
    default = SummarizationMiddleware(ScriptedChatModel(), **options)
    assert default.before_model({"messages": list(conversation)}, None) is None
    summariser = ScriptedChatModel()
    priced = SummarizationMiddleware(summariser, token_counter=partial(count_tokens, consumer="openai:gpt-4o"), **options)
    update = priced.before_model({"messages": list(conversation)}, None)
    assert update is not None and len(summariser.requests) == 1
    assert [m.id for m in update["messages"][-2:]] == ["4", "5"]


@pytest.mark.parametrize(
    "messages, error, match",
    [
        ([42], TypeError, r"messages\[0\] is not a message"),
        ("hello", TypeError, "list of messages"),
        (HumanMessage("x"), TypeError, "list of messages"),
        ([{"role": "alien", "content": "x"}], ValueError, r"messages\[0\] is not a valid message"),
        ([HumanMessage([{"type": "audio", "base64": "AAAA", "mime_type": "audio/wav"}])], ValueError, "'audio'"),
        ([HumanMessage([{"type": "image", "url": "https://example.com/a.png"}])], ValueError, "send it inline"),
        ([HumanMessage([{"type": "image", "file_id": "file-1"}])], ValueError, "file id"),
        ([HumanMessage([{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}])], ValueError, "base64 data URL"),
        ([HumanMessage([{"text": "no type"}])], ValueError, r"content\[0\]: content block type None is not supported"),
    ],
)
def test_bad_input_is_named(messages, error, match):
    with pytest.raises(error, match=match):
        count_tokens(messages)


def test_unknown_consumer():
    with pytest.raises(ValueError, match="unknown"):
        count_tokens([HumanMessage("x")], consumer="nobody")


@pytest.mark.parametrize(
    ("level", "tokens"),
    [(None, 1120), ("MEDIA_RESOLUTION_LOW", 280), ("media_resolution_medium", 560), ({"level": "MEDIA_RESOLUTION_HIGH"}, 1120),
     ("ultra_high", 2240)],
)
def test_gemini_3_images_are_priced_at_the_media_resolution_they_carry(level, tokens):
    block = shapes(SQUARE)["standard"] | ({} if level is None else {"media_resolution": level})
    assert count_tokens([HumanMessage([block])], consumer="gemini-3-flash-preview") == 3 + tokens


def test_a_media_resolution_that_is_not_a_level_is_rejected():
    block = shapes(SQUARE)["standard"] | {"media_resolution": 3}
    with pytest.raises(ValueError, match="media_resolution must be a level name"):
        count_tokens([HumanMessage([block])], consumer="gemini-3-flash-preview")


def test_gemini_3_pages_walk_the_media_resolution_ladder_within_the_budget(tmp_path):
    """A tight budget sends old pages at MEDIUM and LOW; each page block says the level it was priced at, so the
    count LangChain's Gemini integration is billed (that level's flat budget) is the count the memory reports."""
    consumer = "gemini-3-pro-preview"
    words = "harbour lantern copper meadow violet summit pepper orbit canvas willow ember quartz".split()
    rng = random.Random(0)
    with OpticalMemory(SQLiteStore(tmp_path / "g3.db"), hot_turns=2, consumer=consumer) as memory:
        for i in range(60):
            memory.add("user" if i % 2 == 0 else "assistant", f"turn {i}: " + " ".join(rng.choice(words) for _ in range(120)))
        memory.flush()
        out = build_messages(memory, LANGCHAIN, consumer=consumer, budget=4000)
    sent = [block for block in out.messages[0].content if isinstance(block, dict) and block.get("type") == "image"]
    priced = [view.tier for view in out.context.pages if not view.forgotten and not view.as_text]
    assert [block["media_resolution"] for block in sent] == [tier.media_resolution for tier in priced]
    assert {"MEDIA_RESOLUTION_MEDIUM", "MEDIA_RESOLUTION_LOW"} <= {block["media_resolution"] for block in sent}
    assert count_tokens(out.messages, consumer=consumer) == out.total_tokens <= 4000
