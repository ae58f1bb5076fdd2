"""pages_in_common: how many leading pages two page sequences share (what kept per-page work may reuse)."""

import pytest
from conftest import make_page
from hypothesis import given, settings
from hypothesis import strategies as st

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


@settings(max_examples=300, deadline=None, derandomize=True)
@given(length=st.integers(0, 40), other=st.integers(0, 40), changed=st.sets(st.integers(0, 39), max_size=4))
def test_is_the_first_place_the_sequences_differ(length, other, changed):
    pages = [make_page(i, text="other") if i in changed else page for i, page in enumerate(PAGES[:other])]
    first = next((i for i, (a, b) in enumerate(zip(PAGES[:length], pages)) if a != b), min(length, other))
    assert pages_in_common(PAGES[:length], pages) == first
