"""Hostile input through the public API (``OpticalMemory.add/context/recall``, the CLI, the store, image decoding):
either a correct result or a clear ``ValueError``/``TypeError`` — never a crash, a hang or a corrupted store."""

from __future__ import annotations

import json
import random
import re
import struct
import tempfile
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from benchmarks.reliability import TINY_PAGE
from optical_memory.cli.main import main
from optical_memory.core.imaging import decode_png, encode_png
from optical_memory.core.types import Role, Turn
from optical_memory.memory import OpticalMemory
from optical_memory.store.base import Scope
from optical_memory.store.sqlite import SQLiteStore

NASTY_PIECES = [
    "e\u0301", "Z\u0335\u0321\u0322\u0327\u0328\u0334" * 30, "\u0489" * 10,  # combining marks, Zalgo
    "\u05e9\u05dc\u05d5\u05dd", "\u0645\u0631\u062d\u0628\u0627", "\u202eevil\u202c", "\u200e\u200f\u2067x\u2069",  # RTL
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466", "\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f44d\U0001f3fd",
    "\x00", "\x07", "\x1b[31mred\x1b[0m", "\r\n", "\r", "\t\t", "\x85", "\u2028", "\u2029", "\x7f",  # control
    "\ud800", "\udfff",  # lone surrogates
    "\ufeff", "\uffff", "\U0010ffff", "\ue000", "\u00ad", "\u200b",  # BOM, noncharacters, private use, invisible
    "x" * 3000, "https://example.com/" + "a/" * 400,  # words wider than any line
    " ", "\n", "\u3000", "\u00a0",  # whitespace of several kinds
    "'; DROP TABLE turns; --", "%s %(x)s ? :name $1",  # SQL and placeholder look-alikes
]

hostile_text = st.lists(
    st.one_of(st.sampled_from(NASTY_PIECES), st.text(max_size=30), st.characters(codec=None)), max_size=25
).map("".join)


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def tiny_memory(store, session: str = "default", **options) -> OpticalMemory:
    return OpticalMemory(store, session=session, hot_turns=0, style=TINY_PAGE, consumer="gemini", **options)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(hostile_text, min_size=1, max_size=4), role=st.sampled_from(["user", "assistant", "tool", "system"]))
def test_any_unicode_is_stored_verbatim_and_paged_or_refused_clearly(texts, role):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "hostile.db"
        memory = tiny_memory(SQLiteStore(path))
        for text in texts:
            before = memory.turns
            try:
                memory.add(role, text)
            except ValueError as error:
                assert not text.strip() or _has_surrogate(text), error
                assert memory.turns == before
                continue
            assert memory.turns[-1].content == text
        memory.flush()
        for page in memory.pages:
            assert memory.recall(page) == page.text
            assert memory.page_image(page).size == (page.width, page.height)
        for turn in memory.turns:  # every character of every turn is on exactly one page, in order
            spans = [(s.start, s.end) for p in memory.pages for s in p.segments if s.turn_index == turn.index]
            assert spans and spans[0][0] == 0 and spans[-1][1] == len(turn.content)
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        memory.context(budget=10**9)
        stored = memory.turns, memory.pages
        memory.close()
        with SQLiteStore(path) as store:
            assert store.integrity_check() == ["ok"]
            reopened = tiny_memory(store)
            assert (reopened.turns, reopened.pages) == stored


@pytest.fixture
def memory(tmp_path):
    with tiny_memory(SQLiteStore(tmp_path / "m.db")) as memory:
        memory.add("user", "a first turn so that there is a page to recall")
        memory.flush()
        yield memory


@pytest.mark.parametrize(
    "call, error, field",
    [
        (lambda m: m.add("user", ""), ValueError, "content"),
        (lambda m: m.add("user", " \n\t\u3000\x1f"), ValueError, "content"),
        (lambda m: m.add("user", None), TypeError, "content"),
        (lambda m: m.add("user", b"bytes"), TypeError, "content"),
        (lambda m: m.add("user", "lone \udc80 surrogate"), ValueError, "surrogate"),
        (lambda m: m.add(None, "x"), TypeError, "role"),
        (lambda m: m.add("robot", "x"), ValueError, "role"),
        (lambda m: m.add("user", "x", timestamp=float("nan")), ValueError, "timestamp"),
        (lambda m: m.add("user", "x", timestamp=float("inf")), ValueError, "timestamp"),
        (lambda m: m.add("user", "x", timestamp="now"), ValueError, "timestamp"),
        (lambda m: m.add("user", "x", name=""), ValueError, "name"),
        (lambda m: m.add("user", "x", name=7), TypeError, "name"),
        (lambda m: m.add("user", "x", metadata={"k": object()}), TypeError, "metadata"),
        (lambda m: m.add("user", "x", metadata={"k": "\ud800"}), ValueError, "metadata"),
        (lambda m: m.context(budget=float("nan")), ValueError, "budget"),
        (lambda m: m.context(budget=float("inf")), ValueError, "budget"),
        (lambda m: m.context(budget=-1), ValueError, "budget"),
        (lambda m: m.context(budget="100"), TypeError, "budget"),
        (lambda m: m.context(budget=True), TypeError, "budget"),
        (lambda m: m.recall(-1), ValueError, "no page"),
        (lambda m: m.recall(10**30), ValueError, "no page"),
        (lambda m: m.recall("page x"), ValueError, "page id"),
        (lambda m: m.recall("../../etc/passwd"), ValueError, "page id"),
        (lambda m: m.recall(1.5), TypeError, "page"),
        (lambda m: m.recall(None), TypeError, "page"),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(memory, call, error, field):
    turns, pages = memory.turns, memory.pages
    with pytest.raises(error, match=field):
        call(memory)
    assert (memory.turns, memory.pages) == (turns, pages)
    assert memory.store.integrity_check() == ["ok"]
    assert memory.store.load(memory.scope)[0] == turns


def test_a_one_megabyte_turn_is_kept_verbatim_in_the_hot_window(tmp_path):
    text = _words(1_000_000, seed=1)
    with OpticalMemory.open(tmp_path / "big.db", hot_turns=8) as memory:
        memory.add("user", text)
        context = memory.context(budget=10**7)
        assert context.recent[0].content == text
        with pytest.raises(ValueError, match="smaller than what every call must send"):
            memory.context(budget=1000)
    with OpticalMemory.open(tmp_path / "big.db", hot_turns=8) as reopened:
        assert reopened.turns[0].content == text


@pytest.mark.slow
def test_a_one_megabyte_turn_is_paged_completely(tmp_path):
    text = _words(1_000_000, seed=2)
    with OpticalMemory.open(tmp_path / "big.db", hot_turns=0) as memory:
        memory.add("user", text)
        memory.flush()
        spans = [(s.start, s.end) for p in memory.pages for s in p.segments]
        assert spans[0][0] == 0 and spans[-1][1] == len(text)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        shown = "".join(text[start:end] for start, end in spans)
        assert shown == text
        assert len(memory.pages) > 100
        assert memory.page_image(len(memory.pages) - 1).size == (1280, 1280)


def test_a_session_of_100k_turns_loads_adds_prices_and_recalls():
    """The 100k turns go in through the store's own commit, one per turn as the memory writes them (in memory:
    100k fsyncs of a file store would measure the disk, not the code)."""
    store = SQLiteStore(":memory:")
    # A hot window of all but the first 41 turns: those fill a handful of sealed pages and the open page after
    # them, the rest stays text.
    options = dict(session="long", hot_turns=100_000 - 40, style=TINY_PAGE, consumer="gemini")
    scope = OpticalMemory(store, **options).scope
    started = time.perf_counter()
    for index in range(100_000):
        role = Role.USER if index % 2 == 0 else Role.ASSISTANT
        store.commit(scope, Turn(index, role, f"turn {index}", float(index)), [], expected_turns=index,
                     style_key=TINY_PAGE.session_key())
    memory = OpticalMemory(store, **options)
    assert len(memory.turns) == 100_000
    memory.add("user", "the 100,001st turn")
    assert memory.pages and "turn 0" in memory.recall(0)
    report = memory.context(budget=10**7).report
    assert report.pages_total == len(memory.pages) + 1 and report.hot_text_tokens > 100_000
    assert "turn 40" in memory.recall(len(memory.pages))  # the open page
    second = OpticalMemory(store, **options)  # a second reader builds its state from the store alone
    assert second.turns == memory.turns and second.pages == memory.pages
    assert store.integrity_check() == ["ok"]
    print(f"\n100k-turn session written, loaded twice, extended and priced in {time.perf_counter() - started:.1f} s")
    store.close()


def _words(length: int, *, seed: int) -> str:
    rng = random.Random(seed)
    words = "the agent booked a table for four at nine and sent the confirmation code Zoë 42 €".split()
    text = " ".join(rng.choice(words) for _ in range(length // 3))
    return text[:length]


# -- images ----------------------------------------------------------------------------------------------------------


def _png_claiming(width: int, height: int, *, corrupt_crc: bool = False) -> bytes:
    """A tiny PNG whose header claims ``width``×``height`` grey pixels (a decompression bomb when large)."""

    def chunk(kind: bytes, data: bytes, crc_offset: int = 0) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", (zlib.crc32(kind + data) + crc_offset) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header, int(corrupt_crc)) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns; decode_png refuses
@pytest.mark.parametrize("width, height", [(100_000, 100_000), (9_000, 9_000), (64_001, 1_000)])
def test_decompression_bombs_are_refused_before_decoding(width, height):
    with pytest.raises(ValueError, match="oversized image"):
        decode_png(_png_claiming(width, height))


def test_broken_and_foreign_image_bytes_are_refused_clearly():
    assert decode_png(_png_claiming(4, 2)).size == (4, 2)
    for junk in (_png_claiming(4, 2, corrupt_crc=True), b"", b"GIF89a....", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50):
        with pytest.raises(ValueError, match="not a readable image"):
            decode_png(junk)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from("sdi")), min_size=1, max_size=8))
def test_mangled_pngs_decode_or_raise_value_error(edits):
    data = bytearray(encode_png(Image.new("L", (48, 24), 190)))
    for position, value, kind in edits:
        position %= len(data) + 1
        if kind == "s" and position < len(data):
            data[position] = value
        elif kind == "d":
            del data[position : position + value % 16 + 1]
        else:
            data[position:position] = bytes([value]) * (value % 7 + 1)
    try:
        decode_png(bytes(data))
    except ValueError:
        pass


def test_a_bomb_planted_in_the_store_is_refused_when_the_page_is_shown(tmp_path):
    with OpticalMemory.open(tmp_path / "bomb.db", hot_turns=0) as memory:
        memory.add("user", _words(6000, seed=3))  # fills a full-size page, which goes as an image
        memory.store.replace_image(memory.scope, 0, "planted-bomb", _png_claiming(20_000, 20_000), "large")
    with OpticalMemory.open(tmp_path / "bomb.db", hot_turns=0) as reopened:
        with pytest.raises(ValueError, match="oversized image"):
            reopened.page_image(0)
        view = reopened.context().pages[0]
        assert not view.as_text
        with pytest.raises(ValueError, match="oversized image"):
            view.image  # noqa: B018 - decoding happens on access


# -- the store ---------------------------------------------------------------------------------------------------------


def test_quotes_and_placeholders_in_names_are_data_not_sql(store_backend):
    scope = Scope("alice'); DROP TABLE turns; --", "s ? %s %(x)s $1 \\")
    with store_backend.open() as store:
        memory = tiny_memory(store, session=scope.session, user=scope.user)
        memory.add("user", "'; DELETE FROM images; -- ? %s")
        memory.flush()
        assert store.sessions(scope.user) == [scope]
    with store_backend.open() as store:
        turns, pages = store.load(scope)
        assert turns[0].content == "'; DELETE FROM images; -- ? %s" and len(pages) == 1
        assert store.has_image(pages[0].image_key)


# -- the command line --------------------------------------------------------------------------------------------------


def _transcript(path: Path, records: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(record) for record in records) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("budget", ["nan", "inf", "-inf", "-1", "1e400", "abc", ""])
def test_cli_refuses_bad_budgets_clearly(tmp_path, capsys, budget):
    transcript = _transcript(tmp_path / "t.jsonl", [{"role": "user", "content": "hello"}])
    with pytest.raises(SystemExit) as exit_:
        main(["context", str(transcript), "--budget", budget])
    assert exit_.value.code == 2
    assert "budget" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "holds no turns"),
        (b"\xff\xfe\x00garbage\x80", "not UTF-8"),
        (b'{"role": "user"}\n', "missing 'content'"),
        (b'{"role": 5, "content": "x"}\n', "role must be a string"),
        (b'{"role": "user", "content": "\\ud800"}\n', "surrogate"),
        (b'{"role": "user", "content": "   "}\n', "empty or whitespace"),
        (b'{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}\n', "cannot be priced or kept offline"),
        (b'{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}\n', "not supported"),
        (b'{"role": "user", "content": "x", "timestamp": "yesterday"}\n', "timestamp"),
        (b'[1, 2, 3]', "expected an object"),
        (b'{"role": "user", "content": "x"', "malformed JSON"),
    ],
)
def test_cli_refuses_bad_transcripts_clearly(tmp_path, capsys, content, message):
    transcript = tmp_path / "bad.jsonl"
    transcript.write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        main(["context", str(transcript), "--budget", "1000"])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_reports_unusable_paths_instead_of_crashing(tmp_path, capsys):
    transcript = _transcript(tmp_path / "t.jsonl", [{"role": "user", "content": "hello"}])
    (tmp_path / "a-file").write_text("not a folder")
    for argv in (
        ["render", str(transcript), "--out", str(tmp_path / "a-file")],
        ["context", str(transcript), "--budget", "100", "--openai", str(tmp_path / "missing" / "x.json")],
        ["context", str(tmp_path), "--budget", "100"],
        ["context", str(tmp_path / "nope.jsonl"), "--budget", "100"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert "error:" in capsys.readouterr().err


def test_cli_writes_only_inside_the_output_folder(tmp_path, capsys):
    hostile = [
        {"role": "user", "content": "../../../../tmp/escaped.png " + NASTY_PIECES[0], "name": "../../evil"},
        {"role": "assistant", "content": "/etc/passwd \x00 C:\\Windows\\win.ini " + "".join(NASTY_PIECES[3:12])},
        {"role": "user", "content": "page_0000.png ~/.bashrc $(rm -rf /) `reboot`"},
    ] * 4
    transcript = _transcript(tmp_path / "hostile.jsonl", hostile)
    out = tmp_path / "out"
    before = set(tmp_path.rglob("*"))
    assert main(["render", str(transcript), "--out", str(out), "--all-tiers"]) == 0
    assert main(["context", str(transcript), "--budget", "100000", "--json"]) == 0
    assert main(["demo", "--out", str(out), "--transcript", str(transcript), "--hot-turns", "2"]) == 0
    capsys.readouterr()
    created = set(tmp_path.rglob("*")) - before
    assert created and all(out in path.parents or path == out for path in created)
    names = {path.name for path in created if path.parent == out / "pages"}
    assert names and all(re.fullmatch(r"page_\d{4}(_[\w-]+)?\.png", name) for name in names)
