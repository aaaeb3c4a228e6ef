"""Archive scale on Ray: the folder run and the gallery build spread over a Ray cluster (``pip install
"exemplar_color[scale]"``); the base package and the default local engine never import Ray.

- :mod:`.options`: ``--engine``, ``--address``, ``--gpus-per-worker`` (argparse only: ``--help`` stays light).
- :mod:`.cluster`: connect to a cluster (``--address``) or start a local one; an unreachable address is one line.
- :mod:`.sources`: ``SRC`` as a folder or a manifest (CSV/Parquet of paths).
- :mod:`.worker`: the Ray Data actor that holds one :class:`~exemplar_color.Colorizer` and writes outputs.
- :mod:`.colorize`: the streaming folder run on Ray (same plan, record, refusals and report as the local run).
- :mod:`.gallery`: ``index build --engine ray``: the existing rank-sharded build, one Ray task per rank.

From Python there is one way, the command's own: :mod:`exemplar_color.cli.archive` (``colorize_archive``,
``build_archive_index``) runs ``exemplar-color colorize ... --engine ray`` and returns its report. It lives with
the command line it runs: this package sits below the CLI and never imports it.
"""

from __future__ import annotations

__all__: list[str] = []
