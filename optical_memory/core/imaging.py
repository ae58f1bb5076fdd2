"""Page pixels: fitting images to a mode or tier (by the sizes ``core.geometry`` computes), PNG in and out, pixel hashes.

One place for the resize/pad/tile rules of ARCHITECTURE.md ("Modes"), shared by the memory (what a context shows),
the DeepEncoder's preprocessing and the benchmarks, so what is priced, shown and encoded is the same image.

Pages are greyscale, and what a consumer receives stays greyscale (``fit_to_tier``): an "L" PNG of a page is about
three quarters the size of the same pixels as RGB, and carries the same information. Only the DeepEncoder's own
preprocessing (``fit_to_mode``, ``gundam_views``) works in RGB, as the model reads three channels.
"""

from __future__ import annotations

import base64
import hashlib
import io

from PIL import Image

from optical_memory.core.geometry import (
    GUNDAM_GLOBAL,
    GUNDAM_MAX_TILES,
    GUNDAM_TILE,
    PAD_COLOR,
    Fit,
    Mode,
    Tier,
    gundam_grid,
    longest_side_scale,
    pad_scale,
    scaled_size,
)

# Decompression-bomb guard for images that come back from a store or a file: far above any page we render.
MAX_DECODED_PIXELS = 64_000_000


def _as_page_mode(image: Image.Image) -> Image.Image:
    """The image as "L" when it is greyscale already, else as "RGB": the two modes the fitting rules work in."""
    return image if image.mode in ("L", "RGB") else image.convert("L" if image.mode in ("1", "LA") else "RGB")


def pad_to_square(image: Image.Image, size: int) -> Image.Image:
    """Keep the aspect ratio: bicubic fit into ``size``×``size``, centred on a (127, 127, 127) canvas."""
    image = _as_page_mode(image)
    fitted = scaled_size(image.width, image.height, pad_scale(image.width, image.height, size))
    canvas = Image.new(image.mode, (size, size), PAD_COLOR if image.mode == "RGB" else PAD_COLOR[0])
    canvas.paste(
        image.resize(fitted, Image.Resampling.BICUBIC) if fitted != image.size else image,
        ((size - fitted[0]) // 2, (size - fitted[1]) // 2),
    )
    return canvas


def resize_square(image: Image.Image, size: int) -> Image.Image:
    """Plain resize to ``size``×``size`` (aspect distorted), as DeepSeek-OCR does for TINY and SMALL."""
    image = _as_page_mode(image)
    return image if image.size == (size, size) else image.resize((size, size), Image.Resampling.BICUBIC)


def scale_longest_side(image: Image.Image, size: int) -> Image.Image:
    """Host images: keep the aspect ratio, shrink so the longest side is at most ``size`` (never enlarge)."""
    image = _as_page_mode(image)
    scale = longest_side_scale(image.width, image.height, size)
    if scale >= 1:
        return image
    return image.resize(scaled_size(image.width, image.height, scale), Image.Resampling.LANCZOS)


def gundam_views(image: Image.Image, *, max_tiles: int = GUNDAM_MAX_TILES) -> tuple[list[Image.Image], Image.Image, tuple[int, int]]:
    """GUNDAM's views: row-major 640-px local tiles, the padded 1024-px global view, and (columns, rows)."""
    image = image.convert("RGB")
    cols, rows = gundam_grid(image.width, image.height, max_tiles=max_tiles)
    global_view = pad_to_square(image, GUNDAM_GLOBAL)
    if cols * rows <= 1:
        return [], global_view, (1, 1)
    stretched = image.resize((GUNDAM_TILE * cols, GUNDAM_TILE * rows), Image.Resampling.BICUBIC)
    tiles = [
        stretched.crop((c * GUNDAM_TILE, r * GUNDAM_TILE, (c + 1) * GUNDAM_TILE, (r + 1) * GUNDAM_TILE))
        for r in range(rows)
        for c in range(cols)
    ]
    return tiles, global_view, (cols, rows)


def fit_to_mode(image: Image.Image, mode: Mode) -> Image.Image:
    """The single square RGB image a mode feeds the encoder (GUNDAM: its global view)."""
    image = image.convert("RGB")
    if mode.fit is Fit.PAD or mode is Mode.GUNDAM:
        return pad_to_square(image, mode.size)
    return resize_square(image, mode.size)


def fit_to_tier(image: Image.Image, tier: Tier) -> Image.Image:
    """The greyscale image a consumer receives at ``tier``. GUNDAM pages are sent whole (the encoder tiles them)."""
    image = image.convert("L")
    if tier.fit is Fit.PAD:
        return pad_to_square(image, tier.size)
    if tier.fit is Fit.RESIZE:
        return resize_square(image, tier.size)
    if tier.fit is Fit.TILE:
        return image
    return scale_longest_side(image, tier.size)


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with a fixed, fast compression level: same pixels → same bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def png_base64(png: bytes) -> str:
    """PNG bytes as base64 text, the form every chat API's inline images take."""
    return base64.b64encode(png).decode("ascii")


def png_data_url(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,…`` URL (OpenAI-style ``image_url`` parts)."""
    return "data:image/png;base64," + png_base64(png)


def decode_png(data: bytes) -> Image.Image:
    """Decode image bytes from a store or a file: "L" for a greyscale image (pages), else "RGB"; raises
    ``ValueError`` for anything that is not a sane image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            # Checked before decoding, without touching Pillow's process-wide limit (which only warns below 2x).
            if image.width * image.height > MAX_DECODED_PIXELS:
                raise ValueError(
                    f"refusing to decode an oversized image ({image.width}x{image.height} pixels, limit"
                    f" {MAX_DECODED_PIXELS})"
                )
            image.load()
            decoded = _as_page_mode(image)
            # Leaving the ``with`` closes ``image``, and a closed image has no pixels: keep a copy, not it.
            return image.copy() if decoded is image else decoded
    except Image.DecompressionBombError as error:
        raise ValueError(f"refusing to decode an oversized image: {error}") from None
    except (OSError, SyntaxError, EOFError) as error:  # Pillow reports some broken PNG chunks as SyntaxError
        raise ValueError(f"not a readable image: {error}") from None


def pixel_hash(image: Image.Image) -> str:
    """SHA-256 of the raw RGB pixels and size: the determinism check for rendering."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()
