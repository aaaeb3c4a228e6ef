"""Retrieval benchmark: near-duplicate top-1 on ~2,200 real photos, build throughput, ANN recall/latency.

    python benchmarks/bench_retrieval.py [--quick] [--part all|gallery|ann] [--threads 1] [--dim 512]

Prints one JSON object. Parts:

``gallery``  Builds an exact index over /work/shared/data/imagenet-sample + imagenet-val-227 (2,200 real photos)
             with the real pretrained slice (relu3_1, the deepest level it covers; working size 224), then
             queries near-duplicates (gray, crop <= 10% per side, rescale 0.6-1.4x, brightness +-0.05-0.15)
             and reports top-1/top-5, first-stage recall@200, per-query times and build throughput
             (images/s including JPEG decoding). Also times the full-model descriptor (relu5_4, random
             weights: cost only) on a few images, since the full VGG-19 file cannot be downloaded here.
``ann``      First stage only: 1,000,000 synthetic unit vectors of the production descriptor dimension
             (512 = relu5_4 channels), shaped like the real descriptors (see
             :func:`exemplar_color.retrieval.synthetic.clustered_vectors`); queries from the same
             distribution, not in the index. Recall@10 against exact search and single-query latency for
             IVF (nprobe sweep), HNSW (efSearch sweep) and IVF-PQ.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
WEIGHTS = SHARED / "weights" / "vgg19-torchvision-features-0-10.pth"


def _gallery_dir(dest: Path, quick: bool) -> Path:
    from exemplar_color.io import list_images

    dest.mkdir(parents=True, exist_ok=True)
    for sub, src in (("sample", "imagenet-sample"), ("val", "imagenet-val-227")):
        files = list_images(SHARED / "data" / src)
        if quick:
            files = files[:: max(1, len(files) // 150)][:150]
        (dest / sub).mkdir(exist_ok=True)
        for f in files:
            link = dest / sub / f.name
            if not link.exists():
                link.symlink_to(f)
    return dest


def bench_gallery(quick: bool = False, workers: int = 1, queries: int | None = None,
                  keep: str | None = None) -> dict[str, Any]:
    """Near-duplicate top-1 over the real gallery, build throughput, per-query times."""
    from exemplar_color.retrieval import DescriptorConfig, DescriptorExtractor, GalleryIndex
    from exemplar_color.retrieval.descriptors import prepare_gray
    from exemplar_color.retrieval.synthetic import near_duplicate

    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench_retrieval_"))
    try:
        root = _gallery_dir(tmp / "gallery", quick)
        cfg = DescriptorConfig(level="relu3_1", size=224)
        index = GalleryIndex.build(root, tmp / "index", config=cfg, weights=WEIGHTS, batch=16, workers=workers,
                                   progress=True, resume=bool(keep))
        assert index is not None and index.build_report is not None
        rep = index.build_report
        nq = queries or (100 if quick else 500)
        rng = np.random.default_rng(0)
        ids = rng.choice(len(index.store), min(nq, len(index.store)), replace=False)
        imgs = [near_duplicate(root / index.store.paths[i], rng)[0] for i in ids]
        t_desc, t_search, top1, top5, in_cand = [], [], 0, 0, 0
        for i, img in zip(ids, imgs):
            t0 = time.perf_counter()
            q = index.describe([img])
            t1 = time.perf_counter()
            recs = index.search_descriptors(q, k=5, candidates=200)[0]
            t2 = time.perf_counter()
            t_desc.append(t1 - t0)
            t_search.append(t2 - t1)
            top1 += recs[0].id == i
            top5 += i in [r.id for r in recs]
            in_cand += i in index.faiss.search(q.global_, 200)[1][0]
        first = [index.search_descriptors(index.describe([img]), k=1, rerank=False)[0][0].id == i
                 for i, img in zip(ids[:100], imgs[:100])]
        # full-model descriptor cost (relu5_4 GeM + grid): random weights, timing only
        ext = DescriptorExtractor(DescriptorConfig(level="relu5_4", size=224), weights="random")
        files = [root / p for p in index.store.paths[:32]]
        prep = [prepare_gray(f, 224) for f in files]
        g, lum = torch.stack([p[0] for p in prep]), torch.stack([p[1] for p in prep])
        ext(g[:2], lum[:2])
        t0 = time.perf_counter()
        for s in range(0, len(files), 16):
            ext(g[s:s + 16], lum[s:s + 16])
        full_ips = len(files) / (time.perf_counter() - t0)
        return {
            "gallery_images": len(index), "failed": len(rep.failures), "descriptor": cfg.kind, "size": 224,
            "queries": len(ids), "near_duplicate_top1": top1 / len(ids), "near_duplicate_top5": top5 / len(ids),
            "first_stage_top1": float(np.mean(first)), "first_stage_recall_at_200": in_cand / len(ids),
            "build_images_per_second": round(rep.per_second, 2),
            "build_seconds": round(rep.seconds, 1),
            "query_describe_ms_median": round(1000 * float(np.median(t_desc)), 2),
            "query_search_ms_median": round(1000 * float(np.median(t_search)), 2),
            "query_search_ms_p95": round(1000 * float(np.percentile(t_search, 95)), 2),
            "full_model_relu5_4_describe_images_per_second": round(full_ips, 2),
            "store_bytes_per_image": round(sum((index.path / s["file"]).stat().st_size
                                               for s in index.manifest["shards"]) / len(index)),
            "torch_threads": torch.get_num_threads(), "decode_workers": workers,
        }
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


def _latency_ms(index: Any, q: np.ndarray, n: int = 200) -> float:
    """Median single-query latency (one query per call, as an interactive user issues them)."""
    ts = []
    for i in range(min(n, len(q))):
        t0 = time.perf_counter()
        index.search(q[i:i + 1], 10)
        ts.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(ts)), 3)


def bench_ann(quick: bool = False, n: int | None = None, dim: int = 512, nq: int | None = None
              ) -> dict[str, Any]:
    """IVF / HNSW / IVF-PQ recall@10 vs exact and latency on synthetic descriptor-like vectors."""
    import faiss

    from exemplar_color.retrieval.index import build_faiss, resolve_kind, set_search_params
    from exemplar_color.retrieval.synthetic import clustered_vectors

    n = n or (100_000 if quick else 1_000_000)
    nq = nq or (200 if quick else 1000)
    t0 = time.perf_counter()
    data = clustered_vectors(n + nq, dim, seed=0)
    x, q = data[:n], data[n:]
    out: dict[str, Any] = {"n": n, "dim": dim, "queries": nq, "faiss_threads": faiss.omp_get_max_threads(),
                           "generate_s": round(time.perf_counter() - t0, 1)}
    t0 = time.perf_counter()
    flat = build_faiss(resolve_kind("flat", dim, n), x)
    _, truth = flat.search(q, 10)
    out["flat"] = {"build_s": round(time.perf_counter() - t0, 1), "latency_ms": _latency_ms(flat, q, 50),
                   "recall_at_10": 1.0}
    brute = np.argsort(-(q[:20] @ x.T), axis=1)[:, :10]
    out["flat"]["equals_numpy_top10"] = bool((brute == truth[:20]).all())
    del flat
    sweeps = {"ivf": ("nprobe", [16, 32, 64, 128, 256]), "hnsw": ("efSearch", [16, 32, 64, 128, 256])}
    if quick:  # IVF-PQ: the memory-bound option; its recall on these tight clusters is low (see README)
        sweeps["ivfpq"] = ("nprobe", [16, 64])
    for kind, (param, values) in sweeps.items():
        spec = resolve_kind(kind, dim, n)
        t0 = time.perf_counter()
        index = build_faiss(spec, x, train_size=min(n, 100_000))
        res: dict[str, Any] = {"factory": spec.factory, "build_s": round(time.perf_counter() - t0, 1), "sweep": []}
        for v in values:
            set_search_params(index, {param: v})
            _, found = index.search(q, 10)
            res["sweep"].append({param: v, "recall_at_10": round(_recall(found, truth), 4),
                                 "latency_ms": _latency_ms(index, q)})
            print(kind, res["sweep"][-1], file=sys.stderr, flush=True)
        ok = [s for s in res["sweep"] if s["recall_at_10"] >= 0.95]
        res["fastest_at_recall_0.95"] = min(ok, key=lambda s: s["latency_ms"]) if ok else None
        out[kind] = res
        del index
    return out


def run(quick: bool = False, part: str = "all", threads: int = 1, workers: int = 1, dim: int = 512,
        n: int | None = None, keep: str | None = None) -> dict[str, Any]:
    """Run the benchmark parts; returns the figures as a dict (``main`` prints it as JSON)."""
    import faiss

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    out: dict[str, Any] = {"quick": quick, "threads": threads}
    if part in ("all", "gallery"):
        out["gallery"] = bench_gallery(quick, workers=workers, keep=keep)
    if part in ("all", "ann"):
        out["ann"] = bench_ann(quick, n=n, dim=dim)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="300-image gallery, 100k vectors")
    p.add_argument("--part", default="all", choices=("all", "gallery", "ann"))
    p.add_argument("--threads", type=int, default=1, help="torch and FAISS CPU threads")
    p.add_argument("--workers", type=int, default=1, help="JPEG-decoding processes for the build")
    p.add_argument("--dim", type=int, default=512, help="synthetic descriptor dimension (relu5_4: 512)")
    p.add_argument("-n", type=int, default=None, help="synthetic vectors (default 1,000,000; quick 100,000)")
    p.add_argument("--keep", metavar="DIR", help="build the gallery index in DIR and keep it (reused if there)")
    a = p.parse_args(argv)
    print(json.dumps(run(a.quick, a.part, a.threads, a.workers, a.dim, a.n, a.keep), indent=1))


if __name__ == "__main__":
    main()
