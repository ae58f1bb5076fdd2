"""Which image-pricing rule applies to a LangChain chat model, told from the model itself."""

from __future__ import annotations

from optical_memory.core.consumers import BaseConsumer, consumer_names, get_consumer


def model_identity(model: object) -> tuple[str | None, str | None]:
    """(provider, model name) as LangChain reports them for tracing (``ls_provider``, ``ls_model_name``), falling
    back to the usual ``model_name``/``model`` attributes."""
    provider = name = None
    get_params = getattr(model, "_get_ls_params", None)
    if callable(get_params):
        try:
            params = get_params()
        except (TypeError, ValueError, AttributeError):
            params = {}
        provider, name = params.get("ls_provider"), params.get("ls_model_name")
    if not name:
        for attribute in ("model_name", "model"):
            value = getattr(model, attribute, None)
            if isinstance(value, str) and value:
                name = value
                break
    return (provider if isinstance(provider, str) else None), (name if isinstance(name, str) else None)


def detect_consumer(model: object) -> BaseConsumer:
    """The consumer for ``model``: ``ChatOpenAI(model="gpt-4o")`` → ``openai:gpt-4o``, ``ChatAnthropic`` →
    ``anthropic``, ``ChatGoogleGenerativeAI`` → ``gemini`` …; ``ValueError`` when the model does not say."""
    provider, name = model_identity(model)
    candidates = [f"{provider}:{name}" if provider and name else None, provider, name]
    for candidate in candidates:
        if not candidate:
            continue
        try:
            return get_consumer(candidate)
        except ValueError:
            continue
    raise ValueError(
        f"cannot tell which image pricing applies to {type(model).__name__} (provider {provider!r}, model {name!r});"
        f" pass consumer=, one of: {', '.join(consumer_names())}"
    )
