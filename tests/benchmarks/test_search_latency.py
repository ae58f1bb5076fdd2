"""The search latency benchmark's hybrid part runs end to end on small sessions of real chat messages (no timing is
asserted: what is checked is what it embedded, searched and reports)."""

from __future__ import annotations

from embedders import TrigramEmbedder

from benchmarks.search_latency import _table, measure_add_cost, measure_hybrid, measure_search


def test_hybrid_search_embeds_or_repeats_vectors_and_reports_them(tmp_path):
    embedder = TrigramEmbedder()
    measure_search(200, queries=6, folder=tmp_path)
    measure_search(500, queries=6, folder=tmp_path)
    embedded = measure_hybrid(200, embedder, queries=6, folder=tmp_path)
    repeated = measure_hybrid(500, embedder, queries=6, folder=tmp_path, repeat_from=200)
    assert (embedded["embedded"], embedded["vectors"]) == (200, "embedded by backfill")
    assert repeated["embedded"] == 500 and repeated["backfill_seconds"] is None and "i mod 200" in repeated["vectors"]
    for result in (embedded, repeated):
        assert result["queries"] == 6 and all(example["hits"] for example in result["examples"])
        assert all(0 < hit[2] <= round(2 / 61, 4) for example in result["examples"] for hit in example["hits"])
    cost = measure_add_cost(20, embedder)
    assert set(cost) == {"turns", "store", "without_embedder", "with_embedder"}
    table = _table({"search": [], "hybrid": [embedded, repeated], "add_cost": [cost], "memory_overhead": []})
    assert "backfill" in table and "vectors repeated" in table and "add at 20 turns" in table
