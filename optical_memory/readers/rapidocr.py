"""RapidOCR (PP-OCR ONNX models shipped inside the wheel): the default CPU reader for "do the pixels hold the text"."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Sequence

import numpy as np
from PIL import Image

from optical_memory.core.extras import require
from optical_memory.core.geometry import Mode
from optical_memory.readers._images import as_rgb, optional_int, upscale_longest_side
from optical_memory.readers.base import Reader


@dataclass(frozen=True)
class _Box:
    left: float
    top: float
    bottom: float
    text: str

    @property
    def centre(self) -> float:
        return (self.top + self.bottom) / 2

    @property
    def height(self) -> float:
        return max(1.0, self.bottom - self.top)


def boxes_to_lines(boxes: Sequence[Sequence[Sequence[float]]], texts: Sequence[str]) -> str:
    """Join detected text boxes into reading order: lines top to bottom, boxes in a line left to right.

    A box joins the current line when its vertical centre lies within half a glyph height of the line's centre, so
    the several boxes the detector cuts one long line into come back as one line.
    """
    items = sorted(
        (
            _Box(min(x for x, _ in quad), min(y for _, y in quad), max(y for _, y in quad), text)
            for quad, text in zip(boxes, texts)
            if text.strip()
        ),
        key=lambda box: (box.centre, box.left),
    )
    lines: list[list[_Box]] = []
    for box in items:
        if lines:
            line = lines[-1]
            centre = sum(b.centre for b in line) / len(line)
            height = sum(b.height for b in line) / len(line)
            if abs(box.centre - centre) < 0.5 * min(height, box.height):
                line.append(box)
                continue
        lines.append([box])
    return "\n".join(" ".join(b.text for b in sorted(line, key=lambda b: b.left)) for line in lines)


class RapidOCRReader(Reader):
    """Reads a page with rapidocr's PP-OCR detector + recogniser (ONNX, CPU).

    The angle classifier is off: it flips long horizontal lines upside down and pages are never rotated. A fitted
    page smaller than ``upscale_to`` (default 1280, the master width) is first enlarged bicubically: that adds no
    information, it brings small glyphs nearer the height the recogniser was trained on. ``threads`` caps ONNX
    Runtime's intra-op threads (``None``: its default, all cores); a process pool sets 1 per worker.
    """

    name = "rapidocr"
    # It reads pixels only: the same image read for two modes is one cache entry.
    ignores_mode = True

    def __init__(self, *, upscale_to: int | None = 1280, threads: int | None = None) -> None:
        self.upscale_to = optional_int(upscale_to, field_name="upscale_to", minimum=32)
        self.threads = optional_int(threads, field_name="threads", minimum=1)
        self._engine: Any = None

    @property
    def fingerprint(self) -> str:
        """Everything that changes what this reader returns: the cache key's reader part."""
        return f"rapidocr-{version('rapidocr')}-onnxruntime-{version('onnxruntime')}-nocls-up{self.upscale_to}"

    def _get_engine(self) -> Any:
        if self._engine is None:
            RapidOCR = require("rapidocr", "ocr").RapidOCR

            params: dict[str, Any] = {
                "Global.use_cls": False,
                "Global.log_level": "warning",
                # rapidocr turns ONNX Runtime's arena off; with it on, a page spends ~0.2 s instead of ~1.4 s of
                # system time on allocations (measured on a 1,300-token page).
                "EngineConfig.onnxruntime.enable_cpu_mem_arena": True,
            }
            if self.threads is not None:
                params["EngineConfig.onnxruntime.intra_op_num_threads"] = self.threads
                params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
            self._engine = RapidOCR(params=params)
        return self._engine

    def read(self, image: Image.Image, mode: Mode | None = None) -> str:
        page = upscale_longest_side(as_rgb(image), self.upscale_to)
        result = self._get_engine()(np.asarray(page))
        if result.boxes is None or result.txts is None:
            return ""
        return boxes_to_lines(result.boxes.tolist(), list(result.txts))
