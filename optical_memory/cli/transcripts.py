"""Reading chat transcripts from files: JSONL of ``{role, content, timestamp?}`` or OpenAI chat JSON."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optical_memory.core.types import Role
from optical_memory.core.validation import validate_text, validate_timestamp

MAX_TRANSCRIPT_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class TranscriptTurn:
    role: Role
    content: str
    timestamp: float | None = None
    name: str | None = None


def _turn(record: object, where: str) -> TranscriptTurn:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object with 'role' and 'content', got {type(record).__name__}")
    if "role" not in record or "content" not in record:
        raise ValueError(f"{where}: missing {'role' if 'role' not in record else 'content'!r}")
    try:
        role = Role.parse(record["role"])
        content = record["content"]
        if isinstance(content, list):
            content = _text_parts(content, where)
        content = validate_text(content)
        timestamp = record.get("timestamp")
        if timestamp is not None:
            timestamp = validate_timestamp(timestamp)
        name = record.get("name")
        if name is not None:
            validate_text(name, field_name="name")
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
    return TranscriptTurn(role, content, timestamp, name)


def _text_parts(parts: list[Any], where: str) -> str:
    """OpenAI content parts: text parts are joined; anything else cannot be rendered as a turn's text."""
    texts = []
    for part in parts:
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise ValueError(f"{where}: content part of type {kind!r} is not supported in transcripts (text only)")
        texts.append(part["text"])
    return "\n".join(texts)


def load_transcript(path: str | os.PathLike[str]) -> list[TranscriptTurn]:
    """Turns of a transcript file, in order. Errors name the file and line (JSONL) or message index (JSON)."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"transcript {str(file)!r} does not exist or is not a file")
    if file.stat().st_size > MAX_TRANSCRIPT_BYTES:
        raise ValueError(f"transcript {str(file)!r} is larger than {MAX_TRANSCRIPT_BYTES} bytes")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"transcript {str(file)!r} is not UTF-8 text: {error}") from None
    stripped = text.lstrip()
    if stripped.startswith("[") or stripped.startswith("{") and "\n" not in stripped.strip():
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("messages"), list):
            data = data["messages"]
        if isinstance(data, list):
            return [_turn(record, f"{file}: message {i}") for i, record in enumerate(data)]
    turns = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{file}: line {number}: malformed JSON ({error.msg})") from None
        turns.append(_turn(record, f"{file}: line {number}"))
    if not turns:
        raise ValueError(f"transcript {str(file)!r} holds no turns")
    return turns
