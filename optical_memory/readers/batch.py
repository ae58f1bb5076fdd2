"""``read_many``: read many page images across a process pool, through the on-disk cache, with a progress bar."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Mapping, Sequence

from PIL import Image
from tqdm import tqdm

from optical_memory.readers.base import Reader
from optical_memory.readers.cache import ReadCache, read_key, reader_fingerprint
from optical_memory.readers.registry import SINGLE_PROCESS_READERS, THREADED_READERS, get_reader
from optical_memory.types import Mode

_worker_reader: Reader | None = None


def _start_worker(reader_name: str, options: Mapping[str, Any]) -> None:
    global _worker_reader
    _worker_reader = get_reader(reader_name, **options)


def _read_in_worker(image: Image.Image, mode: Mode | None) -> str:
    assert _worker_reader is not None, "worker started without a reader"
    return _worker_reader.read(image, mode)


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
    reader_name: str,
    images: Sequence[Image.Image],
    modes: Sequence[Mode | None],
    *,
    workers: int | None = None,
    reader_options: Mapping[str, Any] | None = None,
    cache: ReadCache | None = None,
    use_cache: bool = True,
    progress: bool = True,
    description: str = "reading pages",
) -> list[str]:
    """Read ``images[i]`` (as the consumer receives it at ``modes[i]``) with the reader ``reader_name``.

    Cached readings are returned without running the engine; the rest are read by ``workers`` processes (default: one
    per core; 1 reads in this process; ``deepseek-ocr`` always reads in this process). A threaded engine (rapidocr)
    gets ``cores // workers`` threads per worker unless ``reader_options`` says otherwise. Workers are spawned, not
    forked (ONNX Runtime and torch thread pools do not survive a fork), so call this from an importable module or a
    ``if __name__ == "__main__"`` block. Results come back in input order.
    """
    _check_inputs(images, modes)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    cores = os.cpu_count() or 1
    single_process = reader_name in SINGLE_PROCESS_READERS
    workers = 1 if single_process else (workers or cores)
    options = dict(reader_options or {})
    store = (cache or ReadCache()) if use_cache else None

    reader = get_reader(reader_name, **options)
    fingerprint = reader_fingerprint(reader)
    keys = [read_key(fingerprint, image, mode) for image, mode in zip(images, modes)]
    texts: dict[str, str] = {}
    if store:
        for key in dict.fromkeys(keys):
            cached = store.get(key)
            if cached is not None:
                texts[key] = cached
    # The same pixels at the same mode are read once, even within one call.
    pending: dict[str, int] = {}
    for position, key in enumerate(keys):
        if key not in texts:
            pending.setdefault(key, position)

    def finish(key: str, text: str) -> None:
        texts[key] = text
        if store:
            store.put(key, text)

    with tqdm(total=len(pending), desc=description, unit="page", disable=not progress or not pending) as bar:
        if workers == 1 or len(pending) <= 1:
            for key, position in pending.items():
                finish(key, reader.read(images[position], modes[position]))
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
    return [texts[key] for key in keys]
