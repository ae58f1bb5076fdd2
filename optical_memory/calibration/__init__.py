"""Measuring a consumer's reading capacity: planted-fact pages sent to a chat endpoint at each tier and density.

``optical-memory calibrate`` is the command; ``run_calibration`` does the work and writes the calibration file that
``optical_memory.policies.load_reading_model`` turns into a reading model. An adapter: it renders pages, talks HTTP
(standard library only) and writes files; nothing below it imports it.
"""

from optical_memory.calibration.client import ChatEndpoint, ResponseCache
from optical_memory.calibration.pages import CalibrationPage, Fact, planted_pages
from optical_memory.calibration.run import CalibrationResult, CalibrationSettings, run_calibration

__all__ = [
    "CalibrationPage",
    "CalibrationResult",
    "CalibrationSettings",
    "ChatEndpoint",
    "Fact",
    "ResponseCache",
    "planted_pages",
    "run_calibration",
]
