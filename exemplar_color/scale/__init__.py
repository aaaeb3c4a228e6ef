"""Archive scale on Ray: the folder run and the gallery build spread over a Ray cluster (``pip install
"exemplar_color[scale]"``); the base package and the default local engine never import Ray.

- :mod:`.options`: ``--engine``, ``--address``, ``--gpus-per-worker`` (argparse only: ``--help`` stays light).
- :mod:`.cluster`: connect to a cluster (``--address``) or start a local one; an unreachable address is one line.
- :mod:`.sources`: ``SRC`` as a folder or a manifest (CSV/Parquet of paths).
- :mod:`.worker`: the Ray Data actor that holds one :class:`~exemplar_color.Colorizer` and writes outputs.
- :mod:`.colorize`: the streaming folder run on Ray (same plan, record, refusals and report as the local run).
- :mod:`.gallery`: ``index build --engine ray``: the existing rank-sharded build, one Ray task per rank.

From Python there is one way, the command's own: :func:`colorize_archive` builds the same arguments as
``exemplar-color colorize ... --engine ray`` and returns its report; :func:`build_archive_index` likewise.
(Not ``colorize``: that is the name of the :mod:`.colorize` module.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["build_archive_index", "colorize_archive"]


def colorize_archive(sources: str | Sequence[str], out: str, *options: str, address: str | None = None,
             workers: int | None = None, gpus_per_worker: float = 0.0) -> dict[str, Any]:
    """``exemplar-color colorize SOURCES -o OUT --engine ray OPTIONS...``, returning its report (the ``--json``
    dict); ``options`` are the command's own flags (``"--reference", "ref.jpg"``, ``"--auto"``, ...), so the
    Python call refuses and guarantees exactly what the command does. Raises the command's errors."""
    from ..cli.colorize import execute
    from ..cli.main import build_parser

    argv = ["colorize", *([sources] if isinstance(sources, str) else sources), "-o", out, "--engine", "ray",
            *options, "--quiet", *(["--address", address] if address else []),
            *(["--workers", str(workers)] if workers else []), "--gpus-per-worker", str(gpus_per_worker)]
    return execute(build_parser("colorize").parse_args(argv))


def build_archive_index(gallery: str, index: str, *options: str, address: str | None = None, workers: int | None = None,
                gpus_per_worker: float = 0.0):
    """``exemplar-color index build GALLERY --index INDEX --engine ray OPTIONS...``: the open
    :class:`~exemplar_color.retrieval.GalleryIndex` (with ``build_report``)."""
    from ..cli.main import build_parser
    from .gallery import build_on_ray

    argv = ["index", "build", gallery, "--index", index, "--engine", "ray", *options, "--quiet",
            *(["--address", address] if address else []), *(["--workers", str(workers)] if workers else []),
            "--gpus-per-worker", str(gpus_per_worker)]
    return build_on_ray(build_parser("index").parse_args(argv))
