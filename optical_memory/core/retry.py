"""One back-off for every retry: writers that lose a lock or an optimistic commit wait a jittered, growing pause."""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def retry_transient(
    attempt: Callable[[], T],
    is_transient: Callable[[Exception], bool],
    *,
    seconds: float,
    max_delay: float = 0.25,
    before_retry: Callable[[], None] | None = None,
) -> T:
    """Run ``attempt`` until it stops failing with a transient error, backing off up to ``seconds`` in total.

    Pauses start at 2 ms, double up to ``max_delay`` and are jittered so that writers do not retry in step;
    ``before_retry`` runs after each pause (e.g. to reload what another writer changed). The last transient error
    is raised once the time is spent; any other error at once.
    """
    deadline = time.monotonic() + seconds
    delay = 0.002
    while True:
        try:
            return attempt()
        except Exception as error:
            if not is_transient(error) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, max_delay)
        if before_retry is not None:
            before_retry()
