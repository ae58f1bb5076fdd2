"""The reader interface: whatever turns a (fitted) page image back into text.

A CPU OCR engine measures whether the pixels still hold the text; DeepSeek-OCR measures what the decoder would read.
Both sit behind this one interface so every benchmark runs with either.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from PIL import Image

from optical_memory.core.geometry import Mode


class Reader(ABC):
    """Reads a page image back into text. ``name`` goes into every result row, so numbers say who produced them."""

    name: str

    @abstractmethod
    def read(self, image: Image.Image, mode: Mode | None = None) -> str:
        """Text of ``image`` in reading order, lines separated by newlines.

        ``image`` is the page as the consumer receives it (already fitted to ``mode`` when one is given); a reader
        may upscale it before reading: that adds no information, it only suits the engine.
        """
