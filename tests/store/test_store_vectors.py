"""Turns' vectors in the store, run unchanged against SQLite (BLOB) and PostgreSQL (BYTEA): written in the turn's
transaction, one model per session, read incrementally in write order, scoped like the word index, migrated."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_page

from optical_memory.core.types import Role, Turn
from optical_memory.store.base import SCHEMA_VERSION, Scope, StaleSession, TurnVector

STYLE = "style-a"
ALICE = Scope("alice", "s1")
MODEL = "test-model"


def vector(seed: int, dimension: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)


def add(store, scope: Scope, text: str, embedding: np.ndarray | None = None, model: str = MODEL) -> int:
    """Commit one turn (with its vector when given); returns its index."""
    info = store.session(scope)
    index = info.turns if info else 0
    store.commit(scope, Turn(index, Role.USER, text, 1000.0 + index), [], expected_turns=index, style_key=STYLE,
                 vector=None if embedding is None else TurnVector(model, embedding))
    return index


def test_a_vector_is_stored_with_its_turn_and_read_back_exactly(store_backend):
    with store_backend.open() as store:
        assert store.vector_model(ALICE) is None and store.vectors(ALICE).count == 0
        for seed in range(3):
            add(store, ALICE, f"turn {seed}", vector(seed))
        stored = store.vectors(ALICE)
        assert stored.model == MODEL and stored.count == 3 and stored.turns.tolist() == [0, 1, 2]
        assert stored.matrix.dtype == np.float32
        np.testing.assert_array_equal(stored.matrix, np.stack([vector(seed) for seed in range(3)]))
        assert store.vector_model(ALICE) == (MODEL, 8)
        assert store.missing_vectors(ALICE) == []


def test_reading_after_a_seq_returns_only_what_was_written_since(store_backend):
    with store_backend.open() as store:
        add(store, ALICE, "first", vector(0))
        add(store, ALICE, "no vector yet")
        first = store.vectors(ALICE)
        add(store, ALICE, "third", vector(2))
        store.add_vectors(ALICE, MODEL, [(1, vector(1))])  # backfilled after turn 2: written later, read later
        later = store.vectors(ALICE, after_seq=first.last_seq)
        assert later.turns.tolist() == [2, 1] and later.count == 3 and later.last_seq > first.last_seq
        np.testing.assert_array_equal(later.matrix, np.stack([vector(2), vector(1)]))
        nothing = store.vectors(ALICE, after_seq=later.last_seq)
        assert len(nothing.turns) == 0 and nothing.last_seq == later.last_seq and nothing.matrix.shape == (0, 0)


def test_a_failed_commit_leaves_no_vector(store_backend):
    with store_backend.open() as store:
        add(store, ALICE, "first turn", vector(0))
        with pytest.raises(StaleSession):  # the turn and its vector go in, then the missing image fails it all
            store.commit(ALICE, Turn(1, Role.USER, "phantom", 2.0), [(make_page(0, turns=(0, 1)), b"")],
                         expected_turns=1, style_key=STYLE, vector=TurnVector(MODEL, vector(1)))
        assert store.vectors(ALICE).turns.tolist() == [0]


def test_one_model_and_dimension_per_session(store_backend):
    with store_backend.open() as store:
        add(store, ALICE, "first", vector(0))
        with pytest.raises(ValueError, match=r"vector model 'other' \(8 dimensions\).*'test-model' \(8 dimensions\)"):
            add(store, ALICE, "second", vector(1), model="other")
        with pytest.raises(ValueError, match=r"\(4 dimensions\).*\(8 dimensions\)"):
            add(store, ALICE, "second", vector(1, dimension=4))
        with pytest.raises(ValueError, match="vector model 'other'"):
            store.add_vectors(ALICE, "other", [(0, vector(0))])
        assert store.session(ALICE).turns == 1  # the refused turns were not stored either
        add(store, Scope("bob", "s1"), "bob's session has its own model", vector(0, dimension=4), model="other")
        assert store.vector_model(Scope("bob", "s1")) == ("other", 4)
        assert store.drop_vectors(ALICE) == 1 and store.vector_model(ALICE) is None
        add(store, ALICE, "after the drop, another model", vector(1), model="other")
        assert store.vector_model(ALICE) == ("other", 8) and store.missing_vectors(ALICE) == [0]


def test_add_vectors_fills_missing_turns_and_keeps_existing_ones(store_backend):
    with store_backend.open() as store:
        for index in range(4):
            add(store, ALICE, f"turn {index}", vector(index) if index == 2 else None)
        assert store.missing_vectors(ALICE) == [0, 1, 3]
        version = store.session(ALICE).version
        assert store.add_vectors(ALICE, MODEL, [(0, vector(10)), (2, vector(12)), (3, vector(13))]) == 2
        assert store.session(ALICE).version == version + 1
        assert store.missing_vectors(ALICE) == [1]
        stored = store.vectors(ALICE)
        by_turn = dict(zip(stored.turns.tolist(), stored.matrix))
        np.testing.assert_array_equal(by_turn[2], vector(2))  # the vector it had stays
        np.testing.assert_array_equal(by_turn[3], vector(13))
        assert store.add_vectors(ALICE, MODEL, []) == 0
        with pytest.raises(ValueError, match="has no turn 4"):
            store.add_vectors(ALICE, MODEL, [(1, vector(1)), (4, vector(4))])
        assert store.missing_vectors(ALICE) == [1]  # all or nothing
        with pytest.raises(ValueError, match="is not stored"):
            store.add_vectors(Scope("carol", "s1"), MODEL, [(0, vector(0))])


def test_vectors_are_scoped_to_user_session_and_companion(store_backend):
    scopes = [ALICE, Scope("bob", "s1"), Scope("alice", "s2"), Scope("alice", "s1", "system")]
    with store_backend.open() as store:
        for position, scope in enumerate(scopes):
            add(store, scope, f"turn of {scope!r}", vector(position))
        for position, scope in enumerate(scopes):
            stored = store.vectors(scope)
            assert stored.count == 1
            np.testing.assert_array_equal(stored.matrix[0], vector(position))
        assert store.drop_vectors(ALICE) == 1
        assert [store.vectors(scope).count for scope in scopes] == [0, 1, 1, 1]
        assert store.vectors(Scope("carol", "s1")).count == 0 and store.missing_vectors(Scope("carol", "s1")) == []


def test_clear_erases_the_streams_vectors_only(store_backend):
    companion = Scope("alice", "s1", "system")
    with store_backend.open() as store:
        add(store, ALICE, "conversation", vector(0))
        add(store, companion, "instructions", vector(1))
        store.clear(ALICE)
        assert store.vectors(ALICE).count == 0 and store.vectors(companion).count == 1
        add(store, ALICE, "a new session under the old name", vector(2))
        assert store.vectors(ALICE).turns.tolist() == [0]


@pytest.mark.parametrize(
    "call, error, field",
    [
        (lambda s: add(s, ALICE, "t", [1.0, 2.0]), TypeError, "vector must be a numpy array"),
        (lambda s: add(s, ALICE, "t", np.zeros((2, 4), np.float32)), ValueError, "one-dimensional"),
        (lambda s: add(s, ALICE, "t", np.zeros(0, np.float32)), ValueError, "non-empty"),
        (lambda s: add(s, ALICE, "t", np.arange(4)), ValueError, "float array"),
        (lambda s: add(s, ALICE, "t", np.array([1.0, np.nan], np.float32)), ValueError, "NaN"),
        (lambda s: add(s, ALICE, "t", vector(0), model=""), ValueError, "vector model must not be empty"),
        (lambda s: s.commit(ALICE, Turn(0, Role.USER, "t", 1.0), [], expected_turns=0, style_key=STYLE,
                            vector=vector(0)), TypeError, "vector must be a TurnVector"),
        (lambda s: s.commit(ALICE, None, [], expected_turns=0, style_key=STYLE, vector=TurnVector(MODEL, vector(0))),
         ValueError, "needs a turn"),
        (lambda s: s.add_vectors(ALICE, MODEL, [(0, vector(0), 1)]), TypeError, r"vectors\[0\] must be a"),
        (lambda s: s.add_vectors(ALICE, MODEL, [(-1, vector(0))]), ValueError, r"vectors\[0\] turn index"),
        (lambda s: s.add_vectors(ALICE, MODEL, [(0, vector(0)), (0, vector(0, 4))]), ValueError, "same dimension"),
        (lambda s: s.vectors(ALICE, after_seq=-1), ValueError, "after_seq"),
    ],
)
def test_bad_vector_arguments_name_the_field_and_change_nothing(store_backend, call, error, field):
    with store_backend.open() as store:
        with pytest.raises(error, match=field):
            call(store)
        assert store.session(ALICE) is None


def test_a_v2_store_gains_the_vector_table(store_backend):
    with store_backend.open() as store:
        add(store, ALICE, "stored before vectors existed")
    # What v2 was: the same layout without turn_vectors.
    store_backend.raw("DROP TABLE turn_vectors")
    store_backend.raw("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with store_backend.open() as store:
        assert store.schema_version() == SCHEMA_VERSION == 3
        assert [t.content for t in store.load(ALICE)[0]] == ["stored before vectors existed"]
        assert store.missing_vectors(ALICE) == [0]
        assert store.add_vectors(ALICE, MODEL, [(0, vector(0))]) == 1
        add(store, ALICE, "and one with its vector", vector(1))
        assert store.vectors(ALICE).turns.tolist() == [0, 1]
