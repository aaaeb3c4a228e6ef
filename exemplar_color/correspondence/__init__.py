"""Similarity sub-net: bidirectional deep patch correspondence, similarity maps and warped reference colours."""

from .matcher import DEFAULT_LEVELS, SCHEDULE, Correspondence, CorrespondenceError, LevelSchedule, Matcher

__all__ = ["DEFAULT_LEVELS", "SCHEDULE", "Correspondence", "CorrespondenceError", "LevelSchedule", "Matcher"]
