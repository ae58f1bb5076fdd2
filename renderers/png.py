"""A fast, fixed PNG encoding for greyscale page images.

Pillow's PNG writer tries every row filter on every row and then runs zlib; on a 1280 px page that costs more than
laying out and drawing the page together. Text pages are mostly runs of one grey, so one fixed filter ("Up": each
row minus the row above, which zeroes blank and repeated rows) followed by ISA-L's deflate (``isal``, a zlib-format
stream several times faster than zlib at equal size) gives files about as small, 5-7x faster. The output is a
standard 8-bit greyscale PNG that any decoder (``optical_memory.core.imaging.decode_png``) reads back to identical pixels;
equal pixels give equal bytes for a given ``isal`` version.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from isal import isal_zlib
from PIL import Image

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILTER_UP = 2
_GREYSCALE = 0
_DEFLATE_LEVEL = 1  # ISA-L levels run 0-3; 1 is as fast as 0 and compresses like zlib's 6 on text pages


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def encode_page_png(image: Image.Image) -> bytes:
    """PNG bytes of a greyscale ("L") page image: Up filter on every row, then ISA-L deflate."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, got {type(image).__name__}")
    if image.mode != "L":
        raise ValueError(f"image mode must be 'L' (a greyscale page), got {image.mode!r}")
    pixels = np.asarray(image)
    height, width = pixels.shape
    rows = np.empty((height, width + 1), dtype=np.uint8)
    rows[:, 0] = _FILTER_UP
    rows[0, 1:] = pixels[0]
    np.subtract(pixels[1:], pixels[:-1], out=rows[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG specifies
    header = struct.pack(">IIBBBBB", width, height, 8, _GREYSCALE, 0, 0, 0)
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", isal_zlib.compress(rows.tobytes(), _DEFLATE_LEVEL)),
            _chunk(b"IEND", b""),
        )
    )
