"""SAM's windowed attention in place: one Triton kernel over the un-partitioned ``qkv`` map.

The reference windowed block zero-pads the normalised map to a multiple of the window (14), cuts it into windows,
attends within each window with the decomposed relative-position bias, and stitches the windows back without the
padding. This kernel does the same from the [batch, height, width, 3·hidden] map the ``qkv`` layer wrote:

- A program takes a block of one window's query cells for one head and reads the window's keys and values where
  they lie in the map. A padded cell's key and value are what a zero row projects to, the ``qkv`` bias, as in the
  reference, where padded keys take part in attention. Such a key's pointer leads to that bias, laid out like a
  cell: plain loads that feed the dot products directly, with no select per element.
- Padded queries are skipped (the reference drops their outputs); a block of padding alone returns at once.
- The relative terms ``rel_h[q, r] = q·R_h[i - r]`` (i the query's row in the window) and ``rel_w`` come from one
  small product with both tables, of which each query gathers its columns ``i - r`` (and ``j - c``); each key tile's
  bias then follows by one matmul against one-hot codes of the keys' rows and columns, made in registers. That
  product is the accumulator the q·kᵀ product starts from: scores stay in units of q·k, and the scale joins the
  exponent's multiply-add.
- Keys come in whole tiles, in a software-pipelined loop (the next tile loads while this one computes), then the
  leftover keys in a tile of their own size: 4 of a 14-sided window's 196 keys fill 16 rows, not a masked 64.
- The output is written to [batch, height, width, hidden], ready for ``proj``.

So neither the partition and un-partition copies nor the relative-term einsums of the reference layout remain, and
the padding (72% more rows on a TINY map, 20% on BASE) costs only the keys it adds.
"""

from __future__ import annotations

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

MAX_WINDOW = 16
"""Largest window side the kernel takes (its relative codes span 16 rows and columns); SAM's windows are 14."""


def window_kernel_runs(qkv: torch.Tensor, head_dim: int, window: int) -> bool:
    """Whether the kernel takes a [batch, height, width, 3·hidden] map with ``window``-sided windows of this head size."""
    return kernel_takes(qkv, head_dim) and 0 < window <= MAX_WINDOW


if triton is not None:
    CODES = tl.constexpr(MAX_WINDOW)  # relative rows and columns held per query

    @triton.constexpr_function
    def tail_tile(keys: int) -> int:
        """Rows of the tile for ``keys`` leftover keys: a power of two, at least a dot product's 16."""
        return max(16, triton.next_power_of_2(keys))

    @triton.jit
    def _attend_key_tile(
        q, relative, acc, running_max, running_sum, base, bias_cell, code_is_column, codes,
        window_y, window_x, first_key, qkv_sh, qkv_sw, channels, qk_scale,
        HEIGHT: tl.constexpr, WIDTH: tl.constexpr, WINDOW: tl.constexpr, HEAD_DIM: tl.constexpr, TILE: tl.constexpr,
        LAST: tl.constexpr, PRECISION: tl.constexpr,
    ):  # fmt: skip
        """One online-softmax step over the window's keys ``first_key`` … ``first_key + TILE - 1``; only the LAST tile
        reaches past the window and masks."""
        offs_n = first_key + tl.arange(0, TILE)
        key_row = offs_n // WINDOW
        key_col = offs_n % WINDOW
        key_y = window_y * WINDOW + key_row
        key_x = window_x * WINDOW + key_col
        in_window = offs_n < WINDOW * WINDOW
        in_map = in_window & (key_y < HEIGHT) & (key_x < WIDTH)
        # A key past the map reads the qkv bias (what a zero row projects to) through its pointer.
        cells = tl.where(in_map, base + key_y * qkv_sh + key_x * qkv_sw, bias_cell)
        cells = cells[:, None] + tl.arange(0, HEAD_DIM)[None, :]
        k = tl.load(cells + channels)
        v = tl.load(cells + 2 * channels)
        key_position = tl.where(code_is_column[:, None], key_col[None, :], key_row[None, :])
        key_codes = (key_position == codes[:, None]).to(q.dtype)
        scores = tl.dot(q, tl.trans(k), tl.dot(relative, key_codes, input_precision=PRECISION),
                        input_precision=PRECISION)  # fmt: skip
        if LAST:
            scores = tl.where(in_window[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, 1))
        # Base 2 (exp2 is one instruction), the scale folded into one multiply-add per score.
        probabilities = tl.exp2(scores * qk_scale - (new_max * qk_scale)[:, None])
        correction = tl.exp2((running_max - new_max) * qk_scale)
        running_sum = running_sum * correction + tl.sum(probabilities, 1)
        acc = tl.dot(probabilities.to(v.dtype), v, acc * correction[:, None], input_precision=PRECISION)
        return acc, new_max, running_sum

    @triton.jit
    def _window_attention_forward(
        QKV, BIAS, TABLE_H, TABLE_W, Out,
        qkv_sb, qkv_sh, qkv_sw, o_sb, o_sh, o_sw, table_h_s, table_w_s,
        heads, scale,
        HEIGHT: tl.constexpr, WIDTH: tl.constexpr, WINDOW: tl.constexpr, HEAD_DIM: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
    ):  # fmt: skip
        LOG2E: tl.constexpr = 1.4426950408889634
        WINDOW_TOKENS: tl.constexpr = WINDOW * WINDOW
        QUERY_BLOCKS: tl.constexpr = (WINDOW_TOKENS + BLOCK_M - 1) // BLOCK_M
        WINDOWS_Y: tl.constexpr = (HEIGHT + WINDOW - 1) // WINDOW
        WINDOWS_X: tl.constexpr = (WIDTH + WINDOW - 1) // WINDOW
        SPAN: tl.constexpr = 2 * CODES  # table rows held, ≥ 2·WINDOW - 1
        WHOLE_KEYS: tl.constexpr = WINDOW_TOKENS // BLOCK_N * BLOCK_N
        # One flat program axis (no 65,535 limit), query blocks of a window and head adjacent for L2 reuse.
        program = tl.program_id(0)
        first_query = (program % QUERY_BLOCKS) * BLOCK_M
        program = program // QUERY_BLOCKS
        head = program % heads
        program = program // heads
        window_x = program % WINDOWS_X
        program = program // WINDOWS_X
        window_y = program % WINDOWS_Y
        batch = (program // WINDOWS_Y).to(tl.int64)  # offsets past 2³¹ at large batches
        if window_y * WINDOW + first_query // WINDOW >= HEIGHT:
            return  # the block holds padded rows only
        channels = heads * HEAD_DIM
        base = QKV + batch * qkv_sb + head * HEAD_DIM
        offs_d = tl.arange(0, HEAD_DIM)

        offs_m = first_query + tl.arange(0, BLOCK_M)
        query_row = offs_m // WINDOW
        query_col = offs_m % WINDOW
        query_y = window_y * WINDOW + query_row
        query_x = window_x * WINDOW + query_col
        query_ok = (offs_m < WINDOW_TOKENS) & (query_y < HEIGHT) & (query_x < WIDTH)
        q = tl.load(base + query_y[:, None] * qkv_sh + query_x[:, None] * qkv_sw + offs_d[None, :],
                    mask=query_ok[:, None], other=0.0)  # fmt: skip

        # The relative terms of both axes side by side: codes 0…CODES-1 are key rows, CODES…2·CODES-1 key columns.
        # rel[q, c] = q·R_h[row(q) - c + WINDOW - 1] (and likewise with R_w and columns): one product with both tables
        # stacked, of which each query gathers its columns.
        offs_t = tl.arange(0, 2 * SPAN)
        table_rows = offs_t % SPAN
        table = tl.load(
            tl.where((offs_t < SPAN)[:, None], TABLE_H + table_rows[:, None] * table_h_s,
                     TABLE_W + table_rows[:, None] * table_w_s) + offs_d[None, :],
            mask=(table_rows < 2 * WINDOW - 1)[:, None], other=0.0,
        )  # fmt: skip
        by_offset = tl.dot(q, tl.trans(table), input_precision=PRECISION)
        offs_c = tl.arange(0, 2 * CODES)
        code_is_column = offs_c >= CODES
        codes = offs_c % CODES
        query_position = tl.where(code_is_column[None, :], query_col[:, None], query_row[:, None])
        # Codes past the window (≥ WINDOW) meet only keys outside it, which are masked: clamp their index.
        shift = tl.minimum(tl.maximum(query_position - codes[None, :] + WINDOW - 1, 0), SPAN - 1)
        shift += tl.where(code_is_column, SPAN, 0)[None, :]
        # Divided by the scale, the units of q·k; rounded to the input dtype, as the reference's einsum rounds them.
        relative = (tl.gather(by_offset, shift, 1) / scale).to(q.dtype)

        qk_scale = scale * LOG2E
        running_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
        running_sum = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        for first_key in tl.range(0, WHOLE_KEYS, BLOCK_N):
            acc, running_max, running_sum = _attend_key_tile(
                q, relative, acc, running_max, running_sum, base, BIAS + head * HEAD_DIM, code_is_column, codes,
                window_y, window_x, first_key, qkv_sh, qkv_sw, channels, qk_scale,
                HEIGHT, WIDTH, WINDOW, HEAD_DIM, BLOCK_N, False, PRECISION,
            )  # fmt: skip
        if WHOLE_KEYS < WINDOW_TOKENS:
            acc, running_max, running_sum = _attend_key_tile(
                q, relative, acc, running_max, running_sum, base, BIAS + head * HEAD_DIM, code_is_column, codes,
                window_y, window_x, WHOLE_KEYS, qkv_sh, qkv_sw, channels, qk_scale,
                HEIGHT, WIDTH, WINDOW, HEAD_DIM, tail_tile(WINDOW_TOKENS - WHOLE_KEYS), True, PRECISION,
            )  # fmt: skip
        acc = acc / running_sum[:, None]
        tl.store(
            Out + batch * o_sb + query_y[:, None] * o_sh + query_x[:, None] * o_sw + head * HEAD_DIM + offs_d[None, :],
            acc.to(Out.dtype.element_ty), mask=query_ok[:, None],
        )  # fmt: skip

    # An H200 chose (64, 64, 4 warps, 3 stages) at BASE's and TINY's windows.
    _tuned = triton.autotune(
        configs=[
            triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n}, num_warps=warps, num_stages=stages)
            for block_m, block_n, warps in ((64, 64, 4), (64, 128, 4), (128, 64, 8), (128, 128, 8))
            for stages in (2, 3)
        ],
        key=["HEIGHT", "WIDTH", "WINDOW", "HEAD_DIM"],
    )(_window_attention_forward)


def tuned_configs() -> dict:
    """The tile configuration the autotuner chose per key (map height and width, window, head size, dtypes)."""
    return chosen_configs(_tuned if triton is not None else None)


@torch.library.custom_op("optical_memory::sam_window_attention", mutates_args=())
def window_attention(
    qkv: torch.Tensor,
    qkv_bias: torch.Tensor | None,
    table_h: torch.Tensor,
    table_w: torch.Tensor,
    window: int,
    scale: float,
) -> torch.Tensor:
    """SAM's windowed attention over a [batch, height, width, 3·hidden] ``qkv`` map → [batch, height, width, hidden].

    The map is padded to whole ``window``-sided windows with ``qkv_bias`` (zeros when None); ``table_h`` and
    ``table_w`` are the [2·window - 1, head_dim] relative-position tables at the window's size; heads are
    ``hidden / head_dim``.
    """
    head_dim = table_h.shape[-1]
    if not window_kernel_runs(qkv, head_dim, window):
        raise ValueError(
            f"the window kernel does not take this call: device {qkv.device}, window {window}, head size {head_dim}, "
            f"shape {tuple(qkv.shape)}, dtype {qkv.dtype} (see window_kernel_runs)"
        )
    span = 2 * window - 1
    if table_h.shape != (span, head_dim) or table_w.shape != (span, head_dim):
        raise ValueError(
            f"relative tables must be [{span}, {head_dim}] for window {window}, got {tuple(table_h.shape)} and "
            f"{tuple(table_w.shape)}"
        )
    batch, height, width, _ = qkv.shape
    heads = qkv.shape[-1] // (3 * head_dim)
    bias = qkv.new_zeros(qkv.shape[-1]) if qkv_bias is None else qkv_bias.to(qkv.dtype).contiguous()
    table_h, table_w = (table.to(qkv.dtype).contiguous() for table in (table_h, table_w))
    output = attended_map_like(qkv)
    windows = triton.cdiv(height, window) * triton.cdiv(width, window)
    launch, meta = _tuned, {}
    if interpreting():  # one fixed tile shape: the interpreter cannot time configurations
        launch, meta = _window_attention_forward, {"BLOCK_M": 32, "BLOCK_N": 64, "num_warps": 4}

    def grid(config: dict) -> tuple[int]:
        return (triton.cdiv(window * window, config["BLOCK_M"]) * batch * windows * heads,)

    launch[grid](
        qkv, bias, table_h, table_w, output,
        *qkv.stride()[:3], *output.stride()[:3], table_h.stride(0), table_w.stride(0),
        heads, scale,
        HEIGHT=height, WIDTH=width, WINDOW=window, HEAD_DIM=head_dim,
        PRECISION=dot_precision(qkv.dtype), **meta,
    )  # fmt: skip
    return output


@window_attention.register_fake
def _(qkv, qkv_bias, table_h, table_w, window, scale):
    return attended_map_like(qkv)
