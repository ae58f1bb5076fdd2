"""Forgetting and budget policies: which fidelity level each page is shown at."""

from policies.age import DAY, HOUR, MONTH, WEEK, YEAR, AgeSchedule
from policies.base import ForgettingPolicy, Levels, is_monotone, view_cost
from policies.budget import TokenBudget
from policies.recall_aware import CalibratedRecall, RecallAwareBudget

__all__ = [
    "AgeSchedule",
    "CalibratedRecall",
    "DAY",
    "ForgettingPolicy",
    "HOUR",
    "Levels",
    "MONTH",
    "RecallAwareBudget",
    "TokenBudget",
    "WEEK",
    "YEAR",
    "is_monotone",
    "view_cost",
]
