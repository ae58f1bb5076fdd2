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
    """The consumer for ``model``, looked up in the model registry by the model name it reports:
    ``ChatOpenAI(model="gpt-4.1-nano")`` → the gpt-4.1-nano patch rule, ``ChatAnthropic(model="claude-opus-4-7")`` →
    Claude's high-resolution patch rule, ``ChatGoogleGenerativeAI(model="gemini-2.5-pro")`` → ``gemini`` ….

    A model that reports no name, or one the registry does not list, is a ``ValueError`` (never its provider's
    best-known model's price): pass ``consumer=``, naming a listed model or a rule.
    """
    provider, name = model_identity(model)
    if not name:
        raise ValueError(
            f"cannot tell which image pricing applies to {type(model).__name__}: it reports no model name (provider"
            f" {provider!r}); pass consumer=, one of: {', '.join(consumer_names())}"
        )
    try:
        return get_consumer(f"{provider}:{name}" if provider else name)
    except ValueError as error:
        raise ValueError(
            f"cannot tell which image pricing applies to {type(model).__name__} (provider {provider!r}, model"
            f" {name!r}); pass consumer=, e.g. consumer=get_consumer({name!r}, rule=...). {error}"
        ) from None
