"""DeepSeek-OCR as a ``Reader``: what the decoder itself reads back from a page at a given mode.

Works with either backend (``DeepSeekOCR`` or ``DeepSeekOCR2``, e.g. from ``optical_memory.model.auto.load_backend``):
both read a page through the same ``ocr`` call.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from PIL import Image

from optical_memory.core.geometry import Mode
from optical_memory.core.validation import validate_int
from optical_memory.model.auto import load_backend
from optical_memory.model.modeling_deepseek_ocr import DeepSeekOCR
from optical_memory.model.prompts import (
    FREE_OCR_PROMPT,
    IMAGE_MARKER,
    REFERENCE_NO_REPEAT_NGRAM,
)
from optical_memory.readers.base import Reader

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


@runtime_checkable
class OCRBackend(Protocol):
    """A model that reads one page image into text."""

    def ocr(self, image: Image.Image, mode: Mode | None = None, **options: Any) -> str: ...


class DeepSeekOCRReader(Reader):
    """Greedy DeepSeek-OCR decoding of one page, with the reference's no-repeat n-gram guard.

    ``model`` is a loaded backend or a local weights directory (loaded with ``load_backend`` in ``dtype`` on
    ``device``). ``tokenizer`` overrides the one ``DeepSeekOCR`` loaded with its weights (OCR-2 always uses its
    processor's).
    """

    ignores_mode = False

    def __init__(
        self,
        model: "OCRBackend | str | os.PathLike[str]",
        tokenizer: "PreTrainedTokenizerBase | None" = None,
        max_new_tokens: int = 2048,
        *,
        prompt: str = FREE_OCR_PROMPT,
        no_repeat_ngram_size: int = REFERENCE_NO_REPEAT_NGRAM,
        dtype: "torch.dtype | str | None" = None,
        device: "torch.device | str" = "cpu",
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            model = load_backend(model, dtype=dtype, device=device)
        if not isinstance(model, OCRBackend):
            raise TypeError(f"model must have an ocr(image, mode, ...) method, got {type(model).__name__}")
        validate_int(max_new_tokens, field_name="max_new_tokens", minimum=1)
        if not isinstance(prompt, str) or prompt.count(IMAGE_MARKER) != 1:
            raise ValueError(f"prompt must be a string with exactly one {IMAGE_MARKER} marker, got {prompt!r}")
        validate_int(no_repeat_ngram_size, field_name="no_repeat_ngram_size", minimum=0)
        if tokenizer is not None and not isinstance(model, DeepSeekOCR):
            raise TypeError("tokenizer applies to DeepSeekOCR only; DeepSeek-OCR-2 reads with its processor's")
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.name = "deepseek-ocr" if isinstance(model, DeepSeekOCR) else getattr(model, "name", type(model).__name__)

    @property
    def fingerprint(self) -> str:
        """Name, weights and decoding settings: what a read cache must key on."""
        config = getattr(self.model, "config", None) or getattr(getattr(self.model, "model", None), "config", None)
        source = getattr(config, "name_or_path", "") or f"in-memory-{id(self.model)}"
        return (
            f"{self.name}|{source}|prompt={self.prompt!r}|max_new_tokens={self.max_new_tokens}"
            f"|no_repeat_ngram_size={self.no_repeat_ngram_size}"
        )

    def read(self, image: Image.Image, mode: Mode | None = None) -> str:
        """The page's text as the model decodes it; ``mode`` ``None`` lets the backend infer it from the image."""
        options: dict[str, Any] = {
            "prompt": self.prompt,
            "max_new_tokens": self.max_new_tokens,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
        }
        if self.tokenizer is not None:
            options["tokenizer"] = self.tokenizer
        return self.model.ocr(image, mode, **options)
