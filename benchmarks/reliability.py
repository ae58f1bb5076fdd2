"""Reliability under faults: writers killed at random moments, many writers at once, and a full disk.

Run: ``python -m benchmarks.reliability [--crash-trials 1000] [--processes 8] [--turns 200] [--postgres URL]``.
Prints a table and writes ``benchmarks/results/reliability.json``. The tests (``tests/store/test_store_faults.py``) run
the same scenarios at smaller counts.

- crash: one writer process per trial adds turns through ``OpticalMemory`` (a tiny page and a one-turn hot window,
  so pages seal every few turns, plus pixel forgetting, so images are replaced) and reports each turn index once
  ``add`` has returned; it is killed with SIGKILL after a random delay. Then: every confirmed turn is stored, the
  file passes ``PRAGMA integrity_check``, and no page is half-written.
- concurrency: N processes add turns at once, some into one shared session, the others into their own; nothing may
  be lost, each process's turns appear in its order, and no lock error may reach a writer.
- disk full: a store capped at a random size is filled until a write fails; the memory's turns must equal what a
  fresh reader finds, and the file must stay sound.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import sqlite3
import tempfile
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from optical_memory.policies import AgeSchedule
from optical_memory.renderers import RenderStyle
from tqdm import tqdm

from optical_memory.core.imaging import decode_png
from optical_memory.memory import OpticalMemory
from optical_memory.store.backends import open_store
from optical_memory.store.base import Scope, Store, StoreError
from optical_memory.store.sqlite import SQLiteStore

RESULTS = Path(__file__).parent / "results"

# Pages small enough to seal every few turns and draw in milliseconds: the scenarios are about the store.
TINY_PAGE = RenderStyle(width=256, height=128, font_px=8, mono_font_px=8, margin_x=4, margin_y=4)
CONSUMER = "gemini"  # tiers only ever shrink pages, so pixel forgetting rewrites small images
DAY = 86_400.0
WORDS = "the agent booked a table for four at nine Zoë paid 42 € and sent code QX-7 to the user".split()


def turn_text(index: int) -> str:
    """Deterministic content of turn ``index`` (lengths vary, so pages fill at different turns)."""
    rng = random.Random(index)
    return f"turn {index}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40)))


def writer_memory(target: str, session: str, *, durable: bool = True) -> OpticalMemory:
    """The memory every scenario writes through: tiny pages, one hot turn, pixel forgetting by age in days;
    ``durable=False``: a SQLite file without the fsync of every commit (``SQLiteStore(durable=False)``)."""
    return OpticalMemory.open(
        target if durable else SQLiteStore(target, durable=False),
        session=session,
        hot_turns=1,
        style=TINY_PAGE,
        consumer=CONSUMER,
        policy=AgeSchedule(turn_steps=None),
        forget_pixels=True,
        clock=time.time,
    )


def _processes() -> multiprocessing.context.BaseContext:
    """Writers fork from a server that has already imported the memory, so a trial starts in milliseconds."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["benchmarks.reliability"])
    return context


# -- checks ----------------------------------------------------------------------------------------------------------


@dataclass
class StoreCheck:
    """What a fresh reader finds in a session, and everything wrong with it."""

    turns: int = 0
    pages: int = 0
    images_decoded: int = 0
    problems: list[str] = field(default_factory=list)


def check_session(store: Store, scope: Scope, *, expected_text: dict[int, str] | None = None, from_page: int = 0) -> StoreCheck:
    """Turns numbered 0..n-1 (with the expected text), pages consecutive, showing stored turns, images that decode."""
    turns, pages = store.load(scope)
    check = StoreCheck(turns=len(turns), pages=len(pages))
    for position, turn in enumerate(turns):
        if turn.index != position:
            check.problems.append(f"turn at position {position} has index {turn.index}")
        elif expected_text is not None and expected_text.get(turn.index, turn.content) != turn.content:
            check.problems.append(f"turn {turn.index} holds other text than was written")
    for position, stored in enumerate(pages):
        page = stored.page
        if page.index != position:
            check.problems.append(f"page at position {position} has index {page.index}")
        for segment in page.segments:
            if segment.turn_index >= len(turns):
                check.problems.append(f"page {page.index} shows turn {segment.turn_index}, which is not stored")
            elif not 0 <= segment.start <= segment.end <= len(turns[segment.turn_index].content):
                check.problems.append(f"page {page.index} shows characters outside turn {segment.turn_index}")
        if position < from_page:
            continue
        try:
            decode_png(store.image(stored.image_key))
            check.images_decoded += 1
        except (KeyError, ValueError) as error:
            check.problems.append(f"page {page.index}: image {stored.image_key!r} unusable ({error!r})")
    return check


def integrity(path: Path) -> list[str]:
    with SQLiteStore(path) as store:
        return store.integrity_check()


# -- crash -----------------------------------------------------------------------------------------------------------


@dataclass
class CrashResult:
    trials: int = 0
    kills_mid_run: int = 0
    turns_confirmed: int = 0
    turns_stored: int = 0
    lost: int = 0
    pages: int = 0
    images_decoded: int = 0
    contexts_completed: int = 0
    replaced_images: int = 0
    integrity_failures: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _crash_writer(target: str, session: str, durable: bool, results: Connection) -> None:
    memory = writer_memory(target, session, durable=durable)
    # A serving process has its tokenizer loaded. Loading it lazily in the first context() (0.3-0.6 s) would put
    # that call past most kill delays, and so almost no context would ever complete.
    memory.consumer.text_tokens("warm-up")
    while True:
        index = len(memory.turns)
        memory.add("user" if index % 2 == 0 else "assistant", turn_text(index), timestamp=index * DAY)
        results.send(("turn", index))
        if index % 4 == 3:
            memory.context(now=index * DAY)  # ages pages: forget_pixels replaces their images
            results.send(("context", index))


def crash_trials(
    path: Path, trials: int, *, seed: int = 0, max_delay: float = 0.3, progress: bool = False, durable: bool = True
) -> CrashResult:
    """Kill a writer ``trials`` times; after each kill check that every confirmed turn survived, intact (a killed
    process loses nothing with or without the fsync of every commit: ``durable``)."""
    rng = random.Random(seed)
    context = _processes()
    scope = Scope("default", "crash")
    result = CrashResult()
    confirmed: set[int] = set()
    checked_pages = 0
    start = time.perf_counter()
    for _ in tqdm(range(trials), desc="crash trials", unit="kill", disable=not progress):
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(target=_crash_writer, args=(str(path), scope.session, durable, writer), daemon=True)
        process.start()
        writer.close()
        # Half the kills may land anywhere from start-up on (opening the store, creating the schema); the other
        # half once the writer is adding turns, so each trial also does real work however slow start-up is.
        if rng.random() < 0.5:
            reader.poll(30.0)
        time.sleep(rng.uniform(0.0, max_delay))
        process.kill()
        process.join()
        if process.exitcode == -9:
            result.kills_mid_run += 1
        else:
            result.problems.append(f"trial {result.trials}: the writer exited by itself (code {process.exitcode})")
        while True:
            try:
                kind, index = reader.recv()
            except EOFError:
                break
            if kind == "turn":
                confirmed.add(index)
            else:
                result.contexts_completed += 1
        reader.close()
        result.trials += 1
        if not path.exists():
            continue  # killed before the store was even created
        if integrity(path) != ["ok"]:
            result.integrity_failures += 1
        with SQLiteStore(path) as store:
            check = check_session(store, scope, expected_text={i: turn_text(i) for i in confirmed}, from_page=checked_pages)
        checked_pages = check.pages
        result.images_decoded += check.images_decoded
        result.problems += check.problems
        missing = sorted(i for i in confirmed if i >= check.turns)
        if missing:
            result.problems.append(f"trial {result.trials}: confirmed turns {missing[:5]} are not stored")
    result.turns_confirmed = len(confirmed)
    if path.exists():
        with SQLiteStore(path) as store:
            final = check_session(store, scope, expected_text={i: turn_text(i) for i in confirmed})
            result.replaced_images = sum(stored.image_tier is not None for stored in store.load(scope)[1])
        result.problems += final.problems
        result.turns_stored, result.pages = final.turns, final.pages
    result.lost = len([i for i in confirmed if i >= result.turns_stored])
    result.seconds = time.perf_counter() - start
    return result


# -- concurrency -----------------------------------------------------------------------------------------------------


@dataclass
class ConcurrencyResult:
    backend: str
    processes: int
    turns_per_process: int
    shared_session_writers: int
    turns_written: int = 0
    turns_stored: int = 0
    lost: int = 0
    out_of_order: int = 0
    writer_errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    pages: int = 0
    seconds: float = 0.0


def _session_of(process: int, shared: int) -> str:
    return "shared" if process < shared else f"own-{process}"


def _concurrent_writer(target: str, process: int, shared: int, turns: int, results: Connection) -> None:
    try:
        memory = writer_memory(target, _session_of(process, shared))
        for i in range(turns):
            memory.add("user", f"p{process} t{i}", timestamp=i * DAY)
        memory.close()
        results.send(("done", turns))
    except BaseException as error:  # reported to the parent: any error reaching a writer fails the scenario
        results.send(("error", f"process {process}: {type(error).__name__}: {error}"))
    finally:
        results.close()


def concurrent_writers(target: str, *, processes: int = 8, turns: int = 200, shared: int = 4, timeout: float = 300.0) -> ConcurrencyResult:
    """``processes`` writers × ``turns`` turns at once; the first ``shared`` share one session."""
    context = _processes()
    result = ConcurrencyResult(
        backend="postgresql" if target.startswith("postgres") else "sqlite",
        processes=processes,
        turns_per_process=turns,
        shared_session_writers=shared,
    )
    open_store(target).close()  # create the schema once, so the writers race on turns, not on set-up
    start = time.perf_counter()
    pipes, workers = [], []
    for process in range(processes):
        reader, writer = context.Pipe(duplex=False)
        worker = context.Process(target=_concurrent_writer, args=(target, process, shared, turns, writer), daemon=True)
        worker.start()
        writer.close()
        pipes.append(reader)
        workers.append(worker)
    deadline = time.monotonic() + timeout
    for process, (reader, worker) in enumerate(zip(pipes, workers)):
        if not reader.poll(max(0.0, deadline - time.monotonic())):
            worker.kill()
            result.writer_errors.append(f"process {process}: no answer within {timeout:.0f} s")
            continue
        try:
            status, detail = reader.recv()
        except EOFError:
            status, detail = "error", f"process {process}: died without a word"
        if status == "error":
            result.writer_errors.append(detail)
        worker.join()
    result.seconds = time.perf_counter() - start
    result.turns_written = processes * turns
    with open_store(target) as store:
        for session in sorted({_session_of(p, shared) for p in range(processes)}):
            scope = Scope("default", session)
            check = check_session(store, scope)
            result.problems += [f"{session}: {problem}" for problem in check.problems]
            result.pages += check.pages
            contents = [turn.content for turn in store.load(scope)[0]]
            result.turns_stored += len(contents)
            for process in (p for p in range(processes) if _session_of(p, shared) == session):
                mine = [c for c in contents if c.split(" ", 1)[0] == f"p{process}"]
                expected = [f"p{process} t{i}" for i in range(turns)]
                result.lost += len(set(expected) - set(mine))
                result.out_of_order += mine != [c for c in expected if c in set(mine)]
    return result


# -- disk full -------------------------------------------------------------------------------------------------------


@dataclass
class DiskFullResult:
    trials: int = 0
    refused_writes: int = 0
    turns_stored: int = 0
    diverged: int = 0
    integrity_failures: int = 0
    messages: list[str] = field(default_factory=list)


def disk_full_trials(folder: Path, trials: int, *, seed: int = 0) -> DiskFullResult:
    """Fill stores capped at random sizes until a write is refused; memory and disk must still agree."""
    rng = random.Random(seed)
    result = DiskFullResult()
    for trial in range(trials):
        path = folder / f"full-{trial}.db"
        memory = OpticalMemory(SQLiteStore(path, max_bytes=rng.randint(40, 120) * 4096), session="full",
                               hot_turns=1, style=TINY_PAGE, consumer=CONSUMER)
        try:
            for index in range(100_000):
                memory.add("user", turn_text(index) * rng.randint(1, 20))
        except StoreError as error:
            result.refused_writes += 1
            if len(result.messages) < 3:
                result.messages.append(str(error))
        in_memory = memory.turns
        memory.close()
        with SQLiteStore(path, read_only=True) as store:
            on_disk = store.load(Scope("default", "full"))[0]
            result.integrity_failures += store.integrity_check() != ["ok"]
        result.diverged += on_disk != in_memory
        result.turns_stored += len(on_disk)
        result.trials += 1
    return result


# -- report ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crash-trials", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--turns", type=int, default=200, help="turns per concurrent writer")
    parser.add_argument("--disk-full-trials", type=int, default=50)
    parser.add_argument("--postgres", help="also run the concurrency scenario against this PostgreSQL URL (empty schema)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="om-reliability-") as folder:
        crash = crash_trials(Path(folder) / "crash.db", args.crash_trials, seed=args.seed, progress=True)
        concurrency = [concurrent_writers(f"sqlite:///{Path(folder) / 'concurrent.db'}", processes=args.processes, turns=args.turns)]
        if args.postgres:
            concurrency.append(concurrent_writers(args.postgres, processes=args.processes, turns=args.turns))
        disk_full = disk_full_trials(Path(folder), args.disk_full_trials, seed=args.seed)

    print(f"\n{'scenario':<34} {'trials/writers':>15} {'turns confirmed':>16} {'stored':>8} {'lost':>5} {'problems':>9}")
    print(f"{'SIGKILL during add (sqlite)':<34} {crash.trials:>15} {crash.turns_confirmed:>16} {crash.turns_stored:>8}"
          f" {crash.lost:>5} {len(crash.problems) + crash.integrity_failures:>9}")
    for run in concurrency:
        label = f"{run.processes} writers x {run.turns_per_process} ({run.backend})"
        print(f"{label:<34} {run.processes:>15} {run.turns_written:>16} {run.turns_stored:>8} {run.lost:>5}"
              f" {len(run.problems) + len(run.writer_errors) + run.out_of_order:>9}")
    print(f"{'disk full (sqlite, capped file)':<34} {disk_full.trials:>15} {'-':>16} {disk_full.turns_stored:>8}"
          f" {disk_full.diverged:>5} {disk_full.integrity_failures:>9}")
    print(f"\ncrash: {crash.kills_mid_run} kills mid-run, {crash.pages} pages sealed, {crash.images_decoded} page images"
          f" decoded after kills, {crash.contexts_completed} contexts completed,"
          f" {crash.replaced_images} images replaced by pixel forgetting, {crash.seconds:.0f} s")
    for run in concurrency:
        print(f"{run.backend}: {run.turns_written} turns from {run.processes} processes in {run.seconds:.1f} s,"
              f" {run.pages} pages sealed under contention")
    print(f"disk full: {disk_full.refused_writes} refused writes, e.g. {disk_full.messages[:1]}")

    record: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version},
        "seed": args.seed,
        "crash": asdict(crash),
        "concurrency": [asdict(run) for run in concurrency],
        "disk_full": asdict(disk_full),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reliability.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
