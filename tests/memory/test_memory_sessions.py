"""The memory over a shared store: what other processes commit is seen, sessions are created by their first turn and
deleted or exported as their user's data, and ``search`` finds turns by their words."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.reliability import TINY_PAGE
from optical_memory import OpticalMemory
from optical_memory.cli.transcripts import load_transcript
from optical_memory.memory import delete_session, export_session, list_sessions
from optical_memory.store.base import Erased, Scope
from optical_memory.store.sqlite import SQLiteStore

WORDS = "harbour lantern copper meadow violet summit pepper orbit canvas willow ember quartz".split()


def small(store, **options) -> OpticalMemory:
    return OpticalMemory(store, hot_turns=2, style=TINY_PAGE, consumer="gemini", **options)


def chatter(memory: OpticalMemory, n: int, *, seed: int = 0) -> None:
    rng = random.Random(seed)
    for i in range(n):
        memory.add("user" if i % 2 == 0 else "assistant", f"turn {i}: " + " ".join(rng.choice(WORDS) for _ in range(40)))


# -- several processes, one store -----------------------------------------------------------------------------------


def test_a_memory_sees_what_another_memory_committed(store_backend):
    """Two memories, each with its own connection, on one SQLite file or one PostgreSQL schema."""
    with small(store_backend.open()) as reader, small(store_backend.open()) as writer:
        assert reader.turns == [] and reader.context().recent == []
        chatter(writer, 30)
        assert reader.turns == writer.turns and reader.pages == writer.pages and reader.pages
        assert reader.context().report == writer.context().report
        reader.add("user", "the reader's own turn")  # appends after the writer's turns, no conflict
        assert writer.turns[-1].content == "the reader's own turn" and len(writer.turns) == 31
        writer.flush()  # seals pages without adding a turn: the reader sees those too
        assert reader.pages == writer.pages
        writer.clear()
        assert reader.turns == [] and reader.pages == []


def test_memories_sharing_one_store_object_see_each_others_commits(tmp_path):
    """One connection, two memories: SQLite's data_version leaves that connection's own commits out, so the store's
    change mark must count them, or one memory would skip the other's turns."""
    for store in (SQLiteStore(tmp_path / "shared.db"), SQLiteStore(":memory:")):
        first, second = small(store), small(store)
        chatter(first, 12)
        assert second.turns == first.turns and second.pages == first.pages
        second.add("user", "the second memory's turn")
        assert first.turns[-1].content == "the second memory's turn"
        assert first.context().recent[-1].content == "the second memory's turn"
        second.clear()
        assert first.turns == [] and first.context().recent == []
        store.close()


_OTHER_PROCESS = """
import sys
from benchmarks.reliability import TINY_PAGE
from optical_memory import OpticalMemory
with OpticalMemory.open(sys.argv[1], hot_turns=2, style=TINY_PAGE, consumer="gemini") as memory:
    for i in range(int(sys.argv[2])):
        memory.add("assistant", f"from the other process {i}: " + "quartz ember " * 30)
"""


def test_a_memory_sees_what_another_process_committed(tmp_path):
    db = tmp_path / "processes.db"
    with small(SQLiteStore(db)) as memory:
        memory.add("user", "before the other process")
        assert len(memory.context().recent) == 1
        subprocess.run([sys.executable, "-c", _OTHER_PROCESS, str(db), "12"], check=True, timeout=120)
        assert len(memory.turns) == 13 and memory.turns[-1].content.startswith("from the other process 11")
        context = memory.context()
        assert context.recent[-1].content == memory.turns[-1].content and memory.pages
        assert memory.search("other process 11")[0].turn_index == 12


# -- sessions as data -----------------------------------------------------------------------------------------------


def test_opening_a_session_writes_nothing(tmp_path):
    db = tmp_path / "m.db"
    with OpticalMemory.open(db, session="just looking") as memory:
        memory.context()
        assert memory.turns == [] and memory.search("anything") == []
    with SQLiteStore(db) as store:
        assert store.sessions() == [] and list_sessions(store) == []


def test_list_delete_and_export_sessions(tmp_path):
    db = tmp_path / "owned.db"
    with SQLiteStore(db) as store:
        ada, bob = small(store, user="ada", session="trip"), small(store, user="bob", session="trip")
        chatter(ada, 20, seed=1)
        chatter(bob, 20, seed=1)  # the same text: their pages share images
        system = small(store, user="ada", session="trip", companion="system")
        system.add("system", "Answer in French.")
        ada.add("user", "Zoë's ticket: \u05e9\u05dc\u05d5\u05dd \U0001f469\u200d\U0001f4bb", name="zoë", metadata={"k": [1, None]})
        listed = [(i.scope, i.turns) for i in list_sessions(db)]
        assert listed == [(Scope("ada", "trip"), 21), (Scope("ada", "trip", "system"), 1), (Scope("bob", "trip"), 20)]
        assert [i.scope for i in list_sessions(store, user="bob")] == [Scope("bob", "trip")]

        out = io.StringIO()
        assert export_session(store, "trip", out, user="ada") == 22
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [line["content"] for line in lines[:21]] == [t.content for t in ada.turns]
        assert lines[20]["name"] == "zoë" and lines[20]["metadata"] == {"k": [1, None]} and lines[20]["turn"] == 20
        assert lines[21] == {"role": "system", "content": "Answer in French.", "timestamp": lines[21]["timestamp"],
                             "turn": 0, "companion": "system"}
        exported = tmp_path / "trip.jsonl"
        exported.write_text(out.getvalue(), encoding="utf-8")
        assert [t.content for t in load_transcript(exported)] == [line["content"] for line in lines]

        bob_images = [stored.image_key for stored in bob._pages]
        erased = delete_session(store, "trip", user="ada")
        assert isinstance(erased, Erased) and (erased.scopes, erased.turns) == (2, 22) and erased.pages > 0
        assert [i.scope for i in list_sessions(store)] == [Scope("bob", "trip")]
        assert ada.turns == [] and ada.pages == [] and ada.search("harbour") == [] and system.turns == []
        assert all(store.has_image(key) for key in bob_images) and bob.page_image(0)
        with pytest.raises(ValueError, match="not stored"):
            export_session(store, "trip", io.StringIO(), user="ada")
        ada.add("user", "a new beginning")  # the deleted session starts over as a new one
        assert [t.content for t in ada.turns] == ["a new beginning"]


def test_no_session_id_reaches_another_sessions_data(tmp_path):
    ids = ["tenant-a", "tenant-a#system", "tenant-a#system#system", "tenant-a%", "tenant_a", "TENANT-A", "tenant-a "]
    with SQLiteStore(tmp_path / "tenants.db") as store:
        for position, session in enumerate(ids):
            small(store, session=session).add("user", f"data of {position} marker")
            small(store, session=session, companion="system").add("system", f"prompt of {position} marker")
        for position, session in enumerate(ids):
            memory = small(store, session=session)
            assert [t.content for t in memory.turns] == [f"data of {position} marker"]
            assert [hit.snippet for hit in memory.search("marker")] == [f"data of {position} marker"]
            assert [t.content for t in small(store, session=session, companion="system").turns] == [
                f"prompt of {position} marker"]
        delete_session(store, "tenant-a#system")
        assert [t.content for t in small(store, session="tenant-a", companion="system").turns] == ["prompt of 0 marker"]
        assert sorted(scope.session for scope in store.sessions()) == sorted(set(ids) - {"tenant-a#system"})


# -- search ---------------------------------------------------------------------------------------------------------


def test_search_hits_carry_turn_page_score_and_a_verbatim_snippet(tmp_path):
    with small(SQLiteStore(tmp_path / "s.db")) as memory:
        chatter(memory, 40)
        memory.add("user", "filler words " * 40 + "Book the 9:40 train to Lyon for Ada Park, seat 42A. " + "filler " * 40)
        (hit,) = memory.search("Lyon seat", k=5)
        turn = memory.turns[hit.turn_index]
        assert hit.turn_index == 40 and hit.snippet == turn.content[hit.start:hit.end] and "Lyon" in hit.snippet
        assert hit.page == "recent" and hit.role.value == "user" and hit.score > 0 and len(hit.snippet) < 300
        chatter(memory, 4, seed=5)  # the turn leaves the hot window and is sealed
        (hit,) = memory.search("Lyon seat", k=5)
        assert hit.page.startswith("page ") and "Lyon" in memory.recall(hit.page)
        paged = [h for h in memory.search("turn 3 harbour") if h.turn_index < 40]  # the first chatter, sealed
        assert paged and all(h.page.startswith("page ") for h in paged)
        first = paged[0]
        assert memory.turns[first.turn_index].content[first.start:first.end] in memory.recall(first.page)
        assert len(memory.search("harbour", k=3)) == 3
        assert [h.score for h in memory.search("harbour", k=50)] == sorted(
            (h.score for h in memory.search("harbour", k=50)), reverse=True)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(alphabet=st.characters(codec=None), max_size=30)
       | st.sampled_from(['"', "*", "NEAR(a b)", "a AND b", "-x", "col:x", "(", ")", "'; DROP TABLE turns; --", "\\"]))
def test_search_takes_any_unicode_query(searchable, query):
    for hit in searchable.search(query, match="any"):
        assert searchable.turns[hit.turn_index].content[hit.start:hit.end] == hit.snippet


@pytest.fixture(scope="module")
def searchable(tmp_path_factory):
    with small(SQLiteStore(tmp_path_factory.mktemp("search") / "q.db")) as memory:
        chatter(memory, 12)
        memory.add("user", "quotes \" and * and NEAR and (parens) and col:x and ' and \\ and émoji \U0001f600")
        yield memory


@pytest.mark.parametrize(
    "call, error, field",
    [
        (lambda m: m.search(None), TypeError, "query"),
        (lambda m: m.search("x", k=0), ValueError, "k"),
        (lambda m: m.search("x", k="3"), TypeError, "k"),
        (lambda m: m.search("x", match="phrase"), ValueError, "match"),
        (lambda m: export_session(m.store, 7, io.StringIO()), TypeError, "session"),
        (lambda m: delete_session(m.store, "s", user=None), TypeError, "user"),
        (lambda m: list_sessions(m.store, user=3), TypeError, "user"),
        (lambda m: OpticalMemory(m.store, companion=3), TypeError, "companion"),
    ],
)
def test_bad_arguments_name_the_field(searchable, call, error, field):
    turns = searchable.turns
    with pytest.raises(error, match=field):
        call(searchable)
    assert searchable.turns == turns
