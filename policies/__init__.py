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
from optical_memory.policies.recall_aware import CalibratedRecall, RecallAwareBudget

__all__ = [
    "AgeSchedule",
    "CalibratedRecall",
    "DAY",
    "ForgettingPolicy",
    "HOUR",
    "Levels",
    "MONTH",
    "QueryCue",
    "RecallAwareBudget",
    "TokenBudget",
    "WEEK",
    "YEAR",
    "is_monotone",
    "view_cost",
]
