"""Similarity sub-net: bidirectional deep patch correspondence, similarity maps and warped reference colours."""

from .matcher import SCHEDULE, Correspondence, CorrespondenceError, LevelSchedule, Matcher

__all__ = ["SCHEDULE", "Correspondence", "CorrespondenceError", "LevelSchedule", "Matcher"]
