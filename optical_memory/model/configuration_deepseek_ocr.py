"""Configuration of DeepSeek-OCR (v1): SAM-B + compressor, CLIP-L, linear projector and the 3B MoE decoder.

The composed modules come from transformers (``deepseek_ocr2`` for SAM and the decoder, ``clip`` for CLIP), so the
configuration is three of their sub-configs plus the few numbers the glue needs. ``DeepSeekOCRConfig()`` is the
released model; ``DeepSeekOCRConfig.tiny()`` keeps every structural rule (real input sizes, 16-px SAM patches and the
16x compressor, hence the same token grids per mode) with tiny widths and depths, so tests run on a CPU.

The released checkpoint ships a ``deepseek_vl_v2`` style ``config.json`` (nested ``language_config``,
``vision_config.width.{sam_vit_b, clip-l-14-224}``, ``projector_config``); :meth:`DeepSeekOCRConfig.from_released`
reads it and :meth:`DeepSeekOCRConfig.to_released` writes it back. Fields the release leaves implicit (SAM MLP width,
neck channels, window size, CLIP MLP width, special-token ids) take the released model's values when absent and are
written explicitly, so a tiny model round-trips too.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassError
from transformers import CLIPVisionConfig, PreTrainedConfig
from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import (
    DeepseekOcr2SamVisionConfig,
    DeepseekOcr2TextConfig,
)

RELEASED_MODEL_TYPE = "deepseek_vl_v2"
RELEASED_VISION_NAME = "deeplip_b_l"
SAM_WIDTH_KEY = "sam_vit_b"
CLIP_WIDTH_KEY = "clip-l-14-224"

# Patch size of SAM and the two stride-2 compressor convs: together they make Mode.grid = input side / 64.
SAM_PATCH_SIZE = 16
COMPRESSOR_STAGES = 2

FULL_SAM: dict[str, Any] = {
    "hidden_size": 768,
    "output_channels": 256,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 1024,
    "patch_size": SAM_PATCH_SIZE,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-6,
    "qkv_bias": True,
    "mlp_dim": 3072,
    "use_abs_pos": True,
    "use_rel_pos": True,
    "window_size": 14,
    "global_attn_indexes": [2, 5, 8, 11],
    "downsample_channels": [512, 1024],
    # transformers' SAM default (1e-10) leaves a random model blind to its input; random models here should see.
    "initializer_range": 0.02,
}

FULL_CLIP: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}

FULL_TEXT: dict[str, Any] = {
    "vocab_size": 129280,
    "hidden_size": 1280,
    "intermediate_size": 6848,
    "moe_intermediate_size": 896,
    "num_hidden_layers": 12,
    "num_attention_heads": 10,
    "num_key_value_heads": 10,
    "n_routed_experts": 64,
    "num_experts_per_tok": 6,
    "n_shared_experts": 2,
    "routed_scaling_factor": 1.0,
    "topk_method": "greedy",
    "n_group": 1,
    "topk_group": 1,
    "mlp_layer_types": ["dense"] + ["sparse"] * 11,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    "max_position_embeddings": 8192,
    "attention_bias": False,
    "mlp_bias": False,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 2,
    "tie_word_embeddings": False,
}

FULL_IMAGE_TOKEN_ID = 128815

# Tiny: real input sizes and grids, one windowed and one global SAM block, two CLIP layers, a dense and a MoE layer.
TINY_SAM: dict[str, Any] = {
    **FULL_SAM,
    "hidden_size": 32,
    "output_channels": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "mlp_dim": 64,
    "global_attn_indexes": [1],
    "downsample_channels": [24, 32],
}

TINY_CLIP: dict[str, Any] = {
    **FULL_CLIP,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}

TINY_TEXT: dict[str, Any] = {
    **FULL_TEXT,
    "vocab_size": 320,
    "hidden_size": 64,
    "intermediate_size": 96,
    "moe_intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "n_routed_experts": 8,
    "num_experts_per_tok": 2,
    "n_shared_experts": 2,
    "mlp_layer_types": ["dense", "sparse"],
    "max_position_embeddings": 4096,
}

TINY_IMAGE_TOKEN_ID = 3


@strict
class DeepSeekOCRConfig(PreTrainedConfig):
    r"""
    sam_config (`dict` or `DeepseekOcr2SamVisionConfig`, *optional*):
        SAM ViT-B with its neck and the two-conv 16x compressor (``downsample_channels``).
    clip_config (`dict` or `CLIPVisionConfig`, *optional*):
        CLIP-L run over the compressor grid; its width must equal the compressor's output channels.
    text_config (`dict` or `DeepseekOcr2TextConfig`, *optional*):
        The MoE decoder.
    image_token_id (`int`, *optional*, defaults to 128815):
        The ``<image>`` placeholder id whose positions receive the vision embeddings.
    """

    model_type = "deepseek_ocr"
    sub_configs_defaults = {
        "sam_config": DeepseekOcr2SamVisionConfig,
        "clip_config": CLIPVisionConfig,
        "text_config": DeepseekOcr2TextConfig,
    }

    sam_config: dict | PreTrainedConfig | None = None
    clip_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int = FULL_IMAGE_TOKEN_ID
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        # Absent sub-configs mean the released model, not the libraries' own defaults (OCR-2 / CLIP-B sizes).
        if self.sam_config is None:
            self.sam_config = copy.deepcopy(FULL_SAM)
        if self.clip_config is None:
            self.clip_config = copy.deepcopy(FULL_CLIP)
        if self.text_config is None:
            self.text_config = copy.deepcopy(FULL_TEXT)
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        """The rules the glue relies on; each error names the offending field."""
        sam, clip, text = self.sam_config, self.clip_config, self.text_config
        if sam.patch_size != SAM_PATCH_SIZE:
            raise ValueError(
                f"sam_config.patch_size must be {SAM_PATCH_SIZE} (modes assume 64 input pixels per token), "
                f"got {sam.patch_size}"
            )
        if len(sam.downsample_channels) != COMPRESSOR_STAGES:
            raise ValueError(
                f"sam_config.downsample_channels must list {COMPRESSOR_STAGES} channel counts, "
                f"got {sam.downsample_channels}"
            )
        if clip.hidden_size != sam.downsample_channels[-1]:
            raise ValueError(
                f"clip_config.hidden_size ({clip.hidden_size}) must equal sam_config.downsample_channels[-1] "
                f"({sam.downsample_channels[-1]}): the compressor grid is CLIP's patch sequence"
            )
        if len(text.mlp_layer_types) != text.num_hidden_layers:
            raise ValueError(
                f"text_config.mlp_layer_types has {len(text.mlp_layer_types)} entries for "
                f"{text.num_hidden_layers} layers"
            )
        if not 0 <= self.image_token_id < text.vocab_size:
            raise ValueError(
                f"image_token_id {self.image_token_id} is outside the vocabulary (0..{text.vocab_size - 1})"
            )

    @property
    def vision_feature_size(self) -> int:
        """Width of one token before the projector: CLIP output concatenated with the compressor features."""
        return self.clip_config.hidden_size + self.sam_config.downsample_channels[-1]

    @classmethod
    def full(cls) -> "DeepSeekOCRConfig":
        """The released DeepSeek-OCR: 401M-parameter DeepEncoder and the 2.93B-parameter MoE decoder."""
        return cls(
            sam_config=copy.deepcopy(FULL_SAM),
            clip_config=copy.deepcopy(FULL_CLIP),
            text_config=copy.deepcopy(FULL_TEXT),
            image_token_id=FULL_IMAGE_TOKEN_ID,
        )

    @classmethod
    def tiny(cls) -> "DeepSeekOCRConfig":
        """Same structure and token grids as the full model at widths a CPU runs in milliseconds.

        Vocabulary 320 with BOS 0, EOS 1, pad 2 and ``<image>`` 3, so a small test tokenizer fits.
        """
        return cls(
            sam_config=copy.deepcopy(TINY_SAM),
            clip_config=copy.deepcopy(TINY_CLIP),
            text_config=copy.deepcopy(TINY_TEXT),
            image_token_id=TINY_IMAGE_TOKEN_ID,
        )

    @classmethod
    def from_released(cls, data: Mapping[str, Any]) -> "DeepSeekOCRConfig":
        """Map a released ``config.json`` (``model_type`` ``deepseek_vl_v2``) onto this configuration.

        Raises ``ValueError`` naming the field for anything this architecture cannot hold (MLA attention, other
        vision towers, non-linear projectors, renormalised or non-softmax routing).
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"config must be a mapping, got {type(data).__name__}")
        model_type = data.get("model_type")
        if model_type not in (RELEASED_MODEL_TYPE, cls.model_type):
            raise ValueError(f"config.json model_type {model_type!r} is not DeepSeek-OCR ({RELEASED_MODEL_TYPE!r})")
        language = {**{k: v for k, v in data.items() if not isinstance(v, Mapping)}, **data.get("language_config", {})}
        vision = data.get("vision_config", {})
        if vision.get("model_name", RELEASED_VISION_NAME) != RELEASED_VISION_NAME:
            raise ValueError(
                f"vision_config.model_name {vision.get('model_name')!r} is not DeepSeek-OCR's SAM+CLIP encoder "
                f"({RELEASED_VISION_NAME!r}); DeepSeek-OCR-2 loads through its transformers-native layout "
                "(model_type 'deepseek_ocr2')"
            )
        widths = vision.get("width", {})
        sam_width = widths.get(SAM_WIDTH_KEY, {})
        clip_width = widths.get(CLIP_WIDTH_KEY, {})

        _require(language, "use_mla", False, "MLA attention checkpoints are not DeepSeek-OCR's decoder")
        _require(language, "scoring_func", "softmax", "the router is a softmax top-k")
        _require(language, "norm_topk_prob", False, "router weights are used without renormalisation")
        _require(language, "moe_layer_freq", 1, "every layer after the dense ones is a MoE layer")
        topk_method = language.get("topk_method", FULL_TEXT["topk_method"])
        if topk_method not in ("greedy", "group_limited_greedy"):
            raise ValueError(f"language_config.topk_method {topk_method!r} is not supported")
        projector = data.get("projector_config", {})
        _require(
            projector, "projector_type", "linear", "the projector is one Linear layer", section_name="projector_config"
        )

        num_layers = int(language.get("num_hidden_layers", FULL_TEXT["num_hidden_layers"]))
        dense_layers = int(language.get("first_k_dense_replace", 1))
        if not 0 <= dense_layers <= num_layers:
            raise ValueError(f"language_config.first_k_dense_replace {dense_layers} is outside 0..{num_layers}")
        rope_theta = float(language.get("rope_theta", FULL_TEXT["rope_parameters"]["rope_theta"]))
        text = {
            **FULL_TEXT,
            **{key: language[key] for key in _TEXT_KEYS if key in language},
            "topk_method": topk_method,
            "mlp_layer_types": ["dense"] * dense_layers + ["sparse"] * (num_layers - dense_layers),
            "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
            "tie_word_embeddings": not language.get("lm_head", True),
        }
        sam = {
            **FULL_SAM,
            **{ours: sam_width[theirs] for theirs, ours in _SAM_WIDTH_KEYS.items() if theirs in sam_width},
        }
        if "image_size" in vision:
            sam["image_size"] = int(vision["image_size"])
        sam["global_attn_indexes"] = list(sam["global_attn_indexes"])
        sam["downsample_channels"] = list(sam["downsample_channels"])
        clip = {
            **FULL_CLIP,
            **{ours: clip_width[theirs] for theirs, ours in _CLIP_WIDTH_KEYS.items() if theirs in clip_width},
        }
        if "intermediate_size" not in clip_width and "width" in clip_width:
            clip["intermediate_size"] = 4 * int(clip_width["width"])
        if "mlp_dim" not in sam_width and "width" in sam_width:
            sam["mlp_dim"] = 4 * int(sam_width["width"])
        try:
            config = cls(
                sam_config=sam,
                clip_config=clip,
                text_config=text,
                image_token_id=int(data.get("image_token_id", FULL_IMAGE_TOKEN_ID)),
                tie_word_embeddings=text["tie_word_embeddings"],
            )
        except StrictDataclassError as error:
            raise ValueError(f"config.json describes an invalid architecture: {error}") from error
        expected_input = config.vision_feature_size
        if int(projector.get("input_dim", expected_input)) != expected_input:
            raise ValueError(
                f"projector_config.input_dim {projector['input_dim']} != CLIP width + compressor channels "
                f"({expected_input})"
            )
        if int(projector.get("n_embed", text["hidden_size"])) != text["hidden_size"]:
            raise ValueError(
                f"projector_config.n_embed {projector['n_embed']} != language hidden_size {text['hidden_size']}"
            )
        return config

    def to_released(self) -> dict[str, Any]:
        """The released ``config.json`` layout, plus the implicit fields written out explicitly."""
        sam, clip, text = self.sam_config, self.clip_config, self.text_config
        dense_layers = sum(1 for kind in text.mlp_layer_types if kind == "dense")
        if text.mlp_layer_types != ["dense"] * dense_layers + ["sparse"] * (text.num_hidden_layers - dense_layers):
            raise ValueError("text_config.mlp_layer_types must be dense layers first, then MoE layers, to be released")
        language = {key: getattr(text, key) for key in _TEXT_KEYS}
        language.update(
            {
                "first_k_dense_replace": dense_layers,
                "rope_theta": text.rope_parameters["rope_theta"],
                "lm_head": not self.tie_word_embeddings,
                "use_mla": False,
                "q_lora_rank": None,
                "kv_lora_rank": None,
                "qk_nope_head_dim": 0,
                "qk_rope_head_dim": 0,
                "v_head_dim": 0,
                "rm_head": False,
                "torch_dtype": "bfloat16",
            }
        )
        sam_width = {theirs: _plain(getattr(sam, ours)) for theirs, ours in _SAM_WIDTH_KEYS.items()}
        clip_width = {theirs: _plain(getattr(clip, ours)) for theirs, ours in _CLIP_WIDTH_KEYS.items()}
        return {
            "architectures": ["DeepseekOCRForCausalLM"],
            "model_type": RELEASED_MODEL_TYPE,
            "candidate_resolutions": [[1024, 1024]],
            "global_view_pos": "head",
            "tile_tag": "2D",
            "torch_dtype": "bfloat16",
            "image_token_id": self.image_token_id,
            "language_config": language,
            "projector_config": {
                "input_dim": self.vision_feature_size,
                "model_type": "mlp_projector",
                "n_embed": text.hidden_size,
                "projector_type": "linear",
            },
            "vision_config": {
                "image_size": sam.image_size,
                "model_name": RELEASED_VISION_NAME,
                "model_type": "vision",
                "width": {CLIP_WIDTH_KEY: clip_width, SAM_WIDTH_KEY: sam_width},
            },
            **language,
        }


_TEXT_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "moe_intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "n_routed_experts",
    "num_experts_per_tok",
    "n_shared_experts",
    "routed_scaling_factor",
    "topk_method",
    "n_group",
    "topk_group",
    "rms_norm_eps",
    "max_position_embeddings",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)

# released ``vision_config.width.sam_vit_b`` key -> DeepseekOcr2SamVisionConfig field
_SAM_WIDTH_KEYS = {
    "width": "hidden_size",
    "layers": "num_hidden_layers",
    "heads": "num_attention_heads",
    "global_attn_indexes": "global_attn_indexes",
    "downsample_channels": "downsample_channels",
    "mlp_dim": "mlp_dim",
    "output_channels": "output_channels",
    "window_size": "window_size",
    "patch_size": "patch_size",
}

# released ``vision_config.width.clip-l-14-224`` key -> CLIPVisionConfig field
_CLIP_WIDTH_KEYS = {
    "width": "hidden_size",
    "layers": "num_hidden_layers",
    "heads": "num_attention_heads",
    "image_size": "image_size",
    "patch_size": "patch_size",
    "intermediate_size": "intermediate_size",
}


def _require(section: Mapping[str, Any], key: str, value: Any, why: str, *, section_name: str = "") -> None:
    if key in section and section[key] != value:
        where = section_name or "language_config"
        raise ValueError(f"{where}.{key} = {section[key]!r} is not supported ({why}; expected {value!r})")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
