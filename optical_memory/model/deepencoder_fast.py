"""The DeepEncoder's fast path: the same weights and function as the reference path, less work and fewer passes.

What it changes, each within bf16 rounding of the reference (``tests/model/test_model_fast_path.py``):

- SAM attention is a fused kind (:data:`optical_memory.model.sam_attention.FUSED_SAM_ATTENTION`): the relative-position
  bias is applied inside the attention kernel instead of as a materialised [heads, N, N] mask.
- Window padding stays out of the GEMMs. The reference zero-pads the normalised map to a multiple of the window and
  runs ``qkv`` and ``proj`` over the padding too (a 32×32 TINY map becomes 42×42: 72% more rows). A zero row projects
  to the ``qkv`` bias, so the fast path projects the real rows only and fills the padding with the bias; ``proj``
  runs after un-partitioning, on the real rows only. Padded keys still take part in attention, as in the reference.
  A kind that attends windows in place (``triton``) reads the map and writes its output un-partitioned: no
  partition copies, and no padded queries.
- The patch convolution (kernel = stride = 16) runs as one GEMM over the 16×16 patches.
- On CUDA, the SAM MLP's GELU runs in its first GEMM's epilogue (GELU's tanh form; :func:`sam_mlp`).
- A SAM block's last residual add runs at the start of the next block, fused with its first LayerNorm
  (:func:`sam_block`).
- With ``compile=True`` every SAM block, CLIP layer and the neck + compressor go through ``torch.compile``
  (regional compilation: one graph per block kind and input shape, reused by all blocks of that kind) with the batch
  dimension marked dynamic, so a new batch size does not recompile but a new mode (spatial size) does.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from transformers.activations import GELUActivation
from transformers.models.clip.modeling_clip import CLIPEncoderLayer
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import (
    DeepseekOcr2SamMLPBlock,
    DeepseekOcr2SamVisionEncoder,
    DeepseekOcr2SamVisionLayer,
)

from optical_memory.model.sam_attention import FusedSamAttention

# Graphs per compiled function: 2 SAM block kinds × 5 modes × (batch 1, batch > 1) plus views of other sizes.
RECOMPILE_LIMIT = 64


def sam_stem(
    sam: DeepseekOcr2SamVisionEncoder, pixel_values: torch.Tensor, positions: torch.Tensor | None
) -> torch.Tensor:
    """Patch embedding plus absolute positions → [batch, grid, grid, hidden].

    A convolution whose stride is its kernel and that has no padding is one matmul over non-overlapping patches; as
    a GEMM it runs at matmul speed (cuDNN's kernel for this 3-channel conv reaches a fraction of it).
    """
    conv = sam.patch_embed.projection
    patch = conv.kernel_size[0]
    if conv.stride != conv.kernel_size or conv.padding != (0, 0) or conv.kernel_size != (patch, patch):
        hidden = sam.patch_embed(pixel_values.contiguous(memory_format=torch.channels_last))
    else:
        batch, channels, height, width = pixel_values.shape
        patches = pixel_values.reshape(batch, channels, height // patch, patch, width // patch, patch)
        patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(batch, height // patch, width // patch, -1)
        hidden = F.linear(patches, conv.weight.reshape(conv.out_channels, -1), conv.bias)
    return hidden if positions is None else hidden + positions


def sam_block(
    layer: DeepseekOcr2SamVisionLayer, hidden: torch.Tensor, pending: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SAM block over [batch, height, width, hidden] with ``qkv``/``proj`` over real rows only.

    Returns the residual stream before the MLP and the MLP's output, not yet added: their sum is the block's output.
    ``pending`` is the previous block's MLP output, added here, where the add shares a kernel with this block's first
    LayerNorm; as the last step of the previous (compiled) block it was a pass of its own, 3% of a BASE page's time.
    """
    attention = layer.attn
    if not isinstance(attention, FusedSamAttention):
        raise TypeError(f"the fast path needs a fused SAM attention kind, got {type(attention).__name__}")
    if pending is not None:
        hidden = hidden + pending
    hidden = hidden + attention.proj(attend_map(layer, attention.qkv(layer.layer_norm1(hidden))))
    return hidden, sam_mlp(layer.mlp, layer.layer_norm2(hidden))


def attend_map(layer: DeepseekOcr2SamVisionLayer, qkv: torch.Tensor) -> torch.Tensor:
    """A block's attention over its projected [batch, height, width, 3·hidden] map → [batch, height, width, hidden]
    before ``proj``: global, or in windows (in place where the kind can, else through padded partitions)."""
    attention, window = layer.attn, layer.window_size
    if window == 0:
        return attention.attend(qkv)
    mixed = attention.attend_windows_in_place(qkv, window)
    if mixed is not None:
        return mixed
    padded = _pad_with_bias(qkv, attention.qkv.bias, window)
    windows, padded_shape = layer.window_partition(padded, window)
    return layer.window_unpartition(attention.attend(windows), window, padded_shape, tuple(qkv.shape[1:3]))


def sam_mlp(mlp: DeepseekOcr2SamMLPBlock, hidden: torch.Tensor) -> torch.Tensor:
    """``lin2(gelu(lin1(hidden)))``; on CUDA the GELU runs in the epilogue of ``lin1``'s GEMM (cuBLASLt).

    An unfused GELU reads and writes the 4×-wide activation once more (9% of a BASE page's time). The CUDA epilogue
    computes GELU's tanh form, within bf16 rounding of the exact one; elsewhere the same call computes the exact GELU.
    """
    if not hidden.is_cuda or not isinstance(mlp.act, GELUActivation):
        return mlp(hidden)
    rows = hidden.reshape(-1, hidden.shape[-1])
    inner = torch._addmm_activation(mlp.lin1.bias, rows, mlp.lin1.weight.t(), use_gelu=True)
    return mlp.lin2(inner).view(*hidden.shape[:-1], -1)


def _pad_with_bias(qkv: torch.Tensor, bias: torch.Tensor | None, window: int) -> torch.Tensor:
    """Extend [batch, height, width, channels] to multiples of ``window`` with what a zero row projects to."""
    batch, height, width, channels = qkv.shape
    padded_height = height + (-height) % window
    padded_width = width + (-width) % window
    if (padded_height, padded_width) == (height, width):
        return qkv
    fill = bias if bias is not None else qkv.new_zeros(channels)
    padded = fill.to(qkv.dtype).expand(batch, padded_height, padded_width, channels).clone()
    padded[:, :height, :width] = qkv
    return padded


def sam_neck_and_compressor(
    sam: DeepseekOcr2SamVisionEncoder, hidden: torch.Tensor, pending: torch.Tensor
) -> torch.Tensor:
    """The last block's two parts (``sam_block``) [batch, height, width, hidden] → [batch, channels, height/4,
    width/4] compressor grid."""
    return sam.proj(sam.neck(hidden + pending))


def clip_layer(layer: CLIPEncoderLayer, hidden: torch.Tensor) -> torch.Tensor:
    """One CLIP encoder layer without a mask (every token attends to every token)."""
    return layer(hidden, None)


class EncoderFastPath:
    """Runs the DeepEncoder's SAM and CLIP stacks the fast way; holds the compiled block functions."""

    def __init__(self, *, compile: bool = True) -> None:
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be a bool, got {type(compile).__name__}")
        self.compiled = compile
        if compile:
            # Regional compilation keys graphs on the block function, so all modes and kinds share one cache.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        self._stem = self._maybe_compile(sam_stem)
        self._sam_block = self._maybe_compile(sam_block)
        self._neck = self._maybe_compile(sam_neck_and_compressor)
        self._clip_layer = self._maybe_compile(clip_layer)

    def _maybe_compile(self, function: Callable) -> Callable:
        # dynamic=False keeps spatial sizes static (one specialised graph per mode); the batch is marked dynamic.
        return torch.compile(function, dynamic=False) if self.compiled else function

    @staticmethod
    def _batch_dynamic(tensor: torch.Tensor | None) -> torch.Tensor | None:
        if tensor is not None:
            torch._dynamo.maybe_mark_dynamic(tensor, 0)
        return tensor

    def sam(self, sam: DeepseekOcr2SamVisionEncoder, pixel_values: torch.Tensor) -> torch.Tensor:
        """[batch, 3, side, side] → compressor grid [batch, channels, side/64, side/64] (channels-last memory)."""
        grid = pixel_values.shape[-1] // sam.patch_embed.projection.kernel_size[0]
        positions = None if sam.pos_embed is None else sam.interpolate_pos_encoding(grid, grid)
        hidden = self._stem(sam, self._batch_dynamic(pixel_values), positions)
        pending = None
        for layer in sam.layers:
            hidden, pending = self._sam_block(layer, self._batch_dynamic(hidden), self._batch_dynamic(pending))
        return self._neck(sam, self._batch_dynamic(hidden), self._batch_dynamic(pending))

    def clip(self, layers: torch.nn.ModuleList, hidden: torch.Tensor) -> torch.Tensor:
        """CLIP encoder layers over [batch, tokens, hidden]."""
        for layer in layers:
            hidden = self._clip_layer(layer, self._batch_dynamic(hidden))
        return hidden
