"""GPU throughput of the DeepEncoder (reference, compiled, fast path, DeepSeek-OCR-2's tower) and the MoE decoder.

Run on a CUDA machine::

    python -m benchmarks.encoder_throughput run --sections encoder decoder --out DIR
    python -m benchmarks.encoder_throughput report DIR/encoder_throughput.json [more parts ...] [--out FOLDER]

``run`` writes ``DIR/encoder_throughput.json`` after every measurement (a run cut short keeps what it measured);
``report`` merges parts into ``encoder_throughput.json`` in ``benchmarks/results`` (or ``--out``), draws the PNG
beside it and prints the README table. The committed results merge three runs on one H100 (device time is scarce):
the encoder variants, the eager decoder, and a final run of the fast path (the fastest fused kind on BASE, then
every mode) with the compiled decode step and the end-to-end passes; each part's metadata (commit, torch, driver,
measured matmul peak) is kept under ``runs`` and each measurement names its part. ``benchmarks/results/h200`` holds
two later runs on one H200, merged the same way: every encoder variant side by side, then the decoder section.

Everything is full size with random weights in bf16 (timing does not depend on the values; random, not zeros, so
no kernel takes a shortcut). Pixels are random normalised views of each mode's size; GUNDAM pages are one 1024 px
global view plus 4 tiles of 640 px (a 2x2 grid). Each figure is the median over timed iterations bracketed by CUDA
events after warm-up (the first call of a compiled variant compiles; it is never timed). Variants, measured side by
side in one process:

- ``reference``: the composed transformers parts as they are (eager, bf16, SDPA with the materialised bias mask).
- ``compiled``: the same modules with every block through ``torch.compile`` (nothing else changed).
- ``fused_eager``: the fast path with the ``triton`` SAM attention and no compilation.
- ``fast_<kind>``: ``DeepEncoder.optimize(sam_attention=kind)``, compiled, for each fused SAM attention kind; all
  run on BASE, the fastest there on every mode.
- ``peer_ocr2``: transformers' native DeepSeek-OCR-2 vision tower (SAM + Qwen2-0.5B-sized encoder, released
  configuration) and its projector, eager bf16 SDPA, on the same views.

FLOPs per page are counted analytically (what the reference executes, window padding included; equal to
``torch.utils.flop_counter.FlopCounterMode``'s count with explicit attention) and by ``FlopCounterMode`` on the
reference path as it runs; MFU = analytic FLOPs per page x pages/s over the dense bf16 matmul rate measured in the
same run (8192^3). Every DeepEncoder variant's MFU uses the reference's FLOPs per page, so MFU ratios are throughput
ratios (the fast path executes fewer FLOPs: ``analytic_fast_path``).

The decoder section measures prefill and decode tokens/s of the full MoE decoder with a static KV cache (eager, and
the decode step compiled with CUDA graphs), transformers' ``generate`` as the naive decode reference, and end to end:
a batch of BASE pages encoded, prefilled and decoded greedily for 1,000 tokens.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import StaticCache
from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import (
    DeepseekOcr2VisionConfig,
)
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import (
    DeepseekOcr2VisionModel,
)

from optical_memory.core.geometry import GUNDAM_TILE, Mode
from optical_memory.model.configuration_deepseek_ocr import FULL_SAM, DeepSeekOCRConfig
from optical_memory.model.deepencoder import DeepEncoder
from optical_memory.model.modeling_deepseek_ocr import DeepSeekOCR

RESULTS = Path(__file__).parent / "results"
RESULT_NAME = "encoder_throughput.json"
PLOT_NAME = "encoder_throughput.png"

MODES = (Mode.TINY, Mode.SMALL, Mode.BASE, Mode.LARGE, Mode.GUNDAM)
GUNDAM_BENCH_GRID = (2, 2)
ENCODER_BATCHES = (1, 4, 16, 64)
FAST_VARIANTS = ("fast_flex", "fast_folded", "fast_triton")
VARIANTS = ("reference", "compiled", "fused_eager", *FAST_VARIANTS, "peer_ocr2")
# Variants that compile a graph per mode are not run at batch 1 (a separate static graph per mode for one number).
COMPILED_VARIANTS = ("compiled", *FAST_VARIANTS)

# DeepSeek-OCR-2's released vision tower: SAM-B with a [512, 896] compressor and a Qwen2-0.5B-sized encoder, as
# transformers' conversion script (models/deepseek_ocr2/convert_deepseek_ocr2_weights_to_hf.py) writes it.
OCR2_SAM = {**FULL_SAM, "downsample_channels": [512, 896]}
OCR2_ENCODER = {
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "vocab_size": 1,
}

PROMPT_TEXT_IDS = (201, 5, 6, 7, 8)  # stand-in for encode("\nFree OCR."): five text tokens after the image
E2E_NEW_TOKENS = 1000
E2E_ENCODER_CHUNK = 64  # pages per encoder call in the end-to-end run (bounds its activation memory)
PEAK_MATMUL_SIDE = 8192


# ----------------------------------------------------------------------------------------------------- timing


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_device(
    run: Callable[[], Any],
    device: torch.device,
    *,
    warmup: int = 2,
    min_seconds: float = 1.0,
    min_iterations: int = 3,
    max_iterations: int = 20,
) -> dict[str, Any]:
    """Median milliseconds of ``run`` (between CUDA events on a GPU), after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    _synchronize(device)
    times: list[float] = []
    while len(times) < max_iterations and (len(times) < min_iterations or sum(times) < min_seconds * 1000):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            started = time.perf_counter()
            run()
            times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "iterations": len(times)}


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def measure_matmul_peak(device: torch.device, side: int = PEAK_MATMUL_SIDE) -> dict[str, float]:
    """Dense bf16 matmul rate on random side^3 operands (rotating 3 operand pairs so no result is reused)."""
    generator = torch.Generator(device=device).manual_seed(0)
    pairs = [
        (
            torch.randn(side, side, device=device, dtype=torch.bfloat16, generator=generator),
            torch.randn(side, side, device=device, dtype=torch.bfloat16, generator=generator),
        )
        for _ in range(3)
    ]
    counter = {"next": 0}

    def product() -> None:
        left, right = pairs[counter["next"] % len(pairs)]
        counter["next"] += 1
        torch.mm(left, right)

    timing = time_device(product, device, warmup=5, min_seconds=1.0, min_iterations=10, max_iterations=50)
    return {"side": side, "tflops": 2 * side**3 / (timing["median_ms"] / 1000) / 1e12, **timing}


# ------------------------------------------------------------------------------------------------------ FLOPs


def _views_of_page(mode: Mode) -> list[int]:
    """Input sides the encoder runs for one benchmark page of ``mode``."""
    if mode is Mode.GUNDAM:
        cols, rows = GUNDAM_BENCH_GRID
        return [mode.size] + [GUNDAM_TILE] * (cols * rows)
    return [mode.size]


def analytic_view_flops(config: DeepSeekOCRConfig, side: int, *, skip_window_padding: bool = False) -> dict[str, int]:
    """FLOPs (2 per multiply-add) of one view through the DeepEncoder, by part.

    Counts matmuls and convolutions (norms, softmax and element-wise work are not FLOPs here, as in
    ``FlopCounterMode``). ``skip_window_padding`` counts ``qkv``/``proj`` over real rows only, as the fast path runs.
    """
    sam, clip = config.sam_config, config.clip_config
    width, heads, head_dim = sam.hidden_size, sam.num_attention_heads, sam.hidden_size // sam.num_attention_heads
    grid = side // sam.patch_size
    tokens = grid * grid
    parts = {"sam_patch_embed": 2 * tokens * width * 3 * sam.patch_size**2}
    linear = qkv_proj = attention = relative = 0
    for index in range(sam.num_hidden_layers):
        window = 0 if index in sam.global_attn_indexes else sam.window_size
        if window:
            padded = math.ceil(grid / window) * window
            sequences, length, extent = (padded // window) ** 2, window * window, window
            rows = tokens if skip_window_padding else padded * padded
        else:
            sequences, length, extent, rows = 1, tokens, grid, tokens
        qkv_proj += 2 * rows * width * (3 * width + width)
        linear += 2 * tokens * width * sam.mlp_dim * 2
        attention += sequences * heads * 2 * (2 * length * length * head_dim)
        relative += sequences * heads * 2 * length * 2 * extent * head_dim
    parts.update(sam_qkv_proj=qkv_proj, sam_mlp=linear, sam_attention=attention, sam_relative_position=relative)
    neck = sam.output_channels
    first, second = sam.downsample_channels
    parts["sam_neck"] = 2 * tokens * (width * neck + neck * neck * 9)
    parts["compressor"] = 2 * (tokens // 4) * neck * first * 9 + 2 * (tokens // 16) * first * second * 9
    clip_tokens = tokens // 16 + 1
    hidden = clip.hidden_size
    per_layer = 2 * clip_tokens * hidden * (4 * hidden + 2 * clip.intermediate_size)
    per_layer += 2 * 2 * clip_tokens * clip_tokens * hidden
    parts["clip"] = clip.num_hidden_layers * per_layer
    parts["projector"] = 2 * (tokens // 16) * config.vision_feature_size * config.text_config.hidden_size
    parts["total"] = sum(parts.values())
    return parts


def analytic_page_flops(config: DeepSeekOCRConfig, mode: Mode, *, skip_window_padding: bool = False) -> int:
    return sum(
        analytic_view_flops(config, side, skip_window_padding=skip_window_padding)["total"]
        for side in _views_of_page(mode)
    )


def counted_flops(run: Callable[[], Any]) -> int:
    """FLOPs that ``FlopCounterMode`` sees while ``run`` executes."""
    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


# -------------------------------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Pages:
    """A batch of benchmark pages of one mode: global views, GUNDAM tiles and grids, on the GPU."""

    mode: Mode
    pixel_values: torch.Tensor
    pixel_values_local: torch.Tensor | None
    grids: tuple[tuple[int, int], ...]

    @property
    def count(self) -> int:
        return int(self.pixel_values.shape[0])


def make_pages(mode: Mode, batch: int, device: torch.device, *, seed: int = 0) -> Pages:
    generator = torch.Generator(device=device).manual_seed(seed)

    def views(count: int, side: int) -> torch.Tensor:
        uniform = torch.rand(count, 3, side, side, device=device, generator=generator)
        return (uniform * 2 - 1).to(torch.bfloat16)

    if mode is Mode.GUNDAM:
        cols, rows = GUNDAM_BENCH_GRID
        return Pages(mode, views(batch, mode.size), views(batch * cols * rows, GUNDAM_TILE), (GUNDAM_BENCH_GRID,) * batch)
    return Pages(mode, views(batch, mode.size), None, ((1, 1),) * batch)


class CompiledReference:
    """The reference modules unchanged, every SAM block, CLIP layer and the neck through ``torch.compile``."""

    def __init__(self, encoder: DeepEncoder) -> None:
        self.encoder = encoder
        self.block = torch.compile(_call_module, dynamic=False)
        self.clip_layer = torch.compile(_call_clip_layer, dynamic=False)

    def __call__(self, pages: Pages) -> list[torch.Tensor]:
        grids = self.token_grid(pages.pixel_values)
        if pages.pixel_values_local is not None:
            self.token_grid(pages.pixel_values_local)
        return [grids]

    def token_grid(self, pixel_values: torch.Tensor) -> torch.Tensor:
        encoder = self.encoder
        sam = encoder.sam
        hidden = sam.patch_embed(pixel_values)
        hidden = hidden + sam.interpolate_pos_encoding(hidden.shape[1], hidden.shape[2])
        for layer in sam.layers:
            torch._dynamo.maybe_mark_dynamic(hidden, 0)
            hidden = self.block(layer, hidden)
        compressed = sam.proj(sam.neck(hidden))
        hidden = encoder.clip.embed(compressed)
        for layer in encoder.clip.layers:
            torch._dynamo.maybe_mark_dynamic(hidden, 0)
            hidden = self.clip_layer(layer, hidden)
        features = torch.cat([hidden[:, 1:], compressed.flatten(2).transpose(1, 2)], dim=-1)
        return encoder.projector(features)


def _call_module(module: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return module(hidden)


def _call_clip_layer(layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return layer(hidden, None)


class PeerOcr2:
    """DeepSeek-OCR-2's vision tower (released configuration) and projector, as transformers runs them."""

    def __init__(self, device: torch.device, decoder_width: int, *, tiny: bool = False) -> None:
        sam, encoder = dict(OCR2_SAM), dict(OCR2_ENCODER)
        if tiny:
            sam.update(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
                       global_attn_indexes=[1], downsample_channels=[24, 32])
            encoder.update(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           intermediate_size=64)
        config = DeepseekOcr2VisionConfig(sam_config=sam, encoder_config=encoder)
        with torch.device(device):
            self.tower = DeepseekOcr2VisionModel(config).to(torch.bfloat16).eval()
            self.projector = nn.Linear(config.encoder_config.hidden_size, decoder_width).to(torch.bfloat16)

    def parameter_count(self) -> int:
        modules = (self.tower, self.projector)
        return sum(parameter.numel() for module in modules for parameter in module.parameters())

    def __call__(self, pages: Pages) -> list[torch.Tensor]:
        outputs = [self.projector(self.tower(pages.pixel_values).last_hidden_state)]
        if pages.pixel_values_local is not None:
            outputs.append(self.projector(self.tower(pages.pixel_values_local).last_hidden_state))
        return outputs


# ---------------------------------------------------------------------------------------------------- encoder


class Recorder:
    """Accumulates results and rewrites the JSON after each addition, so a run cut short keeps what it measured."""

    def __init__(self, path: Path, metadata: dict[str, Any], deadline: float) -> None:
        self.path = path
        self.deadline = deadline
        self.data: dict[str, Any] = {"metadata": metadata}
        self.flush()

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def put(self, section: str, key: str, value: Any) -> None:
        self.data.setdefault(section, {})[key] = value
        self.flush()

    def append(self, section: str, value: Any) -> None:
        self.data.setdefault(section, []).append(value)
        self.flush()

    def flush(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, indent=1, default=str))
        temporary.replace(self.path)


def benchmark_config(tiny: bool) -> DeepSeekOCRConfig:
    return DeepSeekOCRConfig.tiny() if tiny else DeepSeekOCRConfig.full()


def build_encoder(config: DeepSeekOCRConfig, device: torch.device) -> DeepEncoder:
    """The DeepEncoder alone, random bf16, with non-zero relative-position tables and absolute positions."""
    torch.manual_seed(0)
    with torch.device(device):
        encoder = DeepEncoder(config)
    encoder = encoder.to(torch.bfloat16).eval()
    with torch.no_grad():
        for layer in encoder.sam.layers:
            layer.attn.rel_pos_h.normal_(std=0.02)
            layer.attn.rel_pos_w.normal_(std=0.02)
        encoder.sam.pos_embed.normal_(std=0.02)
    return encoder


def encoder_runners(encoder: DeepEncoder, peer: PeerOcr2 | None) -> dict[str, Callable[[Pages], Any]]:
    """Each variant as a function of the pages; switching variants re-points the shared encoder."""
    compiled_reference = CompiledReference(encoder)

    def reference(pages: Pages) -> Any:
        if encoder.is_optimized:
            encoder.use_reference()
        return encoder(pages.pixel_values, pages.pixel_values_local, pages.grids)

    def compiled(pages: Pages) -> Any:
        if encoder.is_optimized:
            encoder.use_reference()
        return compiled_reference(pages)

    def fast(kind: str, compile: bool) -> Callable[[Pages], Any]:
        def run(pages: Pages) -> Any:
            current = encoder.fast_path
            if encoder.sam_attention != kind or current is None or current.compiled != compile:
                encoder.optimize(sam_attention=kind, compile=compile)
            return encoder(pages.pixel_values, pages.pixel_values_local, pages.grids)

        return run

    runners = {"reference": reference, "compiled": compiled, "fused_eager": fast("triton", False)}
    runners.update({variant: fast(variant.removeprefix("fast_"), True) for variant in FAST_VARIANTS})
    if peer is not None:
        runners["peer_ocr2"] = peer
    return runners


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    """‖output − reference‖ / ‖reference‖, computed in float32."""
    return float((output.float() - reference.float()).norm() / reference.float().norm())


def agreement(
    encoder: DeepEncoder, runners: dict[str, Callable], variants: Sequence[str], device: torch.device
) -> dict[str, float]:
    """Relative error of each variant's BASE tokens against the fp32 reference (the bf16 reference's is the bar)."""
    pages = make_pages(Mode.BASE, 2, device, seed=7)
    side = Mode.BASE.grid
    with torch.no_grad():
        outputs = {name: runners[name](pages) for name in variants}
        encoder.use_reference()
        encoder.float()
        exact = encoder.token_grid(pages.pixel_values.float()).flatten(1, 2)
        encoder.to(torch.bfloat16)
    errors = {}
    for name, output in outputs.items():
        tokens = torch.stack([page[:-1].reshape(side, side + 1, -1)[:, :side].reshape(side * side, -1) for page in output])
        errors[name] = relative_error(tokens, exact)
    return errors


def profile_top_kernels(run: Callable[[], Any], device: torch.device, rows: int = 15) -> list[dict[str, Any]]:
    """The kernels that take the most GPU time over two calls of ``run`` (torch.profiler)."""
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(2):
            run()
        _synchronize(device)
    events = [event for event in profiler.key_averages() if event.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(event.self_device_time_total for event in events) or 1
    events.sort(key=lambda event: event.self_device_time_total, reverse=True)
    return [
        {
            "kernel": event.key[:160],
            "share": event.self_device_time_total / total,
            "ms_per_run": event.self_device_time_total / 1000 / 2,
            "launches_per_run": event.count // 2,
        }
        for event in events[:rows]
    ]


def fastest(runs: list[dict[str, Any]], variants: Sequence[str], mode: Mode) -> str | None:
    """The variant with the highest measured pages/s on ``mode`` (any batch)."""
    measured = [r for r in runs if r["mode"] == mode.value and r["variant"] in variants and "pages_per_second" in r]
    return max(measured, key=lambda r: r["pages_per_second"])["variant"] if measured else None


def measure_encoder_run(
    recorder: Recorder,
    runner: Callable[[Pages], Any],
    pages: Pages,
    entry: dict[str, Any],
    page_flops: int,
    peak_flops: float,
    device: torch.device,
) -> dict[str, Any]:
    _reset_peak_memory(device)
    started = time.monotonic()
    try:
        with torch.no_grad():
            timing = time_device(lambda: runner(pages), device)
    except torch.OutOfMemoryError:
        entry["skipped"] = "out of GPU memory"
    except Exception as error:  # a variant that fails is a result to report, not a reason to lose the run
        entry["error"] = f"{type(error).__name__}: {str(error)[:600]}"
    else:
        pages_per_second = pages.count / (timing["median_ms"] / 1000)
        entry.update(
            timing,
            pages_per_second=pages_per_second,
            achieved_tflops=page_flops * pages_per_second / 1e12,
            mfu=page_flops * pages_per_second / peak_flops,
            peak_memory_gib=_peak_memory_gib(device),
        )
    entry["wall_seconds_with_warmup"] = time.monotonic() - started
    recorder.append("encoder_runs", entry)
    print(json.dumps(entry), flush=True)
    return entry


def run_encoder_section(
    recorder: Recorder,
    device: torch.device,
    config: DeepSeekOCRConfig,
    batches: Sequence[int],
    modes: Sequence[Mode],
    variants: Sequence[str],
    tiny: bool,
) -> str | None:
    """Measure the encoder variants; returns the fused SAM attention kind that ran fastest on BASE."""
    encoder = build_encoder(config, device)
    peer = PeerOcr2(device, config.text_config.hidden_size, tiny=tiny) if "peer_ocr2" in variants else None
    parameters = {"deepencoder": sum(parameter.numel() for parameter in encoder.parameters())}
    if peer is not None:
        parameters["peer_ocr2"] = peer.parameter_count()
    recorder.put("encoder", "parameters", parameters)
    runners = encoder_runners(encoder, peer)

    flops: dict[str, Any] = {}
    for mode in modes:
        one = make_pages(mode, 1, device)
        with torch.no_grad():
            flops[mode.value] = {
                "analytic_reference": analytic_page_flops(config, mode),
                "analytic_fast_path": analytic_page_flops(config, mode, skip_window_padding=True),
                "counted_reference": counted_flops(lambda: runners["reference"](one)),
                "by_part_global_view": analytic_view_flops(config, mode.size),
            }
            if peer is not None:
                flops[mode.value]["counted_peer_ocr2"] = counted_flops(lambda: peer(one))
        recorder.put("encoder", "flops_per_page", flops)
    peak_flops = recorder.data["peak_matmul"]["tflops"] * 1e12

    checked = ["reference"] + [name for name in ("fused_eager", *FAST_VARIANTS) if name in variants]
    try:
        recorder.put("encoder", "relative_error_vs_fp32_reference", agreement(encoder, runners, checked, device))
    except Exception as error:  # reported, and the throughput runs still happen
        recorder.put("encoder", "relative_error_vs_fp32_reference", {"error": f"{type(error).__name__}: {error}"})

    def measure(variant: str, mode: Mode) -> None:
        # The analytic count equals FlopCounterMode's on explicit attention (tests/benchmarks/test_encoder_throughput.py);
        # the peer has no analytic count here and uses the counter's.
        own_flops = flops[mode.value]["counted_peer_ocr2" if variant == "peer_ocr2" else "analytic_reference"]
        for batch in batches:
            if variant in COMPILED_VARIANTS and batch == 1:
                continue
            entry: dict[str, Any] = {"mode": mode.value, "variant": variant, "batch": batch}
            # A compiled variant's first batch of a mode compiles (BASE graphs of the fast kinds exist already).
            if recorder.time_left() < (100 if variant in COMPILED_VARIANTS else 30):
                entry["skipped"] = "time budget"
                recorder.append("encoder_runs", entry)
                continue
            pages = make_pages(mode, batch, device)
            measure_encoder_run(recorder, runners[variant], pages, entry, own_flops, peak_flops, device)
            del pages

    # Most important first: every fused kind on BASE, the fastest of them on the other modes, then the reference
    # and the peer on every mode, then the variants that explain the gain (compile alone, fusion alone) on BASE.
    candidates = [variant for variant in FAST_VARIANTS if variant in variants]
    best = candidates[0] if candidates else None
    if candidates and Mode.BASE in modes:
        for variant in candidates:
            measure(variant, Mode.BASE)
        best = fastest(recorder.data.get("encoder_runs", []), candidates, Mode.BASE) or best
    if best is not None:
        recorder.put("encoder", "fast_path_variant", best)
        for mode in modes:
            if mode is not Mode.BASE:
                measure(best, mode)
    for variant in ("reference", "peer_ocr2"):
        if variant in variants:
            for mode in modes:
                measure(variant, mode)
    if Mode.BASE in modes:
        for variant in ("compiled", "fused_eager"):
            if variant in variants:
                measure(variant, Mode.BASE)

    if device.type == "cuda":
        base = make_pages(Mode.BASE, 16, device)
        with torch.no_grad():
            for variant in ("reference", best):
                if variant in runners and variant in variants and recorder.time_left() > 20:
                    top = profile_top_kernels(lambda: runners[variant](base), device)
                    recorder.put("encoder", f"profile_base_batch16_{variant}", top)
    return None if best is None else best.removeprefix("fast_")


# ---------------------------------------------------------------------------------------------------- decoder


class GreedyDecoder:
    """Greedy decoding of the MoE decoder over a static KV cache; the one-token step optionally compiled.

    ``compile_mode`` ``"reduce-overhead"`` captures the step in CUDA graphs (a replay instead of hundreds of
    launches per token); ``None`` runs it eagerly.
    """

    def __init__(self, model: DeepSeekOCR, max_length: int, compile_mode: str | None = None) -> None:
        self.model = model
        self.cache = StaticCache(config=model.config.text_config, max_cache_len=max_length)
        self.compiled = compile_mode is not None
        self._step = torch.compile(self._decode, mode=compile_mode) if compile_mode else self._decode

    def _decode(self, tokens: torch.Tensor) -> torch.Tensor:
        output = self.model.language_model(input_ids=tokens[:, None], past_key_values=self.cache, use_cache=True)
        return self.model.lm_head(output.last_hidden_state[:, -1]).argmax(-1)

    def prefill(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Reset the cache, run the prompt, return the first generated token of each sequence."""
        self.cache.reset()
        output = self.model.language_model(inputs_embeds=inputs_embeds, past_key_values=self.cache, use_cache=True)
        return self.model.lm_head(output.last_hidden_state[:, -1]).argmax(-1)

    def eager_step(self, tokens: torch.Tensor) -> torch.Tensor:
        """The step without compilation, on the same cache (to check the compiled one)."""
        return self._decode(tokens)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.compiled:
            torch.compiler.cudagraph_mark_step_begin()
            return self._step(tokens).clone()
        return self._step(tokens)

    def steps(self, tokens: torch.Tensor, count: int) -> list[torch.Tensor]:
        produced = []
        for _ in range(count):
            tokens = self.step(tokens)
            produced.append(tokens)
        return produced


def build_model(config: DeepSeekOCRConfig, device: torch.device) -> DeepSeekOCR:
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = DeepSeekOCR(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def prompt_ids(model: DeepSeekOCR, batch: int, device: torch.device) -> torch.Tensor:
    text = model.config.text_config
    image = [model.config.image_token_id] * Mode.BASE.decoder_positions()
    return torch.tensor([[text.bos_token_id] + image + list(PROMPT_TEXT_IDS)] * batch, device=device)


def random_prompt_embeddings(model: DeepSeekOCR, batch: int, length: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(batch)
    width = model.config.text_config.hidden_size
    return torch.randn(batch, length, width, device=device, generator=generator).to(torch.bfloat16) * 0.02


def run_decoder_section(
    recorder: Recorder,
    device: torch.device,
    config: DeepSeekOCRConfig,
    batches: Sequence[int],
    compiled_batches: Sequence[int],
    e2e_batch: int,
    new_tokens: int,
    encoder_kind: str | None,
) -> None:
    model = build_model(config, device)
    recorder.put("decoder", "encoder_path", optimize_with_fallback(model.vision, device, encoder_kind))
    prompt_length = prompt_ids(model, 1, device).shape[1]
    decode_steps, decode_calls = 32, 7
    # Timed decode calls continue from where the last stopped; a static cache attends over its full length at every
    # step, so a step costs the same wherever it lands.
    max_length = prompt_length + max(new_tokens, decode_steps * decode_calls + 8)
    recorder.put("decoder", "prompt_tokens", prompt_length)
    recorder.put("decoder", "static_cache_length", max_length)
    recorder.put("decoder", "active_parameters_per_token", model.parameter_counts()["decoder_active_per_token"])

    def decode_rates(decoder: GreedyDecoder, batch: int, entry: dict[str, Any], *, prefill: bool) -> None:
        embeds = random_prompt_embeddings(model, batch, prompt_length, device)
        with torch.no_grad():
            if prefill:
                timing = time_device(lambda: decoder.prefill(embeds), device, min_seconds=0.5, max_iterations=10)
                entry.update(prefill_ms=timing["median_ms"],
                             prefill_tokens_per_second=batch * prompt_length / (timing["median_ms"] / 1000))
            first = decoder.prefill(embeds)
            timing = time_device(lambda: decoder.steps(first, decode_steps), device, warmup=2, min_seconds=0.5,
                                 max_iterations=decode_calls - 2)
        entry.update(decode_step_ms=timing["median_ms"] / decode_steps,
                     decode_tokens_per_second=batch * decode_steps / (timing["median_ms"] / 1000),
                     peak_memory_gib=_peak_memory_gib(device))

    for batch in batches:
        entry: dict[str, Any] = {"batch": batch, "decode_step": "eager"}
        if recorder.time_left() < 60:
            entry["skipped"] = "time budget"
        else:
            _reset_peak_memory(device)
            try:
                decode_rates(GreedyDecoder(model, max_length), batch, entry, prefill=True)
            except torch.OutOfMemoryError:
                entry["skipped"] = "out of GPU memory"
        recorder.append("decoder_runs", entry)
        print(json.dumps(entry), flush=True)

    compiled_decoders: dict[int, GreedyDecoder] = {}
    if device.type == "cuda":
        for batch in compiled_batches:
            entry = {"batch": batch, "decode_step": "compiled, CUDA graphs"}
            if recorder.time_left() < 150:
                entry["skipped"] = "time budget"
                recorder.append("decoder_runs", entry)
                continue
            started = time.monotonic()
            _reset_peak_memory(device)
            decoder = GreedyDecoder(model, max_length, compile_mode="reduce-overhead")
            try:
                entry["first_tokens_agree_with_eager"] = compiled_agreement(model, decoder, batch, prompt_length,
                                                                            device)
                decode_rates(decoder, batch, entry, prefill=False)
                compiled_decoders[batch] = decoder
            except Exception as error:  # a compile failure is a result to report; eager decoding still runs
                entry["error"] = f"{type(error).__name__}: {str(error)[:600]}"
            del decoder
            _reset_peak_memory(device)
            entry["wall_seconds_with_compile"] = time.monotonic() - started
            recorder.append("decoder_runs", entry)
            print(json.dumps(entry), flush=True)

    naive_batch, naive_tokens = 16, 32
    if recorder.time_left() > 90:
        ids = prompt_ids(model, naive_batch, device)
        pages = make_pages(Mode.BASE, naive_batch, device)
        text = model.config.text_config
        with torch.no_grad():
            vision = model.vision(pages.pixel_values)
            timing = time_device(
                lambda: model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), vision_embeddings=vision,
                                       do_sample=False, max_new_tokens=naive_tokens, min_new_tokens=naive_tokens,
                                       eos_token_id=text.eos_token_id, pad_token_id=text.pad_token_id),
                device, warmup=1, min_seconds=0.5, max_iterations=3,
            )
        recorder.put("decoder", "transformers_generate", {
            "batch": naive_batch, "new_tokens": naive_tokens, "cache": "dynamic (generate's default)", **timing,
            "tokens_per_second_including_prefill": naive_batch * naive_tokens / (timing["median_ms"] / 1000),
        })
        del vision, pages

    runs = [("compiled", compiled_decoders.pop(e2e_batch))] if e2e_batch in compiled_decoders else []
    compiled_decoders.clear()
    runs.append(("eager", None))
    while runs:
        name, decoder = runs.pop(0)
        if recorder.time_left() < 60:
            recorder.put("decoder", f"end_to_end_{name}", {"skipped": "time budget"})
            continue
        _reset_peak_memory(device)
        try:
            result = end_to_end(model, decoder or GreedyDecoder(model, max_length), e2e_batch, new_tokens, device)
        except torch.OutOfMemoryError:
            result = {"batch": e2e_batch, "skipped": "out of GPU memory"}
        del decoder
        recorder.put("decoder", f"end_to_end_{name}", result)
        print(json.dumps(result), flush=True)


def optimize_with_fallback(encoder: DeepEncoder, device: torch.device, preferred: str | None) -> str:
    """The fastest encoder path that runs here (``preferred`` kind first, then triton, folded, flex), else the
    reference; returns its name."""
    pages = make_pages(Mode.BASE, 2, device)
    kinds = [kind for kind in (preferred, "triton", "folded", "flex") if kind is not None]
    for kind in dict.fromkeys(kinds):
        try:
            encoder.optimize(sam_attention=kind, compile=device.type == "cuda")
            with torch.no_grad():
                encoder(pages.pixel_values)
        except Exception as error:  # fall back to the next path; the failure is printed for the log
            print(f"fast path {kind} failed: {type(error).__name__}: {str(error)[:300]}", flush=True)
            continue
        return f"fast path ({kind})"
    encoder.use_reference()
    return "reference"


def compiled_agreement(
    model: DeepSeekOCR, decoder: GreedyDecoder, batch: int, prompt_length: int, device: torch.device
) -> float:
    """Share of the first 4 greedy tokens the compiled step picks as the eager step does on the same cache (bf16
    ties may differ)."""
    embeds = random_prompt_embeddings(model, batch, prompt_length, device)
    with torch.no_grad():
        first = decoder.prefill(embeds)
        produced = torch.stack([first] + decoder.steps(first, 3), dim=1)
        first = decoder.prefill(embeds)
        expected = [first]
        for _ in range(3):
            expected.append(decoder.eager_step(expected[-1]))
    return float((produced == torch.stack(expected, dim=1)).float().mean())


def end_to_end(
    model: DeepSeekOCR, decoder: GreedyDecoder, batch: int, new_tokens: int, device: torch.device
) -> dict[str, Any]:
    """One measured pass: encode ``batch`` BASE pages, prefill their prompts, decode ``new_tokens`` greedily."""
    pages = make_pages(Mode.BASE, batch, device, seed=3)
    ids = prompt_ids(model, batch, device)
    with torch.no_grad():
        model.vision(pages.pixel_values[:2])
        decoder.steps(decoder.prefill(model.language_model.embed_tokens(ids[:, :8])), 2)
        _synchronize(device)
        started = time.perf_counter()
        vision = [page for chunk in pages.pixel_values.split(E2E_ENCODER_CHUNK) for page in model.vision(chunk)]
        _synchronize(device)
        encoded = time.perf_counter()
        tokens = decoder.prefill(model.scatter_vision(ids, model.language_model.embed_tokens(ids), vision))
        _synchronize(device)
        prefilled = time.perf_counter()
        generated = [tokens] + decoder.steps(tokens, new_tokens - 1)
        _synchronize(device)
        finished = time.perf_counter()
    total = finished - started
    return {
        "batch": batch,
        "mode": Mode.BASE.value,
        "new_tokens": len(generated),
        "decode_step": "compiled, CUDA graphs" if decoder.compiled else "eager",
        "encode_ms": (encoded - started) * 1000,
        "prefill_ms": (prefilled - encoded) * 1000,
        "decode_ms": (finished - prefilled) * 1000,
        "total_ms": total * 1000,
        "pages_per_second": batch / total,
        "generated_tokens_per_second": batch * len(generated) / total,
    }


# ------------------------------------------------------------------------------------------------- input side


def run_input_section(recorder: Recorder, device: torch.device, pages_in_batch: int = 16) -> None:
    """Host side of a BASE batch: CPU float32 then a pageable copy, against uint8 pinned and normalised on the GPU."""
    from PIL import Image, ImageDraw

    from optical_memory.model.preprocessing import preprocess

    pages = []
    for index in range(pages_in_batch):
        image = Image.new("RGB", (1280, 1280), "white")
        draw = ImageDraw.Draw(image)
        for line in range(60):
            draw.text((40, 20 + line * 20), f"page {index} line {line}: the quick brown fox jumps", fill="black")
        pages.append(image)
    results = {}
    for name, on_device in (("cpu_float32_then_copy", None), ("uint8_pinned_normalised_on_device", device)):
        def prepare() -> None:
            inputs = preprocess(pages, Mode.BASE, device=on_device, dtype=torch.bfloat16)
            inputs.pixel_values.to(device)

        timing = time_device(prepare, device, warmup=1, min_seconds=1.0, max_iterations=5)
        results[name] = {"ms_per_page": timing["median_ms"] / pages_in_batch, **timing}
    recorder.put("input", f"base_batch{pages_in_batch}", results)


# --------------------------------------------------------------------------------------------------- metadata


def metadata(device: torch.device, commit: str | None, tiny: bool) -> dict[str, Any]:
    import transformers

    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        hardware = {"device": properties.name, "multiprocessors": properties.multi_processor_count,
                    "memory_gib": properties.total_memory / 2**30}
    else:
        hardware = {"device": platform.processor() or platform.machine()}
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        driver = "unknown"
    if commit is None:
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                    timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = "unknown"
    return {
        **hardware,
        "driver": driver,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "git_commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "dtype": "bfloat16",
        "weights": "random (seed 0)",
        "config": "tiny (smoke run)" if tiny else "full",
    }


def run(args: argparse.Namespace) -> None:
    # Read at the first CUDA allocation. Without it, the CUDA-graph decoder at batch 256 ran out of memory on an H100
    # after the eager batches had fragmented the cache (31.8 GiB needed of 80).
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    device = torch.device(args.device if args.device else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not args.tiny:
        raise SystemExit("the full-size benchmark needs a CUDA GPU (use --tiny for a smoke run elsewhere)")
    config = benchmark_config(args.tiny)
    recorder = Recorder(Path(args.out) / RESULT_NAME, metadata(device, args.commit, args.tiny),
                        time.monotonic() + args.time_budget)
    recorder.data["peak_matmul"] = measure_matmul_peak(device, 1024 if args.tiny else PEAK_MATMUL_SIDE)
    recorder.flush()
    print("peak matmul", json.dumps(recorder.data["peak_matmul"]), flush=True)
    modes = [Mode(value) for value in args.modes]
    if "input" in args.sections:
        run_input_section(recorder, device)
    encoder_kind = None
    if "encoder" in args.sections:
        encoder_kind = run_encoder_section(recorder, device, config, args.batches, modes, args.variants, args.tiny)
    if "decoder" in args.sections:
        run_decoder_section(recorder, device, config, args.decoder_batches, args.compiled_decoder_batches,
                            args.e2e_batch, args.new_tokens, encoder_kind)
    summary = {key: value for key, value in recorder.data.items() if key != "encoder_runs"}
    print(json.dumps(summary, indent=1, default=str))

# ----------------------------------------------------------------------------------------------------- report


RUN_KEYS = {"encoder_runs": ("mode", "variant", "batch"), "decoder_runs": ("batch", "decode_step")}


def merge(parts: Sequence[Path]) -> dict[str, Any]:
    """Combine result parts in order: a later part's measurement replaces an earlier one of the same key (mode,
    variant, batch; or batch and decode step) and its section entries, key by key at any depth, earlier ones; each
    part keeps its own metadata under ``runs``."""
    merged: dict[str, Any] = {"runs": []}
    for path in parts:
        data = json.loads(Path(path).read_text())
        merged["runs"].append({"file": Path(path).name, "metadata": data.get("metadata"),
                               "peak_matmul": data.get("peak_matmul")})
        for key, value in data.items():
            if key in ("metadata", "peak_matmul"):
                continue
            if key in RUN_KEYS:
                fields = RUN_KEYS[key]
                combined = {tuple(run.get(field) for field in fields): run for run in merged.get(key, [])}
                for run in value:
                    combined[tuple(run.get(field) for field in fields)] = {**run, "part": Path(path).name}
                merged[key] = list(combined.values())
            elif isinstance(value, dict):
                _deep_update(merged.setdefault(key, {}), value)
            else:
                merged[key] = value
    return merged


def _deep_update(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def markdown_table(data: dict[str, Any]) -> str:
    runs = data.get("encoder_runs", [])
    fast_variant = data.get("encoder", {}).get("fast_path_variant", "fast_flex")
    lines = [
        f"| mode | batch | reference pages/s | compiled | fast path ({fast_variant.removeprefix('fast_')}) | "
        "fast path MFU | × reference | peer OCR-2 tower pages/s | fast peak GiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    batches = sorted({r["batch"] for r in runs})
    for mode in [m.value for m in MODES]:
        for batch in batches:
            row = {r["variant"]: r for r in runs if r["mode"] == mode and r["batch"] == batch}
            if not row:
                continue

            def rate(variant: str) -> str:
                entry = row.get(variant)
                if entry is None:
                    return "–"
                return f"{entry['pages_per_second']:.0f}" if "pages_per_second" in entry else entry.get("skipped", "–")

            fast = row.get(fast_variant, {})
            reference = row.get("reference", {})
            ratio = (
                f"{fast['pages_per_second'] / reference['pages_per_second']:.1f}×"
                if "pages_per_second" in fast and "pages_per_second" in reference
                else "–"
            )
            mfu = f"{fast['mfu']:.0%}" if "mfu" in fast else "–"
            memory = f"{fast['peak_memory_gib']:.1f}" if "peak_memory_gib" in fast else "–"
            lines.append(
                f"| {mode} | {batch} | {rate('reference')} | {rate('compiled')} | {rate(fast_variant)} | {mfu} | "
                f"{ratio} | {rate('peer_ocr2')} | {memory} |"
            )
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data.get("encoder_runs", [])
    variants = [variant for variant in VARIANTS if any(r["variant"] == variant for r in runs)]
    colours = dict(zip(variants, plt.get_cmap("tab10").colors))
    modes = [mode for mode in MODES if any(r["mode"] == mode.value for r in runs)] or list(MODES)
    figure, axes = plt.subplots(1, len(modes), figsize=(4 * len(modes), 3.8), squeeze=False)
    axes = axes[0]
    for axis, mode in zip(axes, modes):
        for variant in variants:
            points = sorted(
                (r["batch"], r["pages_per_second"])
                for r in runs
                if r["mode"] == mode.value and r["variant"] == variant and "pages_per_second" in r
            )
            if points:
                axis.plot(*zip(*points), marker="o", color=colours[variant], label=variant)
        axis.set_xscale("log", base=2)
        axis.set_ylim(bottom=0)
        axis.set_title(mode.value)
        axis.set_xlabel("batch (pages)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("pages / s")
    handles = [plt.Line2D([], [], color=colours[variant], marker="o", label=variant) for variant in variants]
    figure.legend(handles=handles, loc="lower center", ncol=len(variants), fontsize=8, frameon=False)
    device = (data.get("runs") or [{}])[0].get("metadata", {}) or {}
    figure.suptitle(f"DeepEncoder throughput, bf16, random weights — {device.get('device', '')}")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def report(args: argparse.Namespace) -> None:
    data = merge(args.parts)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RESULT_NAME).write_text(json.dumps(data, indent=1))
    plot(data, args.out / PLOT_NAME)
    print(markdown_table(data))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("run", help="measure on this machine's GPU")
    measure.add_argument("--sections", nargs="+", choices=("input", "encoder", "decoder"),
                         default=["input", "encoder", "decoder"])
    measure.add_argument("--modes", nargs="+", choices=[m.value for m in MODES], default=[m.value for m in MODES])
    measure.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    measure.add_argument("--batches", nargs="+", type=int, default=list(ENCODER_BATCHES))
    measure.add_argument("--decoder-batches", nargs="*", type=int, default=[1, 32, 128, 256])
    measure.add_argument("--compiled-decoder-batches", nargs="*", type=int, default=[256])
    measure.add_argument("--e2e-batch", type=int, default=256)
    measure.add_argument("--new-tokens", type=int, default=E2E_NEW_TOKENS)
    measure.add_argument("--time-budget", type=float, default=540.0, help="seconds; later measurements are skipped")
    measure.add_argument("--commit", default=None, help="git commit to record (default: git rev-parse HEAD)")
    measure.add_argument("--device", default=None, help="default: cuda when available")
    measure.add_argument("--tiny", action="store_true", help="tiny random config: a smoke run of the script itself")
    measure.add_argument("--out", default=str(RESULTS))
    summarise = commands.add_parser("report", help="merge result parts, plot, print the README table")
    summarise.add_argument("parts", nargs="+", type=Path)
    summarise.add_argument("--out", type=Path, default=RESULTS, help="folder for the merged JSON and the PNG")
    args = parser.parse_args(argv)
    (run if args.command == "run" else report)(args)


if __name__ == "__main__":
    main()
