"""SAM's global attention alone, per fused kind: time, useful TFLOP/s and error against an fp32 reference.

Run on a CUDA machine::

    python -m benchmarks.sam_attention_kernel --out DIR

Shapes are the full-size SAM global blocks (12 heads of 64) on a BASE page (64×64 grid) and a TINY page (32×32),
and the 14×14 windows of the windowed blocks (a batch counts windows: 25 per BASE page), with random projected q/k/v (as strided views of one ``qkv`` tensor, the layout the encoder hands over) and the
relative-position terms of random tables. Useful FLOPs count q·kᵀ and p·v only (4·N²·head_dim per head), so a kind
that does more arithmetic for the bias shows it as a lower rate. Error is ‖out − ref‖ / ‖ref‖ against an fp32
softmax over the same bf16 inputs and the bias exactly as the reference path materialises it (``rel_h + rel_w``
summed in bf16); the bf16 SDPA reference's own error is printed beside. A kind that sums the bias in fp32 (the
triton kernel's window tile) is more precise than that reference and shows a larger error here; the encoder-level
comparison against an fp32 model is ``benchmarks/encoder_throughput``'s.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.encoder_throughput import relative_error, time_device
from optical_memory.configuration_deepseek_ocr import DeepSeekOCRConfig
from optical_memory.rel_pos_attention_kernel import tuned_configs
from optical_memory.sam_attention import SAM_ATTENTION, SamFoldedAttention

KINDS = ("folded", "triton", "flex")
# name: (grid side, window size, batches); a BASE page has 25 windows per windowed block.
SHAPES = {"BASE": (64, 0, (8, 32)), "TINY": (32, 0, (32, 128)), "window": (14, 14, (25 * 8, 25 * 32))}
RESULT_NAME = "sam_attention_kernel.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    device = torch.device("cuda")
    config = DeepSeekOCRConfig().sam_config
    generator = torch.Generator(device=device).manual_seed(0)
    rows: list[dict] = []
    for name, (side, window, batches) in SHAPES.items():
        tables = SamFoldedAttention(config, window).to(device, torch.bfloat16)
        with torch.no_grad():
            tables.rel_pos_h.normal_(std=0.5, generator=generator)
            tables.rel_pos_w.normal_(std=0.5, generator=generator)
        modules = {kind: SAM_ATTENTION[kind](config, window).to(device, torch.bfloat16) for kind in args.kinds}
        for module in modules.values():
            module.load_state_dict(tables.state_dict())
        heads, head_dim, tokens = config.num_attention_heads, config.hidden_size // config.num_attention_heads, side**2
        for batch in batches:
            qkv = torch.randn(batch, side, side, 3 * config.hidden_size, device=device, generator=generator)
            qkv = qkv.to(torch.bfloat16)
            with torch.no_grad():
                q, k, v = qkv.reshape(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
                rel_h, rel_w = tables.relative_terms(q, side, side)
                bias = (rel_h[..., torch.arange(tokens, device=device) // side]
                        + rel_w[..., torch.arange(tokens, device=device) % side])  # fmt: skip
                exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=bias.float())
                exact = exact.transpose(1, 2).reshape(batch, side, side, -1)
                sdpa_bf16 = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2)
                del bias
                sdpa_error = relative_error(sdpa_bf16.reshape(batch, side, side, -1), exact)
            flops = 4 * batch * heads * tokens**2 * head_dim
            for kind, module in modules.items():
                with torch.no_grad():
                    output = module.attend(qkv)
                    timing = time_device(lambda: module.attend(qkv), device, warmup=3, min_seconds=0.5)
                row = {
                    "shape": name, "batch": batch, "kind": kind, "median_ms": timing["median_ms"],
                    "useful_tflops": flops / timing["median_ms"] / 1e9,
                    "relative_error": relative_error(output, exact), "sdpa_bf16_error": sdpa_error,
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
            del exact, sdpa_bf16
    args.out.mkdir(parents=True, exist_ok=True)
    tuned = {str(key): str(chosen) for key, chosen in tuned_configs().items()}
    print(json.dumps(tuned, indent=1))
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows, "tuned": tuned}
    (args.out / RESULT_NAME).write_text(json.dumps(result, indent=1))
    print(f"{'shape':6} {'batch':>5} {'kind':8} {'ms':>8} {'TFLOP/s':>8} {'error':>9}")
    for row in rows:
        print(
            f"{row['shape']:6} {row['batch']:>5} {row['kind']:8} {row['median_ms']:8.3f} "
            f"{row['useful_tflops']:8.1f} {row['relative_error']:9.2e}"
        )


if __name__ == "__main__":
    main()
