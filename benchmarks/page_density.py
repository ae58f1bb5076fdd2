"""How much text a page holds: cl100k tokens per full page of the demo's chats, at a render preset.

Run: ``python -m benchmarks.page_density [--preset deepseek-ocr] [--label after]``. Prints a table and writes the
run into ``benchmarks/results/page_density.json`` under ``--label``, beside the runs already there (so the same
command at two commits gives a before/after pair), with the command, machine and commit.

Workloads: the demo's sample conversation (``optical_memory/data/sample_conversation.jsonl``: 444 real chat turns,
mostly one-liners, as ``optical-memory demo`` pages them), and the same corpus merged into LLM-length turns of at
least 150 tokens (the ``benchmarks.render_speed`` workload). Only full pages count: the last, partial page of a
conversation says nothing about density. Pagination only measures, so the run takes seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from optical_memory.cli.main import sample_transcript
from optical_memory.cli.transcripts import load_transcript
from optical_memory.renderers import PageRenderer, RenderStyle

from benchmarks.render_speed import merged_chat_turns
from optical_memory.core.tokens import count_tokens, encoding_label
from optical_memory.core.types import Role, Turn

RESULTS = Path(__file__).parent / "results" / "page_density.json"
ENCODING = "cl100k_base"  # the encoding the density target is stated in


def sample_turns() -> list[Turn]:
    """The demo's conversation as the memory stores it: turns numbered in order, with their timestamps."""
    transcript = load_transcript(sample_transcript())
    return [Turn(i, Role.parse(t.role), t.content, t.timestamp, t.name) for i, t in enumerate(transcript)]


def density(renderer: PageRenderer, turns: Sequence[Turn]) -> dict[str, Any]:
    """Tokens and turns per full page when ``turns`` are paginated from the start."""
    full = [layout for layout in renderer.paginate(turns) if layout.full]
    tokens = [count_tokens(layout.page.text, ENCODING) for layout in full]
    turns_per_page = [len(layout.page.turn_indices) for layout in full]
    return {
        "turns": len(turns),
        "full_pages": len(full),
        "tokens_per_page_median": statistics.median(tokens),
        "tokens_per_page_mean": round(statistics.fmean(tokens), 1),
        "tokens_per_page_min": min(tokens),
        "tokens_per_page_max": max(tokens),
        "turns_per_page_median": statistics.median(turns_per_page),
        "chars_per_page_median": statistics.median(len(layout.page.text) for layout in full),
    }


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def measure(preset: str, argv: Sequence[str]) -> dict[str, Any]:
    style = RenderStyle.preset(preset)
    renderer = PageRenderer(style)
    return {
        "preset": preset,
        "style": {key: value for key, value in style.describe().items() if not key.endswith("font_files")},
        "tokenizer": encoding_label(ENCODING),
        "workloads": {
            "sample conversation (demo)": density(renderer, sample_turns()),
            "LLM-length turns (render_speed)": density(renderer, merged_chat_turns(80_000)),
        },
        "command": " ".join(["python -m benchmarks.page_density", *argv]),
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        "git_commit": _git("describe", "--always", "--dirty"),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def table(runs: dict[str, dict[str, Any]]) -> str:
    header = f"{'run':<10} {'commit':<16} {'workload':<34} {'pages':>6} {'tok/page':>9} {'mean':>7} {'min':>5} {'max':>5} {'turns/page':>11}"
    rows = [header, "-" * len(header)]
    for label, run in runs.items():
        for name, row in run["workloads"].items():
            rows.append(
                f"{label:<10} {str(run['git_commit']):<16} {name:<34} {row['full_pages']:>6} "
                f"{row['tokens_per_page_median']:>9} {row['tokens_per_page_mean']:>7} {row['tokens_per_page_min']:>5} "
                f"{row['tokens_per_page_max']:>5} {row['turns_per_page_median']:>11}"
            )
    rows.append(f"tokens per full page, {encoding_label(ENCODING)}; median unless named")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="deepseek-ocr", choices=sorted(RenderStyle.PRESETS))
    parser.add_argument("--label", default="current", help="name of this run in the JSON (e.g. before, after)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    runs = json.loads(args.out.read_text())["runs"] if args.out.exists() else {}
    runs[args.label] = measure(args.preset, argv)
    print(table(runs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
