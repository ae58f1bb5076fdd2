"""Input checks and the optional upscale shared by the CPU OCR readers."""

from __future__ import annotations

from PIL import Image

from optical_memory.core.validation import validate_int


def as_rgb(image: object) -> Image.Image:
    """The image as RGB; a ``TypeError`` naming ``image`` for anything that is not a PIL image."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    if image.width <= 0 or image.height <= 0:
        raise ValueError(f"image must not be empty, got {image.width}x{image.height}")
    return image.convert("RGB")


def upscale_longest_side(image: Image.Image, target: int | None) -> Image.Image:
    """Enlarge (bicubic, aspect kept) so the longest side is ``target``; never shrinks, ``None`` leaves it as is.

    Upscaling adds no information; it only brings small glyphs to the size the OCR engine was trained on.
    """
    if target is None or max(image.size) >= target:
        return image
    scale = target / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)


def optional_int(value: object, *, field_name: str, minimum: int) -> int | None:
    """``None``, or an int of at least ``minimum``; errors name ``field_name``."""
    return None if value is None else validate_int(value, field_name=field_name, minimum=minimum)
