"""What the library's Triton kernels (SAM's global and windowed attention) take, and where they run.

They run on CUDA in bf16/fp16, and on the CPU under Triton's interpreter (``TRITON_INTERPRET=1`` set before the
kernel modules are imported; fp32/fp16), which the tests use. CPU builds of torch have no Triton: the attention kinds
then fall back to the folded product (``optical_memory.model.sam_attention``).
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # Triton ships with CUDA builds of torch; the kernel modules then define no kernels
    triton = tl = None

SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)

HALF_DTYPES = (torch.bfloat16, torch.float16)
"""What the kernels take on CUDA. A float32 build (IEEE dot products) stalled in autotuning on an H100; float32
encoders run the folded kind there."""

INTERPRETED_DTYPES = (torch.float32, torch.float16)
"""What they take in Triton's CPU interpreter, which computes through numpy (no bfloat16: results come out wrong)."""


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (read by ``triton.jit`` at import)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def kernel_takes(tensor: torch.Tensor, head_dim: int) -> bool:
    """Whether Triton runs this library's kernels on ``tensor``'s device and dtype, at this head size, over a map
    whose channels are contiguous."""
    dtypes = HALF_DTYPES if tensor.is_cuda else INTERPRETED_DTYPES if interpreting() else ()
    return (
        triton is not None
        and tensor.dtype in dtypes
        and head_dim in SUPPORTED_HEAD_DIMS
        and tensor.shape[-1] % (3 * head_dim) == 0
        and tensor.stride(-1) == 1
    )


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot``'s input precision: exact products for the interpreter's float32, the tensor cores' otherwise."""
    return "ieee" if dtype == torch.float32 else "tf32"


def attended_map_like(qkv: torch.Tensor) -> torch.Tensor:
    """An empty [batch, height, width, hidden] output for a [batch, height, width, 3·hidden] ``qkv`` map."""
    return qkv.new_empty(*qkv.shape[:-1], qkv.shape[-1] // 3)


def chosen_configs(tuned: "triton.runtime.Autotuner | None") -> dict:
    """The tile configuration a ``triton.autotune``-d kernel chose per key; empty where nothing was timed (no
    Triton, or its interpreter)."""
    if tuned is None or interpreting():
        return {}
    return dict(tuned.cache)
