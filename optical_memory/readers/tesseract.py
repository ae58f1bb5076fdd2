"""Tesseract 5 through tesserocr: an independent second engine, so one OCR model's quirks do not make the curve."""

from __future__ import annotations

import os
from typing import Any

from PIL import Image

from optical_memory.core.extras import require
from optical_memory.core.geometry import Mode
from optical_memory.readers._images import as_rgb, optional_int, upscale_longest_side
from optical_memory.readers.base import Reader

DEFAULT_TESSDATA = "/usr/share/tesseract-ocr/5/tessdata/"


class TesseractReader(Reader):
    """Reads a page with Tesseract's LSTM engine (Debian ``tesseract-ocr-eng`` data by default).

    Tesseract needs glyphs of roughly 10 px or more, so a fitted page smaller than ``upscale_to`` (default 1280, the
    master width) is first enlarged bicubically back to it; that adds no information, it only suits the engine.
    """

    name = "tesseract"
    # It reads pixels only: the same image read for two modes is one cache entry.
    ignores_mode = True

    def __init__(self, *, upscale_to: int | None = 1280, lang: str = "eng", tessdata: str | None = None) -> None:
        self.upscale_to = optional_int(upscale_to, field_name="upscale_to", minimum=32)
        if not isinstance(lang, str) or not lang.strip():
            raise ValueError(f"lang must be a non-empty language code such as 'eng', got {lang!r}")
        self.lang = lang
        self.tessdata = tessdata if tessdata is not None else os.environ.get("TESSDATA_PREFIX", DEFAULT_TESSDATA)
        if not os.path.isfile(os.path.join(self.tessdata, f"{lang}.traineddata")):
            raise ValueError(
                f"tessdata {self.tessdata!r} has no {lang}.traineddata (Debian: apt-get install tesseract-ocr-{lang})"
            )
        self._api: Any = None

    @property
    def fingerprint(self) -> str:
        """Everything that changes what this reader returns: the cache key's reader part."""
        version = require("tesserocr", "ocr").tesseract_version().split()[1]
        return f"tesseract-{version}-{self.lang}-up{self.upscale_to}"

    def _get_api(self) -> Any:
        if self._api is None:
            self._api = require("tesserocr", "ocr").PyTessBaseAPI(path=self.tessdata, lang=self.lang)
        return self._api

    def read(self, image: Image.Image, mode: Mode | None = None) -> str:
        page = upscale_longest_side(as_rgb(image), self.upscale_to)
        api = self._get_api()
        api.SetImage(page)
        return "\n".join(line.rstrip() for line in api.GetUTF8Text().splitlines() if line.strip())
