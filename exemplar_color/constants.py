"""Constants the command line shows in ``--help``, importable without torch, numpy or Pillow.

``exemplar-color --help`` (and every subcommand's) builds its parser from these and from
:mod:`exemplar_color.backbone.spec` only, so it starts in a fraction of a second. The library modules import
the limits from here (:mod:`exemplar_color.io`, :mod:`exemplar_color.app.jobs`), and the matcher its default
``POSITION_PRIOR`` and its ``PRECISIONS`` (:mod:`exemplar_color.correspondence.matcher`): each is defined here only.
"""

from __future__ import annotations

__all__ = ["WORKING_SIZE", "MAX_PIXELS", "MAX_PIXELS_ENV", "MAX_UPLOAD_PIXELS", "POSITION_PRIOR", "PRECISIONS", "METHODS", "FLOW_METHODS",
           "DEFAULT_FLOW"]

WORKING_SIZE = 256  # short side, pixels, at which photos are matched and coloured (only ab return to full size)

MAX_PIXELS = 150_000_000  # a 12000x12500 scan; far above real photos, far below a decompression bomb
MAX_PIXELS_ENV = "EXEMPLAR_COLOR_MAX_PIXELS"
MAX_UPLOAD_PIXELS = 40_000_000  # the app's own limit, below the CLI's: any web page can make it decode

POSITION_PRIOR = 0.25  # the matcher's default: patch cosine lost per squared relative distance, coarsest level
PRECISIONS = ("auto", "float32", "mixed")  # the matcher's arithmetic (correspondence.matcher.MatcherPrecision)
METHODS = ("fast", "patchmatch")  # correspondence search

FLOW_METHODS = ("dis", "block")  # video motion between frames (video.motion)
DEFAULT_FLOW = "dis"
