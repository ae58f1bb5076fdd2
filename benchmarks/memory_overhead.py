"""Memory-middleware overhead per turn, with rendering taken out: is ``add`` + ``context`` negligible next to drawing?

Reported by ``python -m benchmarks.render_speed`` (``--memory-turns``). The renderer's ``paginate`` and ``draw`` are wrapped
with timers, so the figure reported as overhead is store writes, sealing bookkeeping, pricing and policy work only.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from optical_memory.memory import OpticalMemory


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


def measure_memory_overhead(turns: int = 10_000, *, probe: int = 500, db: str | Path = ":memory:", seed: int = 0) -> dict[str, Any]:
    """Median ``add`` and ``context`` CPU cost (ms) at ``turns`` turns, with rendering time subtracted from ``add``."""
    rng = random.Random(seed)
    memory = OpticalMemory.open(db, hot_turns=8)
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
        start = cpu_clock()
        memory.context(budget=8000, now=float(i))
        context_ms.append((cpu_clock() - start) * 1000)
    result = {
        "turns": turns,
        "pages": len(memory.pages),
        "store": str(db),
        "add_cpu_ms_median_excluding_rendering": statistics.median(add_ms),
        "context_cpu_ms_median": statistics.median(context_ms),
        "add_plus_context_cpu_ms_median": statistics.median(a + c for a, c in zip(add_ms, context_ms)),
    }
    memory.close()
    return result
