"""Reading chat transcripts from files: JSONL of ``{role, content, timestamp?, name?}`` records, or an OpenAI chat
export (a JSON list of messages, or an object with a ``messages`` list).

Every record is read as an OpenAI chat-completions message, by the same dialect as ``compress_messages``: content
may be a string, a list of parts (text, inline images) or ``null`` for an assistant message that only calls tools;
``tool_calls`` and ``tool_call_id`` keep a call with its results; system and developer messages are instructions,
which the commands send first and never draw on a page. ``timestamp`` is seconds since the epoch or an ISO-8601 date
(one without a UTC offset is read as UTC). Keys other than the message's own (``role``, ``content``, ``name``,
``tool_calls``, ``tool_call_id``, ``refusal``) and ``timestamp`` are export metadata and are not kept.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from optical_memory.core.types import Role
from optical_memory.core.validation import validate_text, validate_timestamp
from optical_memory.messages.dialects import OpenAIDialect

MAX_TRANSCRIPT_BYTES = 512 * 1024 * 1024
MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id", "refusal")
_OPENAI = OpenAIDialect()


@dataclass(frozen=True)
class TranscriptTurn:
    """One message of a transcript: ``content`` is what a page shows, ``metadata`` what the memory keeps of the
    message (the message verbatim, its tool plumbing)."""

    role: Role
    content: str
    timestamp: float | None = None
    name: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def parse_time(value: object, *, field_name: str = "timestamp") -> float:
    """Seconds since the epoch from a number or an ISO-8601 date (``2023-05-01T12:00:00Z``; no offset: UTC)."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{field_name} must be seconds since the epoch or an ISO-8601 date like 2023-05-01T12:00:00Z,"
                f" got {value!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    return validate_timestamp(value, field_name=field_name)


def _turn(record: object, where: str) -> TranscriptTurn:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object with 'role' and 'content', got {type(record).__name__}")
    if "role" not in record:
        raise ValueError(f"{where}: missing 'role'")
    try:
        role = Role.parse(record["role"])
        calls_tools = role is Role.ASSISTANT and bool(record.get("tool_calls"))
        if "content" not in record and not calls_tools:
            raise ValueError("missing 'content'")
        content = record.get("content")
        if content is None and not (role is Role.ASSISTANT and (calls_tools or record.get("refusal"))):
            raise ValueError("content may be null only in an assistant message that calls tools or refuses")
        if isinstance(content, str) and not (calls_tools and not content.strip()):
            validate_text(content)
        timestamp = record.get("timestamp")
        if timestamp is not None:
            timestamp = parse_time(timestamp)
        message = {key: record[key] for key in MESSAGE_KEYS if key in record}
        message["role"] = role.value  # as OpenAI spells it ("human" -> "user"), so it is sent back as a valid message
        draft = _OPENAI.to_turn(message, where="message")
        validate_text(draft.content)  # what the page shows: text parts included
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
    return TranscriptTurn(draft.role, draft.content, timestamp, draft.name, draft.metadata)


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
