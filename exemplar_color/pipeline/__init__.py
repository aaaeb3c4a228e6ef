"""The public API: :class:`Colorizer` turns black-and-white photos into colour ones.

    >>> from exemplar_color import Colorizer                      # doctest: +SKIP
    >>> c = Colorizer()                                           # doctest: +SKIP
    >>> c.colorize("old.jpg", "colour.jpg").image.save("out.png")  # doctest: +SKIP

Flow (:mod:`.stages`, composed once by :meth:`Colorizer.colorize_batch`): target L and reference Lab at the
working size -> correspondence (similarity sub-net) -> a head (trained colorization sub-net, or the analogy
head without one) -> predicted ab brought to full size along the full-resolution L (guided upsampling) ->
recombined with the target's original L, unchanged. Several references: :mod:`.multireference`.
"""

from ..recommendations import AUTO_CANDIDATES
from ..result import ColorizationResult
from .colorizer import Colorizer
from .multireference import FUSE_MODES, match_references
from .stages import (Matched, MatchView, Prepared, alone_view, assemble, full_fields, match,
                     read_references, read_target, render, run_head, stage_timings, synchronizer, views_of,
                     working_l, working_lab)

__all__ = ["Colorizer", "ColorizationResult", "AUTO_CANDIDATES", "FUSE_MODES", "match_references", "Matched", "MatchView", "Prepared", "alone_view", "assemble", "full_fields", "match",
           "read_references", "read_target", "render", "run_head", "stage_timings", "synchronizer", "views_of", "working_l",
           "working_lab"]
