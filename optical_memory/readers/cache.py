"""On-disk cache of page readings, keyed by reader fingerprint + mode + SHA-256 of the pixels.

OCR costs seconds per page; benchmarks re-read the same fitted page at the same mode many times (every budget, every
policy, every rerun). The key covers everything that decides the answer, so a hit is the reading a fresh run would
return. Entries are small UTF-8 text files written atomically (temp file + rename), safe across worker processes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from PIL import Image

from optical_memory.core.geometry import Mode
from optical_memory.core.imaging import pixel_hash
from optical_memory.readers.base import Reader

CACHE_ENV = "OPTICAL_MEMORY_CACHE"


def default_cache_dir() -> Path:
    """``$OPTICAL_MEMORY_CACHE/reads``, else ``.cache/reads`` under the working directory (git-ignored)."""
    return Path(os.environ.get(CACHE_ENV, ".cache")) / "reads"


def reader_fingerprint(reader: Reader) -> str:
    """A reader's ``fingerprint`` (name + version + settings) if it has one, else its ``name``."""
    fingerprint = getattr(reader, "fingerprint", None)
    return fingerprint if isinstance(fingerprint, str) and fingerprint else reader.name


def read_key(fingerprint: str, image: Image.Image, mode: Mode | None) -> str:
    """Cache key of reading ``image`` (as the consumer receives it) at ``mode`` with the reader ``fingerprint``.

    Pass ``mode=None`` for a reader that ignores the mode (``reader.ignores_mode``), so equal pixels share an entry.
    """
    mode_name = mode.value if mode is not None else "none"
    return hashlib.sha256(f"{fingerprint}|{mode_name}|{pixel_hash(image)}".encode()).hexdigest()


def reading_key(reader: Reader, image: Image.Image, mode: Mode | None) -> str:
    """The cache key of ``reader`` reading ``image`` at ``mode`` (the mode left out when the reader ignores it)."""
    return read_key(reader_fingerprint(reader), image, None if getattr(reader, "ignores_mode", False) else mode)


class ReadCache:
    """Readings stored as ``<dir>/<key[:2]>/<key>.txt``, with what the read cost in CPU seconds in ``<key>.cpu``.

    Keeping the cost next to the reading lets a rerun that reads nothing still report what each page cost to read.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        if directory is not None and not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a path or None, got {type(directory).__name__}")
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def _path(self, key: str, suffix: str = ".txt") -> Path:
        if len(key) != 64 or any(ch not in "0123456789abcdef" for ch in key):
            raise ValueError(f"key must be a SHA-256 hex digest, got {key!r}")
        return self.directory / key[:2] / f"{key}{suffix}"

    def get(self, key: str) -> str | None:
        """The stored reading, or ``None`` on a miss."""
        try:
            return self._path(key).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def cost(self, key: str) -> float | None:
        """CPU seconds the stored reading took, or ``None`` when it was stored without one."""
        try:
            return float(self._path(key, ".cpu").read_text(encoding="ascii"))
        except (FileNotFoundError, ValueError):
            return None

    def put(self, key: str, text: str, *, cpu_seconds: float | None = None) -> None:
        """Store ``text`` (and its cost) under ``key``; concurrent writers of one key leave one complete file."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        if cpu_seconds is not None:
            if isinstance(cpu_seconds, bool) or not isinstance(cpu_seconds, (int, float)) or not cpu_seconds >= 0:
                raise ValueError(f"cpu_seconds must be a non-negative number, got {cpu_seconds!r}")
            self._write(self._path(key, ".cpu"), repr(float(cpu_seconds)))
        self._write(self._path(key), text)

    @staticmethod
    def _write(path: Path, content: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(content)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
