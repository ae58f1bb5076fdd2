"""SAM attention kinds, chosen by name (:data:`SAM_ATTENTION`); every kind holds the same weight tensors.

SAM adds a decomposed relative-position bias to the scaled scores: for a query at grid cell (i, j) and a key at
(k, l), ``rel_h[q, k] + rel_w[q, l]``, where ``rel_h = q · R_h[i - k]`` and ``rel_w = q · R_w[j - l]`` use the unscaled
query. The reference kinds build that bias as a full [heads, N, N] mask (N = 4,096 tokens in a 1024 px global block:
400 MB per page in bf16). The fused kinds never materialise it:

- ``folded``: the bias folded into the dot product. The query gets ``rel_h ‖ rel_w`` appended and the key the one-hot
  codes of its row and column, so ``q'·k' = scale·q·k + rel_h[q, row(k)] + rel_w[q, col(k)]`` and any
  ``scaled_dot_product_attention`` backend that takes a wider query/key than value runs it without a mask. On an
  H100 (torch 2.11) PyTorch picks cuDNN's fused Hopper kernel for it (q/k head 192, value 64 in a global block);
  it does twice the useful attention FLOPs and still is the fastest kind measured (``benchmarks/encoder_throughput``).
- ``flex``: ``torch.nn.attention.flex_attention`` with a ``score_mod`` that adds ``rel_h[q, key_row]`` and
  ``rel_w[q, key_col]`` inside the kernel (eager runs an unfused reference). Exact and memory-light, but its
  compiled kernel with this gathered score modification measured 5-7x slower than ``folded`` on the H100.
- ``triton``: flash-attention kernels of this library's own that compute ``rel_h``/``rel_w`` and add them inside
  the kernel: the useful attention FLOPs only, no widened copies, and the ``qkv`` map read and the output written
  in place (no head split, partition or merge copies). Global blocks run ``optical_memory.model.kernels.global_attention``,
  windows ``optical_memory.model.kernels.window_attention``. The fastest kind measured; where Triton does not run (CPU
  builds of torch), it runs ``folded``.

The fused kinds expose :meth:`FusedSamAttention.attend` (projected ``qkv`` → attention output before ``proj``), which
the DeepEncoder's fast path calls directly so that the window padding never goes through ``qkv`` or ``proj``; a kind
that can attend windows on the un-partitioned map does so in :meth:`~FusedSamAttention.attend_windows_in_place`.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import (
    DeepseekOcr2SamVisionAttention,
    DeepseekOcr2SamVisionSdpaAttention,
)

from optical_memory.model.kernels.global_attention import (
    global_attention,
    global_kernel_runs,
)
from optical_memory.model.kernels.window_attention import (
    window_attention,
    window_kernel_runs,
)

# scaled_dot_product_attention kernels want head sizes in multiples of 8 elements (16-byte rows in bf16).
HEAD_DIM_ALIGNMENT = 8


class _Fp32RelativePositions:
    """SAM's decomposed relative-position lookup with the table resized in fp32 (the reference's precision)."""

    @staticmethod
    def relative_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
        """The [2·size - 1, channels] table of offsets -(size - 1) … size - 1, resized linearly if it is another size."""
        span = 2 * size - 1
        if rel_pos.shape[0] == span:
            return rel_pos
        resized = F.interpolate(rel_pos.float().t().unsqueeze(0), size=span, mode="linear")
        return resized.squeeze(0).t().to(rel_pos.dtype)

    def get_rel_pos(self, q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
        if q_size != k_size:
            raise ValueError(f"SAM self-attention has equal query and key extents, got {q_size} and {k_size}")
        positions = torch.arange(q_size, device=rel_pos.device)
        return self.relative_table(q_size, rel_pos)[positions[:, None] - positions[None, :] + (q_size - 1)]


class SamEagerAttention(_Fp32RelativePositions, DeepseekOcr2SamVisionAttention):
    """SAM attention with an explicit softmax (returns attention weights)."""


class SamSdpaAttention(_Fp32RelativePositions, DeepseekOcr2SamVisionSdpaAttention):
    """SAM attention through ``scaled_dot_product_attention`` with the relative-position bias as the mask."""


class FusedSamAttention(_Fp32RelativePositions, DeepseekOcr2SamVisionAttention):
    """Base of the kinds that apply the relative-position bias without materialising it."""

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool | None = None) -> tuple[torch.Tensor, None]:
        return self.proj(self.attend(self.qkv(hidden_states))), None

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """[batch, height, width, 3·hidden] projected q;k;v → [batch, height, width, hidden] before ``proj``."""
        batch, height, width, _ = qkv.shape
        heads = self.num_attention_heads
        query, key, value = qkv.reshape(batch, height * width, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        rel_h, rel_w = self.relative_terms(query, height, width)
        mixed = self.attention(query, key, value, rel_h, rel_w, width)
        return mixed.transpose(1, 2).reshape(batch, height, width, -1)

    def attend_windows_in_place(self, qkv: torch.Tensor, window: int) -> torch.Tensor | None:
        """Windowed attention over the un-partitioned [batch, height, width, 3·hidden] map, its padding filled with
        the ``qkv`` bias → [batch, height, width, hidden] before ``proj``; ``None`` where this kind cannot (the caller
        then attends padded partitions)."""
        return None

    def relative_terms(self, query: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``rel_h`` [batch, heads, N, height] and ``rel_w`` [batch, heads, N, width] from the unscaled query."""
        grid = query.unflatten(2, (height, width))
        table_h = self.get_rel_pos(height, height, self.rel_pos_h).to(query.dtype)
        table_w = self.get_rel_pos(width, width, self.rel_pos_w).to(query.dtype)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid, table_h).flatten(2, 3)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid, table_w).flatten(2, 3)
        return rel_h, rel_w

    @abstractmethod
    def attention(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        rel_h: torch.Tensor,
        rel_w: torch.Tensor,
        width: int,
    ) -> torch.Tensor:
        """Softmax(scale·q·kᵀ + rel_h[q, row(k)] + rel_w[q, col(k)])·v over [batch, heads, N, head_dim]."""


_compiled_flex_attention = torch.compile(flex_attention, dynamic=False)


class SamFlexAttention(FusedSamAttention):
    """The bias as a ``flex_attention`` score modification: gathered per score inside the fused kernel."""

    def attention(self, query, key, value, rel_h, rel_w, width):
        def add_relative_position(score, batch, head, q_index, kv_index):
            return score + rel_h[batch, head, q_index, kv_index // width] + rel_w[batch, head, q_index, kv_index % width]

        # Outside a compiled region flex_attention is an unfused reference; on CUDA compile just the kernel.
        if query.is_cuda and not torch.compiler.is_compiling():
            run = _compiled_flex_attention
        else:
            run = flex_attention
        return run(query, key, value, score_mod=add_relative_position, scale=self.scale)


class SamFoldedAttention(FusedSamAttention):
    """The bias folded into a wider dot product: q' = [scale·q ‖ rel_h ‖ rel_w], k' = [k ‖ onehot(row) ‖ onehot(col)]."""

    def attention(self, query, key, value, rel_h, rel_w, width):
        tokens = query.shape[2]
        height = tokens // width
        positions = torch.arange(tokens, device=query.device)
        rows = F.one_hot(positions // width, height).to(key.dtype)
        cols = F.one_hot(positions % width, width).to(key.dtype)
        codes = torch.cat([rows, cols], dim=-1).expand(*key.shape[:2], tokens, height + width)
        widened = query.shape[-1] + height + width
        padding = (-widened) % HEAD_DIM_ALIGNMENT
        query = F.pad(torch.cat([query * self.scale, rel_h, rel_w], dim=-1), (0, padding))
        key = F.pad(torch.cat([key, codes], dim=-1), (0, padding))
        return F.scaled_dot_product_attention(query, key, value, scale=1.0)


class SamTritonAttention(SamFoldedAttention):
    """The bias added inside Triton flash-attention kernels that read the ``qkv`` map and write the output in place:
    windows (and grids up to a window's size) run ``optical_memory.model.kernels.window_attention``, global blocks
    ``optical_memory.model.kernels.global_attention``; each computes the relative terms itself.

    On CUDA the kernels take every SAM grid (14×14 windows, global blocks up to 128 wide); on devices Triton does not
    run on, this kind runs the folded product.
    """

    @property
    def head_dim(self) -> int:
        return self.qkv.out_features // (3 * self.num_attention_heads)

    def attend_windows_in_place(self, qkv, window):
        if not window_kernel_runs(qkv, self.head_dim, window):
            return None
        return window_attention(
            qkv,
            self.qkv.bias,
            self.relative_table(window, self.rel_pos_h),
            self.relative_table(window, self.rel_pos_w),
            window,
            self.scale,
        )

    def attend(self, qkv):
        height, width = qkv.shape[1:3]
        if height == width:  # a square grid no wider than a window is one window, without padding
            mixed = self.attend_windows_in_place(qkv, height)
            if mixed is not None:
                return mixed
        if global_kernel_runs(qkv, self.head_dim):
            table_h = self.relative_table(height, self.rel_pos_h)
            return global_attention(qkv, table_h, self.relative_table(width, self.rel_pos_w), self.scale)
        return super().attend(qkv)


SAM_ATTENTION: dict[str, type[DeepseekOcr2SamVisionAttention]] = {
    "eager": SamEagerAttention,
    "sdpa": SamSdpaAttention,
    "flex": SamFlexAttention,
    "folded": SamFoldedAttention,
    "triton": SamTritonAttention,
}

FUSED_SAM_ATTENTION = tuple(name for name, kind in SAM_ATTENTION.items() if issubclass(kind, FusedSamAttention))
