"""The files of a weights directory in the released layout: ``config.json``, safetensors shards (one file or an
index), ``tokenizer.json``; their headers, dtypes and the strict check of names and shapes. Nothing is downloaded."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import torch
from safetensors import SafetensorError, safe_open

from optical_memory.model.configuration_deepseek_ocr import DeepSeekOCRConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

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


def stored_dtype(header: Mapping[str, tuple[Path, tuple[int, ...], str]]) -> torch.dtype:
    names = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
    counts = Counter(dtype for _, _, dtype in header.values() if dtype in names)
    if not counts:
        found = sorted({dtype for _, _, dtype in header.values()})
        raise CheckpointError(f"checkpoint stores no tensors in a supported dtype (BF16, F16, F32), found {found}")
    return names[counts.most_common(1)[0][0]]


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
