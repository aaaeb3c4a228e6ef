"""``SRC`` as a manifest: a CSV or Parquet table of photo paths or URIs (a ``path`` column, else the first one),
read with pyarrow; relative paths are relative to the manifest's folder and must stay inside it (``../`` out of
it is refused, naming the row: a manifest moved between machines cannot reach elsewhere); absolute paths are
taken as written, and so are URIs of the file systems pyarrow opens (``s3://``, ``gs://``, ``hdfs://``,
``file://``; :mod:`exemplar_color.uris`), which each worker reads itself. Every worker must see the same local
paths, as it sees the same output folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from ..uris import check_uri, is_uri

__all__ = ["MANIFEST_SUFFIXES", "expand", "is_manifest", "read_paths"]

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")


def is_manifest(target: str) -> bool:
    return Path(target).suffix.lower() in MANIFEST_SUFFIXES and Path(target).is_file()


def read_paths(manifest: str) -> list[str]:
    """The photo paths a manifest lists, in its order (empty rows dropped)."""
    try:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"{manifest}: reading a manifest needs pyarrow (pip install 'exemplar_color[scale]')") from None
    try:
        table = (pq.read_table(manifest) if Path(manifest).suffix.lower() != ".csv" else pcsv.read_csv(manifest))
    except Exception as e:  # noqa: BLE001 - pyarrow's errors are many; the user needs the file and the reason
        raise UsageError(f"{manifest}: not a readable manifest ({str(e).splitlines()[0]})") from None
    if table.num_columns == 0:
        raise UsageError(f"{manifest}: no columns; give one column of photo paths named 'path'")
    column = table.column("path" if "path" in table.column_names else table.column_names[0])
    base = Path(manifest).parent
    paths = []
    for value in column.to_pylist():
        if value is None or not str(value).strip():
            continue
        text = str(value).strip()
        if is_uri(text):  # read where it is kept, through pyarrow.fs (exemplar_color.uris)
            try:
                paths.append(check_uri(text))
            except UsageError as e:
                raise UsageError(f"{manifest}: {e}") from None
            continue
        inside = Path(os.path.abspath(base / text)).is_relative_to(os.path.abspath(base))
        if not Path(text).is_absolute() and not inside:
            raise UsageError(f"{manifest}: {text}: a relative path must stay inside the manifest's folder "
                             f"({base}); write it absolute if the photo is elsewhere")
        paths.append(text if Path(text).is_absolute() else str(base / text))
    if not paths:
        raise UsageError(f"{manifest}: lists no photos")
    return paths


def expand(targets: Sequence[str]) -> list[str]:
    """``targets`` with every manifest replaced by the photos it lists (then planned as file targets)."""
    out: list[str] = []
    for t in targets:
        out.extend(read_paths(t) if is_manifest(t) else [t])
    return out
