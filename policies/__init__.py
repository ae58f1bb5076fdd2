"""Forgetting and budget policies: which fidelity level each page is shown at."""

from optical_memory.policies.age import DAY, HOUR, MONTH, WEEK, YEAR, AgeSchedule
from optical_memory.policies.base import (
    ForgettingPolicy,
    Levels,
    is_monotone,
    view_cost,
)
from optical_memory.policies.budget import TokenBudget
from optical_memory.policies.cue import QueryCue
from optical_memory.policies.legibility import CalibratedRecall
from optical_memory.policies.reading import (
    DEFAULT_MIN_RECALL,
    Reading,
    ReadingGate,
    ReadingModel,
    load_reading_model,
    reading_model,
)
from optical_memory.policies.recall_aware import RecallAwareBudget

__all__ = [
    "AgeSchedule",
    "CalibratedRecall",
    "DAY",
    "DEFAULT_MIN_RECALL",
    "ForgettingPolicy",
    "HOUR",
    "Levels",
    "MONTH",
    "QueryCue",
    "Reading",
    "ReadingGate",
    "ReadingModel",
    "RecallAwareBudget",
    "TokenBudget",
    "WEEK",
    "YEAR",
    "is_monotone",
    "load_reading_model",
    "reading_model",
    "view_cost",
]
