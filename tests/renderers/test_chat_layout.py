"""The chat layout: role tags inline, days drawn where they change, prose packed, pages dense on real chats."""

from __future__ import annotations

import statistics

import pytest
from optical_memory.cli.main import sample_transcript
from optical_memory.cli.transcripts import load_transcript
from optical_memory.renderers import Face, PageRenderer, RenderStyle
from optical_memory.renderers.layout import RUN_ON_MARK, utc_day

from optical_memory.core.tokens import count_tokens
from optical_memory.core.types import Role, Turn

SMALL = dict(width=320, height=240, font_px=10, mono_font_px=9, margin_x=8, margin_y=8)
MIDNIGHT = 1_683_590_400.0  # 2023-05-09 00:00:00 UTC


@pytest.fixture(scope="module")
def small() -> PageRenderer:
    return PageRenderer(RenderStyle(**SMALL))


def line_text(layout, line) -> str:
    return layout.page.text[line.box.text_start:line.box.text_end]


def test_each_turn_starts_with_its_bold_role_tag_on_the_line_of_its_first_words(small):
    turns = [
        Turn(0, Role.USER, "where is the train?", 0.0),
        Turn(1, Role.ASSISTANT, "platform 4", 1.0, name="Ada"),
        Turn(2, Role.TOOL, '{"platform": 4}', 2.0),
        Turn(3, Role.SYSTEM, "be brief", 3.0),
    ]
    layout = small.paginate(turns)[0]
    for line in layout.lines[1:]:
        faces = [run.face for run in line.runs]
        tag = faces.index(Face.TEXT)
        assert tag > 0 and set(faces[:tag]) == {Face.HEADER} and set(faces[tag:]) == {Face.TEXT}
    assert [line_text(layout, line) for line in layout.lines[1:]] == [
        "User: where is the train?", "Assistant · Ada: platform 4", 'Tool: {"platform": 4}', "System: be brief",
    ]
    assert len(layout.lines) == 1 + len(turns)  # no line holds a header alone
    assert layout.page.text.split("\n")[1:] == [line_text(layout, line) for line in layout.lines[1:]]


def test_the_day_is_on_the_label_and_a_date_line_marks_each_change_of_day(small):
    turns = [
        Turn(0, Role.USER, "late at night", MIDNIGHT - 1),
        Turn(1, Role.ASSISTANT, "still the 8th", MIDNIGHT - 0.5),
        Turn(2, Role.USER, "just after midnight UTC", MIDNIGHT),
        Turn(3, Role.ASSISTANT, "same day", MIDNIGHT + 3600),
    ]
    layout = small.paginate(turns, first_page_index=5)[0]
    assert layout.page.text.split("\n") == [
        "page 5 · 2023-05-08",
        "User: late at night",
        "Assistant: still the 8th",
        "2023-05-09",
        "User: just after midnight UTC",
        "Assistant: same day",
    ]
    date_line = layout.lines[3]
    assert date_line.face is Face.HEADER and line_text(layout, date_line) == "2023-05-09"
    assert date_line.box.y0 == layout.lines[2].box.y1 + small.style.turn_gap_px
    assert utc_day(-86_400.0) == "1969-12-31" and utc_day(1e18) is None


def test_every_page_shows_the_day_of_its_first_turn(small):
    turns = [Turn(i, Role.USER, "word " * 60, MIDNIGHT + 40_000 * i) for i in range(12)]
    layouts = small.paginate(turns)
    assert len(layouts) > 3
    for layout in layouts:
        first = turns[layout.page.segments[0].turn_index]
        assert layout.page.text.startswith(f"{layout.page.label} · {utc_day(first.timestamp)}\n")


def test_prose_newlines_run_on_with_a_mark_and_structure_keeps_its_lines(small):
    content = "nah i'm here\nand same lol\n\nlist:\n- one\n- two\n1. three\n  indented\n| a | b |"
    layout = small.paginate([Turn(0, Role.USER, content, 0.0)])[0]
    lines = [line_text(layout, line) for line in layout.lines[1:]]
    assert lines == ["User: nah i'm here\nand same lol", "", "list:", "- one", "- two", "1. three", "  indented", "| a | b |"]
    first = layout.lines[1]
    assert [run.text for run in first.runs if run.face is Face.TEXT] == ["nah", "i'm", "here", RUN_ON_MARK, "and", "same", "lol"]
    assert content in layout.page.text


def test_the_sample_conversation_fills_a_page_with_at_least_700_tokens():
    transcript = load_transcript(sample_transcript())
    turns = [Turn(i, Role.parse(t.role), t.content, t.timestamp, t.name) for i, t in enumerate(transcript)]
    full = [layout for layout in PageRenderer().paginate(turns) if layout.full]
    tokens = [count_tokens(layout.page.text, "cl100k_base") for layout in full]
    assert len(full) >= 10 and statistics.median(tokens) >= 700
