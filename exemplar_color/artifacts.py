"""Shared machinery for the files the library writes and checks. For now: file hashes.

:func:`file_sha256` is the one SHA-256 of a file the package uses (weight files, for recognising published
weights and for tying caches and indexes to the backbone). A weight file is large (the full VGG-19 is
548 MB), so its digest is computed once and remembered, in memory and in ``CACHE_DIR/file-hashes.json``,
keyed by the file's resolved path, size and modification time: a changed file is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

from .io import atomic_write
from .runtime import cache_dir

__all__ = ["sha256_of", "file_sha256", "HASH_CACHE_NAME"]

log = logging.getLogger(__name__)

HASH_CACHE_NAME = "file-hashes.json"
_MAX_REMEMBERED = 256
_memo: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, computed now (for files that just changed, e.g. a download)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cache_file() -> Path:
    return cache_dir() / HASH_CACHE_NAME


def _read_remembered() -> dict[str, dict]:
    try:
        data = json.loads(_cache_file().read_text())
        files = data.get("files", {}) if isinstance(data, dict) else {}
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember(path: str, size: int, mtime_ns: int, digest: str) -> None:
    """Best effort: a read-only or missing cache folder only costs hashing again next time."""
    try:
        files = _read_remembered()
        files.pop(path, None)
        files[path] = {"size": size, "mtime_ns": mtime_ns, "sha256": digest}
        files = dict(list(files.items())[-_MAX_REMEMBERED:])
        target = _cache_file()
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target) as tmp:
            Path(tmp).write_text(json.dumps({"format": "exemplar_color/file-hashes", "version": 1, "files": files},
                                            indent=1))
    except OSError as e:
        log.debug("could not remember the hash of %s: %s", path, e)


def file_sha256(path: str | os.PathLike, remember: bool = True) -> str:
    """SHA-256 of a file, computed once per (path, size, mtime) and remembered across runs."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _lock:
        if key in _memo:
            return _memo[key]
    entry = _read_remembered().get(key[0]) if remember else None
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns \
            and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64:
        digest = entry["sha256"]
    else:
        digest = sha256_of(p)
        if remember:
            _remember(key[0], st.st_size, st.st_mtime_ns, digest)
    with _lock:
        _memo[key] = digest
    return digest
