"""The Ray engine against the plain folder run, on this machine, in one session (issue 26).

Runs the real command line as a user would (subprocesses), the same photos and settings both ways:

- colorize: ``exemplar-color colorize IN -o OUT`` (local: one process, torch's default threads) against
  ``--engine ray --workers W --threads 1`` (a local Ray of all cores, one Colorizer per worker);
- gallery: ``exemplar-color index build G`` (local) against ``--engine ray --workers W``.

Figures: wall seconds end to end (Ray's start and the model loads included), the steady rate (photos/s between
the first and the last output written, read from the outputs' modification times: the rate a long run
converges to), their ratio Ray / local (goal >= 0.85 on one node), and peak memory (VmHWM) of the local process
and of each Ray worker. Then a scaling model for 1 M photos (see ``scaling``). JSON on stdout and in ``--out``.

    python benchmarks/scale_ray.py --photos 40 --light-photos 200 --gallery 96 --out benchmarks/results/scale_ray.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FULL = SHARED / "weights" / "vgg19-caffe-features-0-34-q8.pth"
SLICE = SHARED / "weights" / "vgg19-torchvision-features-0-10.pth"
PROFILES = {  # what a run costs per photo: the shipped default, and a light one where overheads show most
    "default": ["--vgg-weights", str(FULL), "--size", "256"],
    "light": ["--vgg-weights", str(SLICE), "--vgg-variant", "torchvision", "--model", "analogy", "--levels",
              "relu2_1", "relu1_1", "--size", "64"],
}


def photos(n: int, folder: Path, colour: bool) -> Path:
    """``n`` photos (gray scans to colorize, or colour ones for a gallery), at their own size: BSDS500's 500
    first (481x321), then train-extra's (varied sizes) for larger runs."""
    from PIL import Image

    src = [f for folder in ("bsds500", "train-extra") for f in sorted((SHARED / "data" / folder).rglob("*.jpg"))][:n]
    if len(src) < n:
        raise SystemExit(f"only {len(src)} photos under {SHARED / 'data'} (bsds500, train-extra)")
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(src):
        Image.open(f).convert("RGB" if colour else "L").save(folder / f"p{i:05d}.jpg", quality=92)
    return folder


def _tree(pid: int) -> list[int]:
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        here = todo.pop()
        kids = [c for c, p in parent.items() if p == here]
        out += kids
        todo += kids
    return out


def _peak(pid: int) -> tuple[int, str]:
    """(VmHWM bytes, process title) of a live process; (0, '') once gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return 0, ""
    kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    return kb * 1024, title


def run(argv: list[str], worker_tag: str) -> dict:
    """Run the command; wall seconds, its JSON result, peak memory of the main process and of each worker."""
    import tempfile

    t0 = time.time()
    peaks: dict[int, int] = {}
    main_peak = 0
    # files, not pipes: a pipe nobody reads while polling would fill up and block the command
    with tempfile.TemporaryFile("w+") as sink, tempfile.TemporaryFile("w+") as errs:
        proc = subprocess.Popen([sys.executable, "-m", "exemplar_color.cli.main", *argv], stdout=sink, stderr=errs,
                                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        while proc.poll() is None:
            main_peak = max(main_peak, _peak(proc.pid)[0])
            for pid in _tree(proc.pid):
                size, title = _peak(pid)
                if worker_tag in title:
                    peaks[pid] = max(peaks.get(pid, 0), size)
            time.sleep(0.5)
        sink.seek(0)
        errs.seek(0)
        out, err = sink.read(), errs.read()
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv[:3])}... failed ({proc.returncode}): {err[-1500:]}")
    return {"wall_s": round(time.time() - t0, 2), "started": t0, "result": json.loads(out),
            "driver_peak_bytes": main_peak, "worker_peak_bytes": sorted(peaks.values())}


def steady(files: list[Path]) -> float:
    """Photos per second between the first and the last output (modification times)."""
    t = sorted(f.stat().st_mtime for f in files if "_" not in f.stem)
    return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0


def colorize(n: int, profile: str, workers: int, work: Path, threads1: bool = True) -> dict:
    src = photos(n, work / "in", colour=False)
    base = ["colorize", str(src), *PROFILES[profile], "--device", "cpu", "--json", "--overwrite"]
    if "analogy" in PROFILES[profile]:  # the analogy head needs a reference; the default model colours alone
        ref = min(photos(1, work / "ref", colour=True).glob("*.jpg"))
        base += ["--reference", str(ref)]
    local = run([*base, "-o", str(work / "local")], "exemplar_color")  # the plain folder run: torch's threads
    # the folder run with one thread: on a loaded machine, torch's threads wait for each other (see docs/scale.md)
    local1 = run([*base, "-o", str(work / "local1"), "--threads", "1"], "exemplar_color") if threads1 else None
    ray = run([*base, "-o", str(work / "ray"), "--engine", "ray", "--workers", str(workers), "--threads", "1"],
              "ColorizeWorker")
    rates = {k: steady(list((work / k).glob("*.png"))) for k in ("local", "local1", "ray")}
    # per-photo stage times from the fastest folder run (one thread: the one least slowed by other processes)
    best = local1 if local1 and local1["wall_s"] < local["wall_s"] else local
    timings = [o["timings"] for o in best["result"]["outputs"]]
    cpu_side = sum(t.get("load_s", 0) + t.get("full_resolution_s", 0) for t in timings) / max(1, len(timings))
    return {
        "photos": n, "profile": profile, "ray_workers": workers,
        "local": {"wall_s": local["wall_s"], "photos_per_s_end_to_end": round(n / local["wall_s"], 3),
                  "photos_per_s_steady": round(rates["local"], 3), "peak_bytes": local["driver_peak_bytes"],
                  "mean_photo_s": round(sum(t["total_s"] for t in timings) / max(1, len(timings)), 3),
                  "mean_cpu_side_s": round(cpu_side, 3)},
        "ray": {"wall_s": ray["wall_s"], "photos_per_s_end_to_end": round(n / ray["wall_s"], 3),
                "photos_per_s_steady": round(rates["ray"], 3), "driver_peak_bytes": ray["driver_peak_bytes"],
                "worker_peak_bytes": ray["worker_peak_bytes"], "failed": len(ray["result"]["failed"])},
        "ratio_end_to_end": round(local["wall_s"] / ray["wall_s"], 3),
        "ratio_steady": round(rates["ray"] / rates["local"], 3) if rates["local"] else None,
    } | ({"local_threads_1": {"wall_s": local1["wall_s"], "photos_per_s_steady": round(rates["local1"], 3),
                             "peak_bytes": local1["driver_peak_bytes"]},
          "ratio_end_to_end_vs_threads_1": round(local1["wall_s"] / ray["wall_s"], 3),
          "ratio_steady_vs_threads_1": round(rates["ray"] / rates["local1"], 3) if rates["local1"] else None}
         if local1 else {})


def gallery(n: int, workers: int, work: Path) -> dict:
    g = photos(n, work / "gallery", colour=True)
    base = ["index", "build", str(g), "--vgg-weights", str(FULL), "--device", "cpu", "--json", "--overwrite",
            "--shard-size", str(max(8, n // (workers * 4)))]
    local = run([*base, "--index", str(work / "local.index"), "--workers", "1"], "exemplar_color")
    ray = run([*base, "--index", str(work / "ray.index"), "--engine", "ray", "--workers", str(workers),
               "--threads", "1"], "build_rank")
    same = _same_neighbours(work / "local.index", work / "ray.index", g)
    return {"photos": n, "level": "relu5_4", "ray_workers": workers,
            "local": {"wall_s": local["wall_s"], "photos_per_s": round(n / local["wall_s"], 3),
                      "peak_bytes": local["driver_peak_bytes"]},
            "ray": {"wall_s": ray["wall_s"], "photos_per_s": round(n / ray["wall_s"], 3),
                    "driver_peak_bytes": ray["driver_peak_bytes"], "worker_peak_bytes": ray["worker_peak_bytes"]},
            "ratio_end_to_end": round(local["wall_s"] / ray["wall_s"], 3), "same_neighbours": same}


def _same_neighbours(a: Path, b: Path, g: Path) -> bool:
    from exemplar_color.retrieval import GalleryIndex

    ia, ib = GalleryIndex.open(a), GalleryIndex.open(b)
    queries = sorted(g.glob("*.jpg"))[:5]
    return all([r.path for r in ia.search(q, k=5)] == [r.path for r in ib.search(q, k=5)] for q in queries)


def scaling(c: dict, gal: dict | None) -> dict:
    """1 M photos: hours on this machine (measured), and on N GPUs (an estimate: no GPU was measured here)."""
    rate = c["ray"]["photos_per_s_steady"] or c["ray"]["photos_per_s_end_to_end"]
    out = {"this_machine_hours_per_million": round(1e6 / rate / 3600, 1) if rate else None,
           "measured_on": f"{os.cpu_count()} shared CPU cores, {c['profile']} profile, Ray steady rate {rate} photos/s"}
    if gal:
        out["gallery_this_machine_hours_per_million"] = round(1e6 / gal["ray"]["photos_per_s"] / 3600, 1)
    # GPU estimate: the VGG-19 passes of one photo at 256 px (target + reference, ~2 x 26 GFLOP to relu5_1) at
    # an assumed 25 % of an H100's ~400 dense bf16 TFLOP/s, the matcher and head about as much again; the CPU
    # side (decode, full-resolution upsampling, encode) is what this machine measured per photo, spread over
    # the node's cores per GPU. Whichever is slower bounds a GPU worker.
    gpu_s = 2 * (2 * 26e9) / (0.25 * 400e12)
    # CPU side of one photo in the plain folder run: decoding and full resolution (its timings) plus what falls
    # outside the timings (PNG encoding and writing, the run's own bookkeeping), as CPU-seconds of this machine
    outside = max(0.0, 1 / c["local"]["photos_per_s_end_to_end"] - c["local"]["mean_photo_s"])
    cpu_s = (c["local"]["mean_cpu_side_s"] + outside) * os.cpu_count()
    per_gpu = {cores: round(1 / max(gpu_s, cpu_s / cores), 1) for cores in (8, 16)}
    out["gpu_estimate"] = {
        "per_gpu_photos_per_s_by_cpu_cores_per_gpu": per_gpu,
        "hours_per_million_on_8_gpus_16_cores_each": round(1e6 / (8 * per_gpu[16]) / 3600, 2),
        "basis": "ESTIMATE, not measured (no GPU was lent to this session): GPU part from VGG-19 FLOPs at an "
                 "assumed 25% of H100 bf16 peak; CPU part (decode + full-resolution + encode and write) measured "
                 "here per photo and divided over the CPU cores per GPU; the CPU side bounds a GPU worker",
        "cpu_seconds_per_photo": round(cpu_s, 4),
    }
    return out


def rescale(path: str) -> None:
    """Recompute the scaling block of a saved result (after a change to :func:`scaling`): no photo is run."""
    res = json.loads(Path(path).read_text())
    res["scaling"] = scaling(res["colorize_default"], res["gallery"])
    Path(path).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res["scaling"], indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=24, help="photos to colorize per engine (default profile)")
    ap.add_argument("--light-photos", type=int, default=120, help="photos per engine in the light profile (0: skip)")
    ap.add_argument("--gallery", type=int, default=120, help="gallery photos per engine (0: skip)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="Ray workers (default: one per core)")
    ap.add_argument("--work", default="/tmp/scale-bench", help="scratch folder (emptied first)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--rescale", metavar="JSON", help="only recompute the scaling model of a saved result")
    a = ap.parse_args()
    if a.rescale:
        return rescale(a.rescale)
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.time()
    res = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv), "cpu_count": os.cpu_count(),
           "load_average_before": os.getloadavg()}
    res["colorize_default"] = colorize(a.photos, "default", a.workers, work / "default")
    if a.light_photos:
        res["colorize_light"] = colorize(a.light_photos, "light", a.workers, work / "light")
    res["gallery"] = gallery(a.gallery, a.workers, work / "gallery") if a.gallery else None
    res["scaling"] = scaling(res["colorize_default"], res["gallery"])
    res["load_average_after"] = os.getloadavg()
    res["seconds"] = round(time.time() - t0, 1)
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
