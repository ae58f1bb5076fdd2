"""Sessions in the store, on both backends: companions in a namespace of their own, versions that tell a reader
what changed, deletion that erases everything derived from a session, and the v1 → v2 → v3 migrations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_page
from PIL import Image

from optical_memory.core.imaging import encode_png
from optical_memory.core.types import Role, Turn
from optical_memory.store.base import SCHEMA_VERSION, Erased, Scope, StoredPage, TurnVector, page_to_json
from optical_memory.store.sqlite import SQLiteStore

STYLE = "style-a"
SECRET = "zebrafinch4471"
# A vector whose bytes are easy to find in a file: 0x1C2B3A49 repeated (a normal float32, about 5.7e-22).
SECRET_VECTOR = np.frombuffer(bytes.fromhex("493a2b1c") * 96, dtype="<f4").astype(np.float32)


def turn(index: int, text: str, role: Role = Role.USER) -> Turn:
    return Turn(index, role, text, 1000.0 + index)


def png(shade: int) -> bytes:
    return encode_png(Image.new("L", (32, 16), shade))


def add(store, scope: Scope, *texts: str, role: Role = Role.USER, vector: np.ndarray | None = None) -> None:
    start = store.session(scope).turns if store.session(scope) else 0
    for index, text in enumerate(texts, start):
        embedding = None if vector is None else TurnVector("test-model", vector)
        store.commit(scope, turn(index, text, role), [], expected_turns=index, style_key=STYLE, vector=embedding)


def test_a_companion_is_its_own_namespace_whatever_the_session_id(store_backend):
    system = Scope("tenant", "a", "system")
    lookalikes = [Scope("tenant", "a#system"), Scope("tenant", "a#system", "system"), Scope("tenant", "a%"),
                  Scope("tenant", "A"), Scope("tenant", "a "), Scope("tenant", "a\u200b")]
    with store_backend.open() as store:
        add(store, Scope("tenant", "a"), "the conversation")
        add(store, system, "the system prompt", role=Role.SYSTEM)
        for position, scope in enumerate(lookalikes):
            add(store, scope, f"lookalike {position}")
        assert [t.content for t in store.load(system)[0]] == ["the system prompt"]
        for position, scope in enumerate(lookalikes):
            assert [t.content for t in store.load(scope)[0]] == [f"lookalike {position}"]
            assert store.search(scope, "system prompt") == []
        assert store.scopes("tenant", "a") == [Scope("tenant", "a"), system]
        assert Scope("tenant", "a#system") in store.sessions("tenant") and system not in store.sessions("tenant")
        erased = store.delete_session("tenant", "a#system")
        assert (erased.scopes, erased.turns) == (2, 2)
        assert [t.content for t in store.load(system)[0]] == ["the system prompt"]


def test_every_write_bumps_the_version_and_a_recreated_session_has_a_new_key(store_backend):
    scope = Scope("ada", "s")
    with store_backend.open() as store:
        add(store, scope, "zero", "one")
        first = store.session(scope)
        assert (first.version, first.turns, first.pages) == (2, 2, 0)
        assert store.commit(scope, None, [(make_page(0, turns=(0,)), png(1))], expected_turns=2, style_key=STYLE) == 3
        store.replace_image(scope, 0, "smaller", png(2), "tiny")
        assert store.session(scope).version == 4 and store.session(scope).pages == 1
        assert store.load(scope, after_page=-1)[1][0].image_key == "smaller"
        assert store.load(scope, after_turn=1, after_page=0) == ([], [])
        assert [t.content for t in store.load(scope, after_turn=0, after_page=0)[0]] == ["one"]
        store.clear(scope)
        assert store.session(scope) is None
        add(store, scope, "again")
        again = store.session(scope)
        assert again.key != first.key and again.version == 1
        store.delete_session("ada", "s")
        add(store, scope, "and again")
        assert store.session(scope).key not in (first.key, again.key)


def test_delete_session_erases_turns_index_pages_and_images_but_not_shared_ones(store_backend):
    alice, companion, bob = Scope("alice", "s1"), Scope("alice", "s1", "system"), Scope("bob", "s1")
    with store_backend.open() as store:
        for scope in (alice, bob):
            add(store, scope, f"{scope.user} says {SECRET}" if scope is alice else "bob's own words", "second",
                vector=SECRET_VECTOR if scope is alice else np.ones(96, dtype=np.float32))
            shared, own = make_page(0, turns=(0,), text="same page"), make_page(1, turns=(1,), text=f"{scope.user}")
            store.commit(scope, None, [(shared, png(1)), (own, png(2 + (scope is bob)))], expected_turns=2,
                         style_key=STYLE)
        add(store, companion, "be brief", role=Role.SYSTEM, vector=SECRET_VECTOR)
        assert store.search(alice, SECRET) and (store.vectors(alice).count, store.vectors(companion).count) == (2, 1)
        erased = store.delete_session("alice", "s1")
        assert erased == Erased(scopes=2, turns=3, pages=2, images=1)
        assert store.session(alice) is None and store.session(companion) is None
        assert store.load(alice) == store.load(companion) == ([], [])
        assert store.search(alice, SECRET) == [] and store.sessions() == [bob]
        assert store.vectors(alice).count == store.vectors(companion).count == 0 and store.vectors(bob).count == 2
        bob_pages = store.load(bob)[1]
        assert all(store.has_image(stored.image_key) for stored in bob_pages)  # the shared image survived
        assert store.delete_session("alice", "s1") == Erased(0, 0, 0, 0)
    if store_backend.name == "sqlite":
        counts = store_backend.raw("SELECT (SELECT COUNT(*) FROM turns), (SELECT COUNT(*) FROM turn_words),"
                                   " (SELECT COUNT(*) FROM pages), (SELECT COUNT(*) FROM images)")
        assert counts == [(2, 2, 2, 2)]
    else:
        assert store_backend.raw("SELECT COUNT(*) FROM turns") == [(2,)]
    assert store_backend.raw("SELECT COUNT(*) FROM turn_vectors") == [(2,)]


def test_sqlite_delete_leaves_no_copy_of_the_session_in_the_file_or_its_wal(tmp_path):
    from optical_memory.store.sqlite import SQLiteStore

    path = tmp_path / "erase.db"
    alice = Scope("alice", "s1")
    with SQLiteStore(path) as store:
        add(store, alice, *[f"turn {i}: the code is {SECRET}, keep it" for i in range(30)], vector=SECRET_VECTOR)
        store.commit(alice, None, [(make_page(0, turns=(0,), text=f"page text {SECRET}"), png(3))], expected_turns=30,
                     style_key=STYLE)
        add(store, Scope("bob", "s1"), *[f"bob turn {i}" for i in range(30)])
        assert SECRET.encode() in _file_bytes(path) and SECRET_VECTOR.tobytes() in _file_bytes(path)
        store.delete_session("alice", "s1")
        assert SECRET.encode() not in _file_bytes(path)
        assert bytes.fromhex("493a2b1c") * 4 not in _file_bytes(path)
        assert store.integrity_check() == ["ok"]
        assert len(store.load(Scope("bob", "s1"))[0]) == 30 and store.search(Scope("bob", "s1"), "bob turn 29")


def _file_bytes(path: Path) -> bytes:
    return b"".join(Path(f"{path}{suffix}").read_bytes() for suffix in ("", "-wal") if Path(f"{path}{suffix}").exists())


def _write_v1_store(backend) -> None:
    t = backend.types
    for statement in [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"CREATE TABLE sessions (user_id TEXT NOT NULL, session_id TEXT NOT NULL, style_key TEXT NOT NULL,"
        f" created_at {t.real} NOT NULL, PRIMARY KEY (user_id, session_id))",
        f"CREATE TABLE turns (user_id TEXT NOT NULL, session_id TEXT NOT NULL, idx {t.integer} NOT NULL,"
        f" role TEXT NOT NULL, content {t.text} NOT NULL, timestamp {t.real} NOT NULL, name {t.text},"
        f" metadata TEXT NOT NULL, PRIMARY KEY (user_id, session_id, idx))",
        f"CREATE TABLE pages (user_id TEXT NOT NULL, session_id TEXT NOT NULL, idx {t.integer} NOT NULL,"
        f" first_turn {t.integer} NOT NULL, last_turn {t.integer} NOT NULL, page TEXT NOT NULL,"
        f" image_key TEXT NOT NULL, image_tier TEXT, PRIMARY KEY (user_id, session_id, idx))",
        "CREATE INDEX pages_by_image ON pages (image_key)",
        f"CREATE TABLE images (key TEXT PRIMARY KEY, data {t.blob} NOT NULL)",
        "INSERT INTO meta VALUES ('schema_version', '1')",
    ]:
        backend.raw(statement)

    def text(value: str) -> str:
        return f"'\\x{value.encode().hex()}'::bytea" if backend.name == "postgres" else f"'{value}'"

    rows = [("s1", 0, "user", "Book the Lyon train"), ("s1", 1, "assistant", "Booked the 9:40"),
            ("s1#system", 0, "system", "Answer in French"), ("x#system", 0, "user", "a real session named x#system")]
    for session in ("s1", "s1#system", "x#system"):
        backend.raw(f"INSERT INTO sessions VALUES ('alice', '{session}', '{STYLE}', 1.0)")
    for session, index, role, content in rows:
        backend.raw(f"INSERT INTO turns VALUES ('alice', '{session}', {index}, '{role}', {text(content)}, {1000 + index},"
                    " NULL, '{}')")
    page = make_page(0, turns=(0,), text="Book the Lyon train")
    backend.raw(f"INSERT INTO pages VALUES ('alice', 's1', 0, 0, 0, '{page_to_json(page)}', 'k0', 'tiny')")
    backend.raw(f"INSERT INTO images VALUES ('k0', {text('png bytes')})")


def test_a_v1_store_is_migrated_with_its_companions_and_search_index(store_backend):
    _write_v1_store(store_backend)
    with store_backend.open() as store:
        assert store.schema_version() == SCHEMA_VERSION == 3
        assert store.sessions() == [Scope("alice", "s1"), Scope("alice", "x#system")]
        assert store.scopes("alice", "s1") == [Scope("alice", "s1"), Scope("alice", "s1", "system")]
        assert [t.content for t in store.load(Scope("alice", "s1", "system"))[0]] == ["Answer in French"]
        turns, pages = store.load(Scope("alice", "s1"))
        assert [t.content for t in turns] == ["Book the Lyon train", "Booked the 9:40"]
        assert pages == [StoredPage(make_page(0, turns=(0,), text="Book the Lyon train"), "k0", "tiny")]
        assert [m.turn.index for m in store.search(Scope("alice", "s1"), "lyon train")] == [0]
        assert [m.turn.content for m in store.search(Scope("alice", "x#system"), "real session")] == [
            "a real session named x#system"]
        store.commit(Scope("alice", "s1"), turn(2, "and a hotel"), [], expected_turns=2, style_key=STYLE)
        assert store.search(Scope("alice", "s1"), "hotel")[0].turn.index == 2
        assert store.missing_vectors(Scope("alice", "s1")) == [0, 1, 2]  # migrated turns are embedded by backfill
    assert store_backend.raw("SELECT value FROM meta WHERE key = 'schema_version'") == [("3",)]


@pytest.mark.parametrize(
    "call, error, field",
    [
        (lambda s: s.delete_session(None, "s"), TypeError, "user"),
        (lambda s: s.delete_session("alice", ""), ValueError, "session"),
        (lambda s: s.scopes("alice", 3), TypeError, "session"),
        (lambda s: s.session(("alice", "s")), TypeError, "scope"),
        (lambda s: s.load(Scope("alice", "s"), after_page=1.0), TypeError, "after_page"),
        (lambda s: s.create_session(Scope("alice", "s"), ""), ValueError, "style_key"),
        (lambda s: Scope("alice", "s", 7), TypeError, "companion"),
        (lambda s: Scope("alice", "s", "a\nb"), ValueError, "companion"),
    ],
)
def test_bad_session_arguments_name_the_field_and_change_nothing(store_backend, call, error, field):
    with store_backend.open() as store:
        add(store, Scope("alice", "s"), "kept")
        with pytest.raises(error, match=field):
            call(store)
        assert [t.content for t in store.load(Scope("alice", "s"))[0]] == ["kept"]


def test_sqlite_change_mark_moves_with_every_commit_by_any_connection_and_only_then(tmp_path):
    scope = Scope("u", "s")
    one, other = SQLiteStore(tmp_path / "marks.db"), SQLiteStore(tmp_path / "marks.db")
    mark = one.change_mark()
    assert one.change_mark() == mark and one.session(scope) is None and one.change_mark() == mark  # reads move nothing
    add(one, scope, "its own commit")
    assert one.change_mark() != mark
    mark = one.change_mark()
    add(other, scope, "another connection's commit")
    assert one.change_mark() != mark
    one.close()
    other.close()
