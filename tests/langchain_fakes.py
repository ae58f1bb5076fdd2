"""Test doubles for the LangChain tests: a scripted chat model that records every request it receives."""

from __future__ import annotations

import base64
import io
from typing import Any, Callable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from PIL import Image, ImageDraw

Script = Callable[[list[BaseMessage], int], AIMessage]


def echo(messages: list[BaseMessage], n: int) -> AIMessage:
    return AIMessage(f"reply {n}", id=f"ai-{n}")


class ScriptedChatModel(BaseChatModel):
    """Answers with ``script(messages, call_number)``; keeps every request in ``requests``; binds tools as a no-op
    (the script decides when to call them). ``provider``/``model_name`` are what it reports to LangChain."""

    script: Script = echo
    requests: list[list[BaseMessage]] = []
    provider: str = "scripted"
    model_name: str = "scripted-1"

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.provider
        params["ls_model_name"] = self.model_name
        return params

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedChatModel":
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.requests.append(list(messages))
        reply = self.script(list(messages), len(self.requests))
        return ChatResult(generations=[ChatGeneration(message=reply)])


class ToolRecordingModel(ScriptedChatModel):
    """A scripted model that also records the tools bound to each call: ``calls`` holds (messages, tools) pairs.

    ``create_agent`` binds the tools of a call right before invoking the model, so the tools recorded with a call
    are the ones its request carried."""

    bound: list[Any] = []
    calls: list[tuple[list[BaseMessage], list[Any]]] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ToolRecordingModel":
        self.bound = list(tools)
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.calls.append((list(messages), list(self.bound)))
        return super()._generate(messages, stop, run_manager, **kwargs)


def png_b64(width: int, height: int, *, seed: int = 0) -> str:
    """A small deterministic PNG (a few shapes on white), base64-encoded."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle((seed % 7, seed % 5, width // 2, height // 3), fill=(200, 30, 30))
    draw.ellipse((width // 3, height // 3, width - 1, height - 1), outline=(0, 0, 200), width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
