"""DeepSeek-OCR's prompts: the ``<image>`` marker, the reference "Free OCR." prompt and decoding setting, and the
prompt ids with one ``<image>`` position per decoder position of each image (no role markers, no EOS)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IMAGE_MARKER = "<image>"
FREE_OCR_PROMPT = "<image>\nFree OCR."
REFERENCE_NO_REPEAT_NGRAM = 20


def build_prompt_ids(
    tokenizer: "PreTrainedTokenizerBase",
    prompt: str,
    image_positions: Sequence[int],
    *,
    bos_token_id: int,
    image_token_id: int,
) -> list[int]:
    """The reference prompt: [BOS] + text, with every ``<image>`` marker replaced by that image's positions.

    No role markers and no EOS, as DeepSeek-OCR's ``infer`` builds it; text pieces are encoded without special
    tokens. ``image_positions`` gives the decoder positions of each image, in marker order.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    pieces = prompt.split(IMAGE_MARKER)
    if len(pieces) - 1 != len(image_positions):
        raise ValueError(
            f"prompt has {len(pieces) - 1} {IMAGE_MARKER} markers for {len(image_positions)} images"
        )
    ids = [bos_token_id]
    for index, piece in enumerate(pieces):
        if piece:
            ids.extend(tokenizer.encode(piece, add_special_tokens=False))
        if index < len(image_positions):
            ids.extend([image_token_id] * int(image_positions[index]))
    return ids
