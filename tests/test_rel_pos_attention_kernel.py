"""The relative-position attention kernel of SAM's global blocks computes softmax(scale·q·kᵀ + bias)·v with the
decomposed bias, on grids of any height and widths up to its limit; without CUDA it runs in Triton's interpreter
(tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch
from test_model_support import relative_error

from optical_memory.rel_pos_attention_kernel import MAX_GRID_WIDTH, kernel_runs, rel_pos_attention

triton = pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# The encoder's dtype on CUDA; the CPU interpreter has no bfloat16 and checks the arithmetic exactly in float32.
DTYPE, TOLERANCE = (torch.bfloat16, 2e-2) if DEVICE == "cuda" else (torch.float32, 1e-5)


def materialised(query, key, value, rel_h, rel_w, width, scale):
    tokens = query.shape[2]
    columns = torch.arange(tokens, device=query.device)
    query, key, value, rel_h, rel_w = (tensor.float() for tensor in (query, key, value, rel_h, rel_w))
    bias = rel_h[..., columns // width] + rel_w[..., columns % width]
    return torch.softmax(scale * query @ key.transpose(-1, -2) + bias, dim=-1) @ value


def projected(batch: int, heads: int, height: int, width: int, head_dim: int, seed: int, dtype=DTYPE):
    """q, k, v as the strided views of one [batch, N, 3, heads, head_dim] projection, and random bias terms."""
    generator = torch.Generator().manual_seed(seed)
    tokens = height * width
    qkv = torch.randn(batch, tokens, 3, heads, head_dim, generator=generator).to(DEVICE, dtype)
    query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    rel_h = torch.randn(batch, heads, tokens, height, generator=generator).to(DEVICE, dtype)
    rel_w = torch.randn(batch, heads, tokens, width, generator=generator).to(DEVICE, dtype)
    return query, key, value, rel_h, rel_w


@pytest.mark.parametrize(
    ("height", "width", "head_dim"),
    [
        (14, 14, 16),  # rows narrower than the smallest tile
        (8, 8, 32),
        (10, 20, 16),  # a non-square grid
        (5, 64, 16),  # BASE's global blocks are 64 wide
        (32, 32, 16),  # TINY's global grid
        (7, 40, 16),  # rows padded to a power of two (SMALL's global blocks are 40 wide)
    ],
)
def test_kernel_equals_softmax_with_the_materialised_bias(height, width, head_dim):
    inputs = projected(2, 2, height, width, head_dim, seed=height * width)
    assert kernel_runs(inputs[0], width)
    with torch.no_grad():
        produced = rel_pos_attention(*inputs, width, head_dim**-0.5)
        expected = materialised(*inputs, width, head_dim**-0.5)
    assert produced.shape == expected.shape
    assert produced.transpose(1, 2).is_contiguous()  # heads merge without a copy
    assert produced.dtype == DTYPE
    assert relative_error(produced, expected) < TOLERANCE
    # The bias moves the result: the same call without it differs.
    unbiased = rel_pos_attention(*inputs[:3], torch.zeros_like(inputs[3]), torch.zeros_like(inputs[4]), width,
                                  head_dim**-0.5)
    assert relative_error(unbiased, expected) > 0.1


def test_kernel_declines_grids_its_tiles_do_not_cover():
    query = projected(1, 1, 2, MAX_GRID_WIDTH * 2, 16, seed=1)[0]  # rows too wide for a tile
    assert not kernel_runs(query, MAX_GRID_WIDTH * 2)
    assert not kernel_runs(projected(1, 1, 4, 4, 24, seed=1)[0], 4)  # head size
    with pytest.raises(ValueError, match=f"grid width {MAX_GRID_WIDTH * 2}"):
        rel_pos_attention(query, query, query, query[..., :2], query, MAX_GRID_WIDTH * 2, 0.25)


def test_kernel_runs_in_float16_within_its_rounding():
    inputs = projected(1, 2, 32, 32, 16, seed=3, dtype=torch.float16)
    produced = rel_pos_attention(*inputs, 32, 0.25)
    assert produced.dtype == torch.float16
    expected = materialised(*inputs, 32, 0.25)
    assert relative_error(produced, expected) < 1e-2


def test_kernel_takes_the_dtypes_its_device_runs():
    query = projected(1, 1, 4, 4, 16, seed=4)[0]
    assert kernel_runs(query, 4)
    refused = torch.float32 if DEVICE == "cuda" else torch.bfloat16
    assert not kernel_runs(query.to(refused), 4)


def test_kernel_is_one_opaque_call_under_torch_compile():
    inputs = projected(1, 2, 14, 14, 16, seed=2)

    def attend(query, key, value, rel_h, rel_w):
        return rel_pos_attention(query * 2, key, value, rel_h, rel_w, 14, 0.25).sum(-1)

    with torch.no_grad():
        expected = attend(*inputs)
        produced = torch.compile(attend, fullgraph=True)(*inputs)
    assert torch.allclose(produced, expected, atol=1e-5)
