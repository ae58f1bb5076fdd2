"""SAM's global attention in place: one Triton flash-attention kernel over the ``qkv`` map, relative terms included.

A global block attends every cell of the [height, width] grid to every other with the decomposed relative-position
bias: for a query at (i, j) and a key at (k, l), ``rel_h[q, k] + rel_w[q, l]`` with ``rel_h[q, k] = q·R_h[i - k]``
and ``rel_w[q, l] = q·R_w[j - l]`` (unscaled query). This kernel reads q, k and v where the ``qkv`` layer wrote them
([batch, height, width, 3·hidden]), computes the relative terms itself and writes [batch, height, width, hidden],
ready for ``proj``: no head split or merge copies, and no relative-term einsums with their layout copies.

- Each key tile is one row of the key grid, padded to a power of two, so the bias costs (almost) nothing per score:
  within a tile ``rel_w`` is the same [queries, width] block for every row, and ``rel_h`` is one value per query,
  which joins the running row maximum instead of every score: ``exp2(s + rel_h - m) = exp2(s - (m - rel_h))``.
- A program first multiplies its queries with both tables (one small product each), which gives each query's terms
  by offset, and gathers per query the columns ``j - l`` (kept in registers as the tile bias) and ``i - k``
  (written to a scratch buffer: the loop reads one key row's terms per step, which registers cannot index).
  Scattering both to scratch by store instead of gathering in registers measured 8% slower on an H200.

The ``folded`` kind instead widens q·k (twice the attention arithmetic, plus the copies that build the widened
operands); the reference materialises a [heads, N, N] mask.
"""

from __future__ import annotations

import math

import torch

from optical_memory.model.kernels.support import (
    attended_map_like,
    chosen_configs,
    dot_precision,
    interpreting,
    kernel_takes,
    tl,
    triton,
)

MAX_GRID_SIDE = 128
"""Largest grid height and width the kernel takes (a key row is one tile); LARGE's global blocks are 80 wide."""


def global_kernel_runs(qkv: torch.Tensor, head_dim: int) -> bool:
    """Whether the kernel takes global attention over a [batch, height, width, 3·hidden] map of this head size."""
    return kernel_takes(qkv, head_dim) and qkv.dim() == 4 and max(qkv.shape[1:3]) <= MAX_GRID_SIDE


if triton is not None:

    @triton.jit
    def _relative_terms(q, TABLE, table_s, query_position, offs_key, EXTENT: tl.constexpr, SPAN: tl.constexpr,
                        HEAD_DIM: tl.constexpr, PRECISION: tl.constexpr):  # fmt: skip
        """terms[q, k] = q·TABLE[position(q) - k + EXTENT - 1] for the keys ``offs_key`` (rounded to q's dtype, as the
        reference's einsum rounds them): one product with the whole [2·EXTENT - 1, HEAD_DIM] table, then a gather."""
        offs_t = tl.arange(0, SPAN)
        table = tl.load(TABLE + offs_t[:, None] * table_s + tl.arange(0, HEAD_DIM)[None, :],
                        mask=(offs_t < 2 * EXTENT - 1)[:, None], other=0.0)  # fmt: skip
        by_offset = tl.dot(q, tl.trans(table), input_precision=PRECISION)
        # Keys past the grid (padding of the tile) are never used: clamp their index.
        shift = tl.minimum(tl.maximum(query_position[:, None] - offs_key[None, :] + EXTENT - 1, 0), SPAN - 1)
        return tl.gather(by_offset, shift, 1).to(q.dtype)

    @triton.jit
    def _global_attention_forward(
        QKV, TABLE_H, TABLE_W, ROW_TERMS, Out,
        qkv_sb, qkv_sh, qkv_sw, o_sb, o_sh, o_sw, table_h_s, table_w_s,
        heads, qk_scale,
        HEIGHT: tl.constexpr, WIDTH: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr, ROWS: tl.constexpr, SPAN_H: tl.constexpr, SPAN_W: tl.constexpr,
        PRECISION: tl.constexpr,
    ):  # fmt: skip
        # Scores are kept in base 2 (exp2 is one instruction): the scale and the bias are multiplied by log2(e).
        LOG2E: tl.constexpr = 1.4426950408889634
        TOKENS: tl.constexpr = HEIGHT * WIDTH
        QUERY_BLOCKS: tl.constexpr = (TOKENS + BLOCK_M - 1) // BLOCK_M
        # One flat program axis, a head's query blocks adjacent so that its keys and values stay in L2.
        program = tl.program_id(0)
        first_query = (program % QUERY_BLOCKS) * BLOCK_M
        batch_head = (program // QUERY_BLOCKS).to(tl.int64)  # offsets past 2³¹ at large batches
        batch = batch_head // heads
        head = batch_head % heads
        channels = heads * HEAD_DIM
        base = QKV + batch * qkv_sb + head * HEAD_DIM
        offs_d = tl.arange(0, HEAD_DIM)

        offs_m = first_query + tl.arange(0, BLOCK_M)
        query_ok = offs_m < TOKENS
        query_y = offs_m // WIDTH
        query_x = offs_m % WIDTH
        q = tl.load(base + query_y[:, None] * qkv_sh + query_x[:, None] * qkv_sw + offs_d[None, :],
                    mask=query_ok[:, None], other=0.0)  # fmt: skip

        # A tile is one key row, padded to BLOCK_N; padded keys get a -inf bias, so they never count.
        offs_n = tl.arange(0, BLOCK_N)
        column_ok = offs_n < WIDTH
        rel_w = _relative_terms(q, TABLE_W, table_w_s, query_x, offs_n, WIDTH, SPAN_W, HEAD_DIM, PRECISION)
        bias = tl.where(column_ok[None, :], rel_w.to(tl.float32) * LOG2E, float("-inf"))
        offs_r = tl.arange(0, ROWS)
        rel_h = _relative_terms(q, TABLE_H, table_h_s, query_y, offs_r, HEIGHT, SPAN_H, HEAD_DIM, PRECISION)
        # Row-major [key row, query] per batch and head: the loop reads one contiguous key row's terms per step.
        row_terms = ROW_TERMS + batch_head * TOKENS * HEIGHT + offs_m
        tl.store(row_terms[:, None] + offs_r[None, :] * TOKENS, rel_h,
                 mask=query_ok[:, None] & (offs_r < HEIGHT)[None, :])  # fmt: skip
        tl.debug_barrier()  # the loop's loads read what other threads of this program stored

        running_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
        running_sum = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        key_cells = base + offs_n[:, None] * qkv_sw + offs_d[None, :]
        for row in range(0, HEIGHT):
            k = tl.load(key_cells + row * qkv_sh + channels, mask=column_ok[:, None], other=0.0)
            scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale + bias
            row_bias = tl.load(row_terms + row * TOKENS, mask=query_ok, other=0.0).to(tl.float32) * LOG2E
            # rel_h is constant across the tile: it shifts each query's maximum, not each score.
            new_max = tl.maximum(running_max, tl.max(scores, 1) + row_bias)
            probabilities = tl.exp2(scores - (new_max - row_bias)[:, None])
            correction = tl.exp2(running_max - new_max)
            running_sum = running_sum * correction + tl.sum(probabilities, 1)
            v = tl.load(key_cells + row * qkv_sh + 2 * channels, mask=column_ok[:, None], other=0.0)
            acc = tl.dot(probabilities.to(v.dtype), v, acc * correction[:, None], input_precision=PRECISION)
            running_max = new_max
        acc = acc / running_sum[:, None]
        tl.store(
            Out + batch * o_sb + query_y[:, None] * o_sh + query_x[:, None] * o_sw + head * HEAD_DIM + offs_d[None, :],
            acc.to(Out.dtype.element_ty), mask=query_ok[:, None],
        )  # fmt: skip

    # The configurations an H200 picked from a sweep of 15 (BLOCK_M 32-128, 4 or 8 warps, 2-4 stages) at SAM's
    # global grids, each with its neighbours.
    _tuned = triton.autotune(
        configs=[
            triton.Config({"BLOCK_M": block_m}, num_warps=warps, num_stages=stages)
            for block_m, warps in ((64, 4), (128, 4), (128, 8))
            for stages in (3, 4)
        ],
        key=["HEIGHT", "WIDTH", "HEAD_DIM"],
    )(_global_attention_forward)


def tuned_configs() -> dict:
    """The tile configuration the autotuner chose per key (grid height and width, head size, dtypes)."""
    return chosen_configs(_tuned if triton is not None else None)


def _span(extent: int) -> int:
    """Rows of a relative table padded to a power of two, at least a dot product's 16."""
    return max(16, triton.next_power_of_2(2 * extent - 1))


@torch.library.custom_op("optical_memory::sam_global_attention", mutates_args=())
def global_attention(qkv: torch.Tensor, table_h: torch.Tensor, table_w: torch.Tensor, scale: float) -> torch.Tensor:
    """SAM's global attention over a [batch, height, width, 3·hidden] ``qkv`` map → [batch, height, width, hidden].

    ``table_h`` and ``table_w`` are the [2·height - 1, head_dim] and [2·width - 1, head_dim] relative-position tables
    at the grid's size; heads are ``hidden / head_dim``.
    """
    head_dim = table_h.shape[-1]
    if not global_kernel_runs(qkv, head_dim):
        raise ValueError(
            f"the global attention kernel does not take this call: device {qkv.device}, head size {head_dim}, "
            f"shape {tuple(qkv.shape)}, dtype {qkv.dtype} (see global_kernel_runs)"
        )
    batch, height, width, channels = qkv.shape
    if table_h.shape != (2 * height - 1, head_dim) or table_w.shape != (2 * width - 1, head_dim):
        raise ValueError(
            f"relative tables must be [{2 * height - 1}, {head_dim}] and [{2 * width - 1}, {head_dim}] for a "
            f"{height}×{width} grid, got {tuple(table_h.shape)} and {tuple(table_w.shape)}"
        )
    heads = channels // (3 * head_dim)
    tokens = height * width
    table_h, table_w = (table.to(qkv.dtype).contiguous() for table in (table_h, table_w))
    output = attended_map_like(qkv)
    row_terms = qkv.new_empty(batch * heads * height * tokens)
    launch, meta = _tuned, {}
    if interpreting():  # one fixed tile shape: the interpreter cannot time configurations
        launch, meta = _global_attention_forward, {"BLOCK_M": 32, "num_warps": 4}

    def grid(config: dict) -> tuple[int]:
        return (triton.cdiv(tokens, config["BLOCK_M"]) * batch * heads,)

    launch[grid](
        qkv, table_h, table_w, row_terms, output,
        *qkv.stride()[:3], *output.stride()[:3], table_h.stride(0), table_w.stride(0),
        heads, scale * math.log2(math.e),
        HEIGHT=height, WIDTH=width, HEAD_DIM=head_dim, BLOCK_N=max(16, triton.next_power_of_2(width)),
        ROWS=max(16, triton.next_power_of_2(height)), SPAN_H=_span(height), SPAN_W=_span(width),
        PRECISION=dot_precision(qkv.dtype), **meta,
    )  # fmt: skip
    return output


@global_attention.register_fake
def _(qkv, table_h, table_w, scale):
    return attended_map_like(qkv)
