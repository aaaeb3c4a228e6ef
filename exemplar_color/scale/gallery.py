"""``index build GALLERY --engine ray``: the rank-sharded build of :mod:`exemplar_color.retrieval.build`, one Ray
task per rank (rank ``r`` of ``W`` describes the chunks ``c % W == r`` and writes each whole; rank 0 then merges
the chunks, trains and writes the FAISS index and the manifest). Nothing new on disk: the result is the folder a
local build writes and opens with :meth:`GalleryIndex.open <exemplar_color.retrieval.GalleryIndex.open>`.

Every worker must see the gallery and the index folder at the same paths (a shared file system). A rank whose
worker dies is retried by Ray and resumes at its first missing chunk; finished chunks are never described again.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from .cluster import plan_workers, ray_session

__all__ = ["build_on_ray", "build_rank"]


def build_rank(spec: dict[str, Any], rank: int, world: int) -> dict[str, Any] | None:
    """One rank of the build (in a Ray worker): its chunks, and for rank 0 the merge; rank 0's report."""
    from ..retrieval import DescriptorConfig
    from ..retrieval.build import build_gallery
    from ..runtime import resolve_device, set_threads

    set_threads(spec["threads"] or 1, faiss=True)
    report, _ = build_gallery(spec["gallery"], spec["index"], DescriptorConfig.from_dict(spec["config"]),
                              kind=spec["kind"], params=spec["params"], weights=spec["weights"],
                              device=resolve_device(spec["device"]), batch=spec["batch"], workers=0, resume=True, overwrite=False,
                              checkpoint=spec["checkpoint"], rank=rank, world=world, progress=False,
                              on_disk=spec.get("on_disk", False))
    return report.to_dict() if report is not None else None


def _refuse_before_work(out: Path, resume: bool, overwrite: bool) -> None:
    """What a local build refuses, decided on the driver (the ranks all run with resume, so that a retried
    rank continues its own chunks)."""
    from ..retrieval.build import clear, read_manifest
    from ..retrieval.errors import (
        GalleryIndexError,
        IndexNotFoundError,
        PartialBuildError,
    )

    if overwrite:
        clear(out)
        return
    try:
        read_manifest(out)
    except IndexNotFoundError:
        return
    except PartialBuildError as e:
        if not resume:
            raise PartialBuildError(f"{out}: an interrupted build is here; continue it with --resume or start "
                                    f"again with --overwrite") from e
        return
    if not resume:
        raise GalleryIndexError(f"{out}: an index already exists; add images with `exemplar-color index add`, or "
                                f"rebuild with --overwrite")


def build_on_ray(args: argparse.Namespace, config=None):
    """Build the index of ``args.gallery`` at ``args.index`` on Ray; the open index, with ``build_report``."""
    from tqdm import tqdm

    from ..artifacts import BuildReport
    from ..backbone.weights import choose_variant
    from ..outputs import check_output_folder
    from ..io import list_images
    from ..retrieval import DescriptorConfig, GalleryIndex
    from ..retrieval.errors import EmptyGalleryError

    t0 = time.perf_counter()
    out = check_output_folder(args.index, "--index")
    if config is None:
        config = DescriptorConfig(level=args.level, grid_level=args.grid_level, size=args.size, classes=args.classes,
                                  variant=choose_variant(args.vgg_weights, args.vgg_variant))
    _refuse_before_work(out, args.resume, args.overwrite)
    count = len(list_images(args.gallery))
    if not count:
        raise EmptyGalleryError(f"{args.gallery}: no images found")
    chunks = math.ceil(count / args.shard_size)
    params = {k: v for k, v in (("nprobe", args.nprobe), ("efSearch", args.ef_search)) if v}
    spec = {"gallery": str(Path(args.gallery).resolve()), "index": str(out.resolve()), "config": config.to_dict(),
            "kind": args.kind, "params": params, "weights": args.vgg_weights, "device": args.device,
            "batch": args.batch_size, "checkpoint": args.shard_size, "threads": args.threads,
            "on_disk": getattr(args, "on_disk", False)}
    present = len(list((out / ".build").glob("part-*.h5")))
    with ray_session(args.address) as ray:
        world, cpus = plan_workers(ray, args.workers, args.threads, args.gpus_per_worker)
        world = max(1, min(world, chunks))
        task = ray.remote(build_rank).options(num_cpus=cpus, max_retries=3, retry_exceptions=False,
                                              **({"num_gpus": args.gpus_per_worker} if args.gpus_per_worker else {}))
        refs = [task.remote(spec, r, world) for r in range(world)]
        bar = tqdm(total=chunks, initial=min(present, chunks), desc=f"indexing ({world} Ray workers)", unit="chunk",
                   file=sys.stderr, disable=args.json or args.quiet)
        pending, rank0, t_extract = list(refs), None, time.perf_counter()
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=2.0)
                for ref in ready:
                    value = ray.get(ref)  # a rank that failed for good raises here: the build stops
                    if ref == refs[0]:
                        rank0 = value
                bar.n = min(chunks, len(list((out / ".build").glob("part-*.h5")))) if pending else chunks
                bar.refresh()
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
        extract_s = time.perf_counter() - t_extract  # the ranks' work and rank 0's merge, as seen by the driver
    from ..runtime import resolve_device

    index = GalleryIndex.open(out, weights=args.vgg_weights, device=resolve_device(args.device), threads=args.threads)
    rep = rank0 or {}
    reused = min(count, present * args.shard_size)
    index.build_report = BuildReport(item="path", total=count, computed=max(0, count - reused), reused=reused,
                                     written=int(rep.get("written", len(index))), parts_built=chunks - present,
                                     parts_present=present, failures=[(f["path"], f["reason"]) for f in
                                                                      rep.get("failures", [])],
                                     seconds=time.perf_counter() - t0, extract_seconds=extract_s)
    return index
