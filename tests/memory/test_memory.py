"""The memory middleware end to end: sealing, recall, persistence, budgets, fail-closed, scoping and bad input."""

import asyncio
import base64
import io
import random
import sqlite3
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optical_memory.policies import (
    AgeSchedule,
    ReadingGate,
    RecallAwareBudget,
    TokenBudget,
    is_monotone,
    reading_model,
    view_cost,
)
from optical_memory.renderers import RenderStyle
from PIL import Image

from optical_memory import OpticalMemory
from optical_memory.cli.main import fill_memory, sample_transcript
from optical_memory.cli.transcripts import load_transcript
from optical_memory.core.imaging import pixel_hash
from optical_memory.core.types import Role

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def sentence(rng: random.Random, n: int = 60) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "."


def fill(mem: OpticalMemory, n: int, seed: int = 0, start: float | None = None) -> None:
    """``n`` alternating turns a minute apart, ending now (so wall-clock age does not forget them)."""
    rng = random.Random(seed)
    start = time.time() - 60 * n if start is None else start
    for i in range(n):
        mem.add("user" if i % 2 == 0 else "assistant", sentence(rng), timestamp=start + 60 * i)


@pytest.fixture
def mem():
    with OpticalMemory.open(":memory:", hot_turns=4) as memory:
        yield memory


def test_turns_past_the_hot_window_are_sealed_onto_full_pages(mem):
    fill(mem, 80)
    assert len(mem.turns) == 80
    assert len(mem.pages) >= 2
    shown = [(s.turn_index, s.start, s.end) for p in mem.pages for s in p.segments]
    # Sealed text is contiguous: every character of the sealed turns is on exactly one page, in order.
    position = (0, 0)
    for turn_index, start, end in shown:
        assert (turn_index, start) == position or (start == 0 and position == (turn_index, 0))
        content = mem.turns[turn_index].content
        position = (turn_index, end) if end < len(content) else (turn_index + 1, 0)
    assert position[0] <= 80 - 4


def test_recall_returns_the_exact_text_and_accepts_labels(mem):
    fill(mem, 60)
    page = mem.pages[0]
    for segment in page.segments:
        assert mem.turns[segment.turn_index].content[segment.start : segment.end] in mem.recall(0)
    assert mem.recall(page.label) == mem.recall("0") == mem.recall(page) == page.text
    with pytest.raises(ValueError, match="no page"):
        mem.recall(999)
    with pytest.raises(ValueError, match="page id"):
        mem.recall("chapter two")


def test_context_layout_and_report(mem):
    fill(mem, 120)
    ctx = mem.context(budget=None)
    # The sealed pages, then the open page: the turns past the hot window that fill no page yet.
    assert [v.page for v in ctx.pages if v.sealed] == mem.pages
    [open_page] = [v for v in ctx.pages if not v.sealed]
    assert open_page.page.index == len(mem.pages) and mem.recall(open_page.page.label) == open_page.page.text
    assert mem.page_image(open_page.page.label).size == (mem.style.width, mem.style.height)
    assert mem.page_image(open_page.page.label).tobytes() == mem.renderer.render(
        mem.turns[open_page.page.segments[0].turn_index:ctx.recent[0].index],
        first_page_index=open_page.page.index, first_turn_offset=open_page.page.segments[0].start)[0].image.tobytes()
    word = mem.turns[open_page.page.segments[-1].turn_index].content.split()[-1]
    assert any(hit.page == open_page.page.label for hit in mem.search(word, k=50))
    with pytest.raises(ValueError, match="sealed pages and 1 open"):
        mem.recall(len(mem.pages) + 1)
    assert ctx.recent[0].index == open_page.page.segments[-1].turn_index + 1 == len(mem.turns) - mem.hot_turns
    assert ctx.recent[-1].content == mem.turns[-1].content
    report = ctx.report
    assert report.pages_total == len(mem.pages) + 1
    assert report.pages_as_images + report.pages_as_text + report.pages_dropped == report.pages_total
    assert report.image_tokens == sum(v.tokens for v in ctx.pages if v.image is not None)
    assert report.decoder_positions == sum(v.mode.decoder_positions() for v in ctx.pages if v.mode is not None)
    assert report.compression == pytest.approx(report.paged_text_tokens / report.image_tokens)
    view = next(v for v in ctx.pages if v.mode is not None)
    assert view.image.size == (view.mode.size, view.mode.size)


def test_budget_is_respected_and_levels_stay_monotone(mem):
    fill(mem, 150)
    for budget in (20_000, 3000, 1500, 800):
        ctx = mem.context(budget=budget)
        assert ctx.report.total_tokens <= budget
        assert is_monotone([v.level for v in ctx.pages])
    with pytest.raises(ValueError, match="smaller than what every call must send"):
        mem.context(budget=10)


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), -1, "100", True])
def test_bad_budgets_are_rejected(mem, budget):
    with pytest.raises((ValueError, TypeError), match="budget"):
        mem.context(budget=budget)


def test_fail_closed_sends_short_pages_as_text():
    with OpticalMemory.open(":memory:", hot_turns=0) as memory:
        memory.add("user", "short note")
        memory.flush()
        ctx = memory.context()
        (view,) = ctx.pages
        assert view.as_text and view.image is None and view.mode is None
        assert view.tokens == view.text_tokens
        assert ctx.report.pages_as_text == 1 and ctx.report.image_tokens == 0


def test_reopen_restores_pages_modes_and_context_byte_for_byte(tmp_path):
    db = tmp_path / "memory.db"
    with OpticalMemory.open(db, session="s", hot_turns=4) as first:
        fill(first, 90, start=1_000_000.0)
        before = first.context(budget=2500, now=2_000_000.0)
        before_images = [pixel_hash(v.image) for v in before.pages if v.image is not None]
        turns, pages = first.turns, first.pages
    with OpticalMemory.open(db, session="s", hot_turns=4) as second:
        after = second.context(budget=2500, now=2_000_000.0)
        assert second.turns == turns
        assert second.pages == pages
        assert after.report == before.report
        assert [v.level for v in after.pages] == [v.level for v in before.pages]
        assert [pixel_hash(v.image) for v in after.pages if v.image is not None] == before_images
        assert after.to_openai() == before.to_openai()


def test_users_and_sessions_are_isolated(tmp_path):
    db = tmp_path / "shared.db"
    with OpticalMemory.open(db, user="ada", session="a") as a, OpticalMemory.open(db, user="bob", session="a") as b:
        a.add("user", "ada's secret is 4471")
        b.add("user", "bob's note")
        assert [t.content for t in a.turns] == ["ada's secret is 4471"]
        assert [t.content for t in b.turns] == ["bob's note"]
        assert {(s.user, s.session) for s in a.store.sessions()} == {("ada", "a"), ("bob", "a")}


def test_identical_pages_are_rendered_and_stored_once(tmp_path):
    db = tmp_path / "m.db"
    for session in ("one", "two"):
        with OpticalMemory.open(db, session=session, hot_turns=2) as memory:
            fill(memory, 60, seed=7)
    with sqlite3.connect(db) as raw:
        (pages,) = raw.execute("SELECT COUNT(*) FROM pages").fetchone()
        (images,) = raw.execute("SELECT COUNT(*) FROM images").fetchone()
    assert pages >= 4 and images == pages // 2


def test_forget_pixels_replaces_the_stored_image_with_the_smaller_one(tmp_path):
    with OpticalMemory.open(tmp_path / "f.db", hot_turns=2, forget_pixels=True) as memory:
        fill(memory, 300)
        master = memory.page_image(len(memory.pages) - 1)
        assert master.size == (memory.style.width, memory.style.height)
        ctx = memory.context()
        old = ctx.pages[0]
        assert old.level is not None and old.level > 0
        assert memory.page_image(0).size == (old.tier.size, old.tier.size)
        assert memory.recall(0) == old.page.text


def test_bad_input_leaves_nothing_half_written(tmp_path):
    with OpticalMemory.open(tmp_path / "b.db") as memory:
        memory.add("user", "fine")
        for role, content, error in [
            ("user", "", ValueError),
            ("user", "   \n", ValueError),
            ("wizard", "hi", ValueError),
            ("user", 42, TypeError),
            (None, "hi", TypeError),
            ("user", "bad \ud800 surrogate", ValueError),
        ]:
            with pytest.raises(error):
                memory.add(role, content)
        with pytest.raises(ValueError, match="timestamp"):
            memory.add("user", "hi", timestamp=float("nan"))
        assert [t.content for t in memory.turns] == ["fine"]
    with OpticalMemory.open(tmp_path / "b.db") as reopened:
        assert [t.content for t in reopened.turns] == ["fine"]


def test_store_path_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        OpticalMemory.open(tmp_path / "missing" / "m.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ValueError, match="not a usable SQLite"):
        OpticalMemory.open(junk)
    with pytest.raises(ValueError, match="directory"):
        OpticalMemory.open(tmp_path)
    with pytest.raises(TypeError, match="hot_turns"):
        OpticalMemory.open(":memory:", hot_turns=2.5)


def test_tool_results_stay_with_their_call():
    with OpticalMemory.open(":memory:", hot_turns=1) as memory:
        rng = random.Random(3)
        for _ in range(30):
            memory.add("user", sentence(rng))
            memory.add("assistant", "calling lookup", metadata={"tool_calls": [{"id": "c1", "type": "function"}]})
            memory.add("tool", sentence(rng, 80), metadata={"tool_call_id": "c1"})
            memory.add("tool", sentence(rng, 80), metadata={"tool_call_id": "c1"})
            ctx = memory.context()
            first = ctx.recent[0]
            assert first.role is not Role.TOOL
            assert not (first.metadata.get("continued") and first.metadata.get("tool_calls"))
        assert len(memory.pages) >= 5


def test_async_twins():
    async def run():
        with OpticalMemory.open(":memory:", hot_turns=2) as memory:
            rng = random.Random(0)
            for _ in range(30):
                await memory.aadd("user", sentence(rng))
            ctx = await memory.acontext(budget=5000)
            return memory, ctx

    memory, ctx = asyncio.run(run())
    assert len(ctx.recent) >= 2 and ctx.report.budget == 5000


def test_to_openai_messages(mem):
    fill(mem, 80)
    ctx = mem.context()
    messages = ctx.to_openai(system="be brief")
    assert messages[0] == {"role": "system", "content": "be brief"}
    parts = messages[1]["content"]
    assert parts[0]["type"] == "text" and "page" in parts[0]["text"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert images
    header, data = images[0]["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    first_image = next(v for v in ctx.pages if v.image is not None)
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (first_image.mode.size,) * 2
    assert messages[-1]["content"] == mem.turns[-1].content


def test_host_consumer_prices_with_its_own_rule(mem):
    fill(mem, 150)
    ctx = mem.context(consumer="openai:gpt-4o", policy=TokenBudget(base=None))
    view = next(v for v in ctx.pages if not v.as_text)
    assert view.tokens == 765 and view.mode is None
    assert max(view.image.size) == 768
    assert ctx.report.decoder_positions is None


def test_a_session_reopens_when_only_system_fallback_fonts_differ(tmp_path):
    from optical_memory.renderers import RenderStyle
    from optical_memory.renderers.fonts import SANS, system_fallback_fonts

    fallbacks = system_fallback_fonts()
    if not fallbacks:
        pytest.skip("no system fallback fonts installed")
    db = tmp_path / "fonts.db"
    with OpticalMemory.open(db, style=RenderStyle(font_files=(str(SANS), *fallbacks))) as first:
        first.add("user", "hello")
    with OpticalMemory.open(db, style=RenderStyle(font_files=(str(SANS),))) as second:
        assert [t.content for t in second.turns] == ["hello"]
    with pytest.raises(ValueError, match="another render style"):
        OpticalMemory.open(db, style=RenderStyle(font_files=(str(SANS),), font_px=14))


def test_another_process_forgetting_pixels_does_not_break_this_one(tmp_path):
    db = tmp_path / "shared.db"
    with OpticalMemory.open(db, hot_turns=2) as reader, OpticalMemory.open(db, hot_turns=2, forget_pixels=True) as writer:
        fill(writer, 300)
        reader._reload()
        stale_key = reader._pages[0].image_key
        writer.context()
        assert writer._pages[0].image_key != stale_key
        assert reader.page_image(0).size == writer.page_image(0).size
        assert all(view.image is not None for view in reader.context().pages if view.tier and not view.as_text)


def test_metadata_must_be_json(mem):
    with pytest.raises(TypeError, match="metadata"):
        mem.add("user", "hi", metadata={"when": object()})
    assert mem.turns == []


# -- reading models: the gate, the default policy that spends the budget, and the reasons -----------------------


@pytest.fixture(scope="module")
def dense():
    """A memory of 12-px pages (~2,300 tokens each): DeepSeek-OCR's 64 TINY tokens cannot carry such a page."""
    with OpticalMemory.open(":memory:", hot_turns=4, style=RenderStyle.preset("deepseek-ocr").with_density(12)) as memory:
        fill(memory, 320, seed=3, start=0.0)
        memory.flush()
        yield memory


def test_the_default_policy_spends_the_budget_the_age_schedule_leaves_unused():
    turns = load_transcript(sample_transcript())
    with OpticalMemory.open(":memory:", hot_turns=8) as memory:
        fill_memory(memory, turns, progress=False)
        now = max(turn.timestamp for turn in memory.turns)
        assert isinstance(memory.policy, RecallAwareBudget)
        aged = memory.context(budget=4000, now=now, policy=TokenBudget(base=AgeSchedule()))
        ours = memory.context(budget=4000, now=now)
    # Blurring by age alone never sharpens: budget is left on the table, and less is expected to be read back.
    assert aged.report.total_tokens < ours.report.total_tokens <= 4000
    assert ours.report.expected_recall > aged.report.expected_recall
    levels = [view.level for view in ours.pages]
    assert is_monotone(levels)
    # Spent up to what the levels allow: no page can go one tier sharper (older never sharper) in what is left.
    gate = ReadingGate(reading_model(memory.consumer), 0.9)
    left = 4000 - ours.report.total_tokens
    for i, view in enumerate(ours.pages):
        for sharper in range(view.level if view.level is not None else len(memory.consumer.tiers)):
            trial = [*levels[:i], sharper, *levels[i + 1:]]
            extra = view_cost(memory.consumer, view.page, sharper, gate) - view.tokens
            assert not (is_monotone(trial) and extra <= left), (i, sharper, extra, left)
    assert {why(view) for view in ours.pages} <= {"age", "budget", "fail-closed", "below min_recall"}
    assert all("expected recall" in view.reason for view in ours.pages if not view.forgotten and not view.as_text)


def test_without_a_budget_the_default_follows_the_age_schedule(mem):
    fill(mem, 120, start=0.0)
    now = 60.0 * 120
    assert [v.level for v in mem.context(now=now).pages] == [v.level for v in mem.context(now=now, policy=AgeSchedule()).pages]


def test_pages_the_decoder_cannot_read_go_as_text_and_say_why(dense):
    gated = dense.context(policy=AgeSchedule(time_steps=None), now=0.0)
    tiny = [view for view in gated.pages if view.tier is not None and view.tier.name == "tiny"]
    assert tiny and all(view.as_text and view.tokens == view.text_tokens for view in tiny)
    assert all(why(view) == "below min_recall" and "under min_recall 90%" in view.reason
               and view.expected_recall == 1.0 for view in tiny)
    opened = dense.context(policy=AgeSchedule(time_steps=None), now=0.0, min_recall=0.0)
    tiny = [view for view in opened.pages if view.tier is not None and view.tier.name == "tiny"]
    assert tiny and all(not view.as_text and view.tokens == 64 and view.expected_recall < 0.5 for view in tiny)
    assert opened.report.expected_recall < gated.report.expected_recall
    assert (opened.report.min_recall, gated.report.min_recall) == (0.0, 0.9)


def test_under_a_budget_unreadable_pages_are_forgotten_with_the_reason(dense):
    ctx = dense.context(budget=1500, now=0.0)
    assert ctx.report.total_tokens <= 1500 and ctx.report.expected_recall is not None
    for view in ctx.pages:
        assert view.reason
        if not view.forgotten and not view.as_text:
            assert view.expected_recall >= 0.9
    forgotten = [view for view in ctx.pages if view.forgotten]
    assert forgotten and forgotten[-1].reason.startswith("budget: forgotten by RecallAwareBudget: newer pages took")
    assert all(view.reason.startswith("budget: forgotten, older than a forgotten page") for view in forgotten[:-1])
    assert all(view.expected_recall == 0.0 for view in forgotten)


@settings(max_examples=25, deadline=None)
@given(budget=st.integers(0, 12000), floor=st.floats(0.0, 1.0))
def test_with_the_gate_every_budget_is_kept_and_older_is_never_sharper(dense, budget, floor):
    hot = dense.context(now=0.0).report.hot_text_tokens
    if budget < hot:
        with pytest.raises(ValueError, match="budget"):
            dense.context(budget=budget, now=0.0, min_recall=floor)
        return
    ctx = dense.context(budget=budget, now=0.0, min_recall=floor)
    assert ctx.report.total_tokens <= budget
    assert is_monotone([view.level for view in ctx.pages])
    assert all(view.expected_recall >= floor for view in ctx.pages if view.image is not None)


def test_a_host_without_a_reading_model_says_so(mem):
    fill(mem, 80)
    ctx = mem.context(consumer="anthropic")
    images = [view for view in ctx.pages if not view.forgotten and not view.as_text]
    assert images and all(view.expected_recall is None and "no reading model for anthropic" in view.reason
                          for view in images)
    assert ctx.report.expected_recall is None


def test_reading_model_and_min_recall_are_checked(mem):
    fill(mem, 40)
    with pytest.raises(ValueError, match="reading_model is for consumer 'deepseek-ocr'"):
        mem.context(consumer="anthropic", reading_model=reading_model("deepseek-ocr"))
    with pytest.raises(TypeError, match="reading_model must be a ReadingModel"):
        OpticalMemory.open(":memory:", reading_model="deepseek")
    with pytest.raises(ValueError, match="min_recall"):
        OpticalMemory.open(":memory:", min_recall=1.5)
    with pytest.raises(ValueError, match="min_recall"):
        mem.context(min_recall=-1)


def agent_turns(n: int, *, every: int, results: int, seed: int = 0, result_words: int = 80):
    """(role, content, metadata) of an agent loop: a user turn, an assistant turn that calls ``results`` tools at
    once, their results, an answer, then plain turns up to ``every`` turns per round."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        call = f"c{len(out)}"
        calls = [{"id": f"{call}-{k}", "type": "function", "function": {"name": "f", "arguments": "{}"}} for k in range(results)]
        out.append(("user", sentence(rng), {}))
        out.append(("assistant", "calling tools", {"tool_calls": calls}))
        out.extend(("tool", sentence(rng, result_words), {"tool_call_id": c["id"]}) for c in calls)
        out.append(("assistant", sentence(rng), {}))
        while len(out) % every and len(out) < n:
            out.append(("user" if len(out) % 2 else "assistant", sentence(rng), {}))
    return out[:n]


def hot_window_and_its_tool_group(turns, hot_turns: int) -> int:
    """Where the recent text must begin, counted here from the roles alone: the hot window, widened to the call
    whose results it holds."""
    edge = max(0, len(turns) - hot_turns)
    while 0 < edge < len(turns) and turns[edge].role is Role.TOOL:
        edge -= 1
    return edge


@pytest.mark.parametrize(("every", "results"), [(4, 1), (6, 3)])
def test_recent_text_is_the_hot_window_and_one_tool_group(every, results):
    """A page that would end inside a tool exchange ends before its call, and the turns past the hot window that
    fill no page yet are on the open page: recent text is the hot window plus the tool group at its edge, never more
    (before, it grew until some page happened to end cleanly: 41 recent turns at hot_turns=8; then by up to a
    page's worth of turns waiting for their page to fill)."""
    with OpticalMemory.open(":memory:", hot_turns=8, clock=lambda: 0.0) as memory:
        for role, content, metadata in agent_turns(400, every=every, results=results):
            memory.add(role, content, metadata=metadata)
            ctx = memory.context()
            turns = memory.turns
            assert [t.index for t in ctx.recent] == list(range(hot_window_and_its_tool_group(turns, 8), len(turns)))
            assert len(ctx.recent) <= memory.hot_turns + 1 + results
            # Every turn before the recent text is on a page, whole and once: the sealed pages and the open one.
            shown = [(s.turn_index, s.start, s.end) for v in ctx.pages for s in v.page.segments]
            assert not shown or shown[0][:2] == (0, 0)
            assert all(a[0] < b[0] or a[2] == b[1] for a, b in zip(shown, shown[1:]))
            assert {t for t, _, end in shown if end == len(turns[t].content)} == set(range(ctx.recent[0].index))
            assert [v.sealed for v in ctx.pages].count(False) <= 1
        assert len(memory.pages) > 10


def test_a_tool_exchange_longer_than_a_page_is_sealed_once_a_later_page_ends_outside_it():
    with OpticalMemory.open(":memory:", hot_turns=2, clock=lambda: 0.0) as memory:
        rng = random.Random(1)
        memory.add("user", sentence(rng))
        memory.add("assistant", "calling", metadata={"tool_calls": [{"id": "big", "type": "function"}]})
        memory.add("tool", sentence(rng, 3000), metadata={"tool_call_id": "big"})
        for _ in range(30):
            memory.add("assistant" if len(memory.turns) % 2 else "user", sentence(rng))
        on_pages = {index for page in memory.pages for index in page.turn_indices}
        assert {1, 2} <= on_pages
        ctx = memory.context()
        assert ctx.recent[0].index > 2


def test_to_openai_fits_the_context_budget_with_everything_counted(mem):
    """The system prompt, the preamble and the per-message framing count toward the budget too (before, budget 781
    sent 873 tokens, and 26 of 73 budgets in a sweep went over)."""
    from optical_memory.compress import count_message_tokens

    fill(mem, 150)
    system = "You are a travel assistant. Answer in one short paragraph. " * 6
    for budget in range(1000, 4000, 73):
        ctx = mem.context(budget=budget)
        messages = ctx.to_openai(system=system)
        assert count_message_tokens(messages, consumer=mem.consumer) <= budget
        assert messages[0] == {"role": "system", "content": system}
        assert ctx.report.total_tokens <= budget
    with pytest.raises(ValueError, match="smaller than what every call must send"):
        mem.context(budget=400).to_openai(system=system * 3)
    with pytest.raises(TypeError, match="system must be a string"):
        mem.context().to_openai(system=["hi"])


def test_to_openai_and_the_report_agree_on_what_is_sent(mem):
    from optical_memory.compress import count_message_tokens
    from optical_memory.messages.dialects import OpenAIDialect

    fill(mem, 150)
    ctx = mem.context(budget=1800)
    fitted = ctx.messages(OpenAIDialect(), system=[{"role": "system", "content": "be brief"}])
    assert fitted.messages == ctx.to_openai(system="be brief")
    assert fitted.total_tokens == count_message_tokens(fitted.messages, consumer=mem.consumer) <= 1800
    assert fitted.report.budget == 1800 and fitted.report.total_tokens <= fitted.total_tokens


def why(view) -> str:
    """The first word of a page's reason: age, budget, fail-closed or below min_recall."""
    return view.reason.partition(":")[0]


def test_each_page_says_why_it_has_its_level():
    """"age: …": the level the policy gives without a budget; "budget: …": another level, or forgotten, because of
    the budget; "fail-closed: …": sent as text because the image would cost more. Details follow the colon."""
    day = 86_400.0
    with OpticalMemory.open(":memory:", hot_turns=4, clock=lambda: 0.0) as memory:
        fill(memory, 150, start=-400 * day)  # 400 days ago, a minute apart: older than a year
        fill(memory, 150, seed=1, start=-60 * 150)
        # The gate off (min_recall 0): every level is shown as its age or the budget gives it.
        aged = memory.context(now=0.0, min_recall=0.0)
        # The open page holds a turn or two: as an image it would cost more than its text.
        assert {why(v) for v in aged.pages if v.sealed} == {"age"}
        assert aged.pages[0].forgotten and not aged.pages[-1].forgotten
        tight = memory.context(budget=1500, now=0.0, min_recall=0.0)
        by_reason = {why(v) for v in tight.pages}
        assert by_reason == {"age", "budget"}
        for tight_view, aged_view in zip(tight.pages, aged.pages):
            same = tight_view.level == aged_view.level
            assert why(tight_view) == ("age" if same else "budget")
        # The gate on: a page its age puts where it reads back below the floor goes as text and says both.
        gated = [v for v in memory.context(now=0.0).pages if v.as_text and v.sealed]
        assert gated and all(why(v) == "below min_recall" and v.reason.endswith("by age") for v in gated)
    with OpticalMemory.open(":memory:", hot_turns=0) as memory:
        memory.add("user", "short note")
        memory.flush()
        [view] = memory.context().pages
        assert view.as_text and view.reason.startswith("fail-closed: the image would cost")


def test_seal_render_and_store_events_go_to_the_optical_memory_logger_and_print_nothing_by_default(capfd, caplog):
    import logging

    with OpticalMemory.open(":memory:", hot_turns=2) as memory:
        fill(memory, 30)
    assert capfd.readouterr().err == ""
    with caplog.at_level(logging.DEBUG, logger="optical_memory"):
        with OpticalMemory.open(":memory:", hot_turns=2) as memory:
            fill(memory, 30)
    messages = [record.getMessage() for record in caplog.records if record.name.startswith("optical_memory")]
    assert any("sealed page 0 (turns 0-" in m for m in messages)
    assert any("drew page 0" in m for m in messages)
    assert any("committed turn" in m for m in messages)


@pytest.mark.parametrize("consumer", ["openai:gpt-4o", "openai:gpt-4-turbo", "anthropic", "deepseek-ocr"])
def test_the_report_names_the_tokenizer_that_counted_the_text(mem, consumer):
    from optical_memory.core.consumers import get_consumer

    fill(mem, 60)
    ctx = mem.context(consumer=consumer)
    priced = get_consumer(consumer)
    assert (ctx.report.tokenizer, ctx.report.tokenizer_exact) == (priced.tokenizer, priced.tokenizer_exact)
    assert ctx.report.hot_text_tokens == sum(priced.text_tokens(turn.content) for turn in ctx.recent)
    assert all(view.text_tokens == priced.text_tokens(view.page.text) for view in ctx.pages)
    assert ctx.report.page_image_bytes is None  # pricing a context encodes no PNG


def test_built_messages_report_the_greyscale_png_bytes_they_carry(mem):
    from optical_memory.messages.dialects import OpenAIDialect
    from optical_memory.prompt import build_messages

    fill(mem, 150)
    built = build_messages(mem, OpenAIDialect(), consumer="openai:gpt-4o", policy=TokenBudget(base=None))
    pngs = [base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
            for message in built.messages if isinstance(message["content"], list)
            for part in message["content"] if part["type"] == "image_url"]
    assert len(pngs) == built.report.pages_as_images > 0
    assert built.report.page_image_bytes == sum(len(png) for png in pngs)
    assert {Image.open(io.BytesIO(png)).mode for png in pngs} == {"L"}
