"""Validation of what users pass in: every check raises ``TypeError`` for a wrong type and ``ValueError`` for a wrong
value, and names the field, so an error points at the argument or record field to mend."""

from __future__ import annotations

import math


def validate_text(value: object, *, field_name: str = "content") -> str:
    """Return ``value`` if it is a non-blank string, else raise a ``TypeError``/``ValueError`` naming the field."""
    if not isinstance(value, str):
        raise TypeError(f"{field_name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{field_name} must not be empty or whitespace only")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise ValueError(f"{field_name} contains a lone surrogate code point, which cannot be stored as UTF-8")
    return value


def validate_int(value: object, *, field_name: str, minimum: int, maximum: int | None = None) -> int:
    """An int from ``minimum`` to ``maximum`` (bools refused); errors name ``field_name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field_name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{field_name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{field_name} must be <= {maximum}, got {value}")
    return value


def validate_timestamp(value: object, *, field_name: str = "timestamp") -> float:
    """Seconds since the epoch: a finite number (bools refused), returned as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field_name} must be a finite number of seconds, got {value!r}")
    return float(value)


def validate_budget(value: object, *, field_name: str = "budget") -> int:
    """A token budget: a finite, non-negative number, returned as an int."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field_name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{field_name} must be a finite non-negative number, got {value!r}")
    return int(value)
