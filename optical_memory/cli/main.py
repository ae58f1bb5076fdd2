"""The ``optical-memory`` command: ``demo``, ``render``, ``context``, ``sessions`` and ``calibrate``.

Transcripts follow the rules of ``compress_messages``: system prompts are sent first and never drawn on a page, and
a tool call stays with its results. Ages are measured from ``--now``, by default the transcript's last turn, so an
old transcript is not forgotten merely because it is old.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from datetime import datetime, timezone
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw
from tqdm import tqdm

from optical_memory.calibration import CalibrationSettings, run_calibration
from optical_memory.cli.transcripts import TranscriptTurn, load_transcript, parse_time
from optical_memory.context import Context
from optical_memory.core.consumers import consumer_names, get_consumer
from optical_memory.core.imaging import fit_to_tier
from optical_memory.core.types import Role, TokenReport
from optical_memory.memory import OpticalMemory, delete_session, export_session, list_sessions
from optical_memory.messages.dialects import OpenAIDialect
from optical_memory.policies import AgeSchedule, ForgettingPolicy, RecallAwareBudget, TokenBudget
from optical_memory.prompt import build_messages
from optical_memory.store.backends import POSTGRES_SCHEMES, SQLITE_PREFIX, open_store
from optical_memory.store.base import Store, StoreError

SAMPLE = "sample_conversation.jsonl"


def sample_transcript() -> Path:
    """The bundled sample conversation (real human chats from chitchat-dataset, MIT; see data/*.source.json)."""
    return Path(str(resources.files("optical_memory") / "data" / SAMPLE))


POLICIES = {
    "age": AgeSchedule,
    "budget": TokenBudget,
    "recall-aware": lambda: RecallAwareBudget(unbudgeted=AgeSchedule()),  # the library's default
}
LAST_TURN = "last-turn"


def fill_memory(
    memory: OpticalMemory, turns: Sequence[TranscriptTurn], *, progress: bool = True
) -> list[dict[str, Any]]:
    """Add the transcript's turns to ``memory`` and return its system messages, which are never drawn on a page."""
    system = []
    for turn in tqdm(turns, desc="adding turns", unit="turn", disable=not progress):
        if turn.role is Role.SYSTEM:
            system.append(turn.metadata["message"])
        else:
            memory.add(turn.role, turn.content, timestamp=turn.timestamp, name=turn.name, metadata=turn.metadata)
    return system


def resolve_now(value: str, memory: OpticalMemory) -> float:
    """``--now``: an ISO-8601 date, or ``last-turn`` (the newest turn's timestamp; the clock for an empty memory)."""
    if value == LAST_TURN:
        return max((turn.timestamp for turn in memory.turns), default=memory.clock())
    return parse_time(value, field_name="--now")


def page_table(ctx: Context) -> str:
    """A fixed-width table: one row per page with its tier, tokens, compression and why it has its level (the open
    page, not stored until it is full, is marked "open")."""
    header = (
        f"{'page':>5} {'turns':>9} {'tier':>9} {'text tok':>9} {'sent tok':>9} {'compress':>9}  {'sent as':<21} why"
    )
    rows = [header, "-" * len(header)]
    for view in ctx.pages:
        turns = view.page.turn_indices
        span = f"{turns[0]}-{turns[-1]}"
        tier = view.tier.name if view.tier is not None else "-"
        if view.forgotten:
            sent = "forgotten"
        elif view.as_text:
            # Missing glyphs and a too-costly image are fail-closed; below min_recall is the reading gate.
            sent = "text (missing glyphs)" if view.page.missing_glyphs else (
                "text (reading gate)" if view.reason.startswith("below min_recall") else "text (fail-closed)")
        else:
            sent = "image"
        ratio = f"{view.text_tokens / view.tokens:.1f}x" if view.tokens and not view.as_text else "-"
        why = view.reason.partition(":")[0] + ("" if view.sealed else " (open page)")
        rows.append(
            f"{view.page.index:>5} {span:>9} {tier:>9} {view.text_tokens:>9} {view.tokens:>9} {ratio:>9}"
            f"  {sent:<21} {why}"
        )
    return "\n".join(rows)


def report_lines(report: TokenReport) -> str:
    positions = f" ({report.decoder_positions} decoder positions)" if report.decoder_positions is not None else ""
    return "\n".join(
        [
            f"consumer {report.consumer}; text tokens counted with {report.tokenizer}; budget {report.budget}",
            f"recent turns as text: {report.hot_text_tokens} tokens",
            f"pages: {report.pages_total} total, {report.pages_as_images} as images, {report.pages_as_text} as text"
            f" (fail-closed or below min_recall), {report.pages_dropped} forgotten ({report.dropped_text_tokens} text"
            " tokens)",
            "expected recall: " + ("unknown (no reading model for some page sent as an image)"
                                   if report.expected_recall is None else
                                   f"{report.expected_recall:.1%} of the session's text (pages as images only where"
                                   f" >= {report.min_recall:.0%} is expected back)"),
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
        now = resolve_now(LAST_TURN, memory)
        ctx = memory.context(budget=args.budget, now=now)
        print(f"\n{len(turns)} turns -> {len(memory.pages)} sealed pages in {db}\n")
        print(page_table(ctx))
        print()
        print(report_lines(ctx.report))
        print("\nsame memory, priced for each consumer (no budget):")
        width = max(map(len, consumer_names()))
        print(f"{'consumer':>{width}} {'pages as img':>13} {'image tok':>10} {'text tok':>9} {'compress':>9}")
        for name in consumer_names():
            report = memory.context(consumer=name, now=now).report
            print(f"{name:>{width}} {report.pages_as_images:>13} {report.image_tokens:>10} {report.paged_text_tokens:>9}"
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
    policy: ForgettingPolicy = POLICIES[args.policy]()
    with OpticalMemory.open(":memory:", hot_turns=args.hot_turns, consumer=args.consumer, policy=policy) as memory:
        system = fill_memory(memory, turns, progress=not args.json)
        now = resolve_now(args.now, memory)
        # The context is what the OpenAI messages carry, fitted with the system prompt and framing counted.
        sent = build_messages(memory, OpenAIDialect(), system=system, budget=args.budget, now=now)
        ctx = sent.context
        if args.json:
            json.dump({
                "report": sent.report.as_dict(),
                "sent_tokens": sent.total_tokens,
                "now": now,
                "policy": args.policy,
                "pages": [
                    {"page": v.page.index, "tier": v.tier.name if v.tier else None, "tokens": v.tokens,
                     "text_tokens": v.text_tokens, "as_text": v.as_text, "reason": v.reason, "sealed": v.sealed}
                    for v in ctx.pages
                ],
                "recent_turns": len(ctx.recent),
            }, sys.stdout, indent=2)
            print()
        else:
            print(page_table(ctx))
            print()
            print(report_lines(sent.report))
            moment = datetime.fromtimestamp(now, timezone.utc).isoformat()
            print(f"sent as OpenAI messages: {sent.total_tokens} tokens (system prompt, preamble and framing included)")
            print(f"policy {args.policy}; page ages measured at {moment} ({args.now})")
        if args.openai:
            Path(args.openai).write_text(json.dumps(sent.messages, indent=1))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    consumer = get_consumer(args.consumer)
    model = args.model or consumer.name.partition(":")[2] or consumer.name
    safe = "".join(ch if ch.isalnum() or ch in "-._" else "-" for ch in f"{consumer.name}_{model}")
    settings = CalibrationSettings(
        consumer=consumer.name,
        endpoint=args.endpoint,
        out=Path(args.out) if args.out else Path(f"calibration_{safe}.json"),
        cache_dir=Path(args.cache) if args.cache else Path(os.environ.get("OPTICAL_MEMORY_CACHE", ".cache")) / "calibrate",
        model=model,
        api_format=args.format,
        api_key_env=args.api_key_env,
        tiers=tuple(args.tiers.split(",")) if args.tiers else (),
        densities=_ints(args.densities, "--densities"),
        pages=args.pages,
        seed=args.seed,
        max_requests=args.max_requests,
        max_output_tokens=args.max_output_tokens,
        timeout=args.timeout,
        command=" ".join(["optical-memory calibrate", *args.argv]),
    )
    result = run_calibration(settings, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    print(f"{result.sent} requests sent, {result.cached} from the cache; {'complete' if result.complete else 'partial'}"
          f" calibration written to {result.path}")
    print(f"{'tier':>10} {'font px':>8} {'compress':>9} {'facts':>6} {'recall':>7}  95% interval")
    for point in result.points:
        print(f"{point['tier']:>10} {point['density_font_px']:>8} {point['compression']:>8.2f}x {point['facts']:>6}"
              f" {point['recall']:>7.1%}  [{point['ci_low']:.1%}, {point['ci_high']:.1%}]")
    return 0


def _ints(text: str | None, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",")) if text else ()
    except ValueError:
        raise ValueError(f"{option} must be comma-separated whole numbers, got {text!r}") from None


def add_calibrate_parser(sub: argparse._SubParsersAction) -> None:
    calibrate = sub.add_parser(
        "calibrate",
        help="measure a model's reading capacity: planted-fact pages at each tier and density, via its chat API",
    )
    calibrate.add_argument("--consumer", required=True, help="whose tiers and pricing: openai:gpt-4o, anthropic, …")
    calibrate.add_argument("--endpoint", required=True,
                           help="base URL of an OpenAI-compatible server (e.g. http://localhost:8000/v1) or Anthropic's")
    calibrate.add_argument("--format", default="openai", choices=["openai", "anthropic"], help="the endpoint's API")
    calibrate.add_argument("--model", help="model name the endpoint serves (default: the consumer name's model part)")
    calibrate.add_argument("--api-key-env", help="environment variable holding the API key (default OPENAI_API_KEY or"
                                                 " ANTHROPIC_API_KEY; unset: no key is sent)")
    calibrate.add_argument("--tiers", help="tiers to measure, comma-separated (default: the whole ladder)")
    calibrate.add_argument("--densities", help="body font px, comma-separated (default: the preset and two denser)")
    calibrate.add_argument("--pages", type=int, default=3, help="pages per density (default 3)")
    calibrate.add_argument("--seed", type=int, default=0, help="seed of the pages and facts (default: %(default)s)")
    calibrate.add_argument("--max-requests", type=int, help="send at most this many requests in this run")
    calibrate.add_argument("--max-output-tokens", type=int, default=400,
                           help="reply length cap per request (default: %(default)s)")
    calibrate.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    calibrate.add_argument("--cache", help="reply cache folder (default $OPTICAL_MEMORY_CACHE/calibrate or"
                                           " .cache/calibrate)")
    calibrate.add_argument("--out", help="calibration file to write (default calibration_<consumer>_<model>.json)")
    calibrate.add_argument("--dry-run", action="store_true", help="print the cost estimate and stop")
    calibrate.set_defaults(func=cmd_calibrate)


def _version() -> str:
    try:
        return metadata.version("optical-memory")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


_LOG_HANDLER = logging.StreamHandler()
_LOG_HANDLER.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))


def _configure_logging(level: str) -> None:
    """Show the library's own log (seal, render and store events) on stderr at ``level``; silent by default."""
    _LOG_HANDLER.setStream(sys.stderr)
    logger = logging.getLogger("optical_memory")
    if _LOG_HANDLER not in logger.handlers:
        logger.addHandler(_LOG_HANDLER)
    logger.setLevel(level.upper())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optical-memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the installed version and exit")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        help="log seal, render and store events to stderr at this level (default: no log output)")
    sub = parser.add_subparsers(dest="command", required=True, help="what to do (each takes --help)")
    transcript_help = "JSONL of {role, content, timestamp?, name?} records, or an OpenAI chat export (JSON)"
    consumer_help = "who reads the pages, pricing them by its own rule (default: %(default)s)"

    demo = sub.add_parser("demo", help="the bundled 444-turn conversation -> pages that shrink with age")
    demo.add_argument("--out", default="demo-output", help="output folder (default: %(default)s)")
    demo.add_argument("--consumer", default="deepseek-ocr", choices=consumer_names(), help=consumer_help)
    demo.add_argument("--budget", type=float, default=3000, help="token budget for the context (default: %(default)g)")
    demo.add_argument("--hot-turns", type=int, default=8, help="recent turns kept as text (default: %(default)s)")
    demo.add_argument("--transcript", help=f"use this transcript instead of the bundled sample: {transcript_help}")
    demo.set_defaults(func=cmd_demo)

    render = sub.add_parser("render", help="render a transcript to page PNGs (system prompts are not drawn)")
    render.add_argument("transcript", help=transcript_help)
    render.add_argument("--out", required=True, help="output folder; the pages go to OUT/pages")
    render.add_argument("--consumer", default="deepseek-ocr", choices=consumer_names(),
                        help="whose render style and tiers to use (default: %(default)s)")
    render.add_argument("--all-tiers", action="store_true", help="also write each page at every tier of the consumer")
    render.set_defaults(func=cmd_render)

    context = sub.add_parser("context", help="the optical context of a transcript under a budget")
    context.add_argument("transcript", help=transcript_help)
    context.add_argument("--budget", type=float,
                         help="tokens for everything sent: system prompt, pages, recent turns, framing"
                              " (default: no limit, only the age schedule)")
    context.add_argument("--consumer", default="deepseek-ocr", choices=consumer_names(), help=consumer_help)
    context.add_argument("--hot-turns", type=int, default=8, help="recent turns kept as text (default: %(default)s)")
    context.add_argument("--policy", choices=sorted(POLICIES), default="budget",
                         help="age: the age schedule alone; budget: blur the oldest pages first until the budget"
                              " fits; recall-aware: keep the most expected recall within the budget, the age"
                              " schedule without one (the library's default) (default: %(default)s)")
    context.add_argument("--now", default=LAST_TURN,
                         help="the moment page ages are measured from: an ISO-8601 date (2023-05-01T12:00:00Z) or"
                              " 'last-turn', the transcript's newest timestamp (default: %(default)s)")
    context.add_argument("--json", action="store_true",
                         help="print JSON (report, pages with their reasons) instead of a table")
    context.add_argument("--openai", help="also write the messages sent, as OpenAI chat messages, to this file")
    context.set_defaults(func=cmd_context)
    add_sessions_parser(sub)
    add_calibrate_parser(sub)
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
    actions = sessions.add_subparsers(dest="action", required=True, help="what to do with the sessions")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv[argv.index(args.command) + 1:]  # what follows the command, for the calibration's provenance
    if args.log_level:
        _configure_logging(args.log_level)
    try:
        return args.func(args)
    # Bad input, unwritable output, an unusable store, an endpoint that refuses the request.
    except (ValueError, TypeError, OSError, StoreError, RuntimeError) as error:
        parser.exit(2, f"optical-memory {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
