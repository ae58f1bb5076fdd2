"""A chat endpoint spoken to with the standard library: OpenAI chat completions or Anthropic Messages.

OpenAI-compatible servers include vLLM, which serves DeepSeek-OCR itself. Replies are cached on disk by a hash of
the request (endpoint, format and body, never the key), so an interrupted or capped calibration resumes where it
stopped and a rerun costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optical_memory.core.geometry import Tier
from optical_memory.core.retry import retry_transient
from optical_memory.messages.dialects import get_dialect

ANTHROPIC_VERSION = "2023-06-01"
# Rate limits and overloaded or restarting servers: worth waiting for; anything else is the request's fault.
_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}
_RETRY_SECONDS = 60.0


class TransientHTTPError(RuntimeError):
    """A reply worth retrying (rate limit, overload, timeout)."""


@dataclass(frozen=True)
class ChatEndpoint:
    """One chat model behind ``url``: ``api_format`` ``"openai"`` (…/chat/completions) or ``"anthropic"``
    (…/v1/messages); a base URL gets the format's path appended."""

    url: str
    model: str
    api_format: str = "openai"
    api_key: str | None = None
    max_output_tokens: int = 400
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.api_format not in ("openai", "anthropic"):
            raise ValueError(f"api_format must be 'openai' or 'anthropic', got {self.api_format!r}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http:// or https:// URL, got {self.url!r}")
        if not self.model:
            raise ValueError("model must name the model the endpoint serves")

    @property
    def request_url(self) -> str:
        base = self.url.rstrip("/")
        if self.api_format == "openai":
            return base if base.endswith("/chat/completions") else base + "/chat/completions"
        return base if base.endswith("/messages") else base + "/v1/messages"

    def body(self, png: bytes, tier: Tier, prompt: str) -> dict[str, Any]:
        """The request body: one user message with the page image and the prompt, greedy decoding."""
        dialect = get_dialect(self.api_format)
        image = dialect.page_block(png, tier)
        text = {"type": "text", "text": prompt}
        content = [text, image] if self.api_format == "openai" else [image, text]
        return {"model": self.model, "max_tokens": self.max_output_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": content}]}

    def send(self, body: dict[str, Any]) -> str:
        """POST ``body``; the reply's text. Transient failures are retried for a minute, others raise at once."""
        headers = {"Content-Type": "application/json"}
        if self.api_format == "openai" and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.api_format == "anthropic":
            headers["anthropic-version"] = ANTHROPIC_VERSION
            if self.api_key:
                headers["x-api-key"] = self.api_key
        data = json.dumps(body).encode("utf-8")

        def attempt() -> dict[str, Any]:
            request = urllib.request.Request(self.request_url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                detail = error.read().decode("utf-8", "replace")[:300]
                message = f"{self.request_url} answered HTTP {error.code}: {detail}"
                if error.code in _TRANSIENT_STATUS:
                    raise TransientHTTPError(message) from None
                raise RuntimeError(message) from None
            except (urllib.error.URLError, socket.timeout, ConnectionError) as error:
                raise TransientHTTPError(f"{self.request_url} could not be reached: {error}") from None
            except json.JSONDecodeError as error:
                raise RuntimeError(f"{self.request_url} answered with something that is not JSON: {error}") from None

        reply = retry_transient(attempt, lambda error: isinstance(error, TransientHTTPError), seconds=_RETRY_SECONDS,
                                max_delay=5.0)
        return self._text(reply)

    def _text(self, reply: Any) -> str:
        try:
            if self.api_format == "openai":
                content = reply["choices"][0]["message"]["content"]
                if isinstance(content, list):
                    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
                return str(content or "")
            return "".join(block.get("text", "") for block in reply["content"] if block.get("type") == "text")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise RuntimeError(f"{self.request_url} answered without a message: {str(reply)[:300]}") from None


class ResponseCache:
    """Replies stored as ``<dir>/<key[:2]>/<key>.json``, ``key`` = SHA-256 of endpoint, format and request body."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(endpoint: ChatEndpoint, body: dict[str, Any]) -> str:
        request = {"url": endpoint.request_url, "format": endpoint.api_format, "body": body}
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))["reply"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return None

    def put(self, key: str, reply: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump({"reply": reply}, stream)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
