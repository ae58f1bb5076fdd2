"""The README's LangChain section runs as written: its code blocks are executed in order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from langchain_fakes import ScriptedChatModel

from optical_memory.compress import count_message_tokens
from langchain_core.messages import HumanMessage, SystemMessage

from optical_memory.langchain import OpticalChatMessageHistory, OpticalMemoryMiddleware, count_tokens

README = Path(__file__).resolve().parents[2] / "README.md"


def langchain_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("<!-- langchain:start -->") : text.index("<!-- langchain:end -->")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_readme_snippets_run(tmp_path, monkeypatch):
    blocks = langchain_blocks()
    assert len(blocks) == 4
    monkeypatch.chdir(tmp_path)
    model = ScriptedChatModel(provider="openai", model_name="gpt-4o")
    namespace: dict = {"model": model}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)

    history = OpticalChatMessageHistory("user-42", tmp_path / "chat.db")
    assert [m.text for m in history.all_messages] == ["Book the 9:40 to Lyon for Ada Park.", "reply 1"]

    # The middleware snippet passes no consumer=: it ran because the provider was told from the model.
    reopened = OpticalMemoryMiddleware(tmp_path / "memory.db")
    assert [m.text for m in reopened.history("user-42")] == ["Book the 9:40 to Lyon for Ada Park.", "reply 2"]

    messages = namespace["messages"]
    assert count_message_tokens(messages) <= 4000 < count_message_tokens(namespace["history"])
    assert any(part.get("type") == "image_url" for part in messages[1]["content"])
    report = namespace["report"]
    assert report.total_tokens == count_message_tokens(messages) and report.budget == 4000
    assert report.tokens.pages_as_images > 0 and all(page.reason for page in report.pages)

    # The query-aware lines: the middleware's default query is the latest user message, compress_messages takes
    # one, and search_memory finds the history's first message verbatim.
    assert namespace["middleware"].query is namespace["LATEST_USER_MESSAGE"]
    assert count_message_tokens(namespace["cued"]) <= 4000
    assert "recent, user: Book the 9:40 to Lyon for Ada Park." in namespace["search_memory"](
        OpticalChatMessageHistory("user-42", tmp_path / "chat.db")).invoke({"query": "Lyon Ada Park"})

    # The history's reserve=200 covers what its template adds around it: the system message and the question.
    around = [SystemMessage("You are a travel assistant."), HumanMessage("Book the 9:40 to Lyon for Ada Park.")]
    assert count_tokens(around, consumer="openai:gpt-4o") <= 200
    assert OpticalChatMessageHistory("user-42", tmp_path / "chat.db", reserve=200).context(budget=8000).total_tokens <= 8000
