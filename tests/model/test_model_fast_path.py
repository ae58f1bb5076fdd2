"""The DeepEncoder's fast path computes the reference path's function: fused SAM attention, bias-filled window padding,
compiled blocks and device-side preprocessing, each checked against the reference on a tiny model (and, marked gpu,
at full size in bf16 on CUDA)."""

from __future__ import annotations

import copy

import pytest
import torch
from model_support import relative_error, text_page, tiny_model

from optical_memory.core.geometry import Mode
from optical_memory.model.configuration_deepseek_ocr import DeepSeekOCRConfig
from optical_memory.model.deepencoder import DeepEncoder, encode_views
from optical_memory.model.deepencoder_fast import _pad_with_bias, sam_block
from optical_memory.model.modeling_deepseek_ocr import DeepSeekOCR
from optical_memory.model.preprocessing import preprocess
from optical_memory.model.sam_attention import (
    FUSED_SAM_ATTENTION,
    SamFlexAttention,
    SamFoldedAttention,
    SamSdpaAttention,
    SamTritonAttention,
)

FUSED = list(FUSED_SAM_ATTENTION)


@pytest.fixture(scope="module")
def model() -> DeepSeekOCR:
    return tiny_model(seed=3)


@pytest.fixture
def vision(model) -> DeepEncoder:
    encoder = model.vision
    yield encoder
    encoder.use_reference()


def random_views(mode: Mode, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, mode.size, mode.size, generator=generator) * 2 - 1


@pytest.mark.parametrize("kind", FUSED)
@pytest.mark.parametrize("mode", [Mode.TINY, Mode.SMALL])
def test_fast_path_matches_the_reference_in_fp32(vision, kind, mode):
    pixels = random_views(mode, 2, seed=11)
    with torch.no_grad():
        reference = vision.token_grid(pixels)
        fast = vision.optimize(sam_attention=kind, compile=False).token_grid(pixels)
    assert fast.shape == reference.shape
    assert relative_error(fast, reference) < 1e-5


@pytest.mark.parametrize("kind", [SamFlexAttention, SamFoldedAttention, SamTritonAttention])
@pytest.mark.parametrize(("window", "side"), [(0, 8), (14, 14), (0, 20)])
def test_fused_attention_equals_sdpa_with_the_materialised_bias(model, kind, window, side):
    config = model.config.sam_config
    generator = torch.Generator().manual_seed(5)
    reference = SamSdpaAttention(config, window)
    with torch.no_grad():
        # Weights large enough that scores and the bias move the softmax (random init barely does).
        for parameter in reference.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    fused = kind(config, window)
    fused.load_state_dict(reference.state_dict())
    hidden = torch.randn(2, side, side, config.hidden_size, generator=generator)
    with torch.no_grad():
        expected, _ = reference(hidden)
        produced, weights = fused(hidden)
        fused.rel_pos_h.zero_()
        fused.rel_pos_w.zero_()
        unbiased, _ = fused(hidden)
    assert weights is None
    assert relative_error(produced, expected) < 1e-5
    assert relative_error(unbiased, expected) > 0.1


def test_bf16_fast_path_is_as_close_to_fp32_as_the_bf16_reference(model):
    pixels = random_views(Mode.SMALL, 2, seed=13)
    exact_model = tiny_model(seed=3, with_tokenizer=False)
    with torch.no_grad():
        exact = exact_model.vision.token_grid(pixels)
        low = exact_model.vision.to(torch.bfloat16)
        reference = low.token_grid(pixels)
        errors = {"reference": relative_error(reference, exact)}
        for kind in FUSED:
            errors[kind] = relative_error(low.optimize(sam_attention=kind, compile=False).token_grid(pixels), exact)
    assert 0 < errors["reference"] < 0.05, errors
    for kind in FUSED:
        assert errors[kind] < 1.5 * errors["reference"] + 1e-3, errors


def test_bias_padding_fills_what_a_zero_row_projects_to():
    qkv = torch.randn(2, 5, 3, 6)
    bias = torch.randn(6)
    padded = _pad_with_bias(qkv, bias, window=4)
    assert padded.shape == (2, 8, 4, 6)
    assert torch.equal(padded[:, :5, :3], qkv)
    assert torch.equal(padded[:, 5:, :], bias.expand(2, 3, 4, 6))
    assert torch.equal(padded[:, :, 3:], bias.expand(2, 8, 1, 6))
    unbiased = _pad_with_bias(qkv, None, window=4)
    assert torch.equal(unbiased[:, 5:], torch.zeros(2, 3, 4, 6))
    assert _pad_with_bias(qkv, bias, window=1) is qkv


@pytest.mark.parametrize("kind", ["folded", "triton"])  # partitioned windows, and the in-place window kernel
def test_fast_block_equals_the_transformers_block_on_a_padded_window(model, kind):
    layer = model.vision.sam.layers[0]
    assert layer.window_size == 14
    hidden = torch.randn(1, 17, 17, model.config.sam_config.hidden_size, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = layer(hidden)
        try:
            model.vision.set_sam_attention(kind)
            stream, mlp_output = sam_block(layer, hidden)
        finally:
            model.vision.set_sam_attention("sdpa")
    assert torch.allclose(stream + mlp_output, expected, atol=1e-5)


def test_fast_block_refuses_an_unfused_attention(model):
    layer = model.vision.sam.layers[0]
    with pytest.raises(TypeError, match="fused"):
        sam_block(layer, torch.zeros(1, 14, 14, model.config.sam_config.hidden_size))


def test_optimize_and_use_reference_switch_paths_on_the_same_weights(vision):
    weights = vision.sam.layers[0].attn.qkv.weight.data_ptr()
    assert not vision.is_optimized and vision.sam_attention == "sdpa"
    assert vision.optimize(compile=False) is vision
    assert vision.is_optimized and vision.sam_attention == "triton"
    assert vision.sam.layers[0].attn.qkv.weight.data_ptr() == weights
    vision.set_sam_attention("eager")
    assert not vision.is_optimized
    vision.optimize(sam_attention="flex", compile=False)
    assert vision.use_reference() is vision
    assert not vision.is_optimized and vision.sam_attention == "sdpa"
    with pytest.raises(ValueError, match="sam_attention"):
        vision.optimize(sam_attention="sdpa")
    with pytest.raises(TypeError, match="compile"):
        vision.optimize(compile="yes")


def test_optimized_model_gives_the_reference_logits_and_layout(model):
    image = text_page(1300, 700)
    inputs = preprocess([image], Mode.GUNDAM)
    [embedding] = encode_views(model, [image], [Mode.GUNDAM])
    ids = torch.tensor([[0] + [3] * embedding.positions + [5, 6]])
    try:
        with torch.no_grad():
            reference = model(input_ids=ids, **inputs.model_kwargs()).logits
            # folded: Triton's CPU interpreter takes ~90 s over GUNDAM's 4,096-key global view; the triton kind's
            # kernel is checked on that grid shape in tests/model/test_global_attention_kernel.py.
            model.vision.optimize(sam_attention="folded", compile=False)
            [fast_embedding] = encode_views(model, [image], [Mode.GUNDAM])
            fast = model(input_ids=ids, **inputs.model_kwargs()).logits
    finally:
        model.vision.use_reference()
    assert fast_embedding.positions == embedding.positions and fast_embedding.tiles == (2, 1)
    assert relative_error(fast_embedding.embeddings, embedding.embeddings) < 1e-5
    assert relative_error(fast, reference) < 1e-5


def test_device_preprocessing_gives_the_cpu_values_in_channels_last_memory():
    pages = [text_page(900, 1300, "a"), text_page(1500, 700, "b")]
    for mode in (Mode.TINY, Mode.GUNDAM):
        on_host = preprocess(pages, mode)
        on_device = preprocess(pages, mode, device="cpu")
        assert torch.equal(on_device.pixel_values, on_host.pixel_values)
        assert on_device.pixel_values.is_contiguous(memory_format=torch.channels_last)
        assert on_device.image_grids == on_host.image_grids
        if on_host.pixel_values_local is not None:
            assert torch.equal(on_device.pixel_values_local, on_host.pixel_values_local)
    low = preprocess(pages, Mode.TINY, device="cpu", dtype=torch.bfloat16)
    assert low.pixel_values.dtype == torch.bfloat16
    assert torch.equal(low.pixel_values, preprocess(pages, Mode.TINY).pixel_values.to(torch.bfloat16))
    with pytest.raises(TypeError, match="dtype"):
        preprocess(pages, Mode.TINY, dtype=torch.int64)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folded", "triton"])
def test_compiled_fast_path_matches_and_does_not_recompile_for_a_new_batch_size(vision, kind):
    # Inductor's CPU flex_attention template cannot take the captured bias tensors, so CPU compiles the folded and
    # triton kinds; the flex kind is compiled on CUDA by the gpu test below.
    from torch._dynamo.utils import counters

    graphs_after = {}
    with torch.no_grad():
        for batch in (2, 3):
            pixels = random_views(Mode.TINY, batch, seed=20 + batch)
            reference = vision.use_reference().token_grid(pixels)
            fast = vision.optimize(sam_attention=kind, compile=True).token_grid(pixels)
            graphs_after[batch] = counters["stats"]["unique_graphs"]
            assert relative_error(fast, reference) < 1e-5
    assert graphs_after[3] == graphs_after[2]


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def full_encoder_pair():
    """The full DeepEncoder in fp32 (the exact reference) and a bf16 copy, random weights, non-zero position tables."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        exact = DeepEncoder(DeepSeekOCRConfig.full()).eval()
    with torch.no_grad():
        for layer in exact.sam.layers:
            layer.attn.rel_pos_h.normal_(std=0.02)
            layer.attn.rel_pos_w.normal_(std=0.02)
        exact.sam.pos_embed.normal_(std=0.02)
    return exact, copy.deepcopy(exact).to(torch.bfloat16)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("kind", FUSED)
def test_full_size_compiled_fast_path_on_gpu_is_within_bf16_rounding(full_encoder_pair, kind):
    exact, low = full_encoder_pair
    pixels = random_views(Mode.BASE, 2, seed=30).to("cuda")
    with torch.no_grad():
        truth = exact.token_grid(pixels)
        low.use_reference()
        reference_error = relative_error(low.token_grid(pixels.bfloat16()), truth)
        fast = low.optimize(sam_attention=kind, compile=True).token_grid(pixels.bfloat16())
        low.use_reference()
    fast_error = relative_error(fast, truth)
    assert fast.dtype == torch.bfloat16 and torch.isfinite(fast).all()
    assert fast_error < 1.5 * reference_error + 1e-3, (fast_error, reference_error)
