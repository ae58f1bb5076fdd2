"""Memory-middleware overhead per turn, with rendering taken out: is ``add`` + ``context`` negligible next to drawing?

``python -m benchmarks.memory_overhead`` measures it at 10,000 turns with SQLite in memory, in a file, and in a file
without the fsync of every commit (``SQLiteStore(durable=False)``), and writes
``benchmarks/results/memory_overhead.json``; ``python -m benchmarks.render_speed`` (``--memory-turns``) reports the
in-memory figure beside the rendering speed. The renderer's ``paginate`` and ``draw`` are wrapped with timers and
their time is taken out of both ``add`` (sealing a page) and ``context`` (laying out the open page), so the figure
reported as overhead is store reads and writes, sealing bookkeeping, pricing and policy work only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from optical_memory.core.tokens import clear_count_cache
from optical_memory.memory import OpticalMemory
from optical_memory.store.sqlite import SQLiteStore


def cpu_clock() -> float:
    """This thread's CPU time: what the memory itself costs, whatever else the machine is running."""
    return time.thread_time()


class RenderStopwatch:
    """CPU seconds spent inside the functions it wraps (rendering), so they can be taken out of a turn's cost."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function):
        def timed(*args, **kwargs):
            start = cpu_clock()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += cpu_clock() - start

        return timed


def _turn_text(rng: random.Random) -> str:
    words = "the agent booked a table for four at nine and sent the confirmation code to the user".split()
    return " ".join(rng.choice(words) for _ in range(rng.randint(20, 120)))


RESULTS = Path(__file__).resolve().parent / "results"


def run_provenance(module: str) -> dict[str, Any]:
    """Command (``python -m module`` and this run's arguments), date, machine and commit of this run."""
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "command": " ".join(["python -m", module, *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        "git_commit": commit,
    }


def measure_memory_overhead(
    turns: int = 10_000, *, probe: int = 500, db: str | Path = ":memory:", seed: int = 0, durable: bool = True
) -> dict[str, Any]:
    """Median ``add`` and ``context`` CPU cost (ms) at ``turns`` turns, rendering time subtracted from both; in the
    SQLite file ``db`` (default: in memory), without the fsync of every commit where ``durable`` is false."""
    rng = random.Random(seed)
    # Every run counts its text from scratch, as a fresh process would: the same seed gives the same texts, and a
    # count cached by an earlier run in this process would make a later one look cheaper.
    clear_count_cache()
    memory = OpticalMemory.open(db if durable else SQLiteStore(db, durable=False), hot_turns=8)
    render = RenderStopwatch()
    memory.renderer.paginate = render.wrap(memory.renderer.paginate)  # type: ignore[method-assign]
    memory.renderer.draw = render.wrap(memory.renderer.draw)  # type: ignore[method-assign]
    for i in tqdm(range(turns - probe), desc="filling memory", unit="turn", mininterval=2):
        memory.add("user" if i % 2 == 0 else "assistant", _turn_text(rng), timestamp=float(i))
    add_ms, context_ms = [], []
    for i in range(turns - probe, turns):
        before = render.seconds
        start = cpu_clock()
        memory.add("user" if i % 2 == 0 else "assistant", _turn_text(rng), timestamp=float(i))
        add_ms.append((cpu_clock() - start - (render.seconds - before)) * 1000)
        before, start = render.seconds, cpu_clock()
        memory.context(budget=8000, now=float(i))
        context_ms.append((cpu_clock() - start - (render.seconds - before)) * 1000)
    result = {
        "turns": turns,
        "pages": len(memory.pages),
        "store": "SQLite in memory" if str(db) == ":memory:" else
                 "SQLite file" if durable else "SQLite file, durable=False (synchronous=NORMAL)",
        "add_cpu_ms_median_excluding_rendering": statistics.median(add_ms),
        "context_cpu_ms_median": statistics.median(context_ms),  # rendering (the open page's layout) excluded
        "add_plus_context_cpu_ms_median": statistics.median(a + c for a, c in zip(add_ms, context_ms)),
    }
    memory.close()
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=10_000, help="session size (default 10,000)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for memory_overhead.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        runs = [measure_memory_overhead(args.turns), measure_memory_overhead(args.turns, db=Path(folder) / "memory.db"),
                measure_memory_overhead(args.turns, db=Path(folder) / "fast.db", durable=False)]
    result = {"meta": {**run_provenance("benchmarks.memory_overhead"), "load_average_1min": os.getloadavg()[0]},
              "target_ms": 2.0, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "memory_overhead.json"
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"{'store':<50}{'pages':>7}{'add ms':>9}{'context ms':>12}{'add+context ms':>16}  (median CPU per turn, rendering excluded)")
    for run in runs:
        print(f"{run['store']:<50}{run['pages']:>7}{run['add_cpu_ms_median_excluding_rendering']:>9.3f}"
              f"{run['context_cpu_ms_median']:>12.3f}{run['add_plus_context_cpu_ms_median']:>16.3f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
