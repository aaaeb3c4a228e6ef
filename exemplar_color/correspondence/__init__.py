"""Similarity sub-net: bidirectional deep patch correspondence, similarity maps and warped reference colours."""

from ..vgg_spec import DEFAULT_LEVELS
from .matcher import SCHEDULE, Correspondence, CorrespondenceError, LevelSchedule, Matcher

__all__ = ["DEFAULT_LEVELS", "SCHEDULE", "Correspondence", "CorrespondenceError", "LevelSchedule", "Matcher"]
