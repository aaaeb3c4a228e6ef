"""``exemplar-color index build|add|query|info``: the reference gallery.

Results go to stdout (``--json`` for machines), progress and logs to stderr. A gallery holds colour photos
only: ``build`` and ``add`` skip grayscale and unreadable files, name each on stderr, and exit 1 when they
skipped any (the index is still built from the others).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..backbone.spec import LEVELS
from .options import (add_batch_size_option, add_device_option, add_json_option, add_resume_option,
                      add_shard_size_option, add_threads_option, add_top_k_option, add_vgg_options, add_workers_option,
                      at_least, existing_file, index_folder, level_of, variant_or_default)

_EPILOG = """Examples:
  exemplar-color index build ~/photos --index photos.index --kind hnsw --workers 4
  exemplar-color index build ~/photos --index photos.index --resume      # after an interruption
  exemplar-color index build ~/photos --index photos.index --engine ray --address head:6379
  exemplar-color index add ~/photos/new --index photos.index
  exemplar-color index query old.jpg --index photos.index --top-k 5 --json
  exemplar-color index info --index photos.index
"""
_INDEX_HELP = "the gallery index (a folder made by `exemplar-color index build`)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build and query a gallery of reference images",
                       description="Build and query a gallery index that recommends reference images.",
                       epilog=_EPILOG)
    isub = p.add_subparsers(dest="index_command", metavar="SUBCOMMAND")

    def backbone(q: argparse.ArgumentParser, variant: bool = False) -> None:
        if variant:
            add_vgg_options(q)
        else:  # the index's own variant is used; only the weight file can be given again
            q.add_argument("--vgg-weights", metavar="PATH", type=existing_file,
                           help="VGG-19 weight file (default: $EXEMPLAR_COLOR_VGG_WEIGHTS, the cache, or a download)")
        add_device_option(q)
        add_threads_option(q)

    b = isub.add_parser("build", help="describe and index every image under a folder",
                        epilog=_EPILOG)
    b.add_argument("gallery", metavar="GALLERY_DIR", help="folder of colour photos (searched recursively)")
    b.add_argument("--index", required=True, metavar="PATH", help="index folder to create (the output)")
    b.add_argument("--kind", default="flat", metavar="KIND", help="flat (exact, default), ivf, hnsw, ivfpq, or a FAISS factory "
                                                  "string such as 'PCA256,IVF4096,Flat'")
    b.add_argument("--nprobe", type=at_least(1), metavar="N", help="IVF lists probed per query (stored with the index)")
    b.add_argument("--ef-search", type=at_least(1), metavar="N", help="HNSW efSearch (stored with the index)")
    b.add_argument("--on-disk", action="store_true",
                   help="galleries larger than RAM: an IVF kind keeps its inverted lists in a file beside the index "
                        "(memory-mapped when searched) and the build never holds the gallery in memory; written "
                        "once (index add refuses it: rebuild)")
    b.add_argument("--level", default="relu5_4", type=level_of(LEVELS), metavar="LEVEL",
                   help="global-descriptor level: a conv level (default relu5_4) or fc6 (needs the classifier layers)")
    b.add_argument("--grid-level", default="", metavar="LEVEL",
                   help="re-ranking grid level (default: --level, or relu5_4)")
    b.add_argument("--size", type=at_least(16), default=224, metavar="N",
                   help="working size in pixels: each photo is described squashed to N x N gray (default 224)")
    b.add_argument("--classes", action="store_true", help="store the predicted ImageNet class (needs fc8)")
    add_batch_size_option(b, 16, "images", alias="--batch")
    add_workers_option(b, min(4, max(0, (os.cpu_count() or 1) - 1)), "min(4, CPUs-1)")
    add_shard_size_option(b, 256, "images", alias="--checkpoint")
    add_resume_option(b, "continue an interrupted build (its finished shards are kept)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index or partial build")
    b.add_argument("--strict", action="store_true",
                   help="exit 1 when any file was skipped, grayscale ones included (default: only unreadable files "
                        "make it exit 1; grayscale photos are expected in a gallery and only counted)")
    add_json_option(b, "print the build report as JSON; no progress bar")
    backbone(b, variant=True)
    from ..scale.options import add_engine_options

    add_engine_options(b, workers=False)  # with --engine ray, --workers is the number of Ray workers (ranks)
    b.set_defaults(func=run_build)

    a = isub.add_parser("add", help="add images (files or a folder) to an existing index",
                        epilog="Example:\n  exemplar-color index add ~/photos/new --index photos.index --remove-missing")
    a.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="colour photos, or folders of them, to add")
    a.add_argument("--index", required=True, metavar="PATH", type=index_folder, help=_INDEX_HELP)
    add_batch_size_option(a, 16, "images", alias="--batch")
    add_workers_option(a, 0)
    a.add_argument("--remove-missing", action="store_true", help="also drop entries whose file disappeared")
    a.add_argument("--strict", action="store_true",
                   help="exit 1 when any file was skipped, grayscale ones included (default: unreadable ones only)")
    add_json_option(a, "print the report as JSON; no progress bar")
    backbone(a)
    a.set_defaults(func=run_add)

    q = isub.add_parser("query", help="recommend references for a target photo",
                        epilog="Example:\n  exemplar-color index query old.jpg --index photos.index --top-k 5 --json")
    q.add_argument("target", metavar="TARGET", type=existing_file, help="the (black-and-white) photo to find "
                                                                      "references for")
    q.add_argument("--index", required=True, metavar="PATH", type=index_folder, help=_INDEX_HELP)
    add_top_k_option(q, 5, "how many references (default 5)", short=True)
    q.add_argument("--candidates", type=at_least(1), default=200, metavar="N",
                   help="first-stage candidates re-ranked (default 200)")
    q.add_argument("--no-rerank", action="store_true", help="first stage only")
    q.add_argument("--root", metavar="DIR", help="the folder the gallery's paths are relative to, if it moved since "
                                                 "the build (default: the one recorded in the index)")
    add_json_option(q)
    backbone(q)
    q.set_defaults(func=run_query)

    i = isub.add_parser("info", help="show an index's manifest",
                        epilog="Example:\n  exemplar-color index info --index photos.index --json")
    i.add_argument("--index", required=True, metavar="PATH", type=index_folder, help=_INDEX_HELP)
    add_json_option(i, "print the manifest as JSON on stdout (default: one 'name: value' line each)", quiet=False)
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _setup(args: argparse.Namespace):
    from ..runtime import resolve_device, set_threads

    set_threads(args.threads)
    return resolve_device(args.device)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    p: dict[str, Any] = {}
    if args.nprobe:
        p["nprobe"] = args.nprobe
    if args.ef_search:
        p["efSearch"] = args.ef_search
    return p


def _skipped(failures: list[dict[str, str]]) -> tuple[int, int]:
    """(grayscale, unreadable) counts of a report's skipped files."""
    gray = sum(f["reason"].startswith("grayscale") for f in failures)
    return gray, len(failures) - gray


def run_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UsageError
    from ..retrieval import DescriptorConfig, GalleryIndex
    from ..outputs import check_output_folder

    if args.grid_level and args.grid_level not in LEVELS:
        raise UsageError(f"--grid-level {args.grid_level!r}: unknown VGG-19 level; choose from {', '.join(LEVELS)}")
    if not Path(args.gallery).is_dir():
        raise UsageError(f"{args.gallery}: no such folder")
    check_output_folder(args.index, "--index")  # before VGG-19 is loaded
    config = DescriptorConfig(level=args.level, grid_level=args.grid_level, variant=variant_or_default(args),
                              size=args.size, classes=args.classes)
    from ..retrieval.index import resolve_kind

    spec = resolve_kind(args.kind, config.dim, 1000, _params(args))  # a bad --kind: refused here, not after the work
    if args.on_disk:
        from ..retrieval.ondisk import check_ondisk_kind

        check_ondisk_kind(spec)
    from ..scale.options import refuse_engine_flags

    refuse_engine_flags(args, workers=False)
    if args.engine == "ray":
        from ..scale.gallery import build_on_ray

        index = build_on_ray(args, config)
    else:
        device = _setup(args)
        index = GalleryIndex.build(args.gallery, args.index, config=config, kind=args.kind, params=_params(args),
                                   weights=args.vgg_weights, device=device, batch=args.batch_size,
                                   workers=args.workers, resume=args.resume, overwrite=args.overwrite,
                                   checkpoint=args.shard_size, progress=not (args.json or args.quiet),
                                   threads=args.threads, on_disk=args.on_disk)
    if index is None:  # a non-zero rank of a sharded build: its chunks are written
        return 0
    rep = index.build_report.to_dict() if index.build_report else {}
    gray, bad = _skipped(rep.get("failures", []))
    if args.json:
        print(json.dumps({"index": str(index.path), "count": len(index), "kind": index.spec.factory,
                          "grayscale": gray, "unreadable": bad, **rep}))
    else:
        print(f"{index.path}: {len(index)} images indexed ({index.config.kind}, dim {index.config.dim}, "
              f"{index.spec.factory}); computed {rep.get('computed', 0)}, reused {rep.get('reused', 0)}, "
              f"skipped {gray} grayscale, {bad} unreadable")
    return _exit_code(gray, bad, args.strict)


def run_add(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..retrieval import GalleryIndex

    from ..outputs import check_writable

    check_writable([Path(args.index)])
    device = _setup(args)
    index = GalleryIndex.open(args.index, weights=args.vgg_weights, device=device, threads=args.threads)
    report = index.add(args.images if len(args.images) > 1 else args.images[0], batch=args.batch_size,
                       workers=args.workers, progress=not (args.json or args.quiet))
    gone = index.remove_missing() if args.remove_missing else []
    out = {**report.to_dict(), "removed_missing": gone, "count": len(index)}
    gray, bad = _skipped(out["failures"])
    if args.json:
        print(json.dumps({**out, "grayscale": gray, "unreadable": bad}))
    else:
        print(f"{index.path}: added {report.computed}, already present {report.reused}, skipped "
              f"{gray} grayscale, {bad} unreadable, removed {len(gone)} missing; {len(index)} images")
    return _exit_code(gray, bad, args.strict)


def _exit_code(gray: int, bad: int, strict: bool) -> int:
    """0 when only grayscale photos were skipped (expected in a gallery: counted in the summary line);
    1 when a file could not be read, or with ``--strict`` when any was skipped."""
    return 1 if bad or (strict and gray) else 0


def run_query(args: argparse.Namespace) -> int:
    from ..retrieval import GalleryIndex

    device = _setup(args)
    index = GalleryIndex.open(args.index, weights=args.vgg_weights, device=device, root=args.root,
                              threads=args.threads)
    recs = index.search(args.target, k=args.top_k, candidates=args.candidates, rerank=not args.no_rerank,
                        skip_missing=True)
    if args.json:
        print(json.dumps({"target": args.target, "index": str(index.path),
                          "results": [r.to_dict() for r in recs]}, indent=1))
    else:
        for rank, r in enumerate(recs, 1):
            parts = " ".join(f"{k}={v:.3f}" for k, v in r.parts.items())
            print(f"{rank}\t{r.score:.4f}\t{r.path}\t{parts}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..retrieval.gallery import read_manifest
    from pathlib import Path

    m = read_manifest(Path(args.index))
    info = {k: v for k, v in m.items() if k != "failures"} | {"failed": len(m.get("failures", []))}
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            print(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    return 0
