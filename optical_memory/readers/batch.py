"""``read_many``: read many page images across a process pool, through the on-disk cache, with a progress bar."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from PIL import Image
from tqdm import tqdm

from optical_memory.core.geometry import Mode
from optical_memory.core.validation import validate_int
from optical_memory.readers.base import Reader
from optical_memory.readers.cache import ReadCache, reading_key
from optical_memory.readers.registry import (
    SINGLE_PROCESS_READERS,
    THREADED_READERS,
    get_reader,
)

_worker_reader: Reader | None = None


def _start_worker(reader_name: str, options: Mapping[str, Any]) -> None:
    global _worker_reader
    _worker_reader = get_reader(reader_name, **options)


def _timed_read(reader: Reader, image: Image.Image, mode: Mode | None) -> tuple[str, float]:
    """The reading and the CPU seconds this process spent on it (robust to other load on the machine)."""
    started = time.process_time()
    text = reader.read(image, mode)
    return text, time.process_time() - started


def _read_in_worker(image: Image.Image, mode: Mode | None) -> tuple[str, float]:
    assert _worker_reader is not None, "worker started without a reader"
    return _timed_read(_worker_reader, image, mode)


@dataclass
class ReadStats:
    """What ``read_many`` calls cost, counted over distinct readings (same pixels and mode read once).

    CPU seconds are the reading processes' own (``time.process_time``), so per-page cost stays meaningful when
    other work shares the machine; a GPU reader's CPU time understates its cost, use wall time there. A cache hit
    brings the cost recorded when it was read (``costed_reads`` counts readings whose cost is known).
    """

    fresh_reads: int = 0
    cached_reads: int = 0
    costed_reads: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def cpu_seconds_per_page(self) -> float | None:
        """Mean CPU seconds per reading whose cost is known."""
        return self.cpu_seconds / self.costed_reads if self.costed_reads else None


def _check_inputs(images: Sequence[Image.Image], modes: Sequence[Mode | None]) -> None:
    if len(images) != len(modes):
        raise ValueError(f"images and modes must have the same length, got {len(images)} and {len(modes)}")
    for position, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise TypeError(f"images[{position}] must be a PIL.Image.Image, got {type(image).__name__}")
    for position, mode in enumerate(modes):
        if mode is not None and not isinstance(mode, Mode):
            raise TypeError(f"modes[{position}] must be a Mode or None, got {type(mode).__name__}")


def read_many(
    reader: str | Reader,
    images: Sequence[Image.Image],
    modes: Sequence[Mode | None],
    *,
    workers: int | None = None,
    reader_options: Mapping[str, Any] | None = None,
    cache: ReadCache | None = None,
    use_cache: bool = True,
    progress: bool = True,
    description: str = "reading pages",
    stats: ReadStats | None = None,
) -> list[str]:
    """Read ``images[i]`` (as the consumer receives it at ``modes[i]``) with ``reader`` (a name or an instance).

    Cached readings are returned without running the engine. A reader given by name reads the rest over ``workers``
    processes (default: one per core; 1 reads in this process), each built with ``reader_options``; a threaded
    engine (rapidocr) gets ``cores // workers`` threads per worker unless the options say otherwise. A ``Reader``
    instance (e.g. a loaded DeepSeek-OCR model), and ``deepseek-ocr`` by name, read in this process. Workers are
    spawned, not forked (ONNX Runtime and torch thread pools do not survive a fork), so call this from an importable
    module or under ``if __name__ == "__main__"``. Results come back in input order; ``stats``, if given,
    accumulates what the call cost.
    """
    wall_started = time.perf_counter()
    _check_inputs(images, modes)
    if workers is not None:
        validate_int(workers, field_name="workers", minimum=1)
    cores = os.cpu_count() or 1
    options = dict(reader_options or {})
    if isinstance(reader, Reader):
        if options:
            raise ValueError("reader_options apply to a reader given by name, not to a Reader instance")
        reader_name, instance = reader.name, reader
        workers = 1
    elif isinstance(reader, str):
        reader_name, instance = reader, get_reader(reader, **options)
        workers = 1 if reader_name in SINGLE_PROCESS_READERS else (workers or cores)
    else:
        raise TypeError(f"reader must be a reader name or a Reader, got {type(reader).__name__}")
    store = (cache or ReadCache()) if use_cache else None

    keys = [reading_key(instance, image, mode) for image, mode in zip(images, modes)]
    texts: dict[str, str] = {}
    known_costs: list[float] = []
    if store:
        for key in dict.fromkeys(keys):
            cached = store.get(key)
            if cached is not None:
                texts[key] = cached
                cost = store.cost(key)
                if cost is not None:
                    known_costs.append(cost)
    # The same pixels at the same mode are read once, even within one call.
    pending: dict[str, int] = {}
    for position, key in enumerate(keys):
        if key not in texts:
            pending.setdefault(key, position)

    def finish(key: str, reading: tuple[str, float]) -> None:
        texts[key], spent = reading
        known_costs.append(spent)
        if store:
            store.put(key, texts[key], cpu_seconds=spent)

    with tqdm(total=len(pending), desc=description, unit="page", disable=not progress or not pending) as bar:
        if workers == 1 or len(pending) <= 1:
            for key, position in pending.items():
                finish(key, _timed_read(instance, images[position], modes[position]))
                bar.update()
        else:
            if reader_name in THREADED_READERS:
                options.setdefault("threads", max(1, cores // workers))
            with ProcessPoolExecutor(
                max_workers=min(workers, len(pending)),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(reader_name, options),
            ) as pool:
                futures = {
                    pool.submit(_read_in_worker, images[position], modes[position]): key
                    for key, position in pending.items()
                }
                for future in as_completed(futures):
                    finish(futures[future], future.result())
                    bar.update()
    if stats is not None:
        stats.fresh_reads += len(pending)
        stats.cached_reads += len(set(keys)) - len(pending)
        stats.costed_reads += len(known_costs)
        stats.cpu_seconds += sum(known_costs)
        stats.wall_seconds += time.perf_counter() - wall_started
    return [texts[key] for key in keys]
