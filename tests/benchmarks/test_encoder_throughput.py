"""The GPU benchmark's own arithmetic and decoding, checked on a CPU with the tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from model_support import tiny_model
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.encoder_throughput import (
    GreedyDecoder,
    analytic_page_flops,
    analytic_view_flops,
    build_encoder,
    main,
    markdown_table,
    merge,
)
from optical_memory.core.geometry import Mode
from optical_memory.model.configuration_deepseek_ocr import DeepSeekOCRConfig


@pytest.mark.parametrize("mode", [Mode.TINY, Mode.SMALL])
def test_analytic_flops_equal_the_flop_counter_with_explicit_attention(mode):
    config = DeepSeekOCRConfig.tiny()
    encoder = build_encoder(config, torch.device("cpu")).float()
    encoder.set_sam_attention("eager")
    encoder.clip.config._attn_implementation = "eager"
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            encoder.token_grid(torch.rand(1, 3, mode.size, mode.size))
    finally:
        encoder.clip.config._attn_implementation = "sdpa"
    assert counter.get_total_flops() == analytic_view_flops(config, mode.size)["total"]


def test_fast_path_flops_drop_only_the_padded_projection_rows():
    config = DeepSeekOCRConfig.full()
    reference = analytic_view_flops(config, Mode.TINY.size)
    fast = analytic_view_flops(config, Mode.TINY.size, skip_window_padding=True)
    changed = {part for part in reference if reference[part] != fast[part]}
    assert changed == {"sam_qkv_proj", "total"}
    # 8 windowed blocks project a 42x42 padded map instead of 32x32 real rows.
    assert reference["total"] - fast["total"] == 8 * 2 * (42 * 42 - 32 * 32) * 768 * 4 * 768
    gundam = analytic_page_flops(config, Mode.GUNDAM)
    assert gundam == analytic_page_flops(config, Mode.BASE) + 4 * analytic_view_flops(config, 640)["total"]
    assert 1.0e12 < analytic_page_flops(config, Mode.BASE) < 1.3e12


def test_greedy_static_cache_decoding_matches_generate():
    model = tiny_model(seed=4, with_tokenizer=False)
    text = model.config.text_config
    ids = torch.tensor([[0, 7, 8, 9, 10, 11], [0, 12, 13, 14, 15, 16]])
    with torch.no_grad():
        expected = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                  max_new_tokens=6, min_new_tokens=6, eos_token_id=text.eos_token_id,
                                  pad_token_id=text.pad_token_id)[:, ids.shape[1]:]
        decoder = GreedyDecoder(model, max_length=ids.shape[1] + 6)
        first = decoder.prefill(model.language_model.embed_tokens(ids))
        produced = torch.stack([first] + decoder.steps(first, 5), dim=1)
        again = decoder.prefill(model.language_model.embed_tokens(ids))
    assert torch.equal(produced, expected)
    assert torch.equal(again, first)


def test_merge_and_table_combine_parts(tmp_path, capsys):
    encoder_part = {
        "metadata": {"device": "GPU A"},
        "peak_matmul": {"tflops": 700.0},
        "encoder": {"flops_per_page": {"base": 1}},
        "encoder_runs": [
            {"mode": "base", "variant": "reference", "batch": 16, "pages_per_second": 90.0},
            {"mode": "base", "variant": "fast_flex", "batch": 16, "pages_per_second": 360.0, "mfu": 0.5,
             "peak_memory_gib": 3.0},
            {"mode": "large", "variant": "reference", "batch": 64, "skipped": "out of GPU memory"},
        ],
    }
    decoder_part = {
        "metadata": {"device": "GPU A"},
        "decoder": {"end_to_end": {"pages_per_second": 8.0}},
        "encoder": {"fast_path_variant": "fast_folded"},
        "encoder_runs": [
            {"mode": "base", "variant": "fast_folded", "batch": 16, "pages_per_second": 450.0, "mfu": 0.6,
             "peak_memory_gib": 2.5},
        ],
    }
    paths = []
    for index, part in enumerate((encoder_part, decoder_part)):
        path = tmp_path / f"part{index}.json"
        path.write_text(json.dumps(part))
        paths.append(path)
    merged = merge(paths)
    assert [run["file"] for run in merged["runs"]] == ["part0.json", "part1.json"]
    assert merged["decoder"]["end_to_end"]["pages_per_second"] == 8.0
    assert merged["encoder"] == {"flops_per_page": {"base": 1}, "fast_path_variant": "fast_folded"}
    assert len(merged["encoder_runs"]) == 4
    table = markdown_table(merged)
    assert "fast path (folded)" in table
    assert "| base | 16 | 90 | – | 450 | 60% | 5.0× | – | 2.5 |" in table
    assert "out of GPU memory" in table
    # The report command writes the merged JSON and the plot where it is told, and prints the same table.
    main(["report", *map(str, paths), "--out", str(tmp_path / "report")])
    assert json.loads((tmp_path / "report" / "encoder_throughput.json").read_text()) == merged
    assert (tmp_path / "report" / "encoder_throughput.png").read_bytes()[:4] == b"\x89PNG"
    assert table in capsys.readouterr().out
