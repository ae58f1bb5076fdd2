"""Page image + ``Mode`` → the normalised pixel tensors DeepSeek-OCR's DeepEncoder reads, one batch per mode.

Fitting (resize, pad, GUNDAM tiles) is ``optical_memory.core.imaging``'s, so what is priced and shown is what is encoded;
this module only turns fitted RGB images into tensors: RGB → [0, 1] → normalised with mean 0.5 and std 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from optical_memory.core.geometry import (
    GUNDAM_MAX_TILES,
    GUNDAM_MIN_TILES,
    Mode,
    square_mode,
)
from optical_memory.core.imaging import fit_to_mode, gundam_views
from optical_memory.core.validation import validate_int

PIXEL_MEAN = 0.5
PIXEL_STD = 0.5


@dataclass(frozen=True)
class VisionInputs:
    """A batch of pages prepared for one mode.

    ``pixel_values`` holds one square view per page (the global view for GUNDAM); ``pixel_values_local`` holds every
    GUNDAM tile of the batch, page after page, row-major within a page (``None`` when no page has tiles);
    ``image_grids`` is (columns, rows) of each page's tiles, (1, 1) meaning none.
    """

    mode: Mode
    pixel_values: torch.Tensor
    pixel_values_local: torch.Tensor | None
    image_grids: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if len(self.image_grids) != self.pixel_values.shape[0]:
            raise ValueError(
                f"image_grids has {len(self.image_grids)} entries for {self.pixel_values.shape[0]} pages"
            )
        tiles = sum(cols * rows for cols, rows in self.image_grids if cols * rows > 1)
        held = 0 if self.pixel_values_local is None else self.pixel_values_local.shape[0]
        if tiles != held:
            raise ValueError(f"pixel_values_local holds {held} tiles but image_grids describe {tiles}")

    @property
    def num_local_patches(self) -> list[int]:
        """Tiles per page (0 for pages without tiles)."""
        return [cols * rows if cols * rows > 1 else 0 for cols, rows in self.image_grids]

    @property
    def valid_tokens(self) -> list[int]:
        """The paper's vision-token count per page (grid cells, no newlines or separator)."""
        return [self.mode.valid_tokens(grid) for grid in self.image_grids]

    @property
    def decoder_positions(self) -> list[int]:
        """Decoder positions per page: valid tokens plus one newline per grid row and the view separator."""
        return [self.mode.decoder_positions(grid) for grid in self.image_grids]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "VisionInputs":
        """The same batch on ``device`` in ``dtype``."""
        local = self.pixel_values_local
        return VisionInputs(
            mode=self.mode,
            pixel_values=self.pixel_values.to(device=device, dtype=dtype),
            pixel_values_local=None if local is None else local.to(device=device, dtype=dtype),
            image_grids=self.image_grids,
        )

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``DeepSeekOCR.forward`` / ``generate`` (dropped by ``generate`` after prefill)."""
        return {
            "pixel_values": self.pixel_values,
            "pixel_values_local": self.pixel_values_local,
            "image_grids": self.image_grids,
        }


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """An image as a normalised float32 tensor [3, height, width]."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    array = (array - PIXEL_MEAN) / PIXEL_STD
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def infer_mode(image: Image.Image) -> Mode:
    """The mode a page image was fitted to: a square of a native size names its mode; anything else is GUNDAM.

    GUNDAM is also what the reference ``infer`` uses by default (1024 global view, 640 tiles, crop mode on).
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    return square_mode(image.width, image.height) or Mode.GUNDAM


def _stack_on_device(views: Sequence[Image.Image], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Views as one uint8 batch moved to ``device`` (pinned when it is a GPU), normalised there.

    A quarter of float32's bytes cross the bus and the arithmetic is the CPU path's (fp32), so values are identical.
    The result is NCHW with channels-last memory, the layout the patch convolution reads fastest.
    """
    pixels = torch.from_numpy(np.stack([np.asarray(view.convert("RGB"), dtype=np.uint8) for view in views]))
    if device.type == "cuda":
        pixels = pixels.pin_memory()
    pixels = pixels.to(device, non_blocking=True).permute(0, 3, 1, 2)
    return ((pixels.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD).to(dtype)


def preprocess(
    images: Sequence[Image.Image],
    mode: Mode,
    *,
    max_tiles: int = GUNDAM_MAX_TILES,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> VisionInputs:
    """Fit each page to ``mode`` and stack the views into one batch.

    ``max_tiles`` caps GUNDAM's local grid (the reference allows 9; vLLM's path 6). With ``device``, the fitted views
    travel as uint8 (pinned for a GPU) and are normalised on ``device`` in fp32, then cast to ``dtype``.
    """
    if not isinstance(mode, Mode):
        raise TypeError(f"mode must be a Mode, got {type(mode).__name__}")
    if isinstance(images, Image.Image) or not isinstance(images, Sequence):
        raise TypeError("images must be a sequence of PIL images")
    if not images:
        raise ValueError("images must not be empty")
    validate_int(max_tiles, field_name="max_tiles", minimum=GUNDAM_MIN_TILES)
    for position, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise TypeError(f"images[{position}] must be a PIL.Image.Image, got {type(image).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    views: list[Image.Image] = []
    tiles: list[Image.Image] = []
    grids: list[tuple[int, int]] = []
    for image in images:
        if mode is Mode.GUNDAM:
            local_views, global_view, grid = gundam_views(image, max_tiles=max_tiles)
            tiles.extend(local_views)
            views.append(global_view)
            grids.append(grid)
        else:
            views.append(fit_to_mode(image, mode))
            grids.append((1, 1))
    if device is None:
        pixel_values = torch.stack([image_to_tensor(view) for view in views]).to(dtype)
        local = torch.stack([image_to_tensor(tile) for tile in tiles]).to(dtype) if tiles else None
    else:
        target = torch.device(device)
        pixel_values = _stack_on_device(views, target, dtype)
        local = _stack_on_device(tiles, target, dtype) if tiles else None
    return VisionInputs(mode=mode, pixel_values=pixel_values, pixel_values_local=local, image_grids=tuple(grids))
