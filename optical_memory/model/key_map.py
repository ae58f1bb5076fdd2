"""The released DeepSeek-OCR tensor names ↔ the composed modules' parameters.

The release's names differ from transformers' modules in four ways: SAM blocks/neck/compressor are renamed, CLIP's
fused ``qkv_proj`` rows (q; k; v) are split into ``q_proj``/``k_proj``/``v_proj``, each MoE layer's 64 per-expert
``gate/up/down_proj`` are stacked into the fused ``gate_up_proj`` / ``down_proj`` tensors, and ``model.*``
vision/decoder parts move under ``vision`` / ``language_model``. A :class:`Piece` says where one released tensor (or
a row range of it) lands.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch

from optical_memory.model.configuration_deepseek_ocr import DeepSeekOCRConfig


@dataclass(frozen=True)
class Piece:
    """``released[released_rows]`` is stored in ``model.<target>[target_index]``.

    ``released_rows`` (a row range of the released tensor) is ``None`` when the whole tensor is meant;
    ``target_index`` is ``()`` when the whole parameter is meant.
    """

    released: str
    target: str
    released_rows: tuple[int, int] | None = None
    target_index: tuple[Any, ...] = ()


def key_map(config: DeepSeekOCRConfig) -> list[Piece]:
    """Every released tensor name and where it lives in :class:`DeepSeekOCR`, derived from ``config``."""
    if not isinstance(config, DeepSeekOCRConfig):
        raise TypeError(f"config must be a DeepSeekOCRConfig, got {type(config).__name__}")
    return [*_sam_pieces(config), *_clip_pieces(config), *_bridge_pieces(), *_decoder_pieces(config)]


def _renamed(released_prefix: str, target_prefix: str, names: Iterable[str]) -> list[Piece]:
    return [Piece(released_prefix + name, target_prefix + name) for name in names]


def _sam_pieces(config: DeepSeekOCRConfig) -> list[Piece]:
    sam = config.sam_config
    theirs, ours = "model.sam_model.", "vision.sam."
    pieces = [
        Piece(theirs + "patch_embed.proj.weight", ours + "patch_embed.projection.weight"),
        Piece(theirs + "patch_embed.proj.bias", ours + "patch_embed.projection.bias"),
    ]
    if sam.use_abs_pos:
        pieces.append(Piece(theirs + "pos_embed", ours + "pos_embed"))
    block_names = {
        "norm1.weight": "layer_norm1.weight",
        "norm1.bias": "layer_norm1.bias",
        "norm2.weight": "layer_norm2.weight",
        "norm2.bias": "layer_norm2.bias",
        "attn.qkv.weight": "attn.qkv.weight",
        "attn.proj.weight": "attn.proj.weight",
        "attn.proj.bias": "attn.proj.bias",
        "mlp.lin1.weight": "mlp.lin1.weight",
        "mlp.lin1.bias": "mlp.lin1.bias",
        "mlp.lin2.weight": "mlp.lin2.weight",
        "mlp.lin2.bias": "mlp.lin2.bias",
    }
    if sam.qkv_bias:
        block_names["attn.qkv.bias"] = "attn.qkv.bias"
    if sam.use_rel_pos:
        block_names.update({"attn.rel_pos_h": "attn.rel_pos_h", "attn.rel_pos_w": "attn.rel_pos_w"})
    for layer in range(sam.num_hidden_layers):
        pieces.extend(
            Piece(f"{theirs}blocks.{layer}.{name}", f"{ours}layers.{layer}.{target}")
            for name, target in block_names.items()
        )
    neck = {
        "neck.0.weight": "neck.conv1.weight",
        "neck.1.weight": "neck.layer_norm1.weight",
        "neck.1.bias": "neck.layer_norm1.bias",
        "neck.2.weight": "neck.conv2.weight",
        "neck.3.weight": "neck.layer_norm2.weight",
        "neck.3.bias": "neck.layer_norm2.bias",
        "net_2.weight": "proj.conv1.weight",
        "net_3.weight": "proj.conv2.weight",
    }
    pieces.extend(Piece(theirs + name, ours + target) for name, target in neck.items())
    return pieces


def _clip_pieces(config: DeepSeekOCRConfig) -> list[Piece]:
    clip = config.clip_config
    theirs, ours = "model.vision_model.", "vision.clip."
    pieces = _renamed(
        theirs,
        ours,
        [
            "embeddings.class_embedding",
            "embeddings.patch_embedding.weight",
            "embeddings.position_embedding.weight",
            "pre_layrnorm.weight",
            "pre_layrnorm.bias",
        ],
    )
    width = clip.hidden_size
    for layer in range(clip.num_hidden_layers):
        released = f"{theirs}transformer.layers.{layer}."
        target = f"{ours}layers.{layer}."
        pieces.extend(
            Piece(released + name, target + name)
            for name in (
                "layer_norm1.weight",
                "layer_norm1.bias",
                "layer_norm2.weight",
                "layer_norm2.bias",
                "self_attn.out_proj.weight",
                "self_attn.out_proj.bias",
                "mlp.fc1.weight",
                "mlp.fc1.bias",
                "mlp.fc2.weight",
                "mlp.fc2.bias",
            )
        )
        for kind in ("weight", "bias"):
            for part, projection in enumerate(("q_proj", "k_proj", "v_proj")):
                pieces.append(
                    Piece(
                        f"{released}self_attn.qkv_proj.{kind}",
                        f"{target}self_attn.{projection}.{kind}",
                        released_rows=(part * width, (part + 1) * width),
                    )
                )
    return pieces


def _bridge_pieces() -> list[Piece]:
    return [
        Piece("model.projector.layers.weight", "vision.projector.weight"),
        Piece("model.projector.layers.bias", "vision.projector.bias"),
        Piece("model.image_newline", "vision.image_newline"),
        Piece("model.view_seperator", "vision.view_separator"),
    ]


def _decoder_pieces(config: DeepSeekOCRConfig) -> list[Piece]:
    text = config.text_config
    pieces = [
        Piece("model.embed_tokens.weight", "language_model.embed_tokens.weight"),
        Piece("model.norm.weight", "language_model.norm.weight"),
        Piece("lm_head.weight", "lm_head.weight"),
    ]
    projections = ["q_proj", "k_proj", "v_proj", "o_proj"]
    for layer, kind in enumerate(text.mlp_layer_types):
        theirs, ours = f"model.layers.{layer}.", f"language_model.layers.{layer}."
        names = ["input_layernorm.weight", "post_attention_layernorm.weight"]
        names += [f"self_attn.{p}.weight" for p in projections]
        if text.attention_bias:
            names += [f"self_attn.{p}.bias" for p in projections]
        mlps = ["mlp."] if kind == "dense" else ["mlp.shared_experts."]
        for mlp in mlps:
            names += [f"{mlp}{p}.weight" for p in ("gate_proj", "up_proj", "down_proj")]
            if text.mlp_bias:
                names += [f"{mlp}{p}.bias" for p in ("gate_proj", "up_proj", "down_proj")]
        pieces.extend(_renamed(theirs, ours, names))
        if kind == "sparse":
            pieces.append(Piece(theirs + "mlp.gate.weight", ours + "mlp.gate.weight"))
            width = text.moe_intermediate_size
            for expert in range(text.n_routed_experts):
                experts = f"{theirs}mlp.experts.{expert}."
                fused = f"{ours}mlp.experts."
                gate_rows, up_rows = slice(0, width), slice(width, 2 * width)
                pieces += [
                    Piece(experts + "gate_proj.weight", fused + "gate_up_proj", target_index=(expert, gate_rows)),
                    Piece(experts + "up_proj.weight", fused + "gate_up_proj", target_index=(expert, up_rows)),
                    Piece(experts + "down_proj.weight", fused + "down_proj", target_index=(expert,)),
                ]
    return pieces


def _region_shape(shape: tuple[int, ...], index: tuple[Any, ...]) -> tuple[int, ...]:
    return tuple(torch.empty(shape, device="meta")[index].shape)


def released_shapes(
    pieces: Iterable[Piece], parameter_shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]]:
    """Shape of every released tensor, from the shapes of the parameters its pieces land in."""
    by_name: dict[str, list[Piece]] = defaultdict(list)
    for piece in pieces:
        by_name[piece.released].append(piece)
    shapes = {}
    for name, group in by_name.items():
        region = _region_shape(parameter_shapes[group[0].target], group[0].target_index)
        if group[0].released_rows is None:
            shapes[name] = region
        else:
            shapes[name] = (max(piece.released_rows[1] for piece in group), *region[1:])
    return shapes


def parameter_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
