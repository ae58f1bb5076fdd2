"""The store contract, run unchanged against SQLite and a real PostgreSQL server (``store_backend`` fixture)."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from PIL import Image

from optical_memory.core.imaging import decode_png, encode_png
from optical_memory.core.types import LineBox, Page, Role, Turn, TurnSegment
from optical_memory.store.backends import open_store
from optical_memory.store.base import (
    SCHEMA_VERSION,
    Scope,
    StaleSession,
    StoredPage,
    StoreError,
    page_to_json,
)
from optical_memory.store.postgres import PostgresStore
from optical_memory.store.sqlite import SQLiteStore

STYLE = "style-a"
ALICE = Scope("alice", "s1")
BOB = Scope("bob", "s1")
HOSTILE_TEXT = "e\u0301 \u05e9\u05dc\u05d5\u05dd \U0001f469\u200d\U0001f4bb nul:\x00 bell:\x07 \u202eRTL\u202c \ufeff"


def turn(index: int, content: str | None = None, **extra: object) -> Turn:
    return Turn(index, Role.USER if index % 2 == 0 else Role.ASSISTANT, content or f"turn {index}", 1000.0 + index, **extra)


def page(index: int, turns: tuple[int, ...], *, key: str | None = None, text: str | None = None) -> Page:
    text = text or " ".join(f"turn {t}" for t in turns)
    return Page(
        index=index,
        text=text,
        segments=tuple(TurnSegment(t, Role.USER, 0, 6, continued=False) for t in turns),
        lines=(LineBox(24, 24, 300, 44, 0, len(text)),),
        width=1280,
        height=1280,
        render_key=key or f"render-{index}-{'-'.join(map(str, turns))}",
        missing_glyphs=0,
        timestamp=1000.0 + max(turns),
    )


def png(shade: int) -> bytes:
    return encode_png(Image.new("L", (32, 16), shade))


def fill(store, scope: Scope, count: int, *, start: int = 0) -> None:
    for index in range(start, start + count):
        store.commit(scope, turn(index), [], expected_turns=index, style_key=STYLE)


def test_a_session_is_stored_with_its_first_turn_and_keeps_its_first_style(store_backend):
    with store_backend.open() as store:
        assert store.session(ALICE) is None and store.load(ALICE) == ([], [])
        assert store.sessions() == [] and store.search(ALICE, "turn") == []
        assert store.commit(ALICE, turn(0), [], expected_turns=0, style_key=STYLE) == 1
        info = store.session(ALICE)
        assert (info.scope, info.style_key, info.version, info.turns, info.pages) == (ALICE, STYLE, 1, 1, 0)
        assert store.sessions() == [ALICE]
        with pytest.raises(ValueError, match="style_key 'another-style' is not the style"):
            store.commit(ALICE, turn(1), [], expected_turns=1, style_key="another-style")
        assert store.create_session(ALICE, "another-style").style_key == STYLE
        assert store.create_session(BOB, "another-style").style_key == "another-style"
        assert store.session(BOB).turns == 0 and store.sessions() == [ALICE, BOB]


def test_turns_round_trip_verbatim_and_load_after_a_turn(store_backend):
    turns = [
        turn(0, HOSTILE_TEXT, name="tool\x00name", metadata={"k": [1, 2.5, None], "nan": float("inf"), "é": "ü"}),
        turn(1, "x" * 100_000),
        turn(2, "  leading and trailing  \n\n"),
    ]
    with store_backend.open() as store:
        store.create_session(ALICE, STYLE)
        for t in turns:
            store.commit(ALICE, t, [], expected_turns=t.index, style_key=STYLE)
        loaded, pages = store.load(ALICE)
        assert loaded == turns and pages == []
        assert store.load(ALICE, after_turn=0)[0] == turns[1:]
        assert store.load(ALICE, after_turn=2) == ([], [])
        assert store.load(BOB) == ([], [])


def test_commit_seals_pages_with_their_turn_and_load_returns_pages_holding_later_turns(store_backend):
    with store_backend.open() as store:
        store.create_session(ALICE, STYLE)
        fill(store, ALICE, 3)
        sealed = [(page(0, (0, 1)), png(10)), (page(1, (1, 2, 3)), png(20))]
        store.commit(ALICE, turn(3), sealed, expected_turns=3, style_key=STYLE)
        turns, pages = store.load(ALICE)
        assert [t.index for t in turns] == [0, 1, 2, 3]
        assert pages == [StoredPage(p, p.render_key, None) for p, _ in sealed]
        assert [s.page.index for s in store.load(ALICE, after_turn=1)[1]] == [1]
        assert store.image(sealed[1][0].render_key) == sealed[1][1]


def test_a_failing_commit_changes_nothing(store_backend):
    """Atomicity: the turn is inserted before the page whose image turns out to be missing; both must vanish."""
    with store_backend.open() as store:
        store.create_session(ALICE, STYLE)
        fill(store, ALICE, 2)
        with pytest.raises(StaleSession, match="no longer stored"):
            store.commit(ALICE, turn(2), [(page(0, (0, 1)), b"")], expected_turns=2, style_key=STYLE)
        assert [t.index for t in store.load(ALICE)[0]] == [0, 1]
        assert store.load(ALICE)[1] == []
        store.commit(ALICE, turn(2), [(page(0, (0, 1)), png(5))], expected_turns=2, style_key=STYLE)
        assert len(store.load(ALICE)[1]) == 1


def test_stale_writers_are_refused(store_backend):
    with store_backend.open() as first, store_backend.open() as second:
        first.create_session(ALICE, STYLE)
        fill(first, ALICE, 2)
        first.commit(ALICE, turn(2), [], expected_turns=2, style_key=STYLE)
        with pytest.raises(StaleSession, match="has 3 turns, expected 2"):
            second.commit(ALICE, turn(2, "a competing turn"), [], expected_turns=2, style_key=STYLE)
        first.commit(ALICE, None, [(page(0, (0, 1)), png(1))], expected_turns=3, style_key=STYLE)
        with pytest.raises(StaleSession, match="pages"):
            second.commit(ALICE, None, [(page(0, (0, 1)), png(1))], expected_turns=3, style_key=STYLE)
        assert [t.content for t in second.load(ALICE)[0]] == ["turn 0", "turn 1", "turn 2"]


def test_a_writer_whose_session_was_deleted_is_told_to_reload(store_backend):
    with store_backend.open() as store:
        fill(store, ALICE, 2)
        store.delete_session(ALICE.user, ALICE.session)
        with pytest.raises(StaleSession, match="deleted"):
            store.commit(ALICE, turn(2), [], expected_turns=2, style_key=STYLE)
        assert store.session(ALICE) is None


def test_images_are_content_addressed_shared_and_dropped_with_their_last_page(store_backend):
    shared = page(0, (0,), key="shared-key")
    with store_backend.open() as store:
        for scope in (ALICE, BOB):
            store.create_session(scope, STYLE)
            fill(store, scope, 1)
        store.commit(ALICE, None, [(shared, png(7))], expected_turns=1, style_key=STYLE)
        assert store.has_image("shared-key")
        # A writer that saw the image stored sends no bytes; the stored ones are kept, not replaced.
        store.commit(BOB, None, [(shared, b"")], expected_turns=1, style_key=STYLE)
        assert store.image("shared-key") == png(7)
        store.clear(ALICE)
        assert store.image("shared-key") == png(7)
        store.clear(BOB)
        assert not store.has_image("shared-key")
        with pytest.raises(KeyError):
            store.image("shared-key")


def test_replace_image_points_the_page_at_smaller_pixels(store_backend):
    with store_backend.open() as store:
        for scope in (ALICE, BOB):
            store.create_session(scope, STYLE)
            fill(store, scope, 2)
        store.commit(ALICE, None, [(page(0, (0,), key="a0"), png(1)), (page(1, (1,), key="common"), png(2))], expected_turns=2, style_key=STYLE)
        store.commit(BOB, None, [(page(0, (0,), key="common"), b"")], expected_turns=2, style_key=STYLE)
        store.replace_image(ALICE, 0, "a0@tiny", png(3), "tiny")
        store.replace_image(ALICE, 1, "common@tiny", png(4), "tiny")
        pages = store.load(ALICE)[1]
        assert [(s.image_key, s.image_tier) for s in pages] == [("a0@tiny", "tiny"), ("common@tiny", "tiny")]
        assert not store.has_image("a0")  # nothing else used it
        assert store.image("common") == png(2)  # bob's page still shows it
        assert store.image("a0@tiny") == png(3)
        with pytest.raises(KeyError):
            store.replace_image(ALICE, 5, "k", png(1), "tiny")


def test_clear_removes_the_session_and_only_its_data(store_backend):
    with store_backend.open() as store:
        for scope in (ALICE, BOB):
            store.create_session(scope, STYLE)
            fill(store, scope, 2)
            store.commit(scope, None, [(page(0, (0, 1), key=f"{scope.user}-0"), png(9))], expected_turns=2, style_key=STYLE)
        store.clear(ALICE)
        assert store.load(ALICE) == ([], [])
        assert store.sessions() == [BOB]
        assert not store.has_image("alice-0") and store.has_image("bob-0")
        assert len(store.load(BOB)[0]) == 2


def test_sessions_are_listed_sorted_and_by_user(store_backend):
    scopes = [Scope("zoe", "b"), Scope("ada", "z"), Scope("ada", "a"), Scope("\u05e9", "\U0001f600")]
    with store_backend.open() as store:
        for scope in scopes:
            store.create_session(scope, STYLE)
        assert store.sessions("ada") == [Scope("ada", "a"), Scope("ada", "z")]
        assert set(store.sessions()) == set(scopes) and len(store.sessions()) == 4
        assert store.sessions("nobody") == []


def test_reopening_restores_everything_byte_for_byte(store_backend):
    image = png(42)
    with store_backend.open() as store:
        store.create_session(ALICE, STYLE)
        store.commit(ALICE, turn(0, HOSTILE_TEXT), [], expected_turns=0, style_key=STYLE)
        store.commit(ALICE, turn(1), [(page(0, (0,), text=HOSTILE_TEXT), image)], expected_turns=1, style_key=STYLE)
        before = store.load(ALICE)
    with store_backend.open() as store:
        after = store.load(ALICE)
        assert after == before
        assert page_to_json(after[1][0].page) == page_to_json(before[1][0].page)
        assert store.image(after[1][0].image_key) == image
        assert decode_png(store.image(after[1][0].image_key)).size == (32, 16)
        assert store.create_session(ALICE, "other").style_key == STYLE


def test_a_store_written_by_a_newer_version_is_refused(store_backend):
    store_backend.open().close()
    store_backend.raw(f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=rf"newer optical-memory \(schema version {SCHEMA_VERSION + 1}.*upgrade"):
        store_backend.open()


def _v0_layout(backend) -> list[str]:
    """The prototype layout before versioning: no meta table, pages without turn range or tier."""
    t = backend.types
    return [
        f"CREATE TABLE sessions (user_id TEXT NOT NULL, session_id TEXT NOT NULL, style_key TEXT NOT NULL,"
        f" created_at {t.real} NOT NULL, PRIMARY KEY (user_id, session_id))",
        f"CREATE TABLE turns (user_id TEXT NOT NULL, session_id TEXT NOT NULL, idx {t.integer} NOT NULL,"
        f" role TEXT NOT NULL, content {t.text} NOT NULL, timestamp {t.real} NOT NULL, name {t.text},"
        f" metadata TEXT NOT NULL, PRIMARY KEY (user_id, session_id, idx))",
        f"CREATE TABLE pages (user_id TEXT NOT NULL, session_id TEXT NOT NULL, idx {t.integer} NOT NULL,"
        f" page TEXT NOT NULL, image_key TEXT NOT NULL, PRIMARY KEY (user_id, session_id, idx))",
        f"CREATE TABLE images (key TEXT PRIMARY KEY, data {t.blob} NOT NULL)",
    ]


def _hex(data: bytes, backend) -> str:
    return f"X'{data.hex()}'" if backend.name == "sqlite" else f"'\\x{data.hex()}'::bytea"


def _write_v0_store(backend, page_records: list[str]) -> None:
    for statement in _v0_layout(backend):
        backend.raw(statement)
    backend.raw("INSERT INTO sessions VALUES ('alice', 's1', 'style-a', 1.0)")
    for index in range(3):
        content = _hex(f"turn {index}".encode(), backend) if backend.name == "postgres" else f"'turn {index}'"
        backend.raw(f"INSERT INTO turns VALUES ('alice', 's1', {index}, 'user', {content}, {1000 + index}, NULL, '{{}}')")
    for index, record in enumerate(page_records):
        backend.raw(f"INSERT INTO pages VALUES ('alice', 's1', {index}, '{record}', 'k{index}')")
        backend.raw(f"INSERT INTO images VALUES ('k{index}', {_hex(png(index), backend)})")


def test_an_older_store_is_migrated_on_open(store_backend):
    pages = [page(0, (0, 1), key="k0"), page(1, (1, 2), key="k1")]
    _write_v0_store(store_backend, [page_to_json(p) for p in pages])
    with store_backend.open() as store:
        assert store.schema_version() == SCHEMA_VERSION
        turns, stored = store.load(ALICE)
        assert [t.content for t in turns] == ["turn 0", "turn 1", "turn 2"]
        assert stored == [StoredPage(p, p.render_key, None) for p in pages]
        assert [s.page.index for s in store.load(ALICE, after_turn=1)[1]] == [1]  # uses the migrated turn range
        store.replace_image(ALICE, 0, "k0@tiny", png(99), "tiny")
        store.commit(ALICE, turn(3), [(page(2, (3,)), png(3))], expected_turns=3, style_key=STYLE)
    ranges = store_backend.raw("SELECT idx, first_turn, last_turn FROM pages ORDER BY idx")
    assert [tuple(row) for row in ranges] == [(0, 0, 1), (1, 1, 2), (2, 3, 3)]
    assert store_backend.raw("SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]


def test_a_failed_migration_leaves_the_older_store_untouched(store_backend):
    _write_v0_store(store_backend, [page_to_json(page(0, (0,))), '{"index": 1, "not": "a page"}'])
    with pytest.raises(StoreError, match="cannot migrate page 1"):
        store_backend.open()
    assert store_backend.raw("SELECT COUNT(*) FROM pages") == [(2,)]
    with pytest.raises((sqlite3.OperationalError, psycopg.errors.UndefinedColumn), match="first_turn"):
        store_backend.raw("SELECT first_turn FROM pages")
    with pytest.raises((sqlite3.OperationalError, psycopg.errors.UndefinedTable), match="meta"):
        store_backend.raw("SELECT value FROM meta")


@pytest.mark.parametrize(
    "call, error, field",
    [
        (lambda s: s.create_session("alice/s1", STYLE), TypeError, "scope"),
        (lambda s: s.create_session(ALICE, 3), TypeError, "style_key"),
        (lambda s: s.load(ALICE, after_turn=1.5), TypeError, "after_turn"),
        (lambda s: s.load(ALICE, after_turn=-2), ValueError, "after_turn"),
        (lambda s: s.commit(ALICE, turn(0), [], expected_turns=True, style_key=STYLE), TypeError, "expected_turns"),
        (lambda s: s.commit(ALICE, turn(1), [], expected_turns=0, style_key=STYLE), ValueError, "turn index"),
        (lambda s: s.commit(ALICE, turn(0, metadata={"x": object()}), [], expected_turns=0, style_key=STYLE), TypeError, "metadata"),
        (lambda s: s.commit(ALICE, turn(0, "\ud800"), [], expected_turns=0, style_key=STYLE), ValueError, "content"),
        (lambda s: s.commit(ALICE, turn(0), [page(0, (0,))], expected_turns=0, style_key=STYLE), TypeError, "pages"),
        (lambda s: s.commit(ALICE, turn(0), [(page(0, (0,)), "png")], expected_turns=0, style_key=STYLE), TypeError, "image"),
        (lambda s: s.commit(ALICE, turn(0), [(page(0, (0, 1)), png(1))], expected_turns=0, style_key=STYLE), ValueError, "session has 1"),
        (lambda s: s.commit(ALICE, turn(0), [(page(0, (0,)), png(1)), (page(2, (0,)), png(1))], expected_turns=0, style_key=STYLE),
         ValueError, "consecutive"),
        (lambda s: s.image(None), TypeError, "key"),
        (lambda s: s.replace_image(ALICE, 0, "k", b"", "tiny"), ValueError, "image"),
        (lambda s: s.sessions(7), TypeError, "user"),
    ],
)
def test_bad_arguments_are_refused_with_the_field_named(store_backend, call, error, field):
    with store_backend.open() as store:
        store.create_session(ALICE, STYLE)
        with pytest.raises(error, match=field):
            call(store)
        assert store.load(ALICE) == ([], [])


def test_a_closed_store_says_so(store_backend):
    store = store_backend.open()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.sessions()


def test_open_store_picks_the_backend_from_the_target(tmp_path, store_backend):
    store = store_backend.open()
    assert isinstance(store, SQLiteStore if store_backend.name == "sqlite" else PostgresStore)
    assert open_store(store) is store
    store.close()


@pytest.mark.parametrize(
    "target, path",
    [(":memory:", ":memory:"), ("sqlite://", ":memory:"), ("sqlite:///:memory:", ":memory:"), ("sqlite:///rel.db", "rel.db")],
)
def test_sqlite_targets(target, path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_store(target) as store:
        assert isinstance(store, SQLiteStore) and store.path == path
    absolute = tmp_path / "abs.db"
    with open_store(f"sqlite:///{absolute}") as store:
        assert store.path == str(absolute)
    with open_store(absolute) as store:
        assert store.path == str(absolute)


@pytest.mark.parametrize(
    "target, error, message",
    [
        (42, TypeError, "store must be"),
        (b"x.db", TypeError, "store must be"),
        ("", ValueError, "empty"),
        ("mysql://localhost/db", ValueError, "'mysql' is not supported"),
        ("sqlite:///x.db?cache=shared", ValueError, "unknown option"),
        ("sqlite:///x.db?mode=rw", ValueError, "mode must be ro"),
        ("sqlite:///missing.db?mode=ro", ValueError, "does not exist"),
        ("/no/such/dir/x.db", ValueError, "does not exist"),
    ],
)
def test_bad_store_targets(target, error, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message):
        open_store(target)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, just bytes " * 200)
    with pytest.raises(ValueError, match="not a usable SQLite database"):
        open_store(junk)
    with pytest.raises(ValueError, match="directory"):
        open_store(tmp_path)
