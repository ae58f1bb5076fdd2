"""``get_reader``: readers by name, so scripts and result rows name the engine the same way."""

from __future__ import annotations

from typing import Any, Callable

from optical_memory.readers.base import Reader


def _rapidocr(**options: Any) -> Reader:
    from optical_memory.readers.rapidocr import RapidOCRReader

    return RapidOCRReader(**options)


def _tesseract(**options: Any) -> Reader:
    from optical_memory.readers.tesseract import TesseractReader

    return TesseractReader(**options)


def _deepseek_ocr(**options: Any) -> Reader:
    # Imported only when asked for: it pulls in torch and the model code.
    from optical_memory.readers.deepseek import DeepSeekOCRReader

    return DeepSeekOCRReader(**options)


_FACTORIES: dict[str, Callable[..., Reader]] = {
    "rapidocr": _rapidocr,
    "tesseract": _tesseract,
    "deepseek-ocr": _deepseek_ocr,
}

# Readers that own the machine's cores themselves (the GPU model): never fanned out over a process pool.
SINGLE_PROCESS_READERS = frozenset({"deepseek-ocr"})
# Readers whose engine takes a ``threads`` option (the tesserocr wheel's libtesseract is built without OpenMP).
THREADED_READERS = frozenset({"rapidocr"})


def reader_names() -> list[str]:
    """Every name ``get_reader`` accepts."""
    return sorted(_FACTORIES)


def get_reader(name: str, **options: Any) -> Reader:
    """A reader by name: ``"rapidocr"`` (default CPU engine), ``"tesseract"``, or ``"deepseek-ocr"``.

    ``options`` go to the reader's constructor (e.g. ``upscale_to=1280``, ``threads=1``; for ``"deepseek-ocr"`` the
    local weights directory its constructor asks for).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in _FACTORIES:
        raise ValueError(f"reader {name!r} is unknown; known: {', '.join(reader_names())}")
    return _FACTORIES[key](**options)
