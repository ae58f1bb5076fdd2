"""DeepSeek-OCR-2, the second backend: transformers' native ``DeepseekOcr2ForConditionalGeneration`` and processor.

OCR-2 keeps SAM-B and the MoE decoder but replaces CLIP with a Qwen2-style causal-flow encoder and reads at its own
resolutions (a 1024-px global view of 256 tokens plus up to 6 tiles of 768 px, 144 tokens each). The v1 ladder's
modes therefore map onto OCR-2 only as tiling on (``Mode.GUNDAM`` or no mode) or off (any other mode: one view);
the token counts are OCR-2's, not the v1 table's.

Weights load from a local directory saved in transformers' layout (``model_type`` ``deepseek_ocr2``) holding a
``tokenizer.json``; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers import (
    DeepseekOcr2ForConditionalGeneration,
    DeepseekOcr2Processor,
    PreTrainedTokenizerFast,
)
from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
    DeepseekOcr2ImageProcessorPil,
)

from optical_memory.core.geometry import Mode
from optical_memory.core.validation import validate_int
from optical_memory.model.checkpoint import (
    CONFIG_FILE,
    OCR2_MODEL_TYPE,
    TOKENIZER_FILE,
    parse_dtype,
    read_config,
)
from optical_memory.model.prompts import FREE_OCR_PROMPT, REFERENCE_NO_REPEAT_NGRAM


class DeepSeekOCR2:
    """A DeepSeek-OCR-2 model with its processor, reading pages through the same ``ocr`` call as ``DeepSeekOCR``."""

    name = "deepseek-ocr-2"

    def __init__(self, model: DeepseekOcr2ForConditionalGeneration, processor: DeepseekOcr2Processor) -> None:
        if not isinstance(model, DeepseekOcr2ForConditionalGeneration):
            raise TypeError(f"model must be a DeepseekOcr2ForConditionalGeneration, got {type(model).__name__}")
        if not isinstance(processor, DeepseekOcr2Processor):
            raise TypeError(f"processor must be a DeepseekOcr2Processor, got {type(processor).__name__}")
        self.model = model
        self.processor = processor

    @staticmethod
    def build_processor(tokenizer: PreTrainedTokenizerFast) -> DeepseekOcr2Processor:
        """OCR-2's processor with the released image settings (1024 global view, 768 tiles, 2–6 tiles)."""
        return DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=tokenizer)

    @classmethod
    def from_pretrained(
        cls,
        local_dir: str | Path,
        *,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str = "cpu",
    ) -> "DeepSeekOCR2":
        """Load from a local directory: ``config.json`` (``deepseek_ocr2``), safetensors weights, ``tokenizer.json``.

        ``dtype`` ``None`` keeps the stored dtype.
        """
        directory = Path(local_dir)
        model_type = read_config(directory).get("model_type")
        if model_type != OCR2_MODEL_TYPE:
            raise ValueError(f"{directory / CONFIG_FILE} has model_type {model_type!r}, expected {OCR2_MODEL_TYPE!r}")
        tokenizer_path = directory / TOKENIZER_FILE
        if not tokenizer_path.is_file():
            raise FileNotFoundError(f"{tokenizer_path} is missing; DeepSeek-OCR-2 needs it next to {CONFIG_FILE}")
        model = DeepseekOcr2ForConditionalGeneration.from_pretrained(
            directory, dtype=parse_dtype(dtype) or "auto", local_files_only=True
        )
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_path))
        return cls(model.to(torch.device(device)).eval(), cls.build_processor(tokenizer))

    def save_pretrained(self, directory: str | Path) -> Path:
        """transformers' layout plus ``tokenizer.json``, which :meth:`from_pretrained` reads back."""
        target = Path(directory)
        self.model.save_pretrained(target)
        self.processor.tokenizer.backend_tokenizer.save(str(target / TOKENIZER_FILE))
        return target

    @torch.no_grad()
    def ocr(
        self,
        image: Image.Image,
        mode: Mode | None = None,
        *,
        prompt: str = FREE_OCR_PROMPT,
        max_new_tokens: int = 2048,
        no_repeat_ngram_size: int = REFERENCE_NO_REPEAT_NGRAM,
    ) -> str:
        """Read one page greedily; ``mode`` only switches tiling (GUNDAM or ``None``: tiles; otherwise one view)."""
        if not isinstance(image, Image.Image):
            raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
        if mode is not None and not isinstance(mode, Mode):
            raise TypeError(f"mode must be a Mode or None, got {type(mode).__name__}")
        validate_int(max_new_tokens, field_name="max_new_tokens", minimum=1)
        tiled = mode in (None, Mode.GUNDAM)
        # Untiled, the image processor draws its single view at tile size; the processor must count tokens for the
        # same size, or the placeholders and features disagree.
        tile = self.processor.image_processor.tile_size
        view = {} if tiled else {"size": {"height": tile, "width": tile}}
        inputs = self.processor(
            images=image.convert("RGB"), text=prompt, crop_to_patches=tiled, return_tensors="pt", **view
        ).to(self.model.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        if inputs.get("pixel_values_local") is not None:
            inputs["pixel_values_local"] = inputs["pixel_values_local"].to(self.model.dtype)
        text_config = self.model.config.text_config
        output = self.model.generate(
            **inputs,
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
            no_repeat_ngram_size=no_repeat_ngram_size,
            eos_token_id=text_config.eos_token_id,
            pad_token_id=text_config.pad_token_id,
        )
        prompt_length = inputs["input_ids"].shape[1]
        return self.processor.tokenizer.decode(output[0, prompt_length:], skip_special_tokens=True).strip()
