"""The in-place window kernel computes SAM's windowed attention (bias-filled padding, partition, decomposed
relative-position bias, un-partition) straight from the un-partitioned ``qkv`` map; without CUDA it runs in Triton's
interpreter (tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_support import relative_error

from optical_memory.model.kernels.window_attention import (
    MAX_WINDOW,
    window_attention,
    window_kernel_runs,
)

triton = pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE, TOLERANCE = (torch.bfloat16, 2e-2) if DEVICE == "cuda" else (torch.float32, 1e-5)


def windowed_reference(qkv, bias, table_h, table_w, window, scale):
    """Pad with the bias, cut into windows, softmax with the materialised bias per window, stitch back, crop."""
    batch, height, width, channels = qkv.shape
    head_dim = table_h.shape[-1]
    heads = channels // (3 * head_dim)
    qkv, bias, table_h, table_w = (tensor.float() for tensor in (qkv, bias, table_h, table_w))
    pad_h, pad_w = (-height) % window, (-width) % window
    padded = bias.expand(batch, height + pad_h, width + pad_w, channels).clone()
    padded[:, :height, :width] = qkv
    rows, cols = (height + pad_h) // window, (width + pad_w) // window
    windows = padded.reshape(batch, rows, window, cols, window, 3, heads, head_dim)
    query, key, value = windows.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(3, -1, heads, window * window, head_dim)
    offsets = torch.arange(window)
    relative_h = table_h[offsets[:, None] - offsets[None, :] + window - 1]  # [query row, key row, head_dim]
    relative_w = table_w[offsets[:, None] - offsets[None, :] + window - 1]
    grid = query.unflatten(2, (window, window))
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid, relative_h).flatten(2, 3)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid, relative_w).flatten(2, 3)
    keys = torch.arange(window * window)
    scores = scale * query @ key.transpose(-1, -2) + rel_h[..., keys // window] + rel_w[..., keys % window]
    mixed = torch.softmax(scores, dim=-1) @ value
    mixed = mixed.reshape(batch, rows, cols, heads, window, window, head_dim).permute(0, 1, 4, 2, 5, 3, 6)
    return mixed.reshape(batch, rows * window, cols * window, heads * head_dim)[:, :height, :width]


def projected_map(batch, height, width, heads, head_dim, window, seed, dtype=DTYPE):
    """A ``qkv`` map, its bias and random relative tables of a window's size."""
    generator = torch.Generator().manual_seed(seed)
    channels = 3 * heads * head_dim
    qkv = torch.randn(batch, height, width, channels, generator=generator).to(DEVICE, dtype)
    bias = torch.randn(channels, generator=generator).to(DEVICE, dtype)
    table_h = (0.5 * torch.randn(2 * window - 1, head_dim, generator=generator)).to(DEVICE, dtype)
    table_w = (0.5 * torch.randn(2 * window - 1, head_dim, generator=generator)).to(DEVICE, dtype)
    return qkv, bias, table_h, table_w


@pytest.mark.parametrize(
    ("height", "width", "window", "head_dim"),
    [
        (14, 14, 14, 16),  # one whole window
        (17, 17, 14, 16),  # padded in both directions: 3 of 4 windows mostly padding
        (30, 20, 14, 32),  # several windows, a non-square map
        (5, 9, 4, 16),  # a small window: query blocks span several window rows
        (12, 9, 8, 16),  # 64 keys per window: whole key tiles only, no leftover tile (in the interpreter's tiling)
    ],
)
def test_kernel_equals_windowed_attention_over_the_bias_padded_map(height, width, window, head_dim):
    inputs = projected_map(2, height, width, 2, head_dim, window, seed=height * width)
    scale = head_dim**-0.5
    assert window_kernel_runs(inputs[0], head_dim, window)
    with torch.no_grad():
        produced = window_attention(*inputs, window, scale)
    expected = windowed_reference(*inputs, window, scale)
    assert produced.shape == (2, height, width, 2 * head_dim) and produced.dtype == DTYPE
    assert relative_error(produced, expected) < TOLERANCE
    # The relative tables move the result.
    unbiased = window_attention(inputs[0], inputs[1], *(torch.zeros_like(table) for table in inputs[2:]), window, scale)
    assert relative_error(unbiased, expected) > 0.05


def test_padded_keys_are_what_a_zero_row_projects_to():
    qkv, bias, table_h, table_w = projected_map(1, 17, 17, 2, 16, 14, seed=5)
    with torch.no_grad():
        with_bias = window_attention(qkv, bias, table_h, table_w, 14, 0.25)
        without = window_attention(qkv, None, table_h, table_w, 14, 0.25)
    assert relative_error(without, windowed_reference(qkv, torch.zeros_like(bias), table_h, table_w, 14, 0.25)) < (
        TOLERANCE
    )
    # Only windows with padding change: the top-left one (all real cells) is the same either way.
    assert torch.allclose(with_bias[:, :14, :14], without[:, :14, :14])
    assert relative_error(with_bias[:, 14:], without[:, 14:]) > 0.05


def test_kernel_runs_in_float16_within_its_rounding():
    inputs = projected_map(1, 17, 17, 2, 16, 14, seed=7, dtype=torch.float16)
    produced = window_attention(*inputs, 14, 0.25)
    assert produced.dtype == torch.float16
    assert relative_error(produced, windowed_reference(*inputs, 14, 0.25)) < 1e-2


def test_kernel_declines_what_it_does_not_cover():
    qkv, bias, table_h, table_w = projected_map(1, 17, 17, 2, 16, 14, seed=1)
    assert not window_kernel_runs(qkv, 16, MAX_WINDOW + 1)
    assert not window_kernel_runs(qkv, 24, 14)  # head size
    refused = torch.float32 if DEVICE == "cuda" else torch.bfloat16
    assert not window_kernel_runs(qkv.to(refused), 16, 14)
    with pytest.raises(ValueError, match=r"window 17"):
        window_attention(qkv, bias, table_h, table_w, MAX_WINDOW + 1, 0.25)
    with pytest.raises(ValueError, match=r"relative tables must be \[27, 16\]"):
        window_attention(qkv, bias, F.pad(table_h, (0, 0, 0, 1)), table_w, 14, 0.25)


def test_kernel_is_one_opaque_call_under_torch_compile():
    qkv, bias, table_h, table_w = projected_map(1, 17, 17, 2, 16, 14, seed=2)

    def attend(qkv):
        return window_attention(qkv * 2, bias, table_h, table_w, 14, 0.25).sum(-1)

    with torch.no_grad():
        expected = attend(qkv)
        produced = torch.compile(attend, fullgraph=True)(qkv)
    assert torch.allclose(produced, expected, atol=1e-5)
