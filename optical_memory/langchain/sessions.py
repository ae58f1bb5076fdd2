"""Opening a conversation's memory whatever provider it was first rendered for.

A session's pages are sealed in one render style (the consumer preset of its first use). When a history or an
agent thread later serves another provider, the session keeps its style and its pages; only the pricing changes.
"""

from __future__ import annotations

from optical_memory.consumers import BaseConsumer, consumer_names, get_consumer
from optical_memory.memory import OpticalMemory, validate_options
from optical_memory.store import Scope, Store
from policies import ForgettingPolicy
from renderers import RenderStyle


def open_memory(
    store: Store,
    *,
    user: str,
    session: str,
    consumer: BaseConsumer,
    hot_turns: int,
    policy: ForgettingPolicy | None,
) -> OpticalMemory:
    """The memory of ``session``: new ones in ``consumer``'s preset style, existing ones in the preset they were
    sealed with (``ValueError`` for a custom style, which only ``OpticalMemory`` itself can reopen)."""
    validate_options(hot_turns, policy)
    preferred = RenderStyle.preset(consumer.render_preset)
    stored = store.open_session(Scope(user, session), preferred.session_key())
    style = preferred
    if stored != preferred.session_key():
        presets = sorted({get_consumer(name).render_preset for name in consumer_names()})
        matches = [candidate for candidate in map(RenderStyle.preset, presets) if candidate.session_key() == stored]
        if not matches:
            raise ValueError(
                f"session {session!r} was rendered with a custom style; open it with OpticalMemory and that style"
            )
        style = matches[0]
    return OpticalMemory(
        store, user=user, session=session, hot_turns=hot_turns, consumer=consumer, policy=policy, style=style
    )
