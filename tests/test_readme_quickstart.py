"""The README's "Use it" snippet runs as written (in a temporary folder, so its memory.db lands there)."""

import re
from pathlib import Path

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
