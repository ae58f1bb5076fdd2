"""How fast ``OpticalMemory.search`` answers, what the full-text index adds to ``add`` + ``context``, and what
semantic search (MiniLM vectors fused with BM25) costs.

Run: ``python -m benchmarks.search_latency [--sizes 10000 100000] [--queries 400] [--hybrid-sizes 10000 100000]``.
Prints a table and writes ``benchmarks/results/search_latency.json`` with the command, machine and commit.

Workload: real human chat messages (chitchat corpus, every chat in id order, one message per turn; 100k turns
use ~72% of the corpus) written into one session of a SQLite file through ``OpticalMemory.add`` with a hot window
larger than the session, so nothing is rendered and filling measures the store (filling skips fsync:
``synchronous = OFF`` on the benchmark's own connection; searches read the same file either way). Queries: 1 to 3
words of at least 4 letters drawn from a random stored turn (so each has a hit), a third of each length, searched
with ``k=10``; "any" runs the same queries with ``match="any"``. Latency is wall-clock per call of
``memory.search`` (index query, page lookup and verbatim snippets), after one warm-up pass; p50/p99 over the calls.
The machine is shared: its load average is recorded beside the figures.

The ``add`` + ``context`` overhead is ``benchmarks.memory_overhead.measure_memory_overhead`` (rendering excluded),
the measurement ``benchmarks.render_speed`` reports, run again here with the index written in every ``add``.

Hybrid (needs the ``semantic`` extra): the same sessions, filled without an embedder and then embedded by
``OpticalMemory.backfill`` (batches of 64; its turns per second are reported), searched with ``MiniLMEmbedder`` on
the CPU with the same queries (``match="all"``): each search embeds the query, ranks every vector of the session by
cosine (numpy, brute force) and fuses that with BM25. Sessions larger than ``--embed-max`` (10,000) are not embedded
turn by turn: turn ``i`` gets the vector of turn ``i mod 10,000`` of the embedded session, which costs the search
the same (a product over as many vectors) but makes its hits meaningless. The first search of a memory reads all the session's vectors
from the store (reported apart); the timed ones read nothing new. The query's embedding alone is timed too, and
``add`` with the embedder against ``add`` without it, on ``--add-turns`` turns of a fresh session. torch runs on
``--torch-threads`` threads (default 1): on this shared 2-core machine two threads that contend with other
processes made one query's embedding 20× slower (133 ms against 6.9 ms median, measured back to back at load 4);
numpy's product runs on OpenBLAS's threads, which ``OPENBLAS_NUM_THREADS=1`` (recorded in the JSON) makes one too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from benchmarks.datasets import _chitchat
from benchmarks.memory_overhead import measure_memory_overhead
from optical_memory.core.embedding import Embedder
from optical_memory.memory import OpticalMemory
from optical_memory.store.search import words
from optical_memory.store.sqlite import SQLiteStore

RESULTS = Path(__file__).parent / "results"


def chat_messages(count: int) -> list[tuple[str, str]]:
    """The first ``count`` messages of the corpus (chats in id order) as (role, text)."""
    messages = [(turn.role.value, turn.text) for chat in _chitchat().values() for turn in chat]
    if count > len(messages):
        raise ValueError(f"the corpus has {len(messages)} messages, fewer than {count}")
    return messages[:count]


def _queries(texts: Sequence[str], count: int, rng: random.Random) -> list[str]:
    queries: list[str] = []
    while len(queries) < count:
        candidates = list(dict.fromkeys(w.text for w in words(rng.choice(texts)) if len(w.text) >= 4 and w.text.isalpha()))
        length = 1 + len(queries) % 3
        if len(candidates) >= length:
            queries.append(" ".join(rng.sample(candidates, length)))
    return queries


def _percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "mean_ms": statistics.fmean(ordered),
        "max_ms": ordered[-1],
    }


def measure_search(turns: int, *, queries: int = 400, folder: Path, seed: int = 0) -> dict[str, Any]:
    """Fill a session of ``turns`` chat messages in a SQLite file, then time ``queries`` searches."""
    messages = chat_messages(turns)
    path = folder / f"search_{turns}.db"
    store = SQLiteStore(path)
    store._db.execute("PRAGMA synchronous = OFF")  # benchmark only: filling should not wait for the disk
    memory = OpticalMemory(store, session="bench", hot_turns=turns + 1)
    fill_started = time.perf_counter()
    for index, (role, text) in enumerate(tqdm(messages, desc=f"filling {turns} turns", unit="turn", mininterval=2)):
        memory.add(role, text, timestamp=1.5e9 + 60 * index)
    fill_seconds = time.perf_counter() - fill_started
    rng = random.Random(seed)
    asked = _queries([text for _, text in messages], queries, rng)
    result: dict[str, Any] = {"turns": turns, "queries": len(asked), "file_mb": path.stat().st_size / 1e6,
                              "fill_seconds": fill_seconds}
    for match in ("all", "any"):
        for query in asked:  # warm-up: the first pass reads the index pages into the cache
            memory.search(query, k=10, match=match)
        samples, hits = [], []
        for query in asked:
            started = time.perf_counter()
            found = memory.search(query, k=10, match=match)
            samples.append((time.perf_counter() - started) * 1000)
            hits.append(len(found))
        result[match] = {**_percentiles(samples), "hits_mean": statistics.fmean(hits),
                         "queries_without_hits": sum(h == 0 for h in hits)}
    result["examples"] = [{"query": q, "hits": [(h.turn_index, h.page, round(h.score, 3), h.snippet[:80])
                                                  for h in memory.search(q, k=3)]} for q in asked[:3]]
    memory.close()
    return result


def _timed_searches(memory: OpticalMemory, queries: Sequence[str]) -> list[float]:
    samples = []
    for query in queries:
        started = time.perf_counter()
        memory.search(query, k=10)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def measure_hybrid(
    turns: int, embedder: Embedder, *, queries: int = 200, folder: Path, seed: int = 0, repeat_from: int | None = None
) -> dict[str, Any]:
    """Embed the ``turns``-turn session ``measure_search`` left in ``folder`` and time hybrid searches on it.

    ``repeat_from``: instead of embedding, give turn ``i`` the vector of turn ``i mod repeat_from`` of that
    (embedded) session: the search costs the same (a product over as many vectors), but its hits are not meaningful.
    """
    messages = chat_messages(turns)
    store = SQLiteStore(folder / f"search_{turns}.db")
    store._db.execute("PRAGMA synchronous = OFF")  # benchmark only, as when filling
    memory = OpticalMemory(store, session="bench", hot_turns=turns + 1, embedder=embedder)
    started = time.perf_counter()
    if repeat_from is None:
        embedded = memory.backfill(batch_size=64)
        vectors = "embedded by backfill"
    else:
        with SQLiteStore(folder / f"search_{repeat_from}.db") as source:
            stored = source.vectors(memory.scope)
        matrix = stored.matrix[np.argsort(stored.turns)]
        embedded = 0
        for start in tqdm(range(0, turns, 5000), desc="repeating vectors", unit="batch"):
            batch = [(index, matrix[index % len(matrix)]) for index in range(start, min(turns, start + 5000))]
            embedded += store.add_vectors(memory.scope, embedder.name, batch)
        vectors = f"turn i has the vector of turn i mod {repeat_from} (embedded): hits are not meaningful, costs are"
    backfill_seconds = time.perf_counter() - started
    memory.close()
    asked = _queries([text for _, text in messages], queries, random.Random(seed))
    memory = OpticalMemory(SQLiteStore(folder / f"search_{turns}.db"), session="bench", hot_turns=turns + 1,
                           embedder=embedder)
    first = _timed_searches(memory, asked[:1])[0]  # reads every vector of the session from the store
    _timed_searches(memory, asked)  # warm-up, as for the word index
    samples = _timed_searches(memory, asked)
    embedding = []
    for query in asked:
        started = time.perf_counter()
        embedder([query])
        embedding.append((time.perf_counter() - started) * 1000)
    result = {"turns": turns, "queries": len(asked), "vectors": vectors, "embedded": embedded,
              "backfill_seconds": backfill_seconds if repeat_from is None else None,
              "backfill_turns_per_second": embedded / backfill_seconds if repeat_from is None else None,
              "first_search_ms": first,
              "file_mb": (folder / f"search_{turns}.db").stat().st_size / 1e6,
              "hybrid": _percentiles(samples), "query_embedding": _percentiles(embedding)}
    result["examples"] = [{"query": q, "hits": [(h.turn_index, h.page, round(h.score, 4), h.snippet[:80])
                                                  for h in memory.search(q, k=3)]} for q in asked[:3]]
    memory.close()
    return result


def measure_add_cost(turns: int, embedder: Embedder) -> dict[str, Any]:
    """Median wall-clock ms of ``add`` without and with ``embedder`` (one turn embedded per call), in memory."""
    messages = chat_messages(turns)
    result: dict[str, Any] = {"turns": turns, "store": ":memory:"}
    for label, used in (("without_embedder", None), ("with_embedder", embedder)):
        memory = OpticalMemory.open(":memory:", session="bench", hot_turns=turns + 1, embedder=used)
        samples = []
        for index, (role, text) in enumerate(messages):
            started = time.perf_counter()
            memory.add(role, text, timestamp=1.5e9 + 60 * index)
            samples.append((time.perf_counter() - started) * 1000)
        memory.close()
        result[label] = _percentiles(samples)
    return result


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _table(result: dict[str, Any]) -> str:
    rows = [f"{'turns':>8} {'match':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'hits':>5}  (file MB, fill s)"]
    for entry in result["search"]:
        for match in ("all", "any"):
            m = entry[match]
            rows.append(f"{entry['turns']:>8} {match:>5} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} {m['mean_ms']:>8.2f}"
                        f" {m['hits_mean']:>5.1f}  ({entry['file_mb']:.0f}, {entry['fill_seconds']:.0f})")
    for entry in result["hybrid"]:
        h, q = entry["hybrid"], entry["query_embedding"]
        rows.append(f"{entry['turns']:>8} {'hyb':>5} {h['p50_ms']:>8.2f} {h['p99_ms']:>8.2f} {h['mean_ms']:>8.2f}"
                    f"        (query embedding p50 {q['p50_ms']:.2f} ms; first search {entry['first_search_ms']:.0f} ms;"
                    + (f" backfill {entry['backfill_turns_per_second']:.0f} turns/s)" if entry["backfill_seconds"]
                       else " vectors repeated)"))
    for cost in result["add_cost"]:
        rows.append(f"add at {cost['turns']} turns: {cost['without_embedder']['p50_ms']:.2f} ms without an embedder,"
                    f" {cost['with_embedder']['p50_ms']:.2f} ms with MiniLM (median, CPU)")
    for overhead in result["memory_overhead"]:
        rows.append(
            f"add+context at {overhead['turns']} turns ({overhead['store']}): add {overhead['add_cpu_ms_median_excluding_rendering']:.2f} ms"
            f" + context {overhead['context_cpu_ms_median']:.2f} ms = {overhead['add_plus_context_cpu_ms_median']:.2f} ms"
            " CPU per turn (median, rendering excluded)"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="session sizes in turns")
    parser.add_argument("--queries", type=int, default=400, help="searches timed per size and match mode")
    parser.add_argument("--overhead-turns", type=int, default=10_000, help="session size for add+context (0: skip)")
    parser.add_argument("--hybrid-sizes", type=int, nargs="*", default=[10_000, 100_000],
                        help="sizes (among --sizes) searched with MiniLM fused with BM25 (none: skip)")
    parser.add_argument("--embed-max", type=int, default=10_000,
                        help="hybrid sizes above this one (itself a hybrid size) repeat its session's vectors instead"
                             " of embedding every turn (100k turns take most of an hour on 2 shared cores)")
    parser.add_argument("--hybrid-queries", type=int, default=200, help="hybrid searches timed per size")
    parser.add_argument("--add-turns", type=int, default=300, help="turns added with and without MiniLM (0: skip)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch's CPU threads for MiniLM")
    args = parser.parse_args()
    if not set(args.hybrid_sizes) <= set(args.sizes):
        parser.error("--hybrid-sizes must be among --sizes (they embed the sessions those fill)")
    if any(size > args.embed_max for size in args.hybrid_sizes) and args.embed_max not in args.hybrid_sizes:
        parser.error("--embed-max must be one of --hybrid-sizes when a larger one repeats its vectors")
    result: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.search_latency", *sys.argv[1:]]),
        "commit": _commit(),
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                    "load_average_1min_start": os.getloadavg()[0],
                    "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")},
        "search": [],
        "hybrid": [],
        "add_cost": [],
        "memory_overhead": [],
    }
    embedder = None
    if args.hybrid_sizes or args.add_turns:
        import torch

        from optical_memory.core.embedding import MiniLMEmbedder

        torch.set_num_threads(args.torch_threads)
        embedder = MiniLMEmbedder()
        result["embedder"] = {"name": embedder.name, "dimension": embedder.dimension, "device": "cpu",
                              "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            result["search"].append(measure_search(size, queries=args.queries, folder=Path(folder)))
            if size in args.hybrid_sizes:
                assert embedder is not None
                repeat = args.embed_max if size > args.embed_max else None
                result["hybrid"].append(measure_hybrid(size, embedder, queries=args.hybrid_queries, folder=Path(folder),
                                                       repeat_from=repeat))
        if args.add_turns:
            assert embedder is not None
            result["add_cost"].append(measure_add_cost(args.add_turns, embedder))
        if args.overhead_turns:
            result["memory_overhead"].append(measure_memory_overhead(args.overhead_turns))
            result["memory_overhead"].append(measure_memory_overhead(args.overhead_turns, db=Path(folder) / "overhead.db"))
            result["memory_overhead"][-1]["store"] = "a SQLite file (WAL, synchronous=FULL)"
    result["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    print(_table(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "search_latency.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
