"""The command line: demo, render, context, and clear errors for bad transcripts."""

import json

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
        ('{"role": "user", "content": 5}\n', "line 1: content must be a string"),
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
