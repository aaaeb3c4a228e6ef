"""Video colorization: streaming frames through the photo pipeline with temporal consistency.

``Colorizer.colorize_video(source, reference, output)`` is the entry point; video files need PyAV
(``pip install exemplar_color[video]``), folders of frames do not.
"""

from .colorize import (
                 ColorizedFrame,
                 VideoResult,
                 colorize_video,
                 iter_colorized,
                 load_references,
)
from .io import (
                 EmptyVideoError,
                 NoVideoStreamError,
                 TruncatedVideoError,
                 VideoDependencyError,
                 VideoError,
                 open_source,
                 read_frame,
)
from .shots import ShotDetector

__all__ = [
                 "ColorizedFrame",
                 "EmptyVideoError",
                 "NoVideoStreamError",
                 "ShotDetector",
                 "TruncatedVideoError",
                 "VideoDependencyError",
                 "VideoError",
                 "VideoResult",
                 "colorize_video",
                 "iter_colorized",
                 "load_references",
                 "open_source",
                 "read_frame",
]
