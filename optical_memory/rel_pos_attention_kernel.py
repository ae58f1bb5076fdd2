"""Flash attention with SAM's decomposed relative-position bias added inside the kernel: one Triton kernel.

The bias of a query at grid cell (i, j) for a key at (k, l) is ``rel_h[q, k] + rel_w[q, l]``. Each key tile is one
row of the key grid, padded to a power of two, so that the bias costs (almost) nothing per score: within a tile
``rel_w`` is the same [queries, width] block for every row (loaded once per query block) and ``rel_h`` is a single
value per query, which joins the running row maximum instead of every score: ``exp2(s + rel_h - m) = exp2(s - (m -
rel_h))``. This is the kernel of SAM's global blocks (4,096 keys on BASE); the windowed blocks have their own
(``optical_memory.window_attention_kernel``).

The ``folded`` kind instead widens q·k (twice the attention arithmetic, plus the copies that build the widened
operands); the reference materialises a [heads, N, N] mask.

The kernel is exposed as the custom op ``optical_memory::sam_rel_pos_attention`` so that ``torch.compile`` treats it as
one opaque call inside the compiled SAM blocks. It runs on CUDA (bf16/fp16), and on the CPU under Triton's interpreter
(``TRITON_INTERPRET=1`` set before this module is imported; fp32/fp16), which the tests use.
"""

from __future__ import annotations

import math
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # Triton ships with CUDA builds of torch; CPU builds run the folded kind instead
    triton = None

MAX_GRID_WIDTH = 128
"""Widest key grid the kernel takes (a row is one tile); LARGE's global blocks are 80 wide."""

SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)

HALF_DTYPES = (torch.bfloat16, torch.float16)
"""What the kernel takes on CUDA. Its float32 build (IEEE dot products) stalled in autotuning on an H100; float32
encoders run the folded kind there."""

INTERPRETED_DTYPES = (torch.float32, torch.float16)
"""What it takes in Triton's CPU interpreter, which computes through numpy (no bfloat16: results come out wrong)."""


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (read by ``triton.jit`` at import, as here)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def kernel_takes_dtype(tensor: torch.Tensor) -> bool:
    """Whether Triton runs this library's kernels on ``tensor``'s device and dtype (both SAM attention kernels)."""
    return triton is not None and tensor.dtype in (
        HALF_DTYPES if tensor.is_cuda else INTERPRETED_DTYPES if interpreting() else ()
    )


def kernel_runs(query: torch.Tensor, grid_width: int) -> bool:
    """Whether the kernel takes attention over [batch, heads, N, head_dim] on a key grid ``grid_width`` wide."""
    return (
        kernel_takes_dtype(query)
        and query.shape[2] % grid_width == 0
        and grid_width <= MAX_GRID_WIDTH
        and query.shape[-1] in SUPPORTED_HEAD_DIMS
    )


if triton is not None:

    @triton.jit
    def _rel_pos_attention_forward(
        Q, K, V, RH, RW, Out,
        q_sb, q_sh, q_sn, k_sb, k_sh, k_sn, v_sb, v_sh, v_sn,
        rh_sb, rh_sh, rh_sn, rh_sk, rw_sb, rw_sh, rw_sn, rw_sk, o_sb, o_sh, o_sn,
        heads, qk_scale,
        GRID_HEIGHT: tl.constexpr, GRID_WIDTH: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
    ):  # fmt: skip
        # Scores are kept in base 2 (exp2 is one instruction): the scale and the bias are multiplied by log2(e).
        LOG2E: tl.constexpr = 1.4426950408889634
        TOKENS: tl.constexpr = GRID_HEIGHT * GRID_WIDTH
        batch = tl.program_id(1) // heads
        head = tl.program_id(1) % heads
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        query_ok = offs_m < TOKENS

        q = tl.load(
            Q + batch * q_sb + head * q_sh + offs_m[:, None] * q_sn + offs_d[None, :],
            mask=query_ok[:, None], other=0.0,
        )  # fmt: skip
        rel_h_rows = RH + batch * rh_sb + head * rh_sh + offs_m * rh_sn
        rel_w_rows = RW + batch * rw_sb + head * rw_sh + offs_m * rw_sn
        key_rows = K + batch * k_sb + head * k_sh + offs_n[:, None] * k_sn + offs_d[None, :]
        value_rows = V + batch * v_sb + head * v_sh + offs_n[:, None] * v_sn + offs_d[None, :]

        # A tile is one key row, padded to BLOCK_N; padded keys get a -inf bias, so they never count.
        column_ok = offs_n < GRID_WIDTH
        rel_w = tl.load(rel_w_rows[:, None] + offs_n[None, :] * rw_sk,
                        mask=query_ok[:, None] & column_ok[None, :], other=0.0)  # fmt: skip
        bias = tl.where(column_ok[None, :], rel_w.to(tl.float32) * LOG2E, float("-inf"))
        running_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
        running_sum = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        for row in range(0, GRID_HEIGHT):
            k = tl.load(key_rows + row * GRID_WIDTH * k_sn, mask=column_ok[:, None], other=0.0)
            scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale + bias
            row_bias = tl.load(rel_h_rows + row * rh_sk, mask=query_ok, other=0.0).to(tl.float32) * LOG2E
            # rel_h is constant across the tile: it shifts each query's maximum, not each score.
            new_max = tl.maximum(running_max, tl.max(scores, 1) + row_bias)
            probabilities = tl.exp2(scores - (new_max - row_bias)[:, None])
            correction = tl.exp2(running_max - new_max)
            running_sum = running_sum * correction + tl.sum(probabilities, 1)
            v = tl.load(value_rows + row * GRID_WIDTH * v_sn, mask=column_ok[:, None], other=0.0)
            acc = acc * correction[:, None] + tl.dot(probabilities.to(v.dtype), v, input_precision=PRECISION)
            running_max = new_max
        acc = acc / running_sum[:, None]
        tl.store(
            Out + batch * o_sb + head * o_sh + offs_m[:, None] * o_sn + offs_d[None, :],
            acc.to(Out.dtype.element_ty), mask=query_ok[:, None],
        )  # fmt: skip

    _tuned = triton.autotune(
        configs=[
            triton.Config({"BLOCK_M": block_m}, num_warps=warps, num_stages=stages)
            for block_m in (32, 64, 128)
            for warps in (4, 8)
            for stages in (2, 3, 4)
            if not (block_m == 32 and warps == 8)
        ],
        key=["GRID_HEIGHT", "GRID_WIDTH", "HEAD_DIM"],
    )(_rel_pos_attention_forward)


def tuned_configs() -> dict:
    """The tile configuration the autotuner chose per key (grid height and width, head size, dtypes)."""
    if triton is None or interpreting():
        return {}
    return dict(_tuned.cache)


def _output_like(query: torch.Tensor) -> torch.Tensor:
    # Written as [batch, N, heads, head_dim] so the caller's merge of the heads is a view, not a copy.
    batch, heads, tokens, head_dim = query.shape
    return query.new_empty(batch, tokens, heads, head_dim).transpose(1, 2)


@torch.library.custom_op("optical_memory::sam_rel_pos_attention", mutates_args=())
def rel_pos_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    grid_width: int,
    scale: float,
) -> torch.Tensor:
    """softmax(scale·q·kᵀ + rel_h[q, row(k)] + rel_w[q, col(k)])·v; q, k, v [batch, heads, N, head_dim] (any strides
    with a unit head_dim stride), ``rel_h`` [batch, heads, N, ≥ N / grid_width] and ``rel_w`` [batch, heads, N,
    ≥ grid_width] (columns past the grid's rows and columns are not read).
    """
    if not kernel_runs(query, grid_width):
        raise ValueError(
            f"the relative-position kernel does not take this call: device {query.device}, grid width {grid_width}, "
            f"shape {tuple(query.shape)}, dtype {query.dtype} (see kernel_runs)"
        )
    batch, heads, tokens, head_dim = query.shape
    if any(tensor.stride(-1) != 1 for tensor in (query, key, value)):
        raise ValueError("query, key and value need a unit stride along head_dim")
    output = _output_like(query)
    launch, meta = _tuned, {}
    if interpreting():  # one fixed tile shape: the interpreter cannot time configurations
        launch, meta = _rel_pos_attention_forward, {"BLOCK_M": 32, "num_warps": 4}

    def grid(config: dict) -> tuple[int, int]:
        return triton.cdiv(tokens, config["BLOCK_M"]), batch * heads

    launch[grid](
        query, key, value, rel_h, rel_w, output,
        *query.stride()[:3], *key.stride()[:3], *value.stride()[:3],
        *rel_h.stride(), *rel_w.stride(), *output.stride()[:3],
        heads, scale * math.log2(math.e),
        GRID_HEIGHT=tokens // grid_width, GRID_WIDTH=grid_width, HEAD_DIM=head_dim,
        BLOCK_N=max(16, triton.next_power_of_2(grid_width)),
        PRECISION="ieee" if query.dtype == torch.float32 else "tf32", **meta,
    )  # fmt: skip
    return output


@rel_pos_attention.register_fake
def _(query, key, value, rel_h, rel_w, grid_width, scale):
    return _output_like(query)
