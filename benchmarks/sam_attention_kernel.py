"""SAM's attention alone, per fused kind: time, useful TFLOP/s and error against an fp32 computation.

Run on a CUDA machine::

    python -m benchmarks.sam_attention_kernel --out DIR

Each kind attends a block's projected map the way the DeepEncoder's fast path does
(``optical_memory.model.deepencoder_fast.attend_map``): a global block on a BASE page (64×64 grid) and a TINY page (32×32),
and a windowed block on a BASE page (64×64 cut into 25 windows of 14×14 after bias padding; in place for ``triton``,
through padded partitions for the others). Full-size SAM heads (12 of 64), random ``qkv`` maps and random
relative-position tables. Useful FLOPs count q·kᵀ and p·v of the reference's attention only (4·N²·head_dim per head
and window, padded windows included), so a kind that does more arithmetic for the bias shows it as a lower rate.
Error is ‖out − ref‖ / ‖ref‖ against the ``folded`` kind run in fp32 on the same bf16 values (the ``folded`` row is
the bf16 rounding of that same computation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import (
    DeepseekOcr2SamVisionLayer,
)

from benchmarks.encoder_throughput import metadata, relative_error, time_device
from optical_memory.model.configuration_deepseek_ocr import DeepSeekOCRConfig
from optical_memory.model.deepencoder_fast import attend_map
from optical_memory.model.kernels import global_attention, window_attention
from optical_memory.model.sam_attention import SAM_ATTENTION

KINDS = ("folded", "triton", "flex")
# name: (grid side, window size, pages per batch).
SHAPES = {"BASE": (64, 0, (8, 32)), "TINY": (32, 0, (32, 128)), "BASE windows": (64, 14, (8, 32))}
RESULT_NAME = "sam_attention_kernel.json"


def sam_layer(config, window: int, kind: str, tables: dict, dtype: torch.dtype) -> DeepseekOcr2SamVisionLayer:
    """A SAM block whose attention is ``kind``, holding ``tables`` (qkv bias and relative tables), on CUDA."""
    layer = DeepseekOcr2SamVisionLayer(config, window)
    layer.attn = SAM_ATTENTION[kind](config, window)
    layer.attn.load_state_dict(tables, strict=False)
    return layer.to("cuda", dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--commit", default=None, help="git commit to record (default: git rev-parse HEAD)")
    args = parser.parse_args()
    device = torch.device("cuda")
    config = DeepSeekOCRConfig().sam_config
    config._attn_implementation = "sdpa"  # what the layer builds first; replaced by each kind (sam_layer)
    generator = torch.Generator(device=device).manual_seed(0)
    heads, head_dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    rows: list[dict] = []
    for name, (side, window, batches) in SHAPES.items():
        extent = window or config.image_size // config.patch_size  # the tables' size; get_rel_pos resizes them
        tables = {
            "qkv.bias": torch.randn(3 * config.hidden_size, device=device, generator=generator),
            "rel_pos_h": 0.5 * torch.randn(2 * extent - 1, head_dim, device=device, generator=generator),
            "rel_pos_w": 0.5 * torch.randn(2 * extent - 1, head_dim, device=device, generator=generator),
        }
        exact_layer = sam_layer(config, window, "folded", tables, torch.float32)
        layers = {kind: sam_layer(config, window, kind, tables, torch.bfloat16) for kind in args.kinds}
        windows = (-(-side // window)) ** 2 if window else 1
        tokens = (window or side) ** 2
        for batch in batches:
            qkv = torch.randn(batch, side, side, 3 * config.hidden_size, device=device, generator=generator)
            qkv = qkv.to(torch.bfloat16)
            with torch.no_grad():
                exact = attend_map(exact_layer, qkv.float())
            flops = 4 * batch * windows * heads * tokens**2 * head_dim
            for kind, layer in layers.items():
                with torch.no_grad():
                    output = attend_map(layer, qkv)
                    timing = time_device(lambda: attend_map(layer, qkv), device, warmup=3, min_seconds=0.5)
                row = {
                    "shape": name, "batch": batch, "kind": kind, "median_ms": timing["median_ms"],
                    "useful_tflops": flops / timing["median_ms"] / 1e9, "relative_error": relative_error(output, exact),
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
            del exact
    args.out.mkdir(parents=True, exist_ok=True)
    tuned = {
        str(key): str(chosen)
        for kernel in (global_attention, window_attention)
        for key, chosen in kernel.tuned_configs().items()
    }
    print(json.dumps(tuned, indent=1))
    result = {"metadata": metadata(device, args.commit, tiny=False), "rows": rows, "tuned": tuned}
    (args.out / RESULT_NAME).write_text(json.dumps(result, indent=1))
    print(f"{'shape':12} {'batch':>5} {'kind':8} {'ms':>8} {'TFLOP/s':>8} {'error':>9}")
    for row in rows:
        print(
            f"{row['shape']:12} {row['batch']:>5} {row['kind']:8} {row['median_ms']:8.3f} "
            f"{row['useful_tflops']:8.1f} {row['relative_error']:9.2e}"
        )


if __name__ == "__main__":
    main()
