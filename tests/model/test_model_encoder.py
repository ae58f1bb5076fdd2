"""DeepEncoder: preprocessing, token counts and the decoder layout per mode, SAM/CLIP glue numerics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from model_support import text_page, tiny_model

from optical_memory.core.geometry import Mode
from optical_memory.core.imaging import gundam_views
from optical_memory.model.deepencoder import (
    SAM_ATTENTION,
    VisionEmbedding,
    encode_views,
)
from optical_memory.model.preprocessing import (
    VisionInputs,
    image_to_tensor,
    infer_mode,
    preprocess,
)


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


def test_image_to_tensor_normalises_with_mean_and_std_one_half():
    image = Image.new("RGB", (4, 2), (255, 255, 255))
    image.putpixel((0, 0), (0, 0, 0))
    image.putpixel((1, 0), (127, 127, 127))
    tensor = image_to_tensor(image)
    assert tensor.shape == (3, 2, 4) and tensor.dtype == torch.float32
    assert torch.all(tensor[:, 0, 0] == -1.0)
    assert torch.allclose(tensor[:, 0, 1], torch.full((3,), 127 / 255 * 2 - 1))
    assert torch.all(tensor[:, 1, 3] == 1.0)


@pytest.mark.parametrize(
    ("mode", "size", "grid"),
    [(Mode.TINY, 512, (1, 1)), (Mode.SMALL, 640, (1, 1)), (Mode.BASE, 1024, (1, 1)), (Mode.LARGE, 1280, (1, 1))],
)
def test_preprocess_fits_single_view_modes(mode, size, grid):
    inputs = preprocess([text_page(900, 1300), text_page(300, 200)], mode)
    assert inputs.pixel_values.shape == (2, 3, size, size)
    assert inputs.pixel_values_local is None
    assert inputs.image_grids == (grid, grid)
    assert inputs.decoder_positions == [mode.decoder_positions()] * 2


def test_preprocess_gundam_stacks_tiles_of_all_pages_in_order():
    pages = [text_page(1500, 700), text_page(500, 400), text_page(900, 1400)]
    inputs = preprocess(pages, Mode.GUNDAM)
    expected_grids = tuple(gundam_views(page)[2] for page in pages)
    assert inputs.image_grids == expected_grids == ((2, 1), (1, 1), (2, 3))
    assert inputs.num_local_patches == [2, 0, 6]
    assert inputs.pixel_values.shape == (3, 3, 1024, 1024)
    assert inputs.pixel_values_local.shape == (8, 3, 640, 640)
    tiles, _, _ = gundam_views(pages[2])
    assert torch.equal(inputs.pixel_values_local[2 + 5], image_to_tensor(tiles[5]))
    assert inputs.valid_tokens == [256 + 200, 256, 256 + 600]


def test_preprocess_rejects_bad_input():
    with pytest.raises(TypeError, match="mode"):
        preprocess([text_page(10, 10)], "tiny")
    with pytest.raises(ValueError, match="images"):
        preprocess([], Mode.TINY)
    with pytest.raises(TypeError, match=r"images\[1\]"):
        preprocess([text_page(10, 10), "page"], Mode.TINY)
    with pytest.raises(ValueError, match="max_tiles"):
        preprocess([text_page(10, 10)], Mode.GUNDAM, max_tiles=1)
    with pytest.raises(ValueError, match="tiles"):
        VisionInputs(Mode.GUNDAM, torch.zeros(1, 3, 4, 4), None, ((2, 1),))


def test_infer_mode_names_native_squares_and_defaults_to_gundam():
    assert infer_mode(Image.new("RGB", (512, 512))) is Mode.TINY
    assert infer_mode(Image.new("RGB", (1280, 1280))) is Mode.LARGE
    assert infer_mode(Image.new("RGB", (1000, 1000))) is Mode.GUNDAM
    assert infer_mode(Image.new("RGB", (1024, 700))) is Mode.GUNDAM


@pytest.mark.parametrize("mode", [Mode.TINY, Mode.SMALL, Mode.BASE])
def test_token_counts_and_shapes_per_mode(model, mode):
    [embedding] = encode_views(model, [text_page(800, 1100)], [mode])
    hidden = model.config.text_config.hidden_size
    assert isinstance(embedding, VisionEmbedding)
    assert embedding.embeddings.shape == (mode.decoder_positions(), hidden)
    assert embedding.valid_tokens == mode.grid**2 == {Mode.TINY: 64, Mode.SMALL: 100, Mode.BASE: 256}[mode]
    assert embedding.positions == {Mode.TINY: 73, Mode.SMALL: 111, Mode.BASE: 273}[mode]
    assert torch.isfinite(embedding.embeddings).all()


@pytest.mark.slow
def test_large_mode_has_400_tokens_and_421_positions(model):
    [embedding] = encode_views(model, [text_page(800, 1100)], [Mode.LARGE])
    assert (embedding.valid_tokens, embedding.positions) == (400, 421)


@pytest.mark.parametrize(
    ("size", "tiles"),
    [((600, 500), (1, 1)), ((1300, 640), (2, 1)), ((700, 1300), (1, 2)), ((1900, 1300), (3, 2))],
)
def test_gundam_token_counts_for_several_tile_grids(model, size, tiles):
    [embedding] = encode_views(model, [text_page(*size)], [Mode.GUNDAM])
    cols, rows = tiles
    assert embedding.tiles == tiles
    local = 0 if cols * rows == 1 else 100 * cols * rows
    assert embedding.valid_tokens == 256 + local
    assert embedding.positions == Mode.GUNDAM.decoder_positions(tiles)
    assert embedding.positions == 273 + (0 if cols * rows == 1 else 10 * rows * (10 * cols + 1))


def test_layout_rows_end_in_newline_and_the_view_ends_in_the_separator(model):
    vision = model.vision
    inputs = preprocess([text_page(700, 700)], Mode.TINY)
    with torch.no_grad():
        [page] = vision(inputs.pixel_values)
        grid = vision.token_grid(inputs.pixel_values)[0]
    rows = page[:-1].reshape(8, 9, -1)
    assert torch.equal(rows[:, :8], grid)
    assert torch.equal(rows[:, 8], vision.image_newline.expand(8, -1))
    assert torch.equal(page[-1], vision.view_separator)


def test_gundam_tiles_are_stitched_row_major_before_the_global_view(model):
    vision = model.vision
    inputs = preprocess([text_page(1900, 1300)], Mode.GUNDAM)
    assert inputs.image_grids == ((3, 2),)
    with torch.no_grad():
        [page] = vision(inputs.pixel_values, inputs.pixel_values_local, inputs.image_grids)
        tiles = vision.token_grid(inputs.pixel_values_local)
        global_grid = vision.token_grid(inputs.pixel_values)[0]
    local_positions = 20 * 31
    stitched = page[:local_positions].reshape(20, 31, -1)
    for tile_row in range(2):
        for tile_col in range(3):
            block = stitched[tile_row * 10 : (tile_row + 1) * 10, tile_col * 10 : (tile_col + 1) * 10]
            assert torch.equal(block, tiles[tile_row * 3 + tile_col])
    assert torch.equal(stitched[:, 30], vision.image_newline.expand(20, -1))
    global_rows = page[local_positions:-1].reshape(16, 17, -1)
    assert torch.equal(global_rows[:, :16], global_grid)
    assert torch.equal(page[-1], vision.view_separator)


def test_encode_views_keeps_input_order_across_mixed_modes_and_batches(model):
    pages = [text_page(700, 900, "a"), text_page(900, 600, "b"), text_page(640, 640, "c"), text_page(500, 800, "d")]
    modes = [Mode.SMALL, Mode.TINY, Mode.SMALL, Mode.TINY]
    together = encode_views(model, pages, modes, batch_size=2)
    one_by_one = [encode_views(model, [page], [mode])[0] for page, mode in zip(pages, modes)]
    assert [e.mode for e in together] == modes
    for batched, single in zip(together, one_by_one):
        assert torch.allclose(batched.embeddings, single.embeddings, atol=1e-5)
    assert not torch.allclose(together[0].embeddings, together[2].embeddings)


def test_encode_views_rejects_mismatched_inputs(model):
    with pytest.raises(ValueError, match="same length"):
        encode_views(model, [text_page(100, 100)], [Mode.TINY, Mode.TINY])
    with pytest.raises(TypeError, match=r"modes\[0\]"):
        encode_views(model, [text_page(100, 100)], ["tiny"])
    with pytest.raises(TypeError, match="DeepEncoder"):
        encode_views(object(), [text_page(100, 100)], [Mode.TINY])
    with pytest.raises(ValueError, match="batch_size"):
        encode_views(model, [text_page(100, 100)], [Mode.TINY], batch_size=0)


def test_clip_positions_keep_the_class_row_and_resize_the_grid_in_fp32(model):
    clip = model.vision.clip
    table = clip.embeddings.position_embedding.weight
    assert clip.position_embeddings(16) is table
    resized = clip.position_embeddings(10)
    assert resized.shape == (101, table.shape[1])
    assert torch.equal(resized[0], table[0])
    with torch.no_grad():
        clip.embeddings.position_embedding.weight[1:] = 0.25
        assert torch.allclose(clip.position_embeddings(20)[1:], torch.full((400, table.shape[1]), 0.25), atol=1e-6)
        clip.embeddings.position_embedding.weight.normal_()
    low_precision = table.detach().to(torch.bfloat16)
    clip_bf16 = type(clip)(clip.config)
    clip_bf16.embeddings.position_embedding.weight.data = low_precision
    square = low_precision[1:].float().reshape(1, 16, 16, -1).permute(0, 3, 1, 2)
    reference = F.interpolate(square, size=(8, 8), mode="bicubic", align_corners=False, antialias=True)
    reference = reference.permute(0, 2, 3, 1).reshape(64, -1).to(torch.bfloat16)
    assert torch.equal(clip_bf16.position_embeddings(8)[1:], reference)


def test_sam_relative_positions_index_the_table_and_resize_in_fp32(model):
    attention = model.vision.sam.layers[1].attn
    table = torch.randn(63, 16)
    looked_up = attention.get_rel_pos(32, 32, table)
    assert looked_up.shape == (32, 32, 16)
    assert torch.equal(looked_up[5, 2], table[5 - 2 + 31])
    assert torch.equal(looked_up[0, 31], table[0])
    low_precision = table.to(torch.bfloat16)
    resized = attention.get_rel_pos(40, 40, low_precision)
    reference = F.interpolate(low_precision.float().t()[None], size=79, mode="linear")[0].t().to(torch.bfloat16)
    assert resized.dtype == torch.bfloat16
    assert torch.equal(resized[10, 3], reference[10 - 3 + 39])


def test_sam_attention_kinds_share_weights_and_agree(model):
    vision = model.vision
    pixels = preprocess([text_page(700, 500)], Mode.SMALL).pixel_values
    weights_before = vision.sam.layers[0].attn.qkv.weight.data_ptr()
    with torch.no_grad():
        sdpa = vision.token_grid(pixels)
        vision.set_sam_attention("eager")
        eager = vision.token_grid(pixels)
        vision.set_sam_attention("sdpa")
    assert vision.sam.layers[0].attn.qkv.weight.data_ptr() == weights_before
    assert torch.allclose(sdpa, eager, atol=1e-4)
    assert {"eager", "sdpa", "flex", "folded", "triton"} <= set(SAM_ATTENTION)
    with pytest.raises(ValueError, match="sam_attention"):
        vision.set_sam_attention("flash")


def test_token_grid_rejects_non_square_views(model):
    with pytest.raises(ValueError, match="pixel_values"):
        model.vision.token_grid(torch.zeros(1, 3, 512, 640))
