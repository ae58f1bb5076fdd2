"""DeepSeek-OCR (v1): the DeepEncoder's tokens scattered into ``<image>`` positions of the 3B MoE decoder.

The decoder is transformers' ``DeepseekOcr2TextModel`` (plain MHA, softmax top-k router without renormalisation,
shared experts, fused ``gate_up_proj`` experts), which is exactly DeepSeek-3B-MoE; the head is an untied ``Linear``.
``DeepSeekOCR`` is a ``PreTrainedModel`` + ``GenerationMixin``, so ``generate`` (greedy, KV cache, no-repeat n-gram)
is transformers' own; the vision inputs are consumed at prefill and dropped afterwards.

Weights load only from a local directory in the released layout (``optical_memory.model.checkpoint``, ``optical_memory.model.weights``); nothing downloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from PIL import Image
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import (
    DeepseekOcr2TextModel,
)

from optical_memory.core.geometry import GUNDAM_MAX_TILES, Mode
from optical_memory.core.validation import validate_int
from optical_memory.model.checkpoint import read_config
from optical_memory.model.configuration_deepseek_ocr import DeepSeekOCRConfig
from optical_memory.model.deepencoder import DeepEncoder, VisionEmbedding
from optical_memory.model.preprocessing import infer_mode, preprocess
from optical_memory.model.prompts import (
    FREE_OCR_PROMPT,
    REFERENCE_NO_REPEAT_NGRAM,
    build_prompt_ids,
)
from optical_memory.model.weights import load_weights, save_weights

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase



class DeepSeekOCR(PreTrainedModel, GenerationMixin):
    """DeepEncoder (``vision``) + MoE decoder (``language_model``) + ``lm_head``.

    ``tokenizer`` is attached by :meth:`from_pretrained` when the weights directory has a ``tokenizer.json``.
    """

    config: DeepSeekOCRConfig
    config_class = DeepSeekOCRConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    # SAM's relative-position bias needs an additive mask, which flash attention does not take.
    _supports_flash_attn = False
    _supports_sdpa = True
    _supports_attention_backend = True
    _skip_keys_device_placement = ["past_key_values"]
    _no_split_modules = ["DeepseekOcr2SamVisionLayer", "CLIPEncoderLayer", "DeepseekOcr2TextDecoderLayer"]

    def __init__(self, config: DeepSeekOCRConfig, *, sam_attention: str = "sdpa") -> None:
        if not isinstance(config, DeepSeekOCRConfig):
            raise TypeError(f"config must be a DeepSeekOCRConfig, got {type(config).__name__}")
        if config.tie_word_embeddings or config.text_config.tie_word_embeddings:
            raise ValueError("tie_word_embeddings must be False: DeepSeek-OCR has an untied lm_head")
        super().__init__(config)
        self.vision = DeepEncoder(config, sam_attention=sam_attention)
        self.language_model = DeepseekOcr2TextModel(config.text_config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, DeepEncoder):
            module.reset_layout_embeddings()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.language_model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.language_model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def scatter_vision(
        self,
        input_ids: torch.LongTensor,
        inputs_embeds: torch.Tensor,
        vision_embeddings: Sequence[torch.Tensor | VisionEmbedding],
    ) -> torch.Tensor:
        """Fill each sequence's ``<image>`` positions, in order, with its vision embeddings.

        ``vision_embeddings`` has one entry per sequence: that sequence's pages in decoder layout, concatenated.
        """
        if len(vision_embeddings) != input_ids.shape[0]:
            raise ValueError(
                f"vision_embeddings has {len(vision_embeddings)} entries for {input_ids.shape[0]} sequences"
            )
        rows = []
        for row, (ids, embeds, vision) in enumerate(zip(input_ids, inputs_embeds, vision_embeddings)):
            vision = vision.embeddings if isinstance(vision, VisionEmbedding) else vision
            slots = ids == self.config.image_token_id
            if int(slots.sum()) != vision.shape[0]:
                raise ValueError(
                    f"sequence {row} has {int(slots.sum())} <image> positions but {vision.shape[0]} vision embeddings"
                )
            rows.append(embeds.masked_scatter(slots.unsqueeze(-1), vision.to(device=embeds.device, dtype=embeds.dtype)))
        return torch.stack(rows)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_local: torch.Tensor | None = None,
        image_grids: Sequence[tuple[int, int]] | None = None,
        vision_embeddings: Sequence[torch.Tensor | VisionEmbedding] | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Logits over the vocabulary.

        Vision comes either as pixels (``pixel_values`` [pages, 3, side, side] with one page per sequence, GUNDAM
        tiles in ``pixel_values_local`` and ``image_grids``) or pre-encoded (``vision_embeddings``); both need
        ``input_ids`` to locate the ``<image>`` positions.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if pixel_values is not None and vision_embeddings is not None:
            raise ValueError("pass pixel_values or vision_embeddings, not both")
        if inputs_embeds is None:
            inputs_embeds = self.language_model.embed_tokens(input_ids)
            if pixel_values is not None:
                vision_embeddings = self.vision(pixel_values, pixel_values_local, image_grids)
            if vision_embeddings is not None:
                inputs_embeds = self.scatter_vision(input_ids, inputs_embeds, vision_embeddings)
        elif pixel_values is not None or vision_embeddings is not None:
            raise ValueError("vision inputs need input_ids to locate the <image> positions")
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        if isinstance(logits_to_keep, int):
            hidden = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
        else:
            hidden = hidden[:, logits_to_keep]
        return CausalLMOutputWithPast(logits=self.lm_head(hidden).float(), past_key_values=outputs.past_key_values)

    def prepare_inputs_for_generation(self, *args: Any, is_first_iteration: bool | None = False, **kwargs: Any) -> dict:
        """transformers' preparation, plus: pre-encoded vision is consumed at prefill only (pixels already are)."""
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if not is_first_iteration and kwargs.get("use_cache", True):
            inputs.pop("vision_embeddings", None)
        return inputs

    @torch.no_grad()
    def ocr(
        self,
        image: Image.Image,
        mode: Mode | None = None,
        *,
        tokenizer: "PreTrainedTokenizerBase | None" = None,
        prompt: str = FREE_OCR_PROMPT,
        max_new_tokens: int = 2048,
        no_repeat_ngram_size: int = REFERENCE_NO_REPEAT_NGRAM,
        max_tiles: int = GUNDAM_MAX_TILES,
    ) -> str:
        """Read one page: greedy decoding with the reference's no-repeat n-gram guard.

        ``mode`` ``None`` infers it from the image (a native square size names its mode, anything else is GUNDAM).
        """
        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        if tokenizer is None:
            raise ValueError("no tokenizer: pass tokenizer= or load the model from a directory with tokenizer.json")
        validate_int(max_new_tokens, field_name="max_new_tokens", minimum=1)
        mode = infer_mode(image) if mode is None else mode
        inputs = preprocess([image], mode, max_tiles=max_tiles).to(self.device, self.vision.dtype)
        text = self.config.text_config
        ids = build_prompt_ids(
            tokenizer,
            prompt,
            inputs.decoder_positions,
            bos_token_id=text.bos_token_id,
            image_token_id=self.config.image_token_id,
        )
        input_ids = torch.tensor([ids], device=self.device)
        output = self.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            **inputs.model_kwargs(),
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
            no_repeat_ngram_size=no_repeat_ngram_size,
            eos_token_id=text.eos_token_id,
            pad_token_id=text.pad_token_id,
        )
        return tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True).strip()

    def parameter_counts(self) -> dict[str, int]:
        """Exact parameter counts by part (works on a ``meta``-device model).

        ``decoder_active_per_token`` counts what one token runs through: attention, norms, the dense MLP, each MoE
        layer's router, shared experts and ``num_experts_per_tok`` routed experts, and the head; the input embedding
        is a row lookup and is not counted.
        """

        def count(module: nn.Module) -> int:
            return sum(parameter.numel() for parameter in module.parameters())

        text = self.config.text_config
        vision = self.vision
        counts = {
            "sam": count(vision.sam),
            "clip": count(vision.clip),
            "projector": count(vision.projector),
            "layout": vision.image_newline.numel() + vision.view_separator.numel(),
        }
        counts["encoder"] = sum(counts.values())
        counts["decoder"] = count(self.language_model) + count(self.lm_head)
        active = count(self.language_model.norm) + count(self.lm_head)
        for layer in self.language_model.layers:
            active += count(layer) - count(layer.mlp)
            if hasattr(layer.mlp, "experts"):
                routed = count(layer.mlp.experts) * text.num_experts_per_tok // text.n_routed_experts
                active += count(layer.mlp.gate) + count(layer.mlp.shared_experts) + routed
            else:
                active += count(layer.mlp)
        counts["decoder_active_per_token"] = active
        counts["total"] = counts["encoder"] + counts["decoder"]
        return counts

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        local_dir: str | Path,
        *,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str = "cpu",
        sam_attention: str = "sdpa",
    ) -> "DeepSeekOCR":
        """Load DeepSeek-OCR from a local directory in the released layout (``config.json``, safetensors shards,
        optionally ``tokenizer.json``), strictly: see :func:`optical_memory.model.weights.load_weights`."""
        config = DeepSeekOCRConfig.from_released(read_config(local_dir))
        with torch.device("meta"):
            model = cls(config, sam_attention=sam_attention)
        return load_weights(model, local_dir, dtype=dtype, device=device)

    def save_pretrained(self, directory: str | Path) -> Path:  # type: ignore[override]
        """Write the released layout (see :func:`optical_memory.model.weights.save_weights`)."""
        return save_weights(self, directory)
