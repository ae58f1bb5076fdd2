"""Rendering speed per CPU core: layout, drawing, PNG encoding and the cost of knowing a page's cache key.

Run: ``python -m benchmarks.render_speed [--preset deepseek-ocr] [--repeats 5]``. Prints a table and writes
``benchmarks/results/render_speed.json``.

Workload: real human chats (chitchat corpus, ``report`` split, see ``benchmarks.datasets``) whose consecutive
messages are merged into turns of at least ``--turn-tokens`` cl100k tokens, so turns have the length of LLM chat turns
and a full 1280 px page at the ``deepseek-ocr`` preset holds about 1,000 tokens (raw chitchat turns are one-liners and
fill a page with headers). The process is pinned to one CPU and rates are pages per CPU-second of this process, so
they are per core and hold even on a machine busy with other work (wall-clock times are kept beside them). Each
measurement is repeated; the table shows the best repeat and the JSON keeps the median too.

"Cold" means a fresh renderer (empty glyph, word-measurement and word-image caches); "warm" means the same pages
again with filled caches, which is what a long-lived process sees because chat text repeats its words.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import PIL
from optical_memory.renderers import PageLayout, PageRenderer, RenderStyle, render_key
from optical_memory.renderers.png import encode_page_png
from PIL import Image
from tqdm import tqdm

from benchmarks.datasets import SIZING_ENCODING, chitchat_session
from benchmarks.memory_overhead import measure_memory_overhead
from optical_memory.core.imaging import encode_png
from optical_memory.core.tokens import count_tokens, encoding_label
from optical_memory.core.types import Role, Turn

RESULTS = Path(__file__).parent / "results"


def merged_chat_turns(min_tokens: int, *, turn_tokens: int = 150, seed: int = 0) -> list[Turn]:
    """Real chat text regrouped into LLM-length turns: consecutive messages joined until ``turn_tokens`` tokens."""
    conversation = chitchat_session("report", min_tokens=min_tokens, seed=seed)
    turns: list[Turn] = []
    pending: list[str] = []
    tokens = 0
    for message in conversation.turns:
        pending.append(message.text.replace("\n", " "))
        tokens += count_tokens(message.text, SIZING_ENCODING)
        if tokens >= turn_tokens:
            role = Role.USER if len(turns) % 2 == 0 else Role.ASSISTANT
            turns.append(Turn(len(turns), role, " ".join(pending), message.timestamp))
            pending, tokens = [], 0
    return turns


def _pin_to_one_cpu() -> int | None:
    """Pin this process to one CPU so rates are per core; returns the CPU, or None where affinity is unsupported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


class _Timing(NamedTuple):
    wall: float
    cpu: float  # CPU time of this process: what the work itself cost, however busy the machine was


def _timed(work: Callable[[], object], repeats: int) -> list[_Timing]:
    timings = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        timings.append(_Timing(time.perf_counter() - wall, time.process_time() - cpu))
    return timings


def _rate(timings: Sequence[_Timing], pages: int) -> dict[str, float]:
    cpu = [timing.cpu for timing in timings]
    wall = [timing.wall for timing in timings]
    return {
        "pages_per_cpu_s_best": pages / min(cpu),
        "pages_per_cpu_s_median": pages / statistics.median(cpu),
        "cpu_ms_per_page_best": 1000 * min(cpu) / pages,
        "wall_ms_per_page_best": 1000 * min(wall) / pages,
        "wall_ms_per_page_median": 1000 * statistics.median(wall) / pages,
    }


def measure_rendering(
    *,
    preset: str = "deepseek-ocr",
    font_px: int | None = None,
    min_tokens: int = 80_000,
    turn_tokens: int = 150,
    repeats: int = 5,
    seed: int = 0,
    pin_cpu: bool = True,
) -> dict[str, Any]:
    """Pages per second per core for each rendering stage, on full pages of real chat text.

    Stages: ``paginate`` (layout + ``render_key``), ``draw`` (greyscale image), PNG encoding of that "L" image with
    ``optical_memory.core.imaging.encode_png`` (Pillow; also of the RGB conversion, for reference) and with
    ``renderers.png.encode_page_png`` (fixed Up filter + ISA-L deflate), and their sums. ``render_key_us_per_page``
    is the key alone once the text is known; a cache hit costs ``paginate`` (layout is what yields the text).
    """
    cpu = _pin_to_one_cpu() if pin_cpu else None
    style = RenderStyle.preset(preset)
    if font_px is not None:
        style = style.with_density(font_px)
    turns = merged_chat_turns(min_tokens, turn_tokens=turn_tokens, seed=seed)

    cold = PageRenderer(style)
    layouts: list[PageLayout] = []
    images: list[Image.Image] = []
    cold_paginate = _timed(lambda: layouts.extend(layout for layout in cold.paginate(turns) if layout.full), 1)[0]
    cold_draw = _timed(lambda: images.extend(cold.draw(layout) for layout in layouts), 1)[0]
    pages = len(layouts)
    page_tokens = [count_tokens(layout.page.text, SIZING_ENCODING) for layout in layouts]

    warm = cold
    rgb = [image.convert("RGB") for image in images]
    work: dict[str, Callable[[], object]] = {
        "paginate": lambda: warm.paginate(turns),
        "draw": lambda: [warm.draw(layout) for layout in layouts],
        "encode_png (Pillow, L)": lambda: [encode_png(image) for image in images],
        "encode_png (Pillow, RGB)": lambda: [encode_png(image) for image in rgb],
        "encode_page_png (L)": lambda: [encode_page_png(image) for image in images],
        "draw + encode_png (L)": lambda: [encode_png(warm.draw(layout)) for layout in layouts],
        "draw + encode_page_png": lambda: [encode_page_png(warm.draw(layout)) for layout in layouts],
        "paginate + draw + encode_page_png": lambda: [
            encode_page_png(warm.draw(layout)) for layout in warm.paginate(turns) if layout.full
        ],
    }
    stages = {name: _rate(_timed(run, repeats), pages) for name, run in tqdm(work.items(), desc="render_speed")}
    # paginate lays out the trailing partial page too; rates count full pages only, so they are slightly pessimistic.

    key = style.key()
    texts = [layout.page.text for layout in layouts]
    key_cpu = min(timing.cpu for timing in _timed(lambda: [render_key(text, key) for text in texts], repeats))
    png_sizes = [len(encode_png(image)) for image in images]
    fast_png_sizes = [len(encode_page_png(image)) for image in images]
    return {
        "preset": preset,
        "style": style.describe(),
        "workload": {
            "source": "chitchat report split, messages merged into turns",
            "turn_tokens_min": turn_tokens,
            "turns": len(turns),
            "full_pages": pages,
            "tokenizer": encoding_label(SIZING_ENCODING),
            "tokens_per_page_median": statistics.median(page_tokens),
            "tokens_per_page_min": min(page_tokens),
            "tokens_per_page_max": max(page_tokens),
            "chars_per_page_median": statistics.median(len(text) for text in texts),
        },
        "cold": {"paginate": _rate([cold_paginate], pages), "draw": _rate([cold_draw], pages)},
        "warm": stages,
        "render_key_cpu_us_per_page": 1e6 * key_cpu / pages,
        "png_bytes_median": {
            "encode_png (Pillow, L)": statistics.median(png_sizes),
            "encode_page_png (L)": statistics.median(fast_png_sizes),
        },
        "environment": {
            "pinned_cpu": cpu,
            "cpus": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(),
            "pillow": PIL.__version__,
            "processor": platform.processor() or platform.machine(),
            "repeats": repeats,
        },
    }


def _table(result: dict[str, Any]) -> str:
    rows = [
        f"{'stage':<42}{'pages/CPU-s':>12}{'CPU ms/page':>12}{'wall ms/page':>13}",
    ]
    stages = [(f"{name} (warm)", rate) for name, rate in result["warm"].items()]
    stages += [(f"{name} (cold)", rate) for name, rate in result["cold"].items()]
    for name, rate in stages:
        rows.append(
            f"{name:<42}{rate['pages_per_cpu_s_best']:>12.1f}{rate['cpu_ms_per_page_best']:>12.2f}"
            f"{rate['wall_ms_per_page_best']:>13.2f}"
        )
    rows.append(f"render_key alone: {result['render_key_cpu_us_per_page']:.1f} µs/page (best of repeats throughout)")
    workload = result["workload"]
    rows.append(
        f"{workload['full_pages']} full pages, median {workload['tokens_per_page_median']} tokens "
        f"({workload['tokenizer']}), {result['style']['width']}x{result['style']['height']} px, "
        f"font {result['style']['font_px']} px, PNG median "
        + ", ".join(f"{name} {size / 1024:.0f} KiB" for name, size in result["png_bytes_median"].items())
    )
    environment = result["environment"]
    rows.append(f"pinned to CPU {environment['pinned_cpu']}, 1-min load average {environment['load_average_1min']}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="deepseek-ocr", choices=sorted(RenderStyle.PRESETS))
    parser.add_argument("--font-px", type=int, default=None, help="override the preset's body type size")
    parser.add_argument("--min-tokens", type=int, default=80_000, help="tokens of chat to lay out")
    parser.add_argument("--turn-tokens", type=int, default=150, help="merge messages into turns of at least this")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    parser.add_argument("--memory-turns", type=int, default=10_000, help="session size for the add+context overhead (0: skip)")
    args = parser.parse_args()
    result = measure_rendering(
        preset=args.preset,
        font_px=args.font_px,
        min_tokens=args.min_tokens,
        turn_tokens=args.turn_tokens,
        repeats=args.repeats,
        pin_cpu=not args.no_pin,
    )
    print(_table(result))
    if args.memory_turns:
        result["memory_overhead"] = measure_memory_overhead(args.memory_turns)
        overhead = result["memory_overhead"]
        print(
            f"memory at {overhead['turns']} turns ({overhead['pages']} pages): add {overhead['add_cpu_ms_median_excluding_rendering']:.2f} ms"
            f" (rendering excluded) + context {overhead['context_cpu_ms_median']:.2f} ms = "
            f"{overhead['add_plus_context_cpu_ms_median']:.2f} ms CPU per turn (median)"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "render_speed.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
