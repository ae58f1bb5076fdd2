"""The command line: demo, render, context, and clear errors for bad transcripts."""

import json
import logging

import pytest

from optical_memory.cli.main import main, sample_transcript
from optical_memory.cli.transcripts import load_transcript


def write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def chat(n):
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + "lorem ipsum dolor " * 40}
            for i in range(n)]


def test_bundled_sample_is_long_enough():
    turns = load_transcript(sample_transcript())
    assert len(turns) >= 200
    assert all(t.timestamp is not None for t in turns)


def test_demo_writes_pages_contact_sheet_and_report(tmp_path, capsys):
    transcript = write_jsonl(tmp_path / "chat.jsonl", chat(60))
    assert main(["demo", "--out", str(tmp_path / "out"), "--transcript", str(transcript), "--budget", "4000"]) == 0
    out = capsys.readouterr().out
    assert "compression" in out and "sent as" in out
    assert (tmp_path / "out" / "contact_sheet.png").stat().st_size > 0
    assert list((tmp_path / "out" / "pages").glob("page_*_*.png"))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["total_tokens"] <= 4000


def test_render_and_context_commands(tmp_path, capsys):
    transcript = write_jsonl(tmp_path / "chat.jsonl", chat(30))
    assert main(["render", str(transcript), "--out", str(tmp_path / "r"), "--all-tiers"]) == 0
    assert list((tmp_path / "r" / "pages").glob("page_0000_tiny.png"))
    capsys.readouterr()
    assert main(["context", str(transcript), "--budget", "3000", "--consumer", "anthropic", "--json",
                 "--openai", str(tmp_path / "msgs.json")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["report"]["consumer"] == "anthropic" and data["report"]["total_tokens"] <= 3000
    assert json.loads((tmp_path / "msgs.json").read_text())[-1]["content"].startswith("turn 29")


def test_openai_chat_json_is_accepted(tmp_path):
    path = tmp_path / "chat.json"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                             {"role": "assistant", "content": "hello"}]}))
    assert [t.content for t in load_transcript(path)] == ["hi", "hello"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"role": "user", "content": "ok"}\n{"role": "user", "content": \n', "line 2: malformed JSON"),
        ('{"role": "user", "content": "ok"}\n{"role": "robot", "content": "x"}\n', "line 2: role 'robot'"),
        ('{"role": "user", "content": 5}\n', "line 1: message.content must be a string"),
        ('{"role": "user", "content": "  "}\n', "line 1: content must not be empty"),
        ('{"role": "user"}\n', "line 1: missing 'content'"),
        ('[1, 2]', "message 0: expected an object"),
        ('{"role": "user", "content": "x", "timestamp": "yesterday"}\n', "timestamp"),
        ("\n\n", "holds no turns"),
    ],
)
def test_bad_transcripts_name_the_problem(tmp_path, capsys, body, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(body)
    with pytest.raises(SystemExit) as exit_info:
        main(["context", str(path), "--budget", "100"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_missing_files_and_nan_budgets(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["context", str(tmp_path / "nope.jsonl"), "--budget", "100"])
    assert "does not exist" in capsys.readouterr().err
    transcript = write_jsonl(tmp_path / "chat.jsonl", chat(3))
    with pytest.raises(SystemExit):
        main(["context", str(transcript), "--budget", "nan"])
    assert "budget" in capsys.readouterr().err


SYSTEM = "You are the SECRET-PROMPT travel assistant."
YEAR_2023 = 1672531200.0  # 2023-01-01T00:00:00Z


def openai_export(n: int, *, start: float = YEAR_2023) -> list[dict]:
    """An OpenAI chat export: a system prompt, then user/assistant turns a minute apart with a tool call (standard
    ``"content": null``) every sixth turn; timestamps alternate between epoch seconds and ISO-8601."""
    from datetime import datetime, timezone

    messages: list[dict] = [{"role": "system", "content": SYSTEM}]
    for i in range(n):
        moment = start + 60 * i
        stamp = moment if i % 2 else datetime.fromtimestamp(moment, timezone.utc).isoformat().replace("+00:00", "Z")
        if i % 6 == 3:
            messages.append({"role": "assistant", "content": None, "timestamp": stamp, "tool_calls": [
                {"id": f"call_{i}", "type": "function", "function": {"name": "fares", "arguments": "{}"}}]})
            messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": f"fares {i}: " + "lorem ipsum " * 30,
                             "timestamp": stamp})
        else:
            messages.append({"role": "user" if i % 2 == 0 else "assistant", "timestamp": stamp,
                             "content": f"turn {i}: " + "lorem ipsum dolor " * 30})
    return messages


def test_an_openai_export_keeps_its_system_prompt_off_the_pages_and_its_tool_pairs_whole(tmp_path, capsys):
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"messages": openai_export(80)}))
    assert main(["context", str(path), "--budget", "4000", "--consumer", "openai:gpt-4o", "--hot-turns", "5",
                 "--openai", str(tmp_path / "sent.json")]) == 0
    sent = json.loads((tmp_path / "sent.json").read_text())
    assert sent[0] == {"role": "system", "content": SYSTEM}
    assert json.dumps(sent).count("SECRET-PROMPT") == 1
    from optical_memory.compress import count_message_tokens

    assert count_message_tokens(sent, consumer="openai:gpt-4o") <= 4000
    for j, message in enumerate(sent):
        if message["role"] == "tool":
            caller = next(m for m in reversed(sent[:j]) if m["role"] != "tool")
            assert message["tool_call_id"] in {c["id"] for c in caller.get("tool_calls") or []}
    capsys.readouterr()
    assert main(["render", str(path), "--out", str(tmp_path / "with")]) == 0
    without = tmp_path / "without.json"
    without.write_text(json.dumps(openai_export(80)[1:]))
    assert main(["render", str(without), "--out", str(tmp_path / "without")]) == 0
    pages = sorted((tmp_path / "with" / "pages").glob("*.png"))
    assert pages and [p.read_bytes() for p in pages] == [
        p.read_bytes() for p in sorted((tmp_path / "without" / "pages").glob("*.png"))
    ]


def test_ages_are_measured_from_the_last_turn_unless_now_says_otherwise(tmp_path, capsys):
    """A 2023 transcript under --budget 3000 kept no page: the real clock aged every page past a year."""
    path = tmp_path / "old.json"
    path.write_text(json.dumps(openai_export(120)))

    def pages(*extra: str) -> list[dict]:
        assert main(["context", str(path), "--budget", "3000", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    default = pages()
    assert default["now"] == pages("--now", "last-turn")["now"] == YEAR_2023 + 60 * 119
    assert not any(page["reason"].startswith("age:") and page["tier"] is None for page in default["pages"])
    assert any(page["tier"] is not None for page in default["pages"])
    later = pages("--now", "2025-06-01T00:00:00Z")
    assert later["pages"] and all(page["tier"] is None and page["reason"].startswith("age:") for page in later["pages"])
    assert pages("--now", "2023-01-01T03:00:00")["now"] == YEAR_2023 + 3 * 3600  # no offset: UTC
    with pytest.raises(SystemExit):
        main(["context", str(path), "--now", "tomorrow"])
    assert "--now must be seconds since the epoch or an ISO-8601 date" in capsys.readouterr().err


@pytest.mark.parametrize("policy", ["age", "budget", "recall-aware"])
def test_policy_choice_and_reasons_per_page(tmp_path, capsys, policy):
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(openai_export(120)))
    budget = [] if policy == "age" else ["--budget", "2500"]
    assert main(["context", str(path), "--policy", policy, "--json", *budget]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["policy"] == policy
    reasons = {page["reason"].partition(":")[0] for page in data["pages"]}
    assert reasons <= {"age", "budget", "fail-closed", "below min_recall"} and reasons
    if policy == "age":
        assert "budget" not in reasons
    else:
        assert "budget" in reasons and data["sent_tokens"] <= 2500
    assert main(["context", str(path), "--policy", policy, *budget]) == 0
    table = capsys.readouterr().out
    assert "why" in table.splitlines()[0] and f"policy {policy}" in table


def test_version_help_and_quiet_logging(tmp_path, capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"optical-memory {version('optical-memory')}"

    from optical_memory.cli.main import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict)).choices
    for command in (parser, *subparsers.values()):
        for action in command._actions:
            assert action.help, f"{command.prog}: {action.dest} has no help text"

    transcript = write_jsonl(tmp_path / "chat.jsonl", chat(40))
    assert main(["render", str(transcript), "--out", str(tmp_path / "quiet")]) == 0
    assert "sealed page" not in capsys.readouterr().err
    logger = logging.getLogger("optical_memory")
    level, handlers = logger.level, list(logger.handlers)
    try:
        assert main(["--log-level", "info", "render", str(transcript), "--out", str(tmp_path / "loud")]) == 0
    finally:
        logger.setLevel(level)
        logger.handlers[:] = handlers
    assert "optical_memory.memory INFO: Scope(user='default', session='default'): sealed page 0" in capsys.readouterr().err


def test_a_policy_that_ignores_the_budget_is_named_when_its_pages_do_not_fit(tmp_path, capsys):
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(openai_export(120)))
    with pytest.raises(SystemExit) as exit_info:
        main(["context", str(path), "--policy", "age", "--budget", "1500"])
    assert exit_info.value.code == 2
    assert "AgeSchedule ignores budgets" in capsys.readouterr().err


# -- sessions ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def two_users(tmp_path):
    from optical_memory import OpticalMemory

    db = tmp_path / "users.db"
    for user in ("ada", "bob"):
        with OpticalMemory.open(db, user=user, session="trip", hot_turns=2) as memory:
            for record in chat(12):
                memory.add(record["role"], f"{user} {record['content']}")
    return db


def test_sessions_list_export_and_delete(two_users, tmp_path, capsys):
    assert main(["sessions", "list", str(two_users)]) == 0
    table = capsys.readouterr().out
    assert "ada" in table and "bob" in table and "trip" in table
    assert main(["sessions", "list", str(two_users), "--user", "bob", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["user"], listed["session"], listed["turns"], listed["companion"]) == ("bob", "trip", 12, None)

    out = tmp_path / "ada.jsonl"
    assert main(["sessions", "export", str(two_users), "trip", "--user", "ada", "--out", str(out)]) == 0
    assert "exported 12 turns" in capsys.readouterr().err
    assert [t.content for t in load_transcript(out)][0].startswith("ada turn 0")
    assert main(["sessions", "export", str(two_users), "trip", "--user", "bob"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 12

    assert main(["sessions", "delete", str(two_users), "trip", "--user", "ada", "--yes"]) == 0
    assert "12 turns" in capsys.readouterr().out
    main(["sessions", "list", str(two_users), "--json"])
    assert [entry["user"] for entry in json.loads(capsys.readouterr().out)] == ["bob"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sessions", "delete", "{db}", "trip", "--user", "ada"], "add --yes"),
        (["sessions", "delete", "{db}", "nope", "--yes"], "'nope' of user 'default' is not stored"),
        (["sessions", "export", "{db}", "nope"], "not stored"),
        (["sessions", "list", "{missing}"], "does not exist"),
        (["sessions", "export", "{missing}", "trip"], "does not exist"),
    ],
)
def test_sessions_errors_name_the_problem_and_change_nothing(two_users, tmp_path, capsys, argv, message):
    argv = [arg.format(db=two_users, missing=tmp_path / "missing.db") for arg in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()
    main(["sessions", "list", str(two_users), "--json"])
    assert [entry["turns"] for entry in json.loads(capsys.readouterr().out)] == [12, 12]


def test_every_sessions_argument_has_help():
    import argparse

    from optical_memory.cli.main import build_parser

    sessions = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "sessions")[1]
    commands = sessions._subparsers._group_actions[0].choices
    assert set(commands) == {"list", "export", "delete"}
    for command in commands.values():
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"{command.prog} {action.dest} has no help"
