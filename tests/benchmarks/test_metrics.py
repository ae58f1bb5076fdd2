"""Text-recovery metrics against hand-computed expectations."""

from __future__ import annotations

import pytest

from benchmarks.metrics import (
    char_accuracy,
    char_precision,
    char_recall,
    fact_recall,
    facts_found,
    matched_chars,
    normalise,
    score,
    word_recall,
)


def test_normalise_collapses_whitespace_and_folds_full_width_forms() -> None:
    assert normalise("  the\tcat \n\n sat  ") == "the cat sat"
    assert normalise("Ａ：１") == "A:1"


def test_one_substitution_in_three_chars() -> None:
    # Levenshtein("abc", "abd") = 1 over max length 3; the LCS "ab" matches 2 of 3 on either side.
    assert char_accuracy("abc", "abd") == pytest.approx(2 / 3)
    assert matched_chars("abc", "abd") == 2
    assert char_precision("abc", "abd") == pytest.approx(2 / 3)
    assert char_recall("abc", "abd") == pytest.approx(2 / 3)


def test_omission_keeps_precision_and_lowers_recall() -> None:
    # The reader returned half the source: nothing it said is wrong.
    assert char_accuracy("ab", "abcd") == pytest.approx(0.5)
    assert char_precision("ab", "abcd") == 1.0
    assert char_recall("ab", "abcd") == 0.5


def test_insertion_lowers_precision_and_keeps_recall() -> None:
    assert char_accuracy("xabcd", "abcd") == pytest.approx(0.8)
    assert char_precision("xabcd", "abcd") == pytest.approx(0.8)
    assert char_recall("xabcd", "abcd") == 1.0


def test_line_breaks_do_not_count() -> None:
    assert char_accuracy("the quick\nbrown fox", "the quick brown fox") == 1.0


def test_empty_readings() -> None:
    assert char_precision("", "abc") == 0.0
    assert char_recall("", "abc") == 0.0
    assert char_precision("", "") == 1.0
    assert char_recall("abc", "") == 1.0
    assert char_accuracy("", "") == 1.0


def test_word_recall_counts_a_multiset() -> None:
    # Source words: the×2, cat, dog; the reading has one "the", so 3 of 4 are recalled.
    assert word_recall("the dog, cat", "the cat the dog") == pytest.approx(3 / 4)
    assert word_recall("The cat", "the cat") == pytest.approx(1 / 2)


def test_facts_found_across_a_line_break() -> None:
    decoded = "my dentist is Dr. Amelia\nOkafor and the code is RHDM-1092"
    assert facts_found(decoded, ["Amelia Okafor", "RHDM-1092", "RHDM-1093"]) == [True, True, False]
    assert fact_recall(decoded, ["Amelia Okafor", "RHDM-1093"]) == 0.5
    assert fact_recall(decoded, []) is None


def test_score_bundles_every_metric() -> None:
    result = score("ab  c", "abcd", facts=["ab"])
    assert result.char_accuracy == pytest.approx(1 - 2 / 4)  # "ab c" vs "abcd": one substitution, one insertion
    assert result.char_precision == pytest.approx(3 / 4)  # LCS "abc" of the 4 decoded chars "ab c"
    assert result.char_recall == pytest.approx(3 / 4)
    assert result.fact_recall == 1.0
    assert (result.decoded_chars, result.source_chars) == (4, 4)
    assert set(result.as_dict()) >= {"char_accuracy", "char_precision", "char_recall", "word_recall", "fact_recall"}


def test_bad_input_names_the_field() -> None:
    with pytest.raises(TypeError, match="decoded"):
        char_accuracy(None, "abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="source"):
        char_recall("abc", b"abc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"facts\[1\]"):
        facts_found("abc", ["a", "  "])
    with pytest.raises(TypeError, match=r"facts\[0\]"):
        facts_found("abc", [3])  # type: ignore[list-item]
