"""The full-text index over verbatim turns, run unchanged against SQLite (FTS5, bm25) and PostgreSQL (tsvector, GIN,
ts_rank_cd): same words, same hits, user text never parsed as query syntax."""

from __future__ import annotations

import random
import string

import pytest
from conftest import make_page
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optical_memory.core.types import Role, Turn
from optical_memory.store.base import Scope, StaleSession
from optical_memory.store.search import _words_among, index_terms, query_terms, words

STYLE = "style-a"
ALICE = Scope("alice", "s1")

CORPUS = [
    "Book the 9:40 train to Lyon for Ada Park, seat 42A.",
    "The weather in Lyon is grey; the train leaves from platform 3.",
    "Café crème at the Gare de Lyon, naïve question about the fare.",
    "東京タワーに行きました。",
    "She said NEAR the station AND (maybe) \"quoted\" text: -minus * star; it's Robert'); DROP TABLE turns;--",
    "unrelated chatter about copper lanterns and violet meadows",
    "lyon lyon lyon lyon",
]


def fill(store, scope: Scope, texts) -> None:
    for index, text in enumerate(texts):
        role = Role.USER if index % 2 == 0 else Role.ASSISTANT
        store.commit(scope, Turn(index, role, text, 1000.0 + index), [], expected_turns=index, style_key=STYLE)


def found(store, query: str, scope: Scope = ALICE, **options) -> list[int]:
    return [match.turn.index for match in store.search(scope, query, **options)]


@pytest.fixture
def corpus_store(store_backend):
    store = store_backend.open()
    fill(store, ALICE, CORPUS)
    yield store
    store.close()


def test_every_word_must_match_and_the_best_match_comes_first(corpus_store):
    assert found(corpus_store, "lyon")[0] == 6  # four times in a four-word turn
    assert set(found(corpus_store, "lyon")) == {0, 1, 2, 6}
    assert found(corpus_store, "Lyon train") == [1, 0] or found(corpus_store, "Lyon train") == [0, 1]
    assert found(corpus_store, "lyon platform") == [1]
    assert found(corpus_store, "lyon nowhere") == []
    assert set(found(corpus_store, "platform copper", match="any")) == {1, 5}
    assert found(corpus_store, "lyon", k=2) == found(corpus_store, "lyon")[:2]
    (match,) = corpus_store.search(ALICE, "seat 42a")
    assert match.turn.content == CORPUS[0] and match.turn.role is Role.USER and match.score > 0


def test_case_accents_and_compatibility_forms_fold_alike(corpus_store):
    assert found(corpus_store, "CAFE CREME naive") == [2]
    assert found(corpus_store, "café") == found(corpus_store, "cafe\u0301") == [2]
    assert found(corpus_store, "ＬＹＯＮ ｐｌａｔｆｏｒｍ") == [1]  # full-width letters are the same word
    assert found(corpus_store, "東京") == [3]  # CJK: one word per character


@pytest.mark.parametrize(
    "query, expected",
    [
        ('"quoted"', [4]),
        ("NEAR", [4]),
        ("AND", [4, 5]),  # a word like any other: "copper lanterns and violet meadows"
        ("station AND maybe", [4]),
        ("-minus", [4]),
        ("star*", [4]),
        ("*", []),
        ("text:", [4]),
        ("words: (maybe", []),
        ("(maybe)", [4]),
        ("NEAR(station maybe)", [4]),
        ("Robert'); DROP TABLE turns;--", [4]),
        ("' OR 1=1 --", []),
        ("\"", []),
        ("", []),
        ("   \t\n", []),
        ("\x00", []),
        ("\ud800 lone surrogate", []),
    ],
)
def test_query_syntax_in_user_text_is_only_words(corpus_store, query, expected):
    assert sorted(found(corpus_store, query)) == expected
    assert len(found(corpus_store, "lyon")) == 4  # nothing was dropped or altered


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(alphabet=st.characters(codec=None), max_size=40)
       | st.lists(st.sampled_from(['"', "*", "NEAR", "AND", "OR", "NOT", "-", ":", "(", ")", "'", "^", "lyon", "\\", "%s", "?", " "]), max_size=12).map("".join))
def test_any_unicode_query_runs_and_finds_only_turns_holding_its_words(corpus_store, query):
    hits = corpus_store.search(ALICE, query, match="any")
    terms = set(query_terms(query))
    for match in hits:
        assert terms & {word.text for word in words(match.turn.content)}
    all_hits = corpus_store.search(ALICE, query)
    assert {m.turn.index for m in all_hits} <= {m.turn.index for m in hits}
    for match in all_hits:
        assert terms <= {word.text for word in words(match.turn.content)}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.text(alphabet=st.characters(codec="ascii"), max_size=300) | st.text(max_size=120),
       extra=st.lists(st.text(max_size=6), max_size=3))
def test_the_words_an_excerpt_looks_for_are_those_words_finds(text, extra):
    """``excerpt``'s ASCII shortcut finds exactly the words (spans included) that ``words`` does, long runs capped."""
    found = words(text)
    wanted = {word.text for word in found[::2]} | set(extra)
    assert _words_among(text, wanted) == [word for word in found if word.text in wanted]
    long_run = "Ab9" * 100 + " x"
    assert _words_among(long_run, {words(long_run)[0].text}) == words(long_run)[:1]


def test_both_backends_search_the_same_words():
    """The index is built from the word stream computed in Python, which neither backend re-splits."""
    text = "Zoë's e-mail: zoe@example.com, v1.2.3, snake_case ½ ﬁne ΣΊΣΥΦΟΣ हिन्दी 42€"
    assert index_terms(text) == [w.text for w in words(text)]
    assert index_terms(text) == [
        "zoe", "s", "e", "mail", "zoe", "example", "com", "v1", "2", "3", "snake", "case", "1", "2", "fine",
        "σισυφοσ", "हिन्दी", "42",
    ]


def test_scoped_to_user_session_and_companion(store_backend):
    scopes = [ALICE, Scope("bob", "s1"), Scope("alice", "s2"), Scope("alice", "s1", "system"), Scope("alice", "s1#system")]
    with store_backend.open() as store:
        for position, scope in enumerate(scopes):
            fill(store, scope, [f"secret marker {position}"])
        for position, scope in enumerate(scopes):
            (match,) = store.search(scope, "secret marker")
            assert match.turn.content == f"secret marker {position}"
        assert store.search(Scope("carol", "s1"), "secret") == []


def test_nothing_is_searchable_that_is_not_stored(store_backend):
    with store_backend.open() as store:
        fill(store, ALICE, ["first turn"])
        with pytest.raises(StaleSession):  # the turn is inserted, then the missing image fails the transaction
            store.commit(ALICE, Turn(1, Role.USER, "phantom words", 2.0), [(make_page(0, turns=(0, 1)), b"")],
                         expected_turns=1, style_key=STYLE)
        assert store.search(ALICE, "phantom") == []
        store.commit(ALICE, Turn(1, Role.USER, "phantom words", 2.0), [], expected_turns=1, style_key=STYLE)
        assert found(store, "phantom") == [1]


def test_a_large_turn_is_searchable_by_its_last_word_and_a_pasted_blob_is_stored(store_backend):
    text = " ".join(f"w{i}" for i in range(60_000)) + " needle"
    rng = random.Random(0)
    blob = "head " + " ".join("".join(rng.choices(string.ascii_letters, k=10)) for _ in range(120_000))  # 1.3 MB
    with store_backend.open() as store:
        fill(store, ALICE, [text, blob])
        assert found(store, "needle") == [0]
        assert found(store, "w59999 w0") == [0]
        assert found(store, "head") == [1]  # words past the index's cap are the only ones not searchable
        assert store.load(ALICE)[0][1].content == blob


@pytest.mark.parametrize(
    "call, error, field",
    [
        (lambda s: s.search(ALICE, None), TypeError, "query"),
        (lambda s: s.search(ALICE, b"lyon"), TypeError, "query"),
        (lambda s: s.search(ALICE, "lyon", k=0), ValueError, "k"),
        (lambda s: s.search(ALICE, "lyon", k=2.5), TypeError, "k"),
        (lambda s: s.search(ALICE, "lyon", k=10**6), ValueError, "k"),
        (lambda s: s.search(ALICE, "lyon", match="xor"), ValueError, "match"),
        (lambda s: s.search("alice/s1", "lyon"), TypeError, "scope"),
    ],
)
def test_bad_search_arguments_name_the_field(corpus_store, call, error, field):
    with pytest.raises(error, match=field):
        call(corpus_store)
    assert corpus_store.session(ALICE).turns == len(CORPUS)
