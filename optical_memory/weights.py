"""The released DeepSeek-OCR checkpoint layout ↔ the composed modules: key map, strict loader, saver, backends.

The release (``deepseek-ai/DeepSeek-OCR``) is one safetensors shard of 2,710 tensors plus a ``deepseek_vl_v2``
``config.json`` and a ``tokenizer.json``. Its names differ from transformers' modules in four ways, all handled by
:func:`key_map`: SAM blocks/neck/compressor are renamed, CLIP's fused ``qkv_proj`` rows (q; k; v) are split into
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
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2TextRotaryEmbedding

from optical_memory.configuration_deepseek_ocr import RELEASED_MODEL_TYPE, DeepSeekOCRConfig
from optical_memory.modeling_deepseek_ocr import DeepSeekOCR

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from optical_memory.ocr2 import DeepSeekOCR2

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
OCR2_MODEL_TYPE = "deepseek_ocr2"

DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}


class CheckpointError(ValueError):
    """A checkpoint that does not match the architecture, or a file that is not readable safetensors."""

    def __init__(
        self,
        message: str,
        *,
        missing: Iterable[str] = (),
        unexpected: Iterable[str] = (),
        mis_shaped: Iterable[str] = (),
    ) -> None:
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mis_shaped = list(mis_shaped)


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


def _parameter_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``torch.bfloat16``, ``"bf16"``, ``"float16"``, ``"fp32"``… → a supported torch dtype; ``None`` passes."""
    if dtype is None or dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in DTYPES:
        return DTYPES[dtype.lower().removeprefix("torch.")]
    raise ValueError(f"dtype must be one of bfloat16, float16, float32, got {dtype!r}")


def _expected_files_message(directory: Path) -> str:
    return (
        f"expected in {directory}: {CONFIG_FILE}, the weights as {SINGLE_FILE} or {INDEX_FILE} with its shards "
        f"(or a single *.safetensors shard), and optionally {TOKENIZER_FILE}"
    )


def read_config(local_dir: str | Path) -> dict[str, Any]:
    """The raw ``config.json`` of a weights directory."""
    directory = Path(local_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"weights directory {directory} does not exist; {_expected_files_message(directory)}")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {_expected_files_message(directory)}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def shard_files(local_dir: str | Path) -> list[Path]:
    """The safetensors files of a weights directory: those its index names, else ``model.safetensors``, else the
    directory's single ``*.safetensors`` file."""
    directory = Path(local_dir)
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{index} is not a safetensors index with a weight_map: {error}") from None
        files = [directory / name for name in sorted(set(weight_map.values()))]
        absent = [path.name for path in files if not path.is_file()]
        if absent:
            raise FileNotFoundError(f"{index.name} names shards that are missing from {directory}: {', '.join(absent)}")
        return files
    if (directory / SINGLE_FILE).is_file():
        return [directory / SINGLE_FILE]
    candidates = sorted(directory.glob("*.safetensors"))
    if len(candidates) == 1:
        return candidates
    if candidates:
        raise FileNotFoundError(
            f"{directory} holds {len(candidates)} *.safetensors files but no {INDEX_FILE} saying which to load"
        )
    raise FileNotFoundError(f"no weights in {directory}; {_expected_files_message(directory)}")


def read_headers(files: Iterable[Path]) -> dict[str, tuple[Path, tuple[int, ...], str]]:
    """Released name → (file, shape, dtype) from the shard headers, without reading tensor data."""
    header: dict[str, tuple[Path, tuple[int, ...], str]] = {}
    for path in files:
        try:
            with safe_open(path, framework="pt") as handle:
                views = {name: handle.get_slice(name) for name in handle.keys()}
                entries = {name: (tuple(view.get_shape()), view.get_dtype()) for name, view in views.items()}
        except (SafetensorError, OSError) as error:
            raise CheckpointError(
                f"{path.name} is not a readable safetensors file (truncated or corrupt?): {error}"
            ) from None
        for name, (shape, dtype) in entries.items():
            if name in header:
                raise CheckpointError(f"tensor {name} appears in both {header[name][0].name} and {path.name}")
            header[name] = (path, shape, dtype)
    return header


def verify_checkpoint(
    header: Mapping[str, tuple[Path, tuple[int, ...], str]],
    expected: Mapping[str, tuple[int, ...]],
) -> None:
    """Raise one :class:`CheckpointError` listing every missing, unexpected and mis-shaped tensor."""
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    mis_shaped = sorted(name for name in set(expected) & set(header) if tuple(header[name][1]) != tuple(expected[name]))
    if not (missing or unexpected or mis_shaped):
        return
    lines = [f"checkpoint does not match the configured architecture ({len(expected)} tensors expected):"]
    if missing:
        lines.append(f"missing ({len(missing)}): " + ", ".join(missing))
    if unexpected:
        lines.append(f"unexpected ({len(unexpected)}): " + ", ".join(unexpected))
    if mis_shaped:
        lines.append(
            f"mis-shaped ({len(mis_shaped)}): "
            + ", ".join(f"{name} {list(header[name][1])} != expected {list(expected[name])}" for name in mis_shaped)
        )
    raise CheckpointError("\n".join(lines), missing=missing, unexpected=unexpected, mis_shaped=mis_shaped)


def _stored_dtype(header: Mapping[str, tuple[Path, tuple[int, ...], str]]) -> torch.dtype:
    names = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
    counts = Counter(dtype for _, _, dtype in header.values() if dtype in names)
    if not counts:
        found = sorted({dtype for _, _, dtype in header.values()})
        raise CheckpointError(f"checkpoint stores no tensors in a supported dtype (BF16, F16, F32), found {found}")
    return names[counts.most_common(1)[0][0]]


def _materialise_buffers(model: DeepSeekOCR, device: torch.device) -> None:
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


def load_tokenizer(local_dir: str | Path, config: DeepSeekOCRConfig) -> "PreTrainedTokenizerFast | None":
    """The directory's ``tokenizer.json`` with BOS/EOS/pad set from ``config``; ``None`` when there is none."""
    from transformers import PreTrainedTokenizerFast

    path = Path(local_dir) / TOKENIZER_FILE
    if not path.is_file():
        return None
    try:
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path))
    except Exception as error:  # the tokenizers library raises its own exception type for malformed files
        raise ValueError(f"{path} is not a readable tokenizers file: {error}") from None
    text = config.text_config
    ids = {"bos_token": text.bos_token_id, "eos_token": text.eos_token_id, "pad_token": text.pad_token_id}
    ids["image_token"] = config.image_token_id
    size = len(tokenizer)
    for role, token_id in ids.items():
        if token_id is None or not 0 <= token_id < size:
            raise ValueError(f"{path}: {role} id {token_id} is outside the tokenizer's {size} tokens")
    tokenizer.bos_token = tokenizer.convert_ids_to_tokens(text.bos_token_id)
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(text.eos_token_id)
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(text.pad_token_id)
    return tokenizer


def load_deepseek_ocr(
    local_dir: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str = "cpu",
    sam_attention: str = "sdpa",
) -> DeepSeekOCR:
    """Load DeepSeek-OCR from a local directory in the released layout.

    ``dtype`` ``None`` keeps the stored dtype (bf16 for the release). Raises ``FileNotFoundError`` listing the
    expected files, :class:`CheckpointError` for unreadable shards or any name/shape mismatch.
    """
    target_dtype = parse_dtype(dtype)
    target_device = torch.device(device)
    directory = Path(local_dir)
    data = read_config(directory)
    config = DeepSeekOCRConfig.from_released(data)
    files = shard_files(directory)
    header = read_headers(files)
    with torch.device("meta"):
        model = DeepSeekOCR(config, sam_attention=sam_attention)
    pieces = key_map(config)
    verify_checkpoint(header, released_shapes(pieces, _parameter_shapes(model)))
    target_dtype = target_dtype or _stored_dtype(header)
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


def save_deepseek_ocr(model: DeepSeekOCR, directory: str | Path) -> Path:
    """Write ``config.json``, ``model.safetensors`` (released names) and ``tokenizer.json`` if the model has one.

    Saving copies every tensor to the CPU first (safetensors serialises from memory), so it needs about the model's
    size again in free RAM.
    """
    if not isinstance(model, DeepSeekOCR):
        raise TypeError(f"model must be a DeepSeekOCR, got {type(model).__name__}")
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


def load_backend(
    local_dir: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str = "cpu",
) -> "DeepSeekOCR | DeepSeekOCR2":
    """The OCR model a weights directory holds, chosen by its ``config.json`` ``model_type``.

    ``deepseek_vl_v2`` (the DeepSeek-OCR release) or ``deepseek_ocr`` → :class:`DeepSeekOCR`;
    ``deepseek_ocr2`` (transformers' native DeepSeek-OCR-2 layout) → :class:`optical_memory.ocr2.DeepSeekOCR2`.
    """
    model_type = read_config(local_dir).get("model_type")
    if model_type in (RELEASED_MODEL_TYPE, DeepSeekOCRConfig.model_type):
        return load_deepseek_ocr(local_dir, dtype=dtype, device=device)
    if model_type == OCR2_MODEL_TYPE:
        from optical_memory.ocr2 import DeepSeekOCR2

        return DeepSeekOCR2.from_pretrained(local_dir, dtype=dtype, device=device)
    raise ValueError(
        f"config.json model_type {model_type!r} is neither DeepSeek-OCR ({RELEASED_MODEL_TYPE!r}) "
        f"nor DeepSeek-OCR-2 ({OCR2_MODEL_TYPE!r})"
    )
