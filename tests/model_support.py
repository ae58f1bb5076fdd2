"""Builders shared by the model tests (no tests here): a tiny tokenizer, tiny random models, test pages.

Everything is built in-process from fixed seeds; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    DeepseekOcr2Config,
    DeepseekOcr2ForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from optical_memory.model.configuration_deepseek_ocr import (
    TINY_IMAGE_TOKEN_ID,
    TINY_SAM,
    TINY_TEXT,
    DeepSeekOCRConfig,
)
from optical_memory.model.modeling_deepseek_ocr import DeepSeekOCR


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    """‖output − reference‖ / ‖reference‖, computed in float32."""
    return float((output.float() - reference.float()).norm() / reference.float().norm())


# ids 0..3 as DeepSeekOCRConfig.tiny() expects them: BOS 0, EOS 1, pad 2, <image> 3.
SPECIAL_TOKENS = ["<bos>", "<eos>", "<pad>", "<image>"]
TRAINING_TEXT = [
    "Free OCR. The quick brown fox jumps over the lazy dog.",
    "Remember the meeting on 12 March 2024 with Alice about the budget.",
    "user: what did we decide? assistant: we picked the blue design.",
]


def tiny_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on a few sentences, special tokens at ids 0..3."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def tiny_model(seed: int = 0, *, with_tokenizer: bool = True) -> DeepSeekOCR:
    """A random tiny DeepSeek-OCR in eval mode, with non-zero SAM relative-position tables."""
    torch.manual_seed(seed)
    model = DeepSeekOCR(DeepSeekOCRConfig.tiny()).eval()
    with torch.no_grad():
        for layer in model.vision.sam.layers:
            layer.attn.rel_pos_h.normal_(std=0.5)
            layer.attn.rel_pos_w.normal_(std=0.5)
        model.vision.sam.pos_embed.normal_(std=0.5)
    if with_tokenizer:
        model.tokenizer = tiny_tokenizer()
    return model


def tiny_ocr2_model(seed: int = 0) -> DeepseekOcr2ForConditionalGeneration:
    """A random tiny DeepSeek-OCR-2 (transformers' native class) sharing the tiny vocabulary's special ids."""
    torch.manual_seed(seed)
    config = DeepseekOcr2Config(
        vision_config={
            "sam_config": TINY_SAM,
            "encoder_config": {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "vocab_size": 16,
                "max_position_embeddings": 2048,
            },
        },
        text_config=dict(TINY_TEXT),
        image_token_id=TINY_IMAGE_TOKEN_ID,
    )
    return DeepseekOcr2ForConditionalGeneration(config).eval()


def text_page(width: int, height: int, text: str = "page 3: Alice said 12 March") -> Image.Image:
    """A white page with a few dark lines of text, so views differ in content."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for row in range(0, height - 20, max(20, height // 12)):
        draw.text((10, row + 5), f"{text} {row}", fill=(0, 0, 0))
    draw.rectangle((width // 3, height // 3, width // 2, height // 2), fill=(40, 90, 200))
    return image


def saved_tiny_model(directory: Path, seed: int = 0) -> DeepSeekOCR:
    """Save a tiny model (with tokenizer) into ``directory`` in the released layout and return it."""
    model = tiny_model(seed)
    model.save_pretrained(directory)
    return model
