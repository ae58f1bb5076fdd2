"""The OCR model a weights directory holds, chosen by its ``config.json`` (as transformers' ``AutoModel`` does)."""

from __future__ import annotations

from pathlib import Path

import torch

from optical_memory.model.checkpoint import OCR2_MODEL_TYPE, read_config
from optical_memory.model.configuration_deepseek_ocr import (
    RELEASED_MODEL_TYPE,
    DeepSeekOCRConfig,
)
from optical_memory.model.modeling_deepseek_ocr import DeepSeekOCR
from optical_memory.model.ocr2 import DeepSeekOCR2


def load_backend(
    local_dir: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str = "cpu",
) -> DeepSeekOCR | DeepSeekOCR2:
    """The OCR model a weights directory holds, chosen by its ``config.json`` ``model_type``.

    ``deepseek_vl_v2`` (the DeepSeek-OCR release) or ``deepseek_ocr`` → :class:`DeepSeekOCR`;
    ``deepseek_ocr2`` (transformers' native DeepSeek-OCR-2 layout) → :class:`optical_memory.ocr2.DeepSeekOCR2`.
    """
    model_type = read_config(local_dir).get("model_type")
    if model_type in (RELEASED_MODEL_TYPE, DeepSeekOCRConfig.model_type):
        return DeepSeekOCR.from_pretrained(local_dir, dtype=dtype, device=device)
    if model_type == OCR2_MODEL_TYPE:
        return DeepSeekOCR2.from_pretrained(local_dir, dtype=dtype, device=device)
    raise ValueError(
        f"config.json model_type {model_type!r} is neither DeepSeek-OCR ({RELEASED_MODEL_TYPE!r}) "
        f"nor DeepSeek-OCR-2 ({OCR2_MODEL_TYPE!r})"
    )
