"""The in-place global kernel computes SAM's global attention (head split, decomposed relative-position bias, head
merge) straight from the ``qkv`` map, on grids of any shape up to its limit; without CUDA it runs in Triton's
interpreter (tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_support import relative_error

from optical_memory.model.kernels.global_attention import (
    MAX_GRID_SIDE,
    global_attention,
    global_kernel_runs,
)

triton = pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# The encoder's dtype on CUDA; the CPU interpreter has no bfloat16 and checks the arithmetic exactly in float32.
DTYPE, TOLERANCE = (torch.bfloat16, 2e-2) if DEVICE == "cuda" else (torch.float32, 1e-5)


def global_reference(qkv, table_h, table_w, scale):
    """Split heads, softmax with the materialised [N, N] bias, merge heads."""
    batch, height, width, channels = qkv.shape
    head_dim = table_h.shape[-1]
    heads = channels // (3 * head_dim)
    qkv, table_h, table_w = (tensor.float() for tensor in (qkv, table_h, table_w))
    query, key, value = qkv.reshape(batch, height * width, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    rows, cols = torch.arange(height), torch.arange(width)
    relative_h = table_h[rows[:, None] - rows[None, :] + height - 1]  # [query row, key row, head_dim]
    relative_w = table_w[cols[:, None] - cols[None, :] + width - 1]
    grid = query.unflatten(2, (height, width))
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid, relative_h).flatten(2, 3)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid, relative_w).flatten(2, 3)
    keys = torch.arange(height * width)
    scores = scale * query @ key.transpose(-1, -2) + rel_h[..., keys // width] + rel_w[..., keys % width]
    mixed = torch.softmax(scores, dim=-1) @ value
    return mixed.transpose(1, 2).reshape(batch, height, width, heads * head_dim)


def projected_map(batch, height, width, heads, head_dim, seed, dtype=DTYPE):
    """A ``qkv`` map and random relative tables of the grid's size."""
    generator = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch, height, width, 3 * heads * head_dim, generator=generator).to(DEVICE, dtype)
    table_h = (0.5 * torch.randn(2 * height - 1, head_dim, generator=generator)).to(DEVICE, dtype)
    table_w = (0.5 * torch.randn(2 * width - 1, head_dim, generator=generator)).to(DEVICE, dtype)
    return qkv, table_h, table_w


@pytest.mark.parametrize(
    ("height", "width", "head_dim"),
    [
        (14, 14, 16),  # rows narrower than the smallest tile
        (8, 8, 32),
        (10, 20, 16),  # a non-square grid, wider than high
        (20, 6, 16),  # higher than wide: query blocks span several grid rows
        (5, 64, 16),  # BASE's global blocks are 64 wide
        (7, 40, 16),  # rows padded to a power of two (SMALL's global blocks are 40 wide)
    ],
)
def test_kernel_equals_global_attention_with_the_materialised_bias(height, width, head_dim):
    qkv, table_h, table_w = projected_map(2, height, width, 2, head_dim, seed=height * width)
    scale = head_dim**-0.5
    assert global_kernel_runs(qkv, head_dim)
    with torch.no_grad():
        produced = global_attention(qkv, table_h, table_w, scale)
    expected = global_reference(qkv, table_h, table_w, scale)
    assert produced.shape == (2, height, width, 2 * head_dim) and produced.dtype == DTYPE
    assert relative_error(produced, expected) < TOLERANCE
    # Each relative table moves the result.
    for unbiased in (
        global_attention(qkv, torch.zeros_like(table_h), table_w, scale),
        global_attention(qkv, table_h, torch.zeros_like(table_w), scale),
    ):
        assert relative_error(unbiased, expected) > 0.05


def test_kernel_reads_a_strided_map():
    """A map that is a view (here every other column of a wider one) is read where it lies."""
    wide, table_h, _ = projected_map(1, 6, 12, 2, 16, seed=4)
    table_w = projected_map(1, 6, 6, 2, 16, seed=5)[2]
    view = wide[:, :, ::2]
    assert not view.is_contiguous()
    produced = global_attention(view, table_h, table_w, 0.25)
    assert relative_error(produced, global_reference(view, table_h, table_w, 0.25)) < TOLERANCE


def test_kernel_runs_in_float16_within_its_rounding():
    inputs = projected_map(1, 16, 16, 2, 16, seed=3, dtype=torch.float16)
    produced = global_attention(*inputs, 0.25)
    assert produced.dtype == torch.float16
    assert relative_error(produced, global_reference(*inputs, 0.25)) < 1e-2


def test_kernel_declines_what_it_does_not_cover():
    qkv, table_h, table_w = projected_map(1, 2, MAX_GRID_SIDE + 1, 1, 16, seed=1)  # rows too wide for a tile
    assert not global_kernel_runs(qkv, 16)
    assert not global_kernel_runs(qkv[:, :, :4], 24)  # head size
    refused = torch.float32 if DEVICE == "cuda" else torch.bfloat16
    assert not global_kernel_runs(qkv[:, :, :4].to(refused), 16)
    with pytest.raises(ValueError, match=rf"shape \(1, 2, {MAX_GRID_SIDE + 1}, 48\)"):
        global_attention(qkv, table_h, table_w, 0.25)
    qkv = qkv[:, :, :4]
    with pytest.raises(ValueError, match=r"relative tables must be \[3, 16\] and \[7, 16\]"):
        global_attention(qkv, F.pad(table_h, (0, 0, 0, 1)), table_w[:7], 0.25)


def test_kernel_is_one_opaque_call_under_torch_compile():
    qkv, table_h, table_w = projected_map(1, 6, 10, 2, 16, seed=2)

    def attend(qkv):
        return global_attention(qkv * 2, table_h, table_w, 0.25).sum(-1)

    with torch.no_grad():
        expected = attend(qkv)
        produced = torch.compile(attend, fullgraph=True)(qkv)
    assert torch.allclose(produced, expected, atol=1e-5)
