"""pages_in_common: how many leading pages two page sequences share (what kept per-page work may reuse)."""

import pytest
from conftest import make_page

from optical_memory.core.types import pages_in_common

PAGES = [make_page(i, text=f"page {i} " * 20) for i in range(40)]


@pytest.mark.parametrize(
    ("known", "pages", "shared"),
    [
        (PAGES, PAGES, 40),
        (PAGES[:25], PAGES, 25),  # the session grew
        (PAGES, PAGES[:25], 25),  # a shorter sequence of the same pages
        ([], PAGES, 0),
        (PAGES, [*PAGES[:39], make_page(39, text="laid out anew")], 39),  # the open page changed
        (PAGES, [*PAGES[:3], make_page(3, text="other"), *PAGES[4:]], 3),  # one in the middle differs
        (PAGES, [make_page(0, text="other"), *PAGES[1:]], 0),
        (PAGES, [make_page(i, text=f"page {i} " * 20) for i in range(40)], 40),  # equal pages, loaded again
        (tuple(PAGES[:10]), PAGES, 10),
    ],
)
def test_counts_the_leading_pages_both_hold(known, pages, shared):
    assert pages_in_common(known, pages) == shared
