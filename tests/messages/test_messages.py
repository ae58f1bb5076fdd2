"""compress_messages: OpenAI- and Anthropic-shaped conversations compressed within a budget, shapes preserved."""

from __future__ import annotations

import base64
import io
import json
import os
import random

import pytest
from PIL import Image

from optical_memory import compress_messages
from optical_memory.compress import count_message_tokens

WORDS = "ferry harbour ticket cabin deck storm island captain lighthouse anchor compass tide".split()
SYSTEM = "You are a ferry booking assistant."


def png_b64(width: int = 320, height: int = 200) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def sentence(rng: random.Random, n: int = 60) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def openai_chat(turns: int, *, seed: int = 0) -> list[dict]:
    """A conversation with a system prompt, a user photo early on and a tool exchange every seventh turn."""
    rng = random.Random(seed)
    messages: list[dict] = [{"role": "system", "content": SYSTEM}]
    for i in range(turns):
        if i == 2:
            messages.append({"role": "user", "content": [
                {"type": "text", "text": "This is my old ticket."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png_b64()}},
            ]})
        elif i % 7 == 5:
            call_id = f"call_{i}"
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "timetable", "arguments": json.dumps({"day": i})}}]})
            messages.append({"role": "tool", "tool_call_id": call_id, "content": f"Ferries on day {i}: " + sentence(rng, 40)})
        else:
            role = "user" if i % 2 == 0 else "assistant"
            messages.append({"role": role, "content": f"turn {i}: " + sentence(rng)})
    return messages


def anthropic_chat(turns: int, *, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    messages: list[dict] = []
    for i in range(turns):
        if i % 6 == 3:
            messages.append({"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": f"tu_{i}", "name": "timetable", "input": {"day": i}}]})
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": f"tu_{i}", "content": "Ferries at 9:40 and 17:10. " + sentence(rng, 30)}]})
        elif i == 1:
            messages.append({"role": "user", "content": [
                {"type": "text", "text": "My boarding pass:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png_b64(400, 300)}}]})
        else:
            messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + sentence(rng)})
    return messages


def assert_openai_tool_pairs(messages: list[dict]) -> None:
    for j, message in enumerate(messages):
        if message["role"] == "tool":
            caller = next(m for m in reversed(messages[:j]) if m["role"] != "tool")
            assert message["tool_call_id"] in {c["id"] for c in caller.get("tool_calls") or []}


def test_openai_shape_budget_and_verbatim_recent_turns():
    chat = openai_chat(60)
    out = compress_messages(chat, budget=3000, consumer="openai:gpt-4o", hot_turns=6)
    assert count_message_tokens(chat) > 3000 >= count_message_tokens(out)
    assert out[0] == {"role": "system", "content": SYSTEM}
    pages = out[1]
    assert pages["role"] == "user" and pages["content"][0]["type"] == "text"
    photo = chat[3]["content"][1]
    images = [p for p in pages["content"] if p["type"] == "image_url" and p != photo]
    assert images and all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in images)
    assert all(p["image_url"]["detail"] in ("high", "low") for p in images)
    assert out[-6:] == chat[-6:]
    assert_openai_tool_pairs(out)


def test_user_images_stay_images_after_their_turn_is_paged():
    chat = openai_chat(40)
    photo = chat[3]["content"][1]
    out = compress_messages(chat, consumer="anthropic", hot_turns=4)
    pages = out[1]["content"]
    assert photo in pages
    assert pages[pages.index(photo) - 1]["text"].startswith("Image 1 of turn 2 (on page ")
    assert all(photo not in m["content"] for m in out[2:] if isinstance(m["content"], list))


def test_same_input_same_output():
    chat = openai_chat(30, seed=3)
    assert compress_messages(chat, budget=2500) == compress_messages(chat, budget=2500)


def test_anthropic_shape_keeps_the_system_prompt_separate():
    chat = anthropic_chat(50)
    out = compress_messages(chat, budget=5000, consumer="anthropic", format="anthropic", system=SYSTEM, hot_turns=5)
    assert all(m["role"] in ("user", "assistant") for m in out)
    system_cost = count_message_tokens([{"role": "system", "content": SYSTEM}], consumer="anthropic", format="anthropic")
    assert count_message_tokens(out, consumer="anthropic", format="anthropic") + system_cost <= 5000
    pages = [b for b in out[0]["content"] if b["type"] == "image"]
    assert pages and all(b["source"]["type"] == "base64" and b["source"]["media_type"] == "image/png" for b in pages)
    assert out[-5:] == chat[-5:]
    for j, message in enumerate(out):
        for block in message["content"] if isinstance(message["content"], list) else []:
            if block["type"] == "tool_result":
                previous = out[j - 1]["content"]
                assert any(b.get("type") == "tool_use" and b["id"] == block["tool_use_id"] for b in previous)


def test_a_budget_below_the_recent_turns_is_refused():
    with pytest.raises(ValueError, match="smaller than what every call must send"):
        compress_messages(openai_chat(20), budget=100)


# Content shapes the OpenAI and Anthropic APIs accept: each is either compressed (old turns paged, recent ones
# returned verbatim) or refused with a TypeError/ValueError that names the message and the block.
HANDLED_SHAPES = {
    "strings in a content list": ("openai", {"role": "user", "content": ["hi", "there"]}),
    "text parts with cache_control": ("anthropic", {"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}),
    "empty content list": ("openai", {"role": "user", "content": []}),
    "assistant refusal part": ("openai", {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]}),
    "assistant refusal field": ("openai", {"role": "assistant", "content": None, "refusal": "I can't help with that."}),
    "thinking block": ("anthropic", {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Let me see.", "signature": "c2ln"}, {"type": "text", "text": "Done."}]}),
    "redacted thinking": ("anthropic", {"role": "assistant", "content": [
        {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"}, {"type": "text", "text": "Done."}]}),
    "tool result as text blocks": ("anthropic", {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "42"}], "is_error": False}]}),
}
REFUSED_SHAPES = {
    "audio input": ({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]},
                    ValueError, "'input_audio' is not supported"),
    "file part": ({"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}, ValueError, "'file' is not supported"),
    "image by web URL": ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]},
                         ValueError, "by URL"),
    "a number as content": ({"role": "user", "content": 7}, TypeError, r"content must be a string or a list"),
    "a dict as content": ({"role": "user", "content": {"type": "text", "text": "x"}}, TypeError, r"content must be a string or a list"),
    "None inside a list": ({"role": "user", "content": [None]}, TypeError, r"content\[0\] must be a string or a content block"),
    "text that is not a string": ({"role": "user", "content": [{"type": "text", "text": 5}]}, TypeError, r"content\[0\]\.text"),
    "a block without a type": ({"role": "user", "content": [{"text": "x"}]}, ValueError, "type None is not supported"),
}


@pytest.mark.parametrize("shape", sorted(HANDLED_SHAPES))
def test_accepted_content_shapes_are_compressed(shape):
    format, odd = HANDLED_SHAPES[shape]
    rng = random.Random(5)
    before = []
    if format == "anthropic" and odd["role"] == "user" and odd["content"] and odd["content"][0].get("type") == "tool_result":
        before.append({"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]})
    if not before and odd["role"] == "assistant":
        before.append({"role": "user", "content": "go on"})
    chat = [*before, odd] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + sentence(rng)} for i in range(30)
    ]
    for hot_turns in (40, 3):  # the odd message recent, then on a page
        out = compress_messages(chat, format=format, hot_turns=hot_turns, budget=6000)
        assert count_message_tokens(out, format=format) <= 6000
        if hot_turns == 40:
            assert out == chat
        else:
            assert out[-3:] == chat[-3:]


@pytest.mark.parametrize("shape", sorted(REFUSED_SHAPES))
def test_unsupported_content_shapes_are_refused_by_name(shape):
    message, error, match = REFUSED_SHAPES[shape]
    chat = [{"role": "user", "content": "hello"}, message]
    with pytest.raises(error, match=match):
        compress_messages(chat)
    with pytest.raises(error, match=r"messages\[1\]"):
        compress_messages(chat)


def test_return_report_gives_what_was_sent():
    chat = openai_chat(60)
    out, report = compress_messages(chat, budget=3000, hot_turns=6, return_report=True)
    assert out == compress_messages(chat, budget=3000, hot_turns=6)
    assert report.total_tokens == count_message_tokens(out) <= report.budget == 3000
    assert report.tokens.pages_total == len(report.pages) > 0
    assert report.tokens.pages_as_images == sum(1 for v in report.pages if not v.forgotten and not v.as_text)
    assert all(v.reason for v in report.pages)
    anthropic_out, anthropic_report = compress_messages(anthropic_chat(50), budget=5000, consumer="anthropic",
                                                        format="anthropic", system=SYSTEM, return_report=True)
    system_cost = count_message_tokens([{"role": "system", "content": SYSTEM}], consumer="anthropic", format="anthropic")
    assert anthropic_report.total_tokens == count_message_tokens(anthropic_out, consumer="anthropic", format="anthropic") + system_cost


def test_compressed_pages_never_mention_a_tool_that_is_not_there():
    out = compress_messages(openai_chat(60), budget=3000, hot_turns=6)
    assert "recall_page" not in json.dumps(out)


@pytest.mark.parametrize(
    "messages, options, error, match",
    [
        ("hello", {}, TypeError, "list of message dicts"),
        ([{"role": "user", "content": "ok"}, "oops"], {}, TypeError, r"messages\[1\] must be a message dict"),
        ([{"role": "narrator", "content": "x"}], {}, ValueError, r"messages\[0\]\.role 'narrator'"),
        ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], {}, ValueError, "'input_audio' is not supported"),
        ([{"role": "assistant", "content": None, "tool_calls": [{"id": "x"}]}], {}, ValueError, r"tool_calls\[0\]"),
        ([{"role": "assistant", "content": "x", "tool_calls": "f()"}], {}, TypeError, r"messages\[0\]\.tool_calls must be a list"),
        ([{"role": "user", "content": "x"}], {"return_report": "yes"}, TypeError, "return_report"),
        ([{"role": "user", "content": "x"}], {"format": "gemini"}, ValueError, "format 'gemini'"),
        ([{"role": "system", "content": "x"}], {"format": "anthropic"}, ValueError, "system="),
        ([{"role": "user", "content": "x"}], {"system": "sys"}, ValueError, "format='anthropic'"),
        ([{"role": "user", "content": "x"}], {"budget": -1}, ValueError, "budget"),
        ([{"role": "user", "content": "x"}], {"consumer": "nobody"}, ValueError, "unknown"),
        ([{"role": "user", "content": "x", "extra": object()}], {}, TypeError, "JSON"),
    ],
)
def test_bad_input_is_named(messages, options, error, match):
    with pytest.raises(error, match=match):
        compress_messages(messages, **options)


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


PLANTED = "The locker code for Ada Park's bicycle is 4417."


@pytest.mark.skipif(not (os.environ.get("OPENAI_API_KEY") and _installed("openai")), reason="needs OPENAI_API_KEY and openai")
def test_live_openai_reads_a_planted_fact_from_a_page():
    from openai import OpenAI

    chat = openai_chat(30)
    chat[1] = {"role": "user", "content": PLANTED}
    chat.append({"role": "user", "content": "What is the locker code for Ada Park's bicycle? Answer with the number."})
    out = compress_messages(chat, consumer="openai:gpt-4o", hot_turns=4)
    assert all(PLANTED not in json.dumps(m) for m in out)  # the fact only exists on a page image
    answer = OpenAI().chat.completions.create(model="gpt-4o", messages=out).choices[0].message.content
    assert "4417" in answer


@pytest.mark.skipif(not (os.environ.get("ANTHROPIC_API_KEY") and _installed("anthropic")), reason="needs ANTHROPIC_API_KEY and anthropic")
def test_live_anthropic_reads_a_planted_fact_from_a_page():
    import anthropic

    chat = anthropic_chat(30)
    chat[0] = {"role": "user", "content": PLANTED}
    chat.append({"role": "user", "content": "What is the locker code for Ada Park's bicycle? Answer with the number."})
    out = compress_messages(chat, consumer="anthropic", format="anthropic", system=SYSTEM, hot_turns=4)
    assert all(PLANTED not in json.dumps(m) for m in out)
    reply = anthropic.Anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=50, system=SYSTEM, messages=out)
    assert "4417" in "".join(block.text for block in reply.content if block.type == "text")


def test_an_openai_refusal_is_shown_on_its_page_and_counted():
    refusal = {"role": "assistant", "content": None, "refusal": "I can't book a seat on a ferry that has sunk."}
    silent = {"role": "assistant", "content": None}
    assert count_message_tokens([refusal]) > count_message_tokens([silent])
    chat = [{"role": "user", "content": "Book the wreck."}, refusal] + openai_chat(20)[1:]
    _, report = compress_messages(chat, hot_turns=4, return_report=True)
    assert "I can't book a seat on a ferry that has sunk." in report.pages[0].page.text
    with pytest.raises(TypeError, match=r"messages\[0\]\.refusal must be a string"):
        compress_messages([{"role": "assistant", "content": None, "refusal": 3}])
