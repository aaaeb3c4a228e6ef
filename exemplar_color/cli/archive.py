"""Archive-scale runs from Python, the command's own way: the same arguments as ``exemplar-color colorize ...
--engine ray`` (and ``index build ... --engine ray``), the same checks, the report ``--json`` prints (see
:mod:`exemplar_color.scale` and docs/scale.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["build_archive_index", "colorize_archive"]


def colorize_archive(sources: str | Sequence[str], out: str, *options: str, address: str | None = None,
                     workers: int | None = None, gpus_per_worker: float = 0.0) -> dict[str, Any]:
    """``exemplar-color colorize SOURCES -o OUT --engine ray OPTIONS...``, returning its report (the ``--json``
    dict); ``options`` are the command's own flags (``"--reference", "ref.jpg"``, ``"--auto"``, ...), so the
    Python call refuses and guarantees exactly what the command does. Raises the command's errors."""
    from .colorize import execute
    from .main import build_parser

    argv = ["colorize", *([sources] if isinstance(sources, str) else sources), "-o", out, "--engine", "ray",
            *options, "--quiet", *(["--address", address] if address else []),
            *(["--workers", str(workers)] if workers else []), "--gpus-per-worker", str(gpus_per_worker)]
    return execute(build_parser("colorize").parse_args(argv))


def build_archive_index(gallery: str, index: str, *options: str, address: str | None = None,
                        workers: int | None = None, gpus_per_worker: float = 0.0):
    """``exemplar-color index build GALLERY --index INDEX --engine ray OPTIONS...``: the open
    :class:`~exemplar_color.retrieval.GalleryIndex` (with ``build_report``)."""
    from ..scale.gallery import build_on_ray
    from .main import build_parser

    argv = ["index", "build", gallery, "--index", index, "--engine", "ray", *options, "--quiet",
            *(["--address", address] if address else []), *(["--workers", str(workers)] if workers else []),
            "--gpus-per-worker", str(gpus_per_worker)]
    return build_on_ray(build_parser("index").parse_args(argv))
