"""Shared machinery for the files the library writes and checks: written once, used by the gallery index
(:mod:`.retrieval.build`), the pair cache (:mod:`.training.cache`) and checkpoints.

- Manifests: JSON files with a format name and version, written atomically (:func:`write_manifest`: the
  rename is the commit point) and read back with one typed error per problem (:func:`read_manifest`);
  :func:`content_digest` ties parts to the plan they belong to.
- Configurations: :func:`config_differences` names every setting that differs, :func:`refuse_differences`
  raises one error that names them all.
- Resumable, rank-sharded builds: a :class:`ShardPlan` cuts ``count`` items into parts written whole; a
  killed build resumes at the first missing part, and under ``torchrun`` rank ``r`` of ``w`` builds the parts
  ``i % w == r`` (the ranks coordinate through the file system only). :class:`BuildReport` says what a
  build did.
- File hashes: :func:`file_sha256` is the one SHA-256 of a file the package uses (weight files, for
  recognising published weights and for tying caches and indexes to the backbone). A weight file is large
  (the full VGG-19 is 548 MB), so its digest is computed once and remembered, in memory and in
  ``CACHE_DIR/file-hashes.json``, keyed by the file's resolved path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ConfigMismatchError, ExemplarColorError
from .io import atomic_write, temp_leftovers
from .runtime import cache_dir

__all__ = ["content_digest", "write_manifest", "read_manifest", "config_differences", "refuse_differences", "known_fields",
           "ShardPlan", "BuildReport", "sha256_of", "file_sha256", "HASH_CACHE_NAME"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- manifests


def content_digest(obj: Any) -> str:
    """SHA-256 of a JSON-able object, independent of key order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def write_manifest(path: str | os.PathLike, obj: Mapping[str, Any]) -> None:
    """Write a JSON manifest atomically: readers see the old file or the new one, never half of one."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def read_manifest(path: str | os.PathLike, *, format: str, version: int, error: type[Exception],
                  version_key: str = "version", what: str = "manifest") -> dict[str, Any]:
    """A manifest of ``format`` no newer than ``version``; anything else raises ``error`` naming the file.

    A missing file is the caller's to explain (it knows what to build); this raises ``FileNotFoundError``.
    """
    p = Path(path)
    try:
        m = json.loads(p.read_text())
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as e:
        raise error(f"{p}: unreadable {what} ({e})") from None
    if not isinstance(m, dict) or m.get("format") != format:
        got = m.get("format") if isinstance(m, dict) else None
        raise error(f"{p}: not a {format} {what} (format {got!r})")
    have = m.get(version_key, 0)
    if not isinstance(have, (int, str)) or not str(have).isdigit() or int(have) > version:
        raise error(f"{p}: {format} v{have} is newer than this exemplar_color reads (v{version}); "
                    f"upgrade exemplar_color")
    return m


# ----------------------------------------------------------------------------- configurations


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def known_fields(record: type, d: Mapping[str, Any], what: str, derived: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of the dataclass ``record`` found in ``d``: the one policy of every config record's
    ``from_dict``. A key that is neither a field nor one of ``derived`` (figures written for readers and
    computed again on load) is refused with a ValueError naming it: a record written by another version is
    not read as something it is not. Missing fields take their defaults (records written before they existed)."""
    names = [f.name for f in fields(record)]
    unknown = sorted(set(d) - set(names) - set(derived))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; this version knows {names}")
    return {k: d[k] for k in names if k in d}


def config_differences(have: Mapping[str, Any], want: Mapping[str, Any], *, have_name: str = "has",
                       want_name: str = "requested") -> list[str]:
    """``key: has X, requested Y`` for every key of ``want`` (``None`` meaning "any") that differs from
    ``have``; tuples and lists compare alike (a configuration read back from JSON has lists)."""
    return [f"{k}: {have_name} {_plain(have.get(k))!r}, {want_name} {_plain(v)!r}" for k, v in want.items()
            if v is not None and _plain(have.get(k)) != _plain(v)]


def refuse_differences(where: str, have: Mapping[str, Any], want: Mapping[str, Any], *, built: str, fix: str,
                       error: type[ConfigMismatchError] = ConfigMismatchError, have_name: str = "has",
                       want_name: str = "requested") -> None:
    """Raise ``error`` ("``where``: ``built`` (every difference); ``fix``") when any setting differs."""
    diff = config_differences(have, want, have_name=have_name, want_name=want_name)
    if diff:
        raise error(f"{where}: {built} ({'; '.join(diff)}); {fix}")


# ----------------------------------------------------------------------------- sharded builds


@dataclass
class ShardPlan:
    """``count`` items cut into parts of ``part_size``, part ``i`` written whole to ``folder/pattern.format(i)``.

    A part is done when its HDF5 file opens and carries :meth:`stamp` among its attributes (``plan``:
    what ties it to the plan, e.g. its digest, and ``{part_key: i}``), so a part of another plan or a
    damaged one is built again. Rank ``rank`` of ``world`` builds the parts ``i % world == rank``.
    """

    folder: Path
    count: int
    part_size: int
    pattern: str
    plan: dict[str, Any]
    part_key: str = "part"
    rank: int = 0
    world: int = 1

    def stamp(self, i: int) -> dict[str, Any]:
        """The attributes part ``i`` is written with."""
        return {self.part_key: i, **self.plan}

    @property
    def parts(self) -> int:
        return -(-self.count // self.part_size)

    def path(self, i: int) -> Path:
        return self.folder / self.pattern.format(i)

    def items(self, i: int) -> range:
        return range(i * self.part_size, min((i + 1) * self.part_size, self.count))

    def is_done(self, i: int) -> bool:
        import h5py

        try:
            with h5py.File(self.path(i), "r") as f:
                return all(_same(f.attrs.get(k), v) for k, v in self.stamp(i).items())
        except (OSError, ValueError, KeyError):
            return False

    def mine(self) -> list[int]:
        """This rank's parts."""
        return [i for i in range(self.parts) if i % self.world == self.rank]

    def todo(self) -> list[int]:
        """This rank's parts still to build; also removes the temp files a killed writer left beside them."""
        for i in self.mine():
            for tmp in temp_leftovers(self.path(i)):
                tmp.unlink(missing_ok=True)
        return [i for i in self.mine() if not self.is_done(i)]

    def missing(self) -> list[int]:
        """Every rank's parts not (validly) written yet."""
        return [i for i in range(self.parts) if not self.is_done(i)]

    def wait_for_all(self, error: type[Exception] = ExemplarColorError, timeout: float = 7 * 24 * 3600.0,
                     poll: float = 2.0) -> None:
        """Wait until every rank's parts are written (rank 0 before a merge)."""
        t0 = time.monotonic()
        while self.missing():
            if time.monotonic() - t0 > timeout:
                raise error(f"timed out waiting for {self.parts} part files in {self.folder}")
            time.sleep(poll)


def _same(stored: Any, want: Any) -> bool:
    if isinstance(stored, bytes):
        stored = stored.decode()
    try:
        return bool(stored == want)
    except (TypeError, ValueError):
        return False


@dataclass
class BuildReport:
    """What a resumable build or an add did, in items (images, pairs) and parts (chunk or shard files).

    ``computed``: items described now; ``reused``: items of parts a previous (killed) run had finished;
    ``written``: records the artifact holds from this run; ``failures``: ``(item, reason)`` of the items
    skipped (missing, corrupt or grayscale), ``item`` naming them in :meth:`to_dict`.
    """

    item: str = "item"
    total: int = 0
    computed: int = 0
    reused: int = 0
    written: int = 0
    parts_built: int = 0
    parts_present: int = 0
    failures: list[tuple[Any, str]] = field(default_factory=list)
    seconds: float = 0.0
    extract_seconds: float = 0.0

    @property
    def per_second(self) -> float:
        """Items computed per second of extraction (of the whole run when extraction was not timed)."""
        t = self.extract_seconds or self.seconds
        return self.computed / t if t > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "computed": self.computed, "reused": self.reused, "written": self.written,
                "parts_built": self.parts_built, "parts_present": self.parts_present,
                "failed": len(self.failures), "failures": [{self.item: p, "reason": r} for p, r in self.failures],
                "seconds": round(self.seconds, 3), "extract_seconds": round(self.extract_seconds, 3),
                "per_second": round(self.per_second, 2)}


# ----------------------------------------------------------------------------- file hashes

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
