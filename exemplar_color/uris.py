"""Photos named by URI (``s3://bucket/scan.tif``, ``gs://...``, ``hdfs://...``, ``file:///...``): read through
pyarrow's file systems (``pyarrow.fs``, part of the ``scale`` extra), so an archive's manifest may list its
photos where they are kept. Only reading: outputs, indexes and job records stay on a local or mounted path."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlparse

from .errors import ImageNotFoundError, NotAnImageError, UsageError

__all__ = ["SCHEMES", "is_uri", "check_uri", "read_uri", "uri_stem"]

SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")  # what pyarrow.fs.FileSystem.from_uri opens
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")  # two letters at least: C:\ is a Windows path, not a scheme


def is_uri(text: object) -> bool:
    """Whether ``text`` is a URI (``scheme://...``) rather than a local path."""
    return isinstance(text, str) and bool(_URI.match(text))


def check_uri(uri: str) -> str:
    """``uri`` if pyarrow can open its scheme and it names a file; :class:`UsageError` otherwise (before any
    work: nothing is fetched)."""
    parsed = urlparse(uri)
    if parsed.scheme.lower() not in SCHEMES:
        raise UsageError(f"{uri}: the {parsed.scheme}:// scheme is not read; use one of "
                         f"{', '.join(s + '://' for s in SCHEMES)}, or a local or mounted path")
    if not parsed.path or parsed.path.endswith("/"):
        raise UsageError(f"{uri}: names no file")
    return uri


def read_uri(uri: str) -> bytes:
    """The bytes of the file ``uri`` names (:class:`ImageNotFoundError` when it is not there)."""
    check_uri(uri)
    try:
        from pyarrow import fs
    except ImportError:
        raise UsageError(f"{uri}: reading URIs needs pyarrow (pip install 'exemplar_color[scale]')") from None
    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.NotFound:
            raise ImageNotFoundError(uri, "no such file")
        if info.type != fs.FileType.File:
            raise ImageNotFoundError(uri, "not a regular file")
        if info.size == 0:
            raise NotAnImageError(uri, "file is empty (0 bytes)")
        with filesystem.open_input_file(path) as f:
            return f.read()
    except (ImageNotFoundError, NotAnImageError):
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow's errors are many (auth, network): the file and the reason
        raise ImageNotFoundError(uri, f"cannot be read ({str(e).splitlines()[0]})") from None


def uri_stem(uri: str) -> str:
    """The file name's stem of ``uri`` (``s3://b/scans/a.tif`` -> ``a``): its output's name."""
    return PurePosixPath(urlparse(uri).path).stem
