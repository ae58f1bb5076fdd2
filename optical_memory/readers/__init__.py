"""Readers: what turns a (fitted) page image back into text, so a benchmark can measure what survived.

``rapidocr`` (default) and ``tesseract`` run on CPU and say whether the pixels still hold the text; ``deepseek-ocr``
(local weights) says what the DeepSeek-OCR decoder itself reads back.
"""

from optical_memory.readers.base import Reader
from optical_memory.readers.batch import ReadStats, read_many
from optical_memory.readers.cache import (
    ReadCache,
    default_cache_dir,
    read_key,
    reader_fingerprint,
    reading_key,
)
from optical_memory.readers.registry import get_reader, reader_names

__all__ = [
    "ReadCache",
    "ReadStats",
    "Reader",
    "default_cache_dir",
    "get_reader",
    "read_key",
    "read_many",
    "reader_fingerprint",
    "reader_names",
    "reading_key",
]
