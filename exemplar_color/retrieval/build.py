"""The build side of a gallery index: describe photos, write the folder, commit it (the query side is
:mod:`.gallery`).

A gallery holds colour photos only: grayscale files are skipped (and reported, like unreadable ones, in the
build report's ``failures`` with a reason starting ``grayscale``), since they have no colour to give.

Folder layout (``PATH``)::

    manifest.json          what the index is (backbone, levels, descriptor, dim, index kind, count, versions)
                           and which files make it up; written last, atomically: it *is* the commit point
    store-000001.h5        feature store shards (see :mod:`.store`); ``index add`` appends a new shard
    index-000003.faiss     FAISS index of generation 3 (ids = store rows); the previous generation is kept
                           one step so that a reader holding the old manifest can still open its files
    .build/plan.json       only while a build runs: the file list and configuration being built
    .build/part-000012.h5  finished chunks of that build (``checkpoint`` images each)

A build is a :class:`~exemplar_color.artifacts.ShardPlan`: chunk after chunk, each written whole; killed at
any moment, it resumes at the first missing chunk and never recomputes a finished one. When all chunks
exist the parts are merged into one store shard, the FAISS index is built, and the manifest is written.
Under ``torchrun`` rank ``r`` extracts chunks ``c % WORLD_SIZE == r`` and rank 0 merges.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .._version import __version__
from ..artifacts import (BuildReport, ShardPlan, content_digest, read_manifest as _read, refuse_differences,
                         write_manifest)
from ..io import list_images, load_image
from ..layout import tensor_view
from ..runtime import dist_env
from ..working import is_gray
from .descriptors import DescriptorConfig, DescriptorExtractor, Descriptors, prepare_gray
from .errors import EmptyGalleryError, GalleryIndexError, IndexMismatchError, IndexNotFoundError, PartialBuildError
from .index import IndexSpec, build_faiss, resolve_kind, save_faiss
from .ondisk import IVFDATA_SUFFIX, build_ondisk, check_ondisk_kind
from .store import FeatureStore, ShardRows, read_shard, read_shard_meta, write_shard


__all__ = ["build_gallery", "extract", "rows_from", "commit", "read_manifest", "check_config", "MANIFEST", "FORMAT"]

log = logging.getLogger("exemplar_color.retrieval")

FORMAT = "exemplar_color-gallery-index"
VERSION = 1
MANIFEST = "manifest.json"
_BUILD = ".build"


def _versions() -> dict[str, str]:
    import faiss
    import h5py

    return {"exemplar_color": __version__, "torch": torch.__version__, "faiss": faiss.__version__,
            "h5py": h5py.__version__, "numpy": np.__version__, "format": str(VERSION)}


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the index folder ``path``; a missing or interrupted index is said with what to run."""
    mpath = path / MANIFEST
    if not mpath.is_file():
        if (path / _BUILD / "plan.json").is_file():
            raise PartialBuildError(f"{path}: the index build was interrupted before it finished; continue it with "
                                    f"`exemplar-color index build GALLERY --index {path} --resume`")
        raise IndexNotFoundError(f"{path}: no gallery index here (no {MANIFEST}); build one with "
                                 f"`exemplar-color index build GALLERY --index {path}`")
    return _read(mpath, format=FORMAT, version=VERSION, error=GalleryIndexError, version_key="format_version")


def check_config(where: str, have: DescriptorConfig, want: dict[str, Any]) -> None:
    """Refuse (IndexMismatchError) when any requested setting (not None, not '') differs from the index's."""
    refuse_differences(where, have.to_dict(), {k: v for k, v in want.items() if v != ""}, error=IndexMismatchError,
                       have_name="index has", built="the index was built with another backbone/descriptor",
                       fix="query it with the same settings or rebuild it")


class _ImageDataset(torch.utils.data.Dataset):
    """Decodes one gallery image per item (in DataLoader workers): gray + L at working size, size, hash."""

    def __init__(self, root: Path, rel: Sequence[str], size: int):
        self.root, self.rel, self.size = root, list(rel), size

    def __len__(self) -> int:
        return len(self.rel)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rel = self.rel[i]
        path = self.root / rel
        try:
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an animated or transparent photo is still a reference
                arr = load_image(path)
            if is_gray(tensor_view(arr)):
                return {"i": i, "rel": rel, "ok": False, "reason": "grayscale: no colour to give as a reference"}
            gray, lum = prepare_gray(arr, self.size)
            return {"i": i, "rel": rel, "ok": True, "gray": gray, "lum": lum, "sha": sha,
                    "wh": (arr.shape[1], arr.shape[0])}
        except Exception as e:  # a gallery of a million files has every kind of broken file: log, skip
            reason = str(e) if isinstance(e, OSError | ValueError) else f"{type(e).__name__}: {e}"
            return {"i": i, "rel": rel, "ok": False, "reason": reason.replace(str(path) + ": ", "")}


Batch = tuple[list[dict[str, Any]], Descriptors | None]


def extract(extractor: DescriptorExtractor, root: Path, rel: Sequence[str], *, batch: int, workers: int,
             progress: bool, desc: str = "describing", initial: int = 0, total: int | None = None
             ) -> Iterable[Batch]:
    """Yield ``(items, descriptors of the ok items)`` batch by batch, in order, with a progress bar."""
    from tqdm import tqdm

    ds = _ImageDataset(root, rel, extractor.config.size)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=list,
                                         pin_memory=extractor.device.type == "cuda",
                                         prefetch_factor=4 if workers else None, persistent_workers=False)
    bar = tqdm(total=total if total is not None else len(rel), initial=initial, desc=desc, unit="img",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for items in loader:
            ok = [it for it in items if it["ok"]]
            for it in items:
                if not it["ok"]:
                    log.warning("skipping %s: %s", it["rel"], it["reason"])
            d = extractor(torch.stack([it["gray"] for it in ok]), torch.stack([it["lum"] for it in ok])) if ok else None
            bar.update(len(items))
            yield items, d
    finally:
        bar.close()


def rows_from(items: list[dict[str, Any]], d: Descriptors | None) -> ShardRows:
    ok = [it for it in items if it["ok"]]
    empty = Descriptors(np.zeros((0, 0), np.float32), np.zeros((0, 0, 0), np.uint8), np.zeros((0, 0, 0), np.float16),
                        np.zeros(0, np.int16))
    return ShardRows([it["rel"] for it in ok], d if d is not None else empty,
                     np.array([it["wh"] for it in ok], np.int32).reshape(-1, 2), [it["sha"] for it in ok],
                     [(it["rel"], it["reason"]) for it in items if not it["ok"]])


def _split_pending(pending: list[Batch], size: int) -> tuple[list[Batch], list[Batch]]:
    """Split buffered batches after ``size`` items, cutting a batch (and its descriptors) if needed."""
    taken, rest, n = [], [], 0
    for items, d in pending:
        if n >= size:
            rest.append((items, d))
            continue
        need = size - n
        if len(items) <= need:
            taken.append((items, d))
            n += len(items)
            continue
        head, tail = items[:need], items[need:]
        k = sum(it["ok"] for it in head)
        dh = dt = None
        if d is not None:
            dh = Descriptors(d.global_[:k], d.grid[:k], d.hist[:k], d.class_id[:k]) if k else None
            dt = Descriptors(d.global_[k:], d.grid[k:], d.hist[k:], d.class_id[k:]) if k < len(d) else None
        taken.append((head, dh))
        rest.append((tail, dt))
        n = size
    return taken, rest


def clear(out: Path) -> None:
    """Remove an index folder's own files (never anything else a user put there)."""
    shutil.rmtree(out / _BUILD, ignore_errors=True)
    for pat in (MANIFEST, "store-*.h5", "index-*.faiss", "index-*" + IVFDATA_SUFFIX, f".{MANIFEST}.*", ".store-*",
                ".index-*"):
        for f in out.glob(pat):
            f.unlink(missing_ok=True)


def _plan(out: Path, root: Path, files: list[Path], config: DescriptorConfig, kind: str,
          params: dict[str, Any] | None, checkpoint: int, rank: int, resume: bool) -> dict[str, Any]:
    """The build's plan: the interrupted one at ``out`` (same configuration only), else a new one."""
    plan_path = out / _BUILD / "plan.json"
    if plan_path.is_file() and not resume and rank == 0:  # other ranks may start after rank 0 wrote it
        done = len(list((out / _BUILD).glob("part-*.h5")))
        raise PartialBuildError(f"{out}: an interrupted build is here ({done} chunk(s) finished); continue it "
                                f"with --resume (resume=True) or start again with --overwrite")
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        check_config(f"{out} (interrupted build)", DescriptorConfig.from_dict(plan["config"]), config.to_dict())
        return plan
    rel = [str(f.relative_to(root)) for f in files]
    plan = {"format": FORMAT, "root": str(root), "config": config.to_dict(), "kind": kind, "params": params or {},
            "checkpoint": int(checkpoint), "files": rel}
    plan["digest"] = content_digest(plan)
    if rank == 0:
        write_manifest(plan_path, plan)
    return plan


def build_gallery(gallery: str | os.PathLike, path: str | os.PathLike, config: DescriptorConfig, *,
                  kind: str = "flat", params: dict[str, Any] | None = None, weights: str | os.PathLike | None = None,
                  device: str | torch.device = "cpu", batch: int = 16, workers: int = 0, resume: bool = False,
                  overwrite: bool = False, checkpoint: int = 256, rank: int | None = None, world: int | None = None,
                  progress: bool = True, on_disk: bool = False,
                  ) -> tuple[BuildReport | None, DescriptorExtractor | None]:
    """Describe every image under ``gallery`` and write the index folder ``path``
    (:meth:`GalleryIndex.build <exemplar_color.retrieval.GalleryIndex.build>` documents the arguments).

    Returns:
        The report and the extractor used (``None`` when the index was complete already); ``(None, None)``
        on ranks other than 0, which only write their chunks.
    """
    t0 = time.perf_counter()
    env = dist_env()
    rank = env.rank if rank is None else rank
    world = env.world if world is None else world
    root = Path(gallery).expanduser().resolve()
    out = Path(path)
    build_dir = out / _BUILD
    if not root.is_dir():
        raise EmptyGalleryError(f"{root}: gallery folder not found")
    if overwrite and rank == 0:
        clear(out)
    if (out / MANIFEST).is_file():
        if not resume:
            raise GalleryIndexError(f"{out}: an index already exists; add images with `exemplar-color index "
                                    f"add`, or rebuild with --overwrite")
        shutil.rmtree(build_dir, ignore_errors=True)
        n = int(read_manifest(out)["rows"])
        return BuildReport(item="path", total=n, reused=n, written=n, seconds=time.perf_counter() - t0), None
    files = [] if (build_dir / "plan.json").is_file() else list_images(root)
    if not (build_dir / "plan.json").is_file() and not files:  # before loading VGG-19: fail fast
        raise EmptyGalleryError(f"{root}: no images found (looked for files ending in .jpg, .jpeg, .png, "
                                f".tif, .webp, .bmp, ...)")
    spec = resolve_kind(kind, config.dim, max(1, len(files)), params)  # a bad --kind: refused before any work
    if on_disk:
        check_ondisk_kind(spec)
    extractor = DescriptorExtractor(config, weights=weights, device=device)
    plan = _plan(out, root, files, extractor.config, kind, params, checkpoint, rank, resume)
    rel, root = plan["files"], Path(plan["root"])
    chunks = ShardPlan(build_dir, len(rel), int(plan["checkpoint"]), "part-{:06d}.h5", {"plan": plan["digest"]},
                       "chunk", rank, world)
    todo = chunks.todo()
    report = BuildReport(item="path", total=len(rel), parts_present=len(chunks.mine()) - len(todo))
    report.reused = sum(len(chunks.items(c)) for c in chunks.mine() if c not in todo)
    t_extract = time.perf_counter()
    _extract_chunks(extractor, root, rel, chunks, todo, report, batch=batch, workers=workers, progress=progress)
    report.extract_seconds = time.perf_counter() - t_extract
    if rank != 0:
        return None, None
    if world > 1:
        chunks.wait_for_all(GalleryIndexError)
    # merge: the store, the FAISS index, then the manifest (the commit point); the kind asked for now (it does
    # not change the descriptors): an interrupted build may change it
    parts = [chunks.path(c) for c in range(chunks.parts)]
    metas = [read_shard_meta(p) for p in parts]
    report.failures = [f for m in metas for f in m["failures"]]
    written = sum(m["count"] for m in metas)
    if not written:
        reasons = "; ".join(f"{p}: {r}" for p, r in report.failures[:3])
        raise EmptyGalleryError(f"{root}: none of the {len(rel)} images could be read ({reasons}...)")
    if on_disk:
        _commit_ondisk(out, root, extractor.config, kind, params or {}, parts, metas, extractor.weights_path)
    else:
        rows = ShardRows.concat([read_shard(p, extractor.config) for p in parts], extractor.config)
        _commit_new(out, root, extractor.config, kind, params or {}, rows, extractor.weights_path)
    report.written = written
    report.seconds = time.perf_counter() - t0
    shutil.rmtree(build_dir, ignore_errors=True)
    return report, extractor


def _extract_chunks(extractor: DescriptorExtractor, root: Path, rel: Sequence[str], chunks: ShardPlan,
                    todo: list[int], report: BuildReport, *, batch: int, workers: int, progress: bool) -> None:
    """Describe the images of the chunks ``todo`` and write each chunk as soon as it is complete."""
    flat = [rel[i] for c in todo for i in chunks.items(c)]
    pending: list[Batch] = []
    filled, cur = 0, 0
    desc = f"indexing{'' if chunks.world == 1 else f' (rank {chunks.rank}/{chunks.world})'}"
    for items, d in extract(extractor, root, flat, batch=batch, workers=workers, progress=progress, desc=desc,
                             initial=report.reused, total=report.reused + len(flat)):
        pending.append((items, d))
        filled += len(items)
        report.computed += sum(it["ok"] for it in items)
        # flush every chunk completed by this batch (batches may straddle chunks)
        while cur < len(todo) and filled >= len(chunks.items(todo[cur])):
            c = todo[cur]
            size = len(chunks.items(c))
            taken, rest = _split_pending(pending, size)
            rows = ShardRows.concat([rows_from(it, dd) for it, dd in taken], extractor.config)
            write_shard(chunks.path(c), rows, extractor.config, attrs=chunks.stamp(c))
            report.parts_built += 1
            pending, filled, cur = rest, filled - size, cur + 1


def _commit_new(out: Path, root: Path, config: DescriptorConfig, kind: str, params: dict[str, Any],
                rows: ShardRows, weights_path: str | None) -> None:
    spec = resolve_kind(kind, config.dim, len(rows.paths), params)
    store_file = "store-000001.h5"
    write_shard(out / store_file, rows, config)
    log.info("building FAISS index %s over %d descriptors", spec.factory, len(rows.paths))
    index = build_faiss(spec, rows.desc.global_)
    index_file = "index-000001.faiss"
    save_faiss(index, out / index_file)
    _write_first_manifest(out, root, config, spec, {"file": index_file}, [(store_file, len(rows.paths))],
                          rows.failures, weights_path)


def _commit_ondisk(out: Path, root: Path, config: DescriptorConfig, kind: str, params: dict[str, Any],
                   parts: list[Path], metas: list[dict[str, Any]], weights_path: str | None) -> None:
    """The out-of-core commit: each finished chunk becomes a store shard as it is (a hard link, no copy, nothing
    held in memory) and the IVF index keeps its lists on disk (:mod:`.ondisk`)."""
    shards = []
    for i, (p, m) in enumerate(zip(parts, metas)):
        if m["count"]:
            name = f"store-{i + 1:06d}.h5"
            (out / name).unlink(missing_ok=True)
            try:
                os.link(p, out / name)
            except OSError:  # a file system without hard links
                shutil.copyfile(p, out / name)
            shards.append((name, m["count"]))
    spec = resolve_kind(kind, config.dim, sum(n for _, n in shards), params)
    log.info("building on-disk FAISS index %s over %d descriptors", spec.factory, sum(n for _, n in shards))
    ivfdata = "index-000001" + IVFDATA_SUFFIX
    store = FeatureStore([out / s for s, _ in shards], config, memory_bytes=0)  # read shard by shard
    index = build_ondisk(spec, store, out / _BUILD / ivfdata, out / _BUILD / "lists")
    store.close()
    os.replace(out / _BUILD / ivfdata, out / ivfdata)
    index_file = "index-000001.faiss"
    save_faiss(index, out / index_file)
    _write_first_manifest(out, root, config, spec, {"file": index_file, "ivfdata": ivfdata}, shards,
                          [f for m in metas for f in m["failures"]], weights_path)


def _write_first_manifest(out: Path, root: Path, config: DescriptorConfig, spec: IndexSpec, files: dict[str, str],
                          shards: Sequence[tuple[str, int]], failures: Sequence[tuple[str, str]],
                          weights_path: str | None) -> None:
    """Generation 1 of a new index: written last, the build's commit point."""
    count = sum(n for _, n in shards)
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest = {
        "format": FORMAT, "format_version": VERSION, "generation": 1, "created": now, "updated": now,
        "backbone": {"name": "vgg19", "variant": config.variant, "levels": list(config.levels),
                     "weights_sha256": config.weights_sha256, "weights_path": weights_path},
        "descriptor": config.to_dict(),
        "index": {**spec.to_dict(), **files},
        "gallery_root": str(root), "count": count, "rows": count,
        "shards": [{"file": f, "count": n} for f, n in shards], "removed": [],
        "failures": [list(x) for x in failures], "versions": _versions(),
    }
    write_manifest(out / MANIFEST, manifest)


def commit(path: Path, m: dict[str, Any], gen: int) -> dict[str, Any]:
    """Write ``m`` as generation ``gen`` of the index at ``path`` (counts and versions brought up to date)."""
    m["generation"] = gen
    m["count"] = int(sum(s["count"] for s in m["shards"]) - len(m["removed"]))
    m["rows"] = int(sum(s["count"] for s in m["shards"]))
    m["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    m["versions"] = _versions()
    write_manifest(path / MANIFEST, m)
    return m
