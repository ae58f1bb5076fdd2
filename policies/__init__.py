"""Forgetting and budget policies: which fidelity level each page is shown at."""

from policies.age import DAY, HOUR, MONTH, WEEK, YEAR, AgeSchedule
from policies.base import ForgettingPolicy, Levels, is_monotone, view_cost
from policies.budget import TokenBudget

__all__ = [
    "AgeSchedule",
    "DAY",
    "ForgettingPolicy",
    "HOUR",
    "Levels",
    "MONTH",
    "TokenBudget",
    "WEEK",
    "YEAR",
    "is_monotone",
    "view_cost",
]
