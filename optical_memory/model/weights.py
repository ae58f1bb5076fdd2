"""Weights in and out of the composed DeepSeek-OCR modules: the strict streaming loader and the saver.

The release (``deepseek-ai/DeepSeek-OCR``) is one safetensors shard of 2,710 tensors plus a ``deepseek_vl_v2``
``config.json`` and a ``tokenizer.json``. Its names differ from transformers' modules in four ways, all handled by
:func:`optical_memory.model.key_map.key_map`: SAM blocks/neck/compressor are renamed, CLIP's fused ``qkv_proj`` rows (q; k; v) are split into
``q_proj``/``k_proj``/``v_proj``, each MoE layer's 64 per-expert ``gate/up/down_proj`` are stacked into the fused
``gate_up_proj`` / ``down_proj`` tensors, and ``model.*`` vision/decoder parts move under ``vision`` /
``language_model``.

Loading is strict and lean: every shard header is checked against the key map first (one error lists every missing,
unexpected and mis-shaped tensor), the model is built on the ``meta`` device, each parameter is allocated once in the
requested dtype on the requested device, and tensors are streamed shard by shard into it, so a 6.7 GB checkpoint
never needs twice its size in memory. Nothing is ever downloaded.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import (
    DeepseekOcr2TextRotaryEmbedding,
)

from optical_memory.model.checkpoint import (
    CONFIG_FILE,
    SINGLE_FILE,
    TOKENIZER_FILE,
    CheckpointError,
    load_tokenizer,
    parse_dtype,
    read_headers,
    shard_files,
    stored_dtype,
    verify_checkpoint,
)
from optical_memory.model.key_map import (
    Piece,
    key_map,
    parameter_shapes,
    released_shapes,
)


def _materialise_buffers(model: torch.nn.Module, device: torch.device) -> None:
    """Recompute the buffers a meta-built model lacks (they are derived from the config, never stored)."""
    for module in model.modules():
        if isinstance(module, DeepseekOcr2TextRotaryEmbedding):
            fresh = DeepseekOcr2TextRotaryEmbedding(module.config)
            module.inv_freq = fresh.inv_freq.to(device)
            module.original_inv_freq = fresh.original_inv_freq.to(device)
            module.attention_scaling = fresh.attention_scaling
        elif isinstance(module, CLIPVisionEmbeddings):
            module.position_ids = torch.arange(module.num_positions, device=device).expand((1, -1))
    left = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if left:
        raise RuntimeError(f"tensors left unmaterialised after loading: {', '.join(left)}")


def load_weights(
    model: torch.nn.Module,
    local_dir: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str = "cpu",
) -> torch.nn.Module:
    """Fill ``model`` (a ``DeepSeekOCR`` built on the ``meta`` device) from a local directory in the released layout.

    ``dtype`` ``None`` keeps the stored dtype (bf16 for the release). Raises ``FileNotFoundError`` listing the
    expected files, :class:`CheckpointError` for unreadable shards or any name/shape mismatch.
    """
    target_dtype = parse_dtype(dtype)
    target_device = torch.device(device)
    directory = Path(local_dir)
    config = model.config
    files = shard_files(directory)
    header = read_headers(files)
    pieces = key_map(config)
    verify_checkpoint(header, released_shapes(pieces, parameter_shapes(model)))
    target_dtype = target_dtype or stored_dtype(header)
    state = {
        name: torch.empty(parameter.shape, dtype=target_dtype, device=target_device)
        for name, parameter in model.named_parameters()
    }
    by_name: dict[str, list[Piece]] = defaultdict(list)
    for piece in pieces:
        by_name[piece.released].append(piece)
    for path in files:
        try:
            with safe_open(path, framework="pt") as handle:
                for name in handle.keys():
                    tensor = handle.get_tensor(name)
                    for piece in by_name[name]:
                        source = tensor if piece.released_rows is None else tensor[slice(*piece.released_rows)]
                        state[piece.target][piece.target_index].copy_(source)
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{path.name} could not be read (truncated or corrupt?): {error}") from None
    model.load_state_dict(state, strict=True, assign=True)
    _materialise_buffers(model, target_device)
    model.config.dtype = target_dtype
    model.config.name_or_path = str(directory.resolve())
    model.tokenizer = load_tokenizer(directory, config)
    return model.eval()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def save_weights(model: torch.nn.Module, directory: str | Path) -> Path:
    """Write ``config.json``, ``model.safetensors`` (released names) and ``tokenizer.json`` if the model has one.

    Saving copies every tensor to the CPU first (safetensors serialises from memory), so it needs about the model's
    size again in free RAM.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    parameters = dict(model.named_parameters())
    by_name: dict[str, list[Piece]] = defaultdict(list)
    for piece in key_map(model.config):
        by_name[piece.released].append(piece)
    tensors = {}
    for name, group in by_name.items():
        group = sorted(group, key=lambda piece: (piece.released_rows or (0, 0))[0])
        parts = [parameters[piece.target].detach()[piece.target_index] for piece in group]
        tensors[name] = (parts[0] if len(parts) == 1 else torch.cat(parts)).to("cpu", copy=True).contiguous()
    save_file(tensors, str(target / SINGLE_FILE), metadata={"format": "pt"})
    released = model.config.to_released()
    released["torch_dtype"] = _dtype_name(model.dtype)
    released["language_config"]["torch_dtype"] = _dtype_name(model.dtype)
    (target / CONFIG_FILE).write_text(json.dumps(released, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if model.tokenizer is not None:
        model.tokenizer.backend_tokenizer.save(str(target / TOKENIZER_FILE))
    return target


