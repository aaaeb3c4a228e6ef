"""Video colorization, temporal path against the per-frame baseline, on the shared real clips, as JSON.

Protocol (issue 13): each clip is decolorized (only its L is used) and colorized back; the reference is
(a) frame 0 of the same clip (the usual evaluation protocol; frame 0 itself is left out of the scores) or
(b) a photo that is not from the clip. Per path: PSNR (RGB, 8-bit) and ab error (mean Euclidean ab distance,
CIE Lab) against the original colour frames, and flicker: the mean over frames t >= 1 of
| (ab_t - ab_{t-1})_output - (ab_t - ab_{t-1})_truth | (per-pixel Euclidean, so true motion of colour is not
counted), with the raw output change mean | ab_t - ab_{t-1} | beside it. Throughput: frames/s of each path
and of colorizing the same frames as separate photos (``Colorizer.colorize(frame, reference)``).

    python benchmarks/video_temporal.py --frames 30 --size 128 --strip docs/reports/video/strip.jpg
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", ROOT.parent / "shared"))
VIDEO = SHARED / "data" / "video"
PHOTOS = {"bikes": "imagenet-sample/n03792782_mountain_bike.JPEG",
          "carphone_pristine": "imagenet-sample/n03770679_minivan.JPEG"}
BACKBONES = {
    "slices": dict(vgg_weights=SHARED / "weights" / "vgg19-torchvision-features-0-10.pth",
                   vgg_variant="torchvision", levels=["relu3_1", "relu2_1", "relu1_1"], model="analogy"),
    "full": dict(vgg_weights=SHARED / "weights" / "vgg19-caffe-features-0-34-q8.pth"),  # default model + VGG
}


def _lab(rgb: np.ndarray) -> np.ndarray:
    from exemplar_color.color import rgb_to_lab

    return rgb_to_lab(torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()


def truth_frames(clip: Path, n: int) -> list[np.ndarray]:
    from exemplar_color.video import open_source

    with open_source(clip) as src:
        return [f.rgb for f in src.frames() if f.index < n][:n]


def _tvl1_flows(truth: list[np.ndarray]) -> list[np.ndarray]:
    """Flow t -> t-1 of the TRUE frames' L by scikit-image's TV-L1 (an independent method, not our matcher)."""
    from skimage.registration import optical_flow_tvl1

    ls = [_lab(t)[..., 0] / 100 for t in truth]
    return [optical_flow_tvl1(ls[i], ls[i - 1]) for i in range(1, len(ls))]


def warping_error(out: list[np.ndarray], flows: list[np.ndarray]) -> float:
    """Mean |ab_t - ab_{t-1} moved by the true motion| (ab units), pixels whose true L is explained by the
    motion (|dL| < 2) only: the colour change that motion does not explain."""
    from scipy.ndimage import map_coordinates

    errs = []
    for i in range(1, len(out)):
        lab_t, lab_p = _lab(out[i]), _lab(out[i - 1])
        v, u = flows[i - 1]
        h, w = v.shape
        rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        coords = [rr + v, cc + u]
        moved = np.stack([map_coordinates(lab_p[..., k], coords, order=1, mode="nearest") for k in range(3)], -1)
        ok = np.abs(moved[..., 0] - lab_t[..., 0]) < 2
        errs.append(float(np.linalg.norm(moved[..., 1:] - lab_t[..., 1:], axis=-1)[ok].mean()))
    return round(float(np.mean(errs)), 3)


def scores(out: list[np.ndarray], truth: list[np.ndarray], skip_first: bool) -> dict:
    s = 1 if skip_first else 0
    psnr, ab_err, flick, raw, still = [], [], [], [], []
    prev = None
    for i, (o, t) in enumerate(zip(out, truth)):
        lo, lt = _lab(o), _lab(t)
        if i >= s:
            mse = np.mean((o.astype(np.float64) - t.astype(np.float64)) ** 2) / 255 ** 2
            psnr.append(10 * np.log10(1 / max(mse, 1e-12)))
            ab_err.append(float(np.linalg.norm(lo[..., 1:] - lt[..., 1:], axis=-1).mean()))
        if prev is not None:
            do, dt = lo[..., 1:] - prev[0][..., 1:], lt[..., 1:] - prev[1][..., 1:]
            flick.append(float(np.linalg.norm(do - dt, axis=-1).mean()))
            raw.append(float(np.linalg.norm(do, axis=-1).mean()))
            still.append(float(np.linalg.norm(dt, axis=-1).mean()))
        prev = (lo, lt)
    return {"psnr_db": round(float(np.mean(psnr)), 3), "ab_error": round(float(np.mean(ab_err)), 3),
            "flicker": round(float(np.mean(flick)), 3), "output_ab_change": round(float(np.mean(raw)), 3),
            "truth_ab_change": round(float(np.mean(still)), 3)}


def steady_truth(truth: list[np.ndarray]) -> list[np.ndarray]:
    """An oracle for the flicker's floor: each frame's own L with the truth's ab averaged over the frames,
    8-bit like the outputs. It cannot follow the originals' chroma noise, and no colorization can; its
    flicker is about what an output that is steady and right still scores."""
    from exemplar_color.color import lab_to_rgb

    labs = [_lab(t) for t in truth]
    ab = np.mean([x[..., 1:] for x in labs], 0)
    out = []
    for x in labs:
        lab = torch.from_numpy(np.concatenate([x[..., :1], ab], -1)).permute(2, 0, 1)[None].float()
        out.append((lab_to_rgb(lab)[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
    return out


def run_clip(colorizer, clip: Path, n: int, reference, label: str, photo_frames: int, weights=(20.0,),
             ) -> tuple[dict, dict]:
    from exemplar_color.video import iter_colorized

    truth = truth_frames(clip, n)
    flows = _tvl1_flows(truth)
    kw = dict(reference_frame=0) if reference is None else dict(reference=reference)
    res, outs = {"reference": label}, {}
    paths = [("per_frame", False, 0.0)] + [("temporal" + (f"_w{w:g}" if i else ""), True, w)
                                           for i, w in enumerate(weights)]
    for name, temporal, w in paths:
        got = list(iter_colorized(colorizer, clip, max_frames=n, temporal=temporal, weight=w, **kw))
        frames = [f.rgb for f in got]
        sec = float(np.median([f.seconds for f in got[1:]]))  # median: robust to a neighbour stealing the cores
        res[name] = scores(frames, truth, skip_first=reference is None) | {
            "warping_error": warping_error(frames, flows), "frames_per_s": round(1 / sec, 3)}
        outs[name] = frames
    if photo_frames:
        ref = truth[0] if reference is None else reference
        sec = []
        for t in truth[1:1 + photo_frames]:
            t0 = time.perf_counter()
            colorizer.colorize(t, ref)
            sec.append(time.perf_counter() - t0)
        res["separate_photos_frames_per_s"] = round(1 / float(np.median(sec)), 3)
    res["truth_warping_error"] = warping_error(truth, flows)
    steady = steady_truth(truth)
    res["steady_truth"] = scores(steady, truth, skip_first=reference is None) | {"warping_error": warping_error(steady, flows)}
    res["flicker_ratio_temporal_over_per_frame"] = round(res["temporal"]["flicker"] / res["per_frame"]["flicker"], 3)
    res["warping_error_ratio"] = round(res["temporal"]["warping_error"] / res["per_frame"]["warping_error"], 3)
    res["psnr_gain_db"] = round(res["temporal"]["psnr_db"] - res["per_frame"]["psnr_db"], 3)
    return res, outs | {"truth": truth}


def component_times(colorizer, clip: Path) -> dict:
    """Median seconds of the per-frame match+head and of the temporal extra (two block flows + fusion) on
    one real frame pair: steadier than frames/s on a shared machine."""
    from exemplar_color.photos import read_photo
    from exemplar_color.video.motion import block_flow, flow_confidence, warp
    from exemplar_color.video.temporal import fuse

    a, b = truth_frames(clip, 2)
    pa, pb = (read_photo(x, colorizer.size, colorizer.device) for x in (a, b))
    tl, rlab = colorizer.working(pb, pa)
    tl0 = colorizer.working_l(pa)

    def frame():
        corr = colorizer.matcher.match(tl, rlab)
        ab = colorizer.head(tl, corr)
        colorizer.render(pb.pixels, tl, ab).ab_array()
        return ab, corr

    ab, corr = frame()

    def extra():
        f, bk = block_flow(tl, tl0), block_flow(tl0, tl)
        return fuse(ab, corr.confidence, warp(ab, f), flow_confidence(tl, tl0, f, bk), warp(corr.confidence, f))

    def med(fn, k=5):
        ts = []
        for _ in range(k):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return round(float(np.median(ts)), 4)

    with torch.inference_mode():
        return {"working_size": list(tl.shape[-2:]), "frame_s": med(frame, 3), "temporal_extra_s": med(extra)}


def writing(colorizer, clip: Path, n: int) -> dict:
    """What writing costs: ``colorize_video`` of ``n`` frames to a video file and to a folder of PNGs, and
    the seconds spent in the resumable writer (each frame finished on disk with the state after it; a video
    encoded in segments and muxed with the audio at the end), as a share of the run: steadier than comparing
    two runs' frames/s on a shared machine."""
    import tempfile

    from exemplar_color.video.resume import WorkFolder

    spent = [0.0]

    def timed(fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t0
        return wrapper

    res = {"frames": n}
    add, commit = WorkFolder.add, WorkFolder.commit
    WorkFolder.add, WorkFolder.commit = timed(add), timed(commit)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for kind, out in (("video_file", Path(tmp) / "o.mp4"), ("png_folder", Path(tmp) / "o")):
                spent[0] = 0.0
                r = colorizer.colorize_video(clip, None, out, reference_frame=0, max_frames=n)
                res[kind] = {"frames_per_s": round(r.frames_per_second, 3),
                             "writing_ms_per_frame": round(1000 * spent[0] / n, 1),
                             "writing_share": round(spent[0] / r.seconds, 4)}
    finally:
        WorkFolder.add, WorkFolder.commit = add, commit
    return res


def strip(path: Path, outs: dict, picks: list[int]) -> None:
    from PIL import Image, ImageDraw

    rows = [("original", outs["truth"]), ("per-frame", outs["per_frame"]), ("temporal", outs["temporal"])]
    h, w = outs["truth"][0].shape[:2]
    scale = 240 / w if w > 240 else 1.0
    tw, th = int(w * scale), int(h * scale)
    sheet = Image.new("RGB", (70 + tw * len(picks), th * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, frames) in enumerate(rows):
        draw.text((4, r * th + th // 2), name, fill="black")
        for c, i in enumerate(picks):
            sheet.paste(Image.fromarray(frames[i]).resize((tw, th), Image.BILINEAR), (70 + c * tw, r * th))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=88)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", nargs="+", default=["carphone_pristine", "bikes"])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--backbone", choices=list(BACKBONES), default="slices")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", type=float, nargs="+", default=[20.0],
                    help="temporal weights to try (the first is reported as 'temporal')")
    ap.add_argument("--photo-frames", type=int, default=8, help="frames colorized as separate photos for fps")
    ap.add_argument("--no-photo-reference", action="store_true", help="skip protocol (b)")
    ap.add_argument("--write-frames", type=int, default=12,
                    help="frames for the cost of writing (video file, PNG folder) against frames in memory; 0: skip")
    ap.add_argument("--only-writing", action="store_true", help="measure only the cost of writing")
    ap.add_argument("--strip", type=Path, default=None, help="write a before/after strip of the first clip")
    ap.add_argument("--strip-photo", type=Path, default=None,
                    help="write a strip of three consecutive frames of the first clip, photo reference (protocol b)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    from exemplar_color import Colorizer

    colorizer = Colorizer(device=args.device, size=args.size, **BACKBONES[args.backbone])
    report = {"command": " ".join(sys.argv), "backbone": args.backbone, "head": colorizer.head_name,
              "levels": list(colorizer.levels), "size": args.size, "frames": args.frames,
              "device": str(colorizer.device), "threads": args.threads, "cpu": platform.processor() or platform.machine(),
              "load_average": [round(x, 2) for x in os.getloadavg()], "clips": {}}
    for i, clip in enumerate(args.clips):
        path = VIDEO / f"{clip}.mp4"
        entry = {"writing": writing(colorizer, path, args.write_frames)} if args.write_frames else {}
        if args.only_writing:
            report["clips"][clip] = entry
            continue
        entry["timing"] = component_times(colorizer, path)
        entry["frame0"], outs = run_clip(colorizer, path, args.frames, None, "frame 0 of the clip",
                                          args.photo_frames, args.weights)
        if args.strip is not None and i == 0:
            n = len(outs["truth"])
            strip(args.strip, outs, [n // 4, n // 2, n - 1])
        if not args.no_photo_reference and clip in PHOTOS:
            ref = SHARED / "data" / PHOTOS[clip]
            entry["photo"], outs = run_clip(colorizer, path, args.frames, ref, PHOTOS[clip], 0, args.weights)
            if args.strip_photo is not None and i == 0:
                n = len(outs["truth"])
                strip(args.strip_photo, outs, [n // 2, n // 2 + 1, n // 2 + 2])
        report["clips"][clip] = entry
        print(json.dumps({clip: entry}), file=sys.stderr, flush=True)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
