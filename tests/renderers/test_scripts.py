"""Every script drawn: CJK read back by OCR, right-to-left text in bidi order and shaped, emoji sequences and flags
drawn whole from a font that maps them, no line broken inside a cluster; tabs and wrapped code lines visible.

These use the default chains with the system fonts the README installs (fonts-noto-core, fonts-noto-cjk,
fonts-symbola, fonts-noto-color-emoji): a machine without them fails here, as it should, rather than skipping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from optical_memory.renderers import Face, PageRenderer, RenderStyle
from optical_memory.renderers.fonts import font_coverage
from optical_memory.renderers.layout import CONTINUATION_MARK
from optical_memory.renderers.scripts import (
    clusters,
    first_strong,
    is_default_ignorable,
    resolve_levels,
    visual_order,
)
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import binary_dilation

from optical_memory.core.imaging import pixel_hash
from optical_memory.core.types import Role, Turn

MIXED = (
    "中文：我们明天见。日本語：こんにちは。한국어 안녕하세요. שלום עולם. مرحبا بالعالم. "
    "👍🏽 👨‍👩‍👧 🇫🇷 🇯🇵 1️⃣ ❤️ 😀 🫠 café (e\u0301)."
)


@pytest.fixture(scope="module")
def renderer() -> PageRenderer:
    return PageRenderer()


def one_page(renderer: PageRenderer, content: str, **turn):
    layout = renderer.paginate([Turn(0, Role.USER, content, 1_683_500_000.0, **turn)])[0]
    return layout, renderer.draw(layout)


def font_file(renderer: PageRenderer, run) -> str:
    return renderer.chains[run.face].files[run.font_index]


def content_runs(layout):
    return [(run, line) for line in layout.lines for run in line.runs if run.face is not Face.HEADER]


def ink(image: Image.Image) -> np.ndarray:
    """Where ``image`` is inked, cropped to the ink."""
    mask = np.asarray(image) < 128
    ys, xs = np.nonzero(mask)
    return mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def drawn_glyph_by_glyph(path: str, text: str, px: int) -> np.ndarray:
    """``text`` drawn left to right by Pillow's basic layout (no shaping, no bidi): one glyph per code point."""
    font = ImageFont.truetype(path, px, layout_engine=ImageFont.Layout.BASIC)
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    image = Image.new("L", (right - left + 4, bottom - top + 4), 255)
    ImageDraw.Draw(image).text((2 - left, 2 - top), text, font=font, fill=0, anchor="ls")
    return ink(image)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of each ink mask within one pixel of the other's ink (the smaller of the two shares)."""
    height, width = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
    big_a, big_b = np.zeros((height, width), bool), np.zeros((height, width), bool)
    big_a[:a.shape[0], :a.shape[1]] = a
    big_b[:b.shape[0], :b.shape[1]] = b
    return min((big_a & binary_dilation(big_b)).sum() / big_a.sum(), (big_b & binary_dilation(big_a)).sum() / big_b.sum())


def drawn_span(image, runs) -> np.ndarray:
    """The ink of the given runs of one line, cropped to it."""
    line = runs[0][1]
    x0 = min(run.x for run, _ in runs)
    x1 = max(run.x + run.width for run, _ in runs)
    return ink(image.crop((x0 - 2, line.box.y0, x1 + 2, line.box.y1)))


# -- fonts ------------------------------------------------------------------------------------------------------------


def test_every_run_of_a_mixed_script_page_comes_from_a_font_that_maps_all_of_it(renderer):
    layout, _ = one_page(renderer, MIXED)
    assert layout.missing_glyphs == 0 and layout.page.missing_glyphs == 0
    fonts_used = {}
    for run, _ in content_runs(layout):
        path = font_file(renderer, run)
        # raqm draws the glyphs the cmap gives; a code point outside it would come out as .notdef (a box).
        assert all(ord(char) in font_coverage(path) for char in run.text if not is_default_ignorable(char)), run
        for char in run.text:
            fonts_used[char] = Path(path).name
    assert fonts_used["中"].startswith("NotoSansCJK") and fonts_used["こ"].startswith("NotoSansCJK")
    assert fonts_used["ש"] == "NotoSansHebrew-Regular.ttf" and fonts_used["م"] == "NotoSansArabic-Regular.ttf"
    assert fonts_used["😀"].startswith("Symbola")  # Symbola's outlines first where they cover the emoji
    # Sequences (skin tone, ZWJ family, flags, keycap) come whole from the colour emoji font's ligatures.
    assert all(fonts_used[char] == "NotoColorEmoji.ttf" for char in "👍🏽👨👩👧\U0001F1EB\U0001F1F7\u20e3")
    assert "\ufffd" not in "".join(run.text for run, _ in content_runs(layout))


def emoji_runs(renderer: PageRenderer, layout):
    return [(run, line) for run, line in content_runs(layout) if renderer.faces[run.face].is_bitmap(run.font_index)]


def test_emoji_newer_than_symbola_are_drawn_not_missing(renderer):
    layout, image = one_page(renderer, "melting 🫠 bubble tea 🧋 flamingo 🦩 shaking 🫨 face")
    assert layout.missing_glyphs == 0 and layout.page.missing_glyphs == 0
    emoji = emoji_runs(renderer, layout)
    assert [run.text for run, _ in emoji] == ["🫠", "🧋", "🦩", "\U0001FAE8"]
    for run, line in emoji:
        assert Path(font_file(renderer, run)).name == "NotoColorEmoji.ttf"
        assert run.width == round(renderer.style.font_px * 1.25)  # the font's square-ish advance, scaled to the line
        box = np.asarray(image.crop((run.x, line.box.y0, run.x + run.width, line.box.y1)))
        # Colour became grey: ink over much of the box, in many tones (not one ink level like text).
        assert (box < 230).mean() > 0.15 and len(np.unique(box)) > 20


def test_emoji_sequences_flags_and_keycaps_are_drawn_as_one_glyph(renderer):
    sequences = ["👨\u200d👩\u200d👧", "🇫🇷", "👍🏽", "1\ufe0f\u20e3", "🏴\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F"]
    layout, image = one_page(renderer, "family " + " ".join(sequences) + " 🫠 end")
    assert layout.missing_glyphs == 0
    emoji = emoji_runs(renderer, layout)
    assert [run.text for run, _ in emoji] == [*sequences, "🫠"]
    # One glyph each: a family is as wide as one face, not three people side by side, a flag not two letters.
    assert {run.width for run, _ in emoji} == {emoji[-1][0].width}
    for run, line in emoji:
        assert (np.asarray(image.crop((run.x, line.box.y0, run.x + run.width, line.box.y1))) < 230).mean() > 0.2


def test_the_same_emoji_gives_the_same_pixels_wherever_it_is_measured(renderer):
    # "wow🫠" is laid out glyph by glyph, "🫠\u0301" is shaped: the emoji steps by one advance either way.
    layout, image = one_page(renderer, "wow🫠 🫠🫠🫠 x")
    runs = emoji_runs(renderer, layout)
    assert [run.width for run, _ in runs] == [runs[0][0].width, 3 * runs[0][0].width]
    first, line = runs[1]
    step = runs[0][0].width
    crops = [np.asarray(image.crop((first.x + k * step, line.box.y0, first.x + (k + 1) * step, line.box.y1)))
             for k in range(3)]
    assert all(np.array_equal(crops[0], crop) for crop in crops)


def test_without_an_emoji_font_new_emoji_still_fail_closed():
    style = RenderStyle()
    files = tuple(path for path in style.font_files if "Emoji" not in path)
    assert len(files) == len(style.font_files) - 1
    renderer = PageRenderer(RenderStyle(font_files=files))
    layout, _ = one_page(renderer, "melting 🫠 and a family 👨\u200d👩\u200d👧")
    assert layout.missing_glyphs == 1  # the melting face; Symbola draws the family's people side by side


def test_emoji_tones_follow_the_style_ink_and_background():
    dark = PageRenderer(RenderStyle(ink=255, background=0))
    layout, image = one_page(dark, "🫠")
    run, line = emoji_runs(dark, layout)[0]
    box = np.asarray(image.crop((run.x, line.box.y0, run.x + run.width, line.box.y1)))
    _, light = one_page(PageRenderer(), "🫠")
    light_box = np.asarray(light.crop((run.x, line.box.y0, run.x + run.width, line.box.y1)))
    assert np.abs(box.astype(int) + light_box - 255).max() <= 1  # the light page's tones, inverted


# -- right to left ----------------------------------------------------------------------------------------------------


def test_hebrew_is_drawn_in_visual_order(renderer):
    layout, image = one_page(renderer, "x שלום עולם y")
    hebrew = [(run, line) for run, line in content_runs(layout) if run.direction == "rtl"]
    assert [run.text for run, _ in hebrew] == ["עולם", "שלום"]  # left to right on the page
    path = font_file(renderer, hebrew[0][0])
    drawn = drawn_span(image, hebrew)
    px = renderer.style.font_px
    assert agreement(drawn, drawn_glyph_by_glyph(path, "םלוע םולש", px)) > 0.97  # the whole string reversed
    assert agreement(drawn, drawn_glyph_by_glyph(path, "שלום עולם", px)) < 0.9  # logical order: what it was


def test_arabic_letters_are_joined(renderer):
    layout, image = one_page(renderer, "x محمد y")
    arabic = [(run, line) for run, line in content_runs(layout) if run.direction == "rtl"]
    path = font_file(renderer, arabic[0][0])
    drawn = drawn_span(image, arabic)
    px = renderer.style.font_px
    # Initial meem, medial hah, medial meem, final dal: the joined forms, right to left.
    assert agreement(drawn, drawn_glyph_by_glyph(path, "\ufeaa\ufee4\ufea4\ufee3", px)) > 0.97
    assert agreement(drawn, drawn_glyph_by_glyph(path, "دمحم", px)) < 0.8  # isolated letters, even reversed


def test_a_right_to_left_paragraph_is_right_aligned_and_left_to_right_words_keep_their_order(renderer):
    layout, _ = one_page(renderer, "שלום hello world עולם")
    line = layout.lines[1]
    content = [run for run in line.runs if run.face is Face.TEXT]
    assert [run.text for run in content] == ["עולם", "hello", "world", "שלום"]
    assert line.box.x1 == renderer.style.width - renderer.style.margin_x
    assert line.runs[0].face is Face.HEADER and line.runs[0].x == renderer.style.margin_x  # the tag stays left
    assert layout.page.text.endswith("User: שלום hello world עולם")


def text_runs(layout, line=1):
    return [run.text for run in layout.lines[line].runs if run.face is Face.TEXT and run.text]


def bidi_test_cases():
    """(classes, paragraph level or None for auto, expected levels with None where X9 removes, visual order)."""
    levels = order = None
    for line in (Path(__file__).parent / "data" / "BidiTest-sample.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("@Levels:"):
            levels = [None if item == "x" else int(item) for item in line.split(":")[1].split()]
        elif line.startswith("@Reorder:"):
            order = [int(item) for item in line.split(":")[1].split()]
        elif line and not line.startswith("#"):
            classes, paragraphs = line.split(";")
            for bit, paragraph in ((1, None), (2, 0), (4, 1)):
                if int(paragraphs) & bit:
                    yield classes.split(), paragraph, levels, order


def test_bidi_levels_and_order_match_unicode_bidi_test():
    cases = list(bidi_test_cases())
    assert len(cases) > 7000
    wrong = []
    for classes, paragraph, expected, order in cases:
        level = first_strong(classes) or 0 if paragraph is None else paragraph
        levels = resolve_levels(classes, [1] * len(classes), level)
        kept = [index for index, value in enumerate(expected) if value is not None]
        visual = [kept[index] for index in visual_order([levels[index] for index in kept])]
        if [levels[index] for index in kept] != [expected[index] for index in kept] or visual != order:
            wrong.append((classes, paragraph))
    assert wrong == []


def test_an_isolated_left_to_right_name_keeps_its_order_in_hebrew(renderer):
    isolated, _ = one_page(renderer, "שלום \u2068C++\u2069 עולם")
    assert text_runs(isolated) == ["עולם", "C", "++", "שלום"]  # reads "C++" between the Hebrew words
    plain, _ = one_page(renderer, "שלום C++ עולם")
    assert text_runs(plain) == ["עולם", "++", "C", "שלום"]  # without the isolate the pluses join the Hebrew
    assert isolated.missing_glyphs == 0


def test_a_mark_keeps_trailing_punctuation_with_its_left_to_right_word(renderer):
    marked, _ = one_page(renderer, "שלום hello!\u200e")
    assert text_runs(marked) == ["hello", "!", "שלום"]  # the mark is strong left-to-right: "!" follows "hello"
    plain, _ = one_page(renderer, "שלום hello!")
    assert text_runs(plain) == ["!", "hello", "שלום"]  # "!" between "hello" and the paragraph end goes right-to-left


def test_an_override_draws_its_letters_in_the_forced_order(renderer):
    layout, image = one_page(renderer, "abc \u202edef\u202c ghi")
    runs = [(run, line) for run, line in content_runs(layout) if run.direction == "rtl"]
    assert len(runs) == 1 and runs[0][0].text.strip("\u202c\u202e") == "def"
    path = font_file(renderer, runs[0][0])
    drawn = drawn_span(image, runs)
    assert agreement(drawn, drawn_glyph_by_glyph(path, "fed", renderer.style.font_px)) > 0.97
    assert agreement(drawn, drawn_glyph_by_glyph(path, "def", renderer.style.font_px)) < 0.9


def test_a_paragraph_takes_its_direction_from_outside_isolates(renderer):
    layout, _ = one_page(renderer, "\u2067שלום עולם\u2069 hello")
    assert text_runs(layout) == ["עולם", "שלום", "hello"]
    assert layout.lines[1].box.x1 < renderer.style.width - renderer.style.margin_x  # left-aligned: not right-to-left


# -- clusters and line breaks -----------------------------------------------------------------------------------------


# The characters the cluster rules tell apart: marks, joiners, emoji and modifiers, regional indicators, tags,
# Hangul jamo and syllables, prepended marks, spacing marks, controls, line ends.
TRICKY = list(
    "a1 \r\n\x07\u0301\u20e3\u200d\u200c\ufe0f\u00ad\u200b\u2028\U0001F1EB\U0001F1F7👨👩🏽❤©🏴\U000E0067"
    "\u1100\u1161\u11a8\ua960\ud7b0가각\u0600ש\u05b4ｶﾞ中\u0e33\u0903"
)


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(TRICKY), max_size=16))
def test_grapheme_clusters_match_the_regex_modules_segmentation(text):
    # The renderer segments with the standard library alone; the regex module's \X is an independent reference.
    assert clusters(text) == regex.findall(r"\X", text)


def test_lines_never_break_inside_a_grapheme_cluster():
    narrow = PageRenderer(RenderStyle(width=320, height=600, font_px=12, mono_font_px=11, margin_x=6, margin_y=6))
    content = "🇫🇷" * 60 + " " + "👨‍👩‍👧" * 30 + " " + "e\u0301" * 60 + " " + "👍🏽" * 40 + "🇯🇵" * 40
    boundaries = {match.start() for match in regex.finditer(r"\X", content)} | {len(content)}
    (layout,) = narrow.paginate([Turn(0, Role.USER, content, 0.0)])
    assert layout.missing_glyphs == 0
    content_start = layout.page.text.index("User: ") + len("User: ")
    starts = [line.box.text_start - content_start for line in layout.lines[2:]]
    assert len(starts) >= 8 and all(start in boundaries for start in starts)


def test_cjk_lines_break_between_ideographs_not_only_at_spaces(renderer):
    content = "OK " + "我们明天上午九点在北京南站见面，记得带上护照和车票。" * 4
    layout, _ = one_page(renderer, content)
    first = layout.lines[1]
    right = renderer.style.width - renderer.style.margin_x
    assert right - renderer.style.font_px * 1.5 <= first.box.x1 <= right  # the first line is filled
    text = layout.page.text
    second = text[layout.lines[2].box.text_start:layout.lines[2].box.text_end]
    assert not second.startswith(("，", "。"))  # closing punctuation never starts a line


def test_cjk_page_reads_back_with_rapidocr(renderer):
    rapidocr = pytest.importorskip("rapidocr")
    text = "旧的对话被画成页面，再由视觉编码器读取。我们明天上午九点在北京南站见面，记得带上护照和车票！" * 2
    layout, image = one_page(renderer, text)
    assert layout.missing_glyphs == 0
    engine = rapidocr.RapidOCR(params={"Global.use_cls": False})
    read = []
    lines = [line for line in layout.lines if any(run.face is Face.TEXT for run in line.runs)]
    assert len(lines) >= 2
    for line in lines:
        # One text line per crop, so the recogniser alone reads it (detection would only find the same box).
        left = min(run.x for run in line.runs if run.face is Face.TEXT)
        crop = image.crop((left - 8, line.box.y0 - 4, line.box.x1 + 8, line.box.y1 + 4)).convert("RGB")
        read.append("".join(engine(np.asarray(crop), use_det=False, use_cls=False, use_rec=True).txts or ()))
    assert _char_accuracy("".join(read), text) >= 0.95, read


def _char_accuracy(read: str, truth: str) -> float:
    """1 − Levenshtein distance / len(truth)."""
    previous = list(range(len(read) + 1))
    for i, want in enumerate(truth, 1):
        current = [i]
        for j, got in enumerate(read, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (want != got)))
        previous = current
    return 1 - previous[-1] / len(truth)


# -- tabs and code ----------------------------------------------------------------------------------------------------


def test_tabs_advance_to_the_next_tab_stop_at_least_a_space_away(renderer):
    layout, _ = one_page(renderer, "Tabs\there\n```\na\tb\tc\nabc\td\n```")
    runs = content_runs(layout)
    tabs = next(run for run, _ in runs if run.text == "Tabs")
    here = next(run for run, _ in runs if run.text == "here")
    text_space = renderer.faces[Face.TEXT].space_advance
    assert here.x - (tabs.x + tabs.width) >= text_space
    assert (here.x - renderer.style.margin_x) % (renderer.style.tab_size * text_space) == 0
    column = renderer.faces[Face.MONO].space_advance
    code = {run.text: run.x for run, line in runs if line.face is Face.MONO}
    margin = renderer.style.margin_x
    assert (code["a"], code["b"], code["c"]) == (margin, margin + 4 * column, margin + 8 * column)
    assert code["d"] == margin + 4 * column  # a tab after three columns goes to the fourth, as in a terminal
    assert "Tabs\there" in layout.page.text


def test_a_wrapped_code_line_starts_each_continuation_with_a_visible_mark(renderer):
    code_line = "result = compute(" + ", ".join(f"argument_{i}" for i in range(40)) + ")"
    layout, image = one_page(renderer, f"```python\n{code_line}\n```")
    code = [line for line in layout.lines if line.face is Face.MONO][1:-1]
    assert len(code) >= 3
    assert CONTINUATION_MARK not in code[0].runs[0].text
    for line in code[1:]:
        mark = line.runs[0]
        assert mark.text == CONTINUATION_MARK and mark.x == renderer.style.margin_x
        assert (np.asarray(image.crop((mark.x, line.box.y0, mark.x + mark.width, line.box.y1))) < 128).sum() > 5
    shown = "".join(layout.page.text[line.box.text_start:line.box.text_end] for line in code)
    assert shown == code_line and CONTINUATION_MARK not in layout.page.text


def test_mixed_script_pages_are_deterministic():
    turns = [Turn(0, Role.USER, MIXED * 6, 1_683_500_000.0), Turn(1, Role.ASSISTANT, "```\n" + MIXED + "\n```", 0.0)]
    first = [pixel_hash(page.image) for page in PageRenderer().render(turns)]
    assert first == [pixel_hash(page.image) for page in PageRenderer().render(turns)]
