"""The ``optical-memory`` command: ``demo``, ``render``, ``context`` and ``sessions``."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw
from tqdm import tqdm

from optical_memory.cli.transcripts import TranscriptTurn, load_transcript
from optical_memory.context import Context
from optical_memory.core.consumers import consumer_names, get_consumer
from optical_memory.core.imaging import fit_to_tier
from optical_memory.core.types import TokenReport
from optical_memory.memory import OpticalMemory, delete_session, export_session, list_sessions
from optical_memory.store.backends import POSTGRES_SCHEMES, SQLITE_PREFIX, open_store
from optical_memory.store.base import Store, StoreError

SAMPLE = "sample_conversation.jsonl"


def sample_transcript() -> Path:
    """The bundled sample conversation (real human chats from chitchat-dataset, MIT; see data/*.source.json)."""
    return Path(str(resources.files("optical_memory") / "data" / SAMPLE))


def fill_memory(memory: OpticalMemory, turns: Sequence[TranscriptTurn], *, progress: bool = True) -> None:
    for turn in tqdm(turns, desc="adding turns", unit="turn", disable=not progress):
        memory.add(turn.role, turn.content, timestamp=turn.timestamp, name=turn.name)


def page_table(ctx: Context) -> str:
    """A fixed-width table: one row per page with its tier, tokens and compression."""
    header = f"{'page':>5} {'turns':>9} {'tier':>9} {'text tok':>9} {'sent tok':>9} {'compress':>9}  sent as"
    rows = [header, "-" * len(header)]
    for view in ctx.pages:
        turns = view.page.turn_indices
        span = f"{turns[0]}-{turns[-1]}"
        tier = view.tier.name if view.tier is not None else "-"
        sent = "forgotten" if view.forgotten else "text (fail-closed)" if view.as_text else "image"
        ratio = f"{view.text_tokens / view.tokens:.1f}x" if view.tokens and not view.as_text else "-"
        rows.append(f"{view.page.index:>5} {span:>9} {tier:>9} {view.text_tokens:>9} {view.tokens:>9} {ratio:>9}  {sent}")
    return "\n".join(rows)


def report_lines(report: TokenReport) -> str:
    positions = f" ({report.decoder_positions} decoder positions)" if report.decoder_positions is not None else ""
    return "\n".join(
        [
            f"consumer {report.consumer}; text tokens counted with {report.tokenizer}; budget {report.budget}",
            f"recent turns as text: {report.hot_text_tokens} tokens",
            f"pages: {report.pages_total} total, {report.pages_as_images} as images, {report.pages_as_text} as text"
            f" (fail-closed), {report.pages_dropped} forgotten ({report.dropped_text_tokens} text tokens)",
            f"images: {report.image_tokens} image tokens{positions} stand for {report.paged_text_tokens} text tokens"
            f" -> compression {report.compression:.2f}x (text tokens per valid image token)",
            f"context total: {report.total_tokens} tokens",
        ]
    )


def contact_sheet(ctx: Context, *, thumb: int = 320) -> Image.Image:
    """Every page's top-left quarter at the pixels its tier keeps, scaled alike, so the blur with age is visible."""
    views = ctx.pages
    columns = min(6, max(1, len(views)))
    rows = math.ceil(len(views) / columns) or 1
    label_h = 22
    sheet = Image.new("L", (columns * thumb, rows * (thumb + label_h)), 255)  # pages are greyscale
    draw = ImageDraw.Draw(sheet)
    for i, view in enumerate(views):
        x, y = (i % columns) * thumb, (i // columns) * (thumb + label_h)
        if view.image is not None:
            # Blow each page back up to master size and show its top-left corner: the blur of its tier is visible.
            master = view.image.convert("L").resize((view.page.width, view.page.height), Image.Resampling.BICUBIC)
            corner = master.crop((0, 0, view.page.width // 2, view.page.height // 2))
            sheet.paste(corner.resize((thumb, thumb), Image.Resampling.BICUBIC), (x, y + label_h))
        else:
            draw.rectangle((x + 4, y + label_h + 4, x + thumb - 4, y + label_h + thumb - 4), outline=180)
        state = "forgotten" if view.forgotten else "as text" if view.as_text else view.tier.name  # type: ignore[union-attr]
        draw.text((x + 4, y + 4), f"page {view.page.index}: {state}, {view.tokens} tok", fill=0)
    return sheet


def write_pages(ctx: Context, out: Path) -> list[Path]:
    """PNG of every shown page at its tier under ``out/pages`` (names are generated, never taken from input)."""
    folder = out / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for view in tqdm(ctx.pages, desc="writing pages", unit="page", leave=False):
        if view.image is None:
            continue
        path = folder / f"page_{view.page.index:04d}_{view.tier.name}.png"  # type: ignore[union-attr]
        view.image.save(path)
        written.append(path)
    return written


def cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    turns = load_transcript(args.transcript or sample_transcript())
    with OpticalMemory.open(db, session="demo", hot_turns=args.hot_turns, consumer=args.consumer) as memory:
        fill_memory(memory, turns)
        now = max(t.timestamp for t in memory.turns)
        ctx = memory.context(budget=args.budget, now=now)
        print(f"\n{len(turns)} turns -> {len(memory.pages)} sealed pages in {db}\n")
        print(page_table(ctx))
        print()
        print(report_lines(ctx.report))
        print("\nsame memory, priced for each consumer (no budget):")
        print(f"{'consumer':>25} {'pages as img':>13} {'image tok':>10} {'text tok':>9} {'compress':>9}")
        for name in consumer_names():
            report = memory.context(consumer=name, now=now).report
            print(f"{name:>25} {report.pages_as_images:>13} {report.image_tokens:>10} {report.paged_text_tokens:>9}"
                  f" {report.compression:>8.2f}x")
        write_pages(ctx, out)
        contact_sheet(ctx).save(out / "contact_sheet.png")
    (out / "report.json").write_text(json.dumps(ctx.report.as_dict(), indent=2))
    print(f"\npage PNGs in {out / 'pages'}, contact sheet {out / 'contact_sheet.png'}, report {out / 'report.json'}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    turns = load_transcript(args.transcript)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    consumer = get_consumer(args.consumer)
    with OpticalMemory.open(":memory:", hot_turns=0, consumer=consumer) as memory:
        fill_memory(memory, turns)
        memory.flush()
        folder = out / "pages"
        folder.mkdir(exist_ok=True)
        for page in tqdm(memory.pages, desc="writing pages", unit="page"):
            image = memory.page_image(page)
            image.save(folder / f"page_{page.index:04d}.png")
            for tier in consumer.tiers if args.all_tiers else ():
                fit_to_tier(image, tier).save(folder / f"page_{page.index:04d}_{tier.name}.png")
        print(f"{len(turns)} turns -> {len(memory.pages)} pages in {folder}")
    return 0


def cmd_context(args: argparse.Namespace) -> int:
    turns = load_transcript(args.transcript)
    with OpticalMemory.open(":memory:", hot_turns=args.hot_turns, consumer=args.consumer) as memory:
        fill_memory(memory, turns, progress=not args.json)
        ctx = memory.context(budget=args.budget)
        if args.json:
            json.dump({"report": ctx.report.as_dict(), "pages": [
                {"page": v.page.index, "tier": v.tier.name if v.tier else None, "tokens": v.tokens,
                 "text_tokens": v.text_tokens, "as_text": v.as_text} for v in ctx.pages
            ], "recent_turns": len(ctx.recent)}, sys.stdout, indent=2)
            print()
        else:
            print(page_table(ctx))
            print()
            print(report_lines(ctx.report))
        if args.openai:
            Path(args.openai).write_text(json.dumps(ctx.to_openai(), indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optical-memory", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the bundled 444-turn conversation -> pages that shrink with age")
    demo.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    demo.add_argument("--consumer", default="deepseek-ocr", choices=consumer_names())
    demo.add_argument("--budget", type=float, default=3000, help="token budget for the context (default 3000)")
    demo.add_argument("--hot-turns", type=int, default=8)
    demo.add_argument("--transcript", help="use this JSONL instead of the bundled sample")
    demo.set_defaults(func=cmd_demo)

    render = sub.add_parser("render", help="render a transcript to page PNGs")
    render.add_argument("transcript")
    render.add_argument("--out", required=True)
    render.add_argument("--consumer", default="deepseek-ocr", choices=consumer_names())
    render.add_argument("--all-tiers", action="store_true", help="also write each page at every tier of the consumer")
    render.set_defaults(func=cmd_render)

    context = sub.add_parser("context", help="the optical context of a transcript under a budget")
    context.add_argument("transcript")
    context.add_argument("--budget", type=float, required=True)
    context.add_argument("--consumer", default="deepseek-ocr", choices=consumer_names())
    context.add_argument("--hot-turns", type=int, default=8)
    context.add_argument("--json", action="store_true", help="print JSON instead of a table")
    context.add_argument("--openai", help="also write the context as OpenAI chat messages to this file")
    context.set_defaults(func=cmd_context)
    add_sessions_parser(sub)
    return parser


# -- sessions: a user's data in a store ------------------------------------------------------------------------------


def open_existing_store(target: str) -> Store:
    """The store at ``target`` (a path or URL); a path that does not exist is an error, never a new empty store."""
    if not target.startswith((SQLITE_PREFIX, *POSTGRES_SCHEMES)) and not os.path.isfile(target):
        raise ValueError(f"store {target!r} does not exist")
    return open_store(target)


def cmd_sessions_list(args: argparse.Namespace) -> int:
    with open_existing_store(args.store) as store:
        infos = list_sessions(store, user=args.user)
    if args.json:
        json.dump([{"user": i.scope.user, "session": i.scope.session, "companion": i.scope.companion or None,
                    "turns": i.turns, "pages": i.pages, "created_at": i.created_at} for i in infos], sys.stdout, indent=2)
        print()
        return 0
    header = f"{'user':<16} {'session':<24} {'companion':<10} {'turns':>7} {'pages':>6}  created (UTC)"
    print(header)
    print("-" * len(header))
    for info in infos:
        created = datetime.fromtimestamp(info.created_at, timezone.utc).strftime("%Y-%m-%d %H:%M")
        print(f"{info.scope.user:<16} {info.scope.session:<24} {info.scope.companion or '-':<10} {info.turns:>7}"
              f" {info.pages:>6}  {created}")
    return 0


def cmd_sessions_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        raise ValueError("deleting erases the session for good: add --yes to confirm")
    with open_existing_store(args.store) as store:
        erased = delete_session(store, args.session, user=args.user)
    if not erased.scopes:
        raise ValueError(f"session {args.session!r} of user {args.user!r} is not stored")
    print(f"deleted session {args.session!r} of user {args.user!r}: {erased.turns} turns, {erased.pages} pages,"
          f" {erased.images} images no other session showed ({erased.scopes} stream(s) with companions)")
    return 0


def cmd_sessions_export(args: argparse.Namespace) -> int:
    with open_existing_store(args.store) as store:
        if args.out is None:
            count = export_session(store, args.session, sys.stdout, user=args.user)
        else:
            with open(args.out, "w", encoding="utf-8") as out:
                count = export_session(store, args.session, out, user=args.user)
    print(f"exported {count} turns", file=sys.stderr)
    return 0


def add_sessions_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sessions = sub.add_parser("sessions", help="list, export or delete the sessions kept in a store")
    actions = sessions.add_subparsers(dest="action", required=True)
    store_help = "the store: a SQLite file path, sqlite:///path.db or postgresql://… (it must exist)"
    user_help = "whose session (default: default, what OpticalMemory uses when no user is given)"

    listing = actions.add_parser("list", help="every stored session with its companions, turn and page counts")
    listing.add_argument("store", help=store_help)
    listing.add_argument("--user", default=None, help="only this user's sessions (default: every user's)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=cmd_sessions_list)

    export = actions.add_parser("export", help="a session's verbatim turns (companions too) as JSON lines")
    export.add_argument("store", help=store_help)
    export.add_argument("session", help="the session id")
    export.add_argument("--user", default="default", help=user_help)
    export.add_argument("--out", default=None, help="write to this file (default: standard output)")
    export.set_defaults(func=cmd_sessions_export)

    delete = actions.add_parser("delete", help="erase a session: turns, search index, pages, unshared images")
    delete.add_argument("store", help=store_help)
    delete.add_argument("session", help="the session id")
    delete.add_argument("--user", default="default", help=user_help)
    delete.add_argument("--yes", action="store_true", help="confirm: the session cannot be recovered afterwards")
    delete.set_defaults(func=cmd_sessions_delete)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, StoreError) as error:  # bad input, unwritable output, unusable store
        parser.exit(2, f"optical-memory {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
