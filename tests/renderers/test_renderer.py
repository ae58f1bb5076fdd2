"""Tests of the page renderer: layout exactness, font fallback, substitute marks, determinism and style rules."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
from fontTools import subset
from fontTools.ttLib import TTFont
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optical_memory.renderers import Face, PageRenderer, RenderStyle
from optical_memory.renderers.fonts import MONO, SANS, SANS_BOLD, font_coverage
from optical_memory.renderers.layout import ELLIPSIS, RUN_ON_MARK, blocks, logical_lines, utc_day

from optical_memory.core.imaging import pixel_hash
from optical_memory.core.types import Role, Turn

SMALL = dict(width=320, height=240, font_px=10, mono_font_px=9, margin_x=8, margin_y=8)
WORDS = "the memory page vision token encoder recall forget older context window budget blur".split()


@pytest.fixture(scope="module")
def small() -> PageRenderer:
    return PageRenderer(RenderStyle(**SMALL))


def chat(count: int, *, seed: int = 0) -> list[Turn]:
    """Seeded turns of varied length, with blank lines and indentation, alternating user and assistant."""
    rng = random.Random(seed)
    turns = []
    for index in range(count):
        paragraphs = []
        for _ in range(rng.randint(1, 3)):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 120)))
            paragraphs.append(rng.choice(["", "  ", "\t"]) + words)
        content = rng.choice(["\n", "\n\n"]).join(paragraphs) + rng.choice(["", "\n"])
        role = Role.USER if index % 2 == 0 else Role.ASSISTANT
        turns.append(Turn(index, role, content, timestamp=1000.0 + index))
    return turns


def ink_in(image, box) -> int:
    """Pixels darker than the background inside ``box`` (x0, y0, x1, y1)."""
    return int((np.asarray(image.crop(box)) < 128).sum())


@pytest.fixture(scope="module")
def ascii_only_font(tmp_path_factory) -> str:
    """DejaVu Sans cut down to ASCII letters and space: a font that lacks Greek and the replacement mark."""
    path = tmp_path_factory.mktemp("fonts") / "ascii-only.ttf"
    font = TTFont(str(SANS))
    subsetter = subset.Subsetter(subset.Options())
    subsetter.populate(text="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789[]() ·")
    subsetter.subset(font)
    font.save(str(path))
    return str(path)


# -- determinism ------------------------------------------------------------------------------------------------------


def test_same_turns_give_identical_pixels_across_renderers():
    turns = chat(12, seed=3)
    first = PageRenderer(RenderStyle(**SMALL)).render(turns)
    second = PageRenderer(RenderStyle(**SMALL)).render(turns)
    assert len(first) > 2
    assert [pixel_hash(p.image) for p in first] == [pixel_hash(p.image) for p in second]
    assert [p.page.render_key for p in first] == [p.page.render_key for p in second]
    assert len({p.page.render_key for p in first}) == len(first)
    assert all(p.image.size == (320, 240) and p.image.mode == "L" for p in first)


def test_render_key_covers_text_and_style(small):
    turns = [Turn(0, Role.USER, "same words", 0.0)]
    key = small.paginate(turns)[0].page.render_key
    assert small.paginate([Turn(0, Role.USER, "same word", 0.0)])[0].page.render_key != key
    other = PageRenderer(RenderStyle(**{**SMALL, "font_px": 11}))
    assert other.paginate(turns)[0].page.render_key != key


# -- pagination -------------------------------------------------------------------------------------------------------


def expected_text(page, turns_by_index) -> str:
    """Page.text rebuilt by the documented rule: label with the day, then tag + space + verbatim slice per segment,
    a date line before a segment whose day differs from the one before it."""
    first = turns_by_index[page.segments[0].turn_index]
    parts = [f"{page.label} · {utc_day(first.timestamp)}"]
    day = utc_day(first.timestamp)
    for segment in page.segments:
        turn = turns_by_index[segment.turn_index]
        if utc_day(turn.timestamp) != day:
            day = utc_day(turn.timestamp)
            parts.append(day)
        tag = turn.role.value.capitalize() + (f" (continued from page {page.index - 1})" if segment.continued else "")
        parts.append(f"{tag}: " + turn.content[segment.start:segment.end])
    return "\n".join(parts)


def test_every_character_is_in_exactly_one_segment_in_order(small):
    turns = chat(30, seed=1)
    layouts = small.paginate(turns, first_page_index=4)
    assert len(layouts) > 5
    assert [layout.page.index for layout in layouts] == list(range(4, 4 + len(layouts)))
    covered = {turn.index: [] for turn in turns}
    order = []
    for layout in layouts:
        for segment in layout.page.segments:
            covered[segment.turn_index].append((segment.start, segment.end))
            order.append((segment.turn_index, segment.start))
            assert segment.continued == (segment.start > 0)
            assert segment.role is turns[segment.turn_index].role
    assert order == sorted(order)
    for turn in turns:
        spans = covered[turn.index]
        assert spans[0][0] == 0 and spans[-1][1] == len(turn.content)
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(spans, spans[1:]))
    by_index = {turn.index: turn for turn in turns}
    for layout in layouts:
        assert layout.page.text == expected_text(layout.page, by_index)


def test_full_flags_and_resume_offsets(small):
    turns = chat(30, seed=2)
    layouts = small.paginate(turns)
    assert all(layout.full for layout in layouts[:-1])
    by_index = {turn.index: turn for turn in turns}
    for layout, following in zip(layouts, layouts[1:]):
        last, first = layout.page.segments[-1], following.page.segments[0]
        if layout.resume_offset is None:
            assert last.end == len(by_index[last.turn_index].content)
            assert first.turn_index == last.turn_index + 1 and first.start == 0
        else:
            assert first.turn_index == last.turn_index and first.start == layout.resume_offset == last.end
    last_box = layouts[-1].page.lines[-1]
    style = small.style
    room = style.height - style.margin_y - last_box.y1
    assert layouts[-1].full == (room < style.turn_gap_px + style.line_height)


def resumed_at(renderer, turns, layout):
    """Paginate again from where ``layout``'s page starts, as a memory does after reopening."""
    first = layout.page.segments[0]
    return renderer.paginate(turns[first.turn_index:], first_page_index=layout.page.index, first_turn_offset=first.start)


def test_resuming_from_any_full_page_reproduces_the_following_pages(small):
    turns = chat(24, seed=5)
    layouts = small.paginate(turns)
    for position, layout in enumerate(layouts):
        resumed = resumed_at(small, turns, layout)
        assert [r.page for r in resumed] == [l.page for l in layouts[position:]]
        assert [r.full for r in resumed] == [l.full for l in layouts[position:]]


def test_a_page_is_full_exactly_when_more_turns_would_not_change_it(small):
    turns = chat(24, seed=7)
    everything = small.paginate(turns)
    outcomes = set()
    for count in range(1, len(turns)):
        layouts = small.paginate(turns[:count])
        for layout in layouts[:-1]:
            assert layout.full and layout.page == everything[layout.page.index].page
        last = layouts[-1]
        unchanged = last.page == everything[last.page.index].page
        assert last.full == unchanged
        outcomes.add(last.full)
    assert outcomes == {True, False}


def test_continuation_tag_is_drawn(small):
    long_turn = Turn(7, Role.ASSISTANT, " ".join(WORDS * 40), 5.0)
    layouts = small.paginate([long_turn], first_page_index=3)
    assert len(layouts) > 1
    second = layouts[1].page
    tag_box = second.lines[1]
    assert second.text[tag_box.text_start:tag_box.text_end].startswith("Assistant (continued from page 3): ")
    assert layouts[1].lines[1].runs[0].face is Face.HEADER
    resumed = small.paginate([long_turn], first_turn_offset=layouts[0].resume_offset, first_page_index=4)
    assert resumed[0].page == second


def test_label_comes_first_and_timestamp_is_the_newest_turn(small):
    turns = [Turn(3, Role.USER, "hi", 50.0), Turn(4, Role.ASSISTANT, "hello", 20.0)]
    page = small.paginate(turns, first_page_index=12)[0].page
    assert page.text.startswith("page 12 · 1970-01-01\n") and page.label == "page 12"
    assert page.text[page.lines[0].text_start:page.lines[0].text_end] == "page 12 · 1970-01-01"
    assert page.timestamp == 50.0
    assert page.turn_indices == (3, 4)


def test_line_boxes_map_onto_text_and_newlines_inside_a_line_are_drawn(small):
    layouts = small.paginate(chat(10, seed=8))
    run_ons = 0
    for layout in layouts:
        page = layout.page
        assert page.lines[0].y0 == small.style.margin_y
        assert page.lines[-1].y1 <= page.height - small.style.margin_y
        for line, above in zip(layout.lines[1:], layout.lines):
            starts_turn = line.runs and line.runs[0].face is Face.HEADER and line.face is not Face.HEADER
            gap = small.style.turn_gap_px if starts_turn else 0
            assert line.box.y0 == above.box.y1 + gap
        for line in layout.lines:
            box = line.box
            newlines = page.text[box.text_start:box.text_end].count("\n")
            assert newlines == sum(run.text == RUN_ON_MARK for run in line.runs)
            run_ons += newlines
            assert small.style.margin_x == box.x0 <= box.x1 <= page.width - small.style.margin_x
    assert run_ons > 0


def test_long_tokens_are_hard_wrapped_within_the_margins(small):
    url = "https://example.com/" + "".join(random.Random(0).choice("abcdef0123456789") for _ in range(600))
    page = small.paginate([Turn(0, Role.USER, f"see {url} ok", 0.0)])[0].page
    content = page.lines[1:]
    assert len(content) > 4
    right = page.width - small.style.margin_x
    assert all(box.x1 <= right for box in content)
    assert max(box.x1 for box in content) > right - 20  # wrapped lines are filled, not broken early
    shown = "".join(page.text[box.text_start:box.text_end] for box in content)
    assert shown.replace(" ", "") == f"User:see{url}ok"
    assert page.text[content[0].text_start:content[0].text_end] == "User: see "  # the URL starts on a fresh line


def test_newlines_and_indentation_are_kept(small):
    content = "a\n    b\n\n\tc\nd\n- e\n"
    layout = small.paginate([Turn(0, Role.USER, content, 0.0)])[0]
    lines = layout.lines[1:]
    text = layout.page.text
    assert [text[l.box.text_start:l.box.text_end] for l in lines] == ["User: a", "    b", "", "\tc\nd", "- e"]
    space = small.faces[Face.TEXT].space_advance
    margin = small.style.margin_x
    assert lines[1].runs[0].x == margin + 4 * space
    assert lines[3].runs[0].x == margin + small.style.tab_size * space
    assert lines[0].runs[0].x == margin and lines[0].runs[0].text == "User:"
    assert [run.text for run in lines[3].runs] == ["c", RUN_ON_MARK, "d"]
    assert logical_lines(content) == [
        (0, 1, False), (2, 7, False), (8, 8, False), (9, 11, False), (12, 13, False), (14, 17, False)
    ]
    assert blocks(content) == [(0, 1, False), (2, 7, False), (8, 8, False), (9, 13, False), (14, 17, False)]


def test_code_blocks_use_the_mono_font(small):
    content = "Here:\n```python\ndef f(x):\n    return x\n```\nafter"
    layout = small.paginate([Turn(0, Role.ASSISTANT, content, 0.0)])[0]
    faces = [line.face for line in layout.lines]
    assert faces == [Face.HEADER, Face.TEXT, Face.MONO, Face.MONO, Face.MONO, Face.MONO, Face.TEXT]
    mono_font = small.faces[Face.MONO].font(0)
    assert small.chains[Face.MONO].files[0] == str(MONO) and mono_font.size == small.style.mono_font_px
    code_line = layout.lines[3]
    assert code_line.runs[0].width == round(mono_font.getlength("def"))


# -- fonts and substitute marks ---------------------------------------------------------------------------------------


def test_greek_and_cyrillic_come_from_dejavu(small):
    layout = small.paginate([Turn(0, Role.USER, "Γειά σου κόσμε Привет мир", 0.0)])[0]
    runs = [run for line in layout.lines[1:] for run in line.runs if run.face is Face.TEXT]
    assert runs and all(run.font_index == 0 for run in runs)
    assert layout.page.missing_glyphs == 0


def test_the_chain_picks_the_first_font_that_covers_a_character(ascii_only_font):
    renderer = PageRenderer(RenderStyle(**SMALL, font_files=(ascii_only_font, str(SANS))))
    layout = renderer.paginate([Turn(0, Role.USER, "alpha α omega", 0.0)])[0]
    runs = [(run.text, run.font_index) for run in layout.lines[1].runs[1:]]
    assert runs == [("alpha", 0), ("α", 1), ("omega", 0)]
    assert layout.missing_glyphs == 0


def test_uncovered_characters_are_counted_and_drawn_as_a_visible_mark():
    renderer = PageRenderer(RenderStyle(**SMALL, font_files=(str(SANS),)))
    layout = renderer.paginate([Turn(0, Role.USER, "x 你好 y", 0.0)])[0]
    assert layout.missing_glyphs == 2 and layout.page.missing_glyphs == 2
    line = layout.lines[1]
    marks = [run for run in line.runs if "\ufffd" in run.text]
    assert "".join(mark.text for mark in marks) == "\ufffd\ufffd"
    image = renderer.draw(layout)
    for mark in marks:
        assert ink_in(image, (mark.x, line.box.y0, mark.x + mark.width, line.box.y1)) > 5
    assert "你好" in layout.page.text


def test_a_box_is_drawn_when_no_font_has_even_the_replacement_mark(ascii_only_font):
    renderer = PageRenderer(
        RenderStyle(**SMALL, font_files=(ascii_only_font,), header_font_files=(str(SANS_BOLD),))
    )
    layout = renderer.paginate([Turn(0, Role.USER, "a ж b", 0.0)])[0]
    line = layout.lines[1]
    box = next(run for run in line.runs if run.font_index is None)
    assert layout.missing_glyphs == 1 and box.width > 0
    image = renderer.draw(layout)
    assert ink_in(image, (box.x, line.box.y0, box.x + box.width, line.box.y1)) > 5


def test_a_character_without_a_system_font_is_marked_not_dropped(small):
    char = next(c for c in "\U0001F600\u4f60\U00013000\uE000" if all(ord(c) not in font_coverage(f)
                                                                     for f in small.chains[Face.TEXT].files))
    layout = small.paginate([Turn(0, Role.USER, f"a{char}b", 0.0)])[0]
    assert layout.missing_glyphs == 1
    line = layout.lines[1]
    mark = line.runs[1]
    assert mark.width > small.faces[Face.TEXT].glyph("a").advance
    image = small.draw(layout)
    assert ink_in(image, (line.box.x0, line.box.y0, line.box.x1, line.box.y1)) > 20


def test_control_characters_are_counted_and_shown(small):
    content = "bell\x07 esc\x1b del\x7f c1\x85 end\r\n"
    layout = small.paginate([Turn(0, Role.USER, content, 0.0)])[0]
    assert layout.control_chars == 5
    assert layout.page.missing_glyphs == 5 + layout.missing_glyphs
    assert content.rstrip("\n") in layout.page.text
    line = layout.lines[1]
    image = small.draw(layout)
    marks = [run for run in line.runs if run.text[-1] in "\u2407\u241b\u2421\ufffd\u240d"]
    assert len(marks) >= 4
    for run in marks:
        mark_x = run.x + run.width - small.faces[Face.TEXT].glyph(run.text[-1]).advance
        assert ink_in(image, (mark_x, line.box.y0, run.x + run.width, line.box.y1)) > 0


def test_long_names_are_shortened_to_keep_the_tag_on_one_line(small):
    turn = Turn(0, Role.USER, "hi", 0.0, name="Bartholomew " * 20 + "\n\x07end")
    layout = small.paginate([turn])[0]
    page = layout.page
    tag = layout.lines[1].runs[0]
    assert [line.runs[0].face for line in layout.lines[1:]] == [Face.HEADER, Face.TEXT]  # "hi" did not fit after it
    shown = page.text[page.lines[1].text_start:page.lines[1].text_end]
    assert shown.startswith("User · Bartholomew Bartholomew") and shown.endswith(ELLIPSIS + ": ")
    assert tag.text.startswith("User") and page.lines[1].x1 <= page.width - small.style.margin_x
    assert page.text.split("\n")[1] == shown + "hi"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=400), min_size=1, max_size=4))
def test_random_unicode_never_crashes_and_every_character_is_accounted_for(small, contents):
    turns = [Turn(i, Role.USER, content, float(i)) for i, content in enumerate(contents)]
    layouts = small.paginate(turns)
    shown = {i: "" for i in range(len(turns))}
    for layout in layouts:
        for segment in layout.page.segments:
            assert segment.end >= segment.start
            shown[segment.turn_index] += turns[segment.turn_index].content[segment.start:segment.end]
            assert turns[segment.turn_index].content[segment.start:segment.end] in layout.page.text
    assert shown == {i: content for i, content in enumerate(contents)}
    image = small.draw(layouts[-1])
    assert image.size == (320, 240)


# -- style ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "error", "field"),
    [
        ({"width": 10}, ValueError, "width"),
        ({"font_px": True}, TypeError, "font_px"),
        ({"font_px": 12.5}, TypeError, "font_px"),
        ({"line_spacing": float("nan")}, ValueError, "line_spacing"),
        ({"ink": 255}, ValueError, "ink"),
        ({"background": 300}, ValueError, "background"),
        ({"margin_x": -1}, ValueError, "margin_x"),
        ({"font_files": ()}, ValueError, "font_files"),
        ({"mono_font_files": ("/nonexistent/font.ttf",)}, ValueError, "mono_font_files"),
        ({"header_font_files": "DejaVuSans.ttf"}, TypeError, "header_font_files"),
        ({"height": 80, "font_px": 30, "mono_font_px": 30}, ValueError, "height"),
    ],
)
def test_style_validation_names_the_bad_field(overrides, error, field):
    with pytest.raises(error, match=field):
        RenderStyle(**{**SMALL, **overrides})


def test_a_canvas_too_narrow_for_headers_is_refused():
    with pytest.raises(ValueError, match="width"):
        PageRenderer(RenderStyle(width=160, height=400, font_px=14, mono_font_px=12, margin_x=4, margin_y=4))


def test_presets_have_distinct_stable_keys():
    names = ["deepseek-ocr", "openai", "anthropic", "gemini", "qwen-vl"]
    keys = [RenderStyle.preset(name).key() for name in names]
    assert len(set(keys)) == len(names)
    assert RenderStyle.preset("openai").key() == RenderStyle.preset("openai").key()
    assert RenderStyle.preset("deepseek-ocr") == RenderStyle()
    with pytest.raises(ValueError, match="preset"):
        RenderStyle.preset("gpt-2")


def test_with_density_scales_type_and_changes_the_key():
    base = RenderStyle.preset("deepseek-ocr")
    dense = base.with_density(10)
    assert (dense.font_px, dense.mono_font_px, dense.width) == (10, 9, base.width)
    assert dense.key() != base.key()
    with pytest.raises(ValueError, match="font_px"):
        base.with_density(2)


def test_key_hashes_font_contents_not_paths(tmp_path):
    copy = tmp_path / "renamed.ttf"
    shutil.copyfile(SANS, copy)
    same = RenderStyle(**SMALL, font_files=(str(SANS),))
    renamed = RenderStyle(**SMALL, font_files=(str(copy),))
    assert same.key() == renamed.key()
    other = RenderStyle(**SMALL, font_files=(str(SANS_BOLD),))
    assert other.key() != same.key()


# -- API guards -------------------------------------------------------------------------------------------------------


def test_bad_paginate_input_is_refused(small):
    turn = Turn(0, Role.USER, "abc", 0.0)
    with pytest.raises(ValueError, match="first_turn_offset"):
        small.paginate([turn], first_turn_offset=3)
    with pytest.raises(ValueError, match="first_page_index"):
        small.paginate([turn], first_page_index=-1)
    with pytest.raises(TypeError, match=r"turns\[1\]"):
        small.paginate([turn, "not a turn"])
    with pytest.raises(ValueError, match=r"turns\[0\].index"):
        small.paginate([Turn(-1, Role.USER, "x", 0.0)])
    assert small.paginate([]) == []


def test_drawing_a_layout_of_another_style_is_refused(small):
    layout = PageRenderer(RenderStyle(**{**SMALL, "font_px": 11})).paginate([Turn(0, Role.USER, "x", 0.0)])[0]
    with pytest.raises(ValueError, match="RenderStyle"):
        small.draw(layout)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(
    st.text(st.one_of(st.sampled_from(list(" \t\n`ab e\u0301\u200b")), st.characters(exclude_categories=["Cs"])),
            max_size=600),
    min_size=1, max_size=4,
))
def test_random_unicode_resumes_exactly_and_full_pages_are_final(small, contents):
    turns = [Turn(i, Role.USER, content, float(i)) for i, content in enumerate(contents)]
    everything = small.paginate(turns)
    for position, layout in enumerate(everything):
        resumed = resumed_at(small, turns, layout)
        assert [r.page for r in resumed] == [l.page for l in everything[position:]]
    for count in range(1, len(turns)):
        for layout in small.paginate(turns[:count]):
            assert layout.full == (layout.page == everything[layout.page.index].page)


def test_session_key_ignores_system_fallback_fonts_but_the_pixel_key_does_not():
    from optical_memory.renderers.fonts import SANS, system_fallback_fonts

    fallbacks = system_fallback_fonts()
    if not fallbacks:
        pytest.skip("no system fallback fonts installed")
    bare = RenderStyle(font_files=(str(SANS),))
    with_fallback = RenderStyle(font_files=(str(SANS), fallbacks[0]))
    assert bare.session_key() == with_fallback.session_key()
    assert bare.key() != with_fallback.key()
    assert bare.session_key() != RenderStyle(font_files=(str(SANS),), font_px=19).session_key()


def test_a_new_drawing_version_changes_every_render_key_but_no_session_key(monkeypatch):
    """Pages stored under the old drawing are drawn anew instead of reused, and sessions still reopen."""
    from optical_memory.renderers import style as style_module

    before = RenderStyle.preset("deepseek-ocr")
    turns = [Turn(0, Role.USER, "hello", 0.0)]
    page = PageRenderer(before).paginate(turns)[0].page
    monkeypatch.setattr(style_module, "DRAWING_VERSION", style_module.DRAWING_VERSION + 1)
    after = RenderStyle.preset("deepseek-ocr")
    assert after.session_key() == before.session_key() and after.key() != before.key()
    assert PageRenderer(after).paginate(turns)[0].page.render_key != page.render_key
