"""Temporal consistency under camera moves that are not translations, as JSON: the temporal path
against colouring each frame on its own, per move, on clips filmed over real photos
(:mod:`exemplar_color.video.synthetic`: pan, zoom in, zoom out, rotation, pan + zoom, a subject moving
over a background, a cut) and on the three real clips.

Each synthetic clip is coloured from its own first frame (frame 0 left out of the scores) and from a
different photo. Figures per path: flicker (:func:`exemplar_color.metrics.flicker`: colour change the
truth does not have), PSNR (RGB, 8-bit) and frames/s; per move the ratios temporal / per-frame. The real
clips (own first frame) add the steady-truth floor (``benchmarks/video_temporal.py``).

The flicker figure counts any change of the error between frames, so colours that are wrong but perfectly
steady also "flicker" wherever the scene moves under them. For the camera moves the benchmark measures that
floor: the whole photo coloured once (same reference, working size scaled so objects have the frames' pixel
size) and filmed with the same camera, a clip that cannot flicker; ``excess_ratio`` = (temporal - floor) /
(per-frame - floor) is the share of the per-frame path's real flicker the temporal path keeps. The warping
error (:mod:`exemplar_color.video.consistency`, Lai et al. 2018) follows the truth's motion instead, so it
needs no such floor; ``truth_warping_error`` is its own (resampling and flow error).

Tuning and reporting photos are disjoint: the flow, guard and fusion were tuned on Kodak 3, 5, 8 and 23
(zoom in, rotation, zoom out, pan; VGG-19 slices, working size 96); this reports on Kodak 13, 15, 19, 21, 24
with the full VGG-19 and the shipped model, 160x256 frames at working size 160.

    python benchmarks/video_moves.py --frames 12 --out benchmarks/results/video_moves.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", ROOT.parent / "shared"))
KODAK = SHARED / "data" / "kodak"
FULL = SHARED / "weights" / "vgg19-caffe-features-0-34-q8.pth"
# (move, photo the clip is filmed over, second photo: the moving subject or the next shot, photo reference)
CASES = [("pan", "kodim13", None, "kodim24"), ("zoom_in", "kodim15", None, "kodim21"),
         ("zoom_out", "kodim19", None, "kodim13"), ("rotation", "kodim21", None, "kodim15"),
         ("pan_zoom", "kodim24", None, "kodim19"), ("object", "kodim13", "kodim15", "kodim24"),
         ("cut", "kodim19", "kodim21", "kodim13")]


def _photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB"))


def _mean_psnr(out: list[np.ndarray], truth: list[np.ndarray], skip_first: bool) -> float:
    from exemplar_color.metrics import psnr

    s = 1 if skip_first else 0
    return round(float(np.mean([float(psnr(o, t)) for o, t in zip(out[s:], truth[s:])])), 3)


def _paths(colorizer, folder: Path, truth: list[np.ndarray], reference, flow: str) -> dict:
    from exemplar_color.metrics import flicker
    from exemplar_color.video.consistency import warping_error
    from exemplar_color.video import iter_colorized

    kw = dict(reference_frame=0) if reference is None else dict(reference=reference)
    res = {}
    for name, temporal in (("per_frame", False), ("temporal", True)):
        t0 = time.perf_counter()
        got = list(iter_colorized(colorizer, folder, temporal=temporal, flow=flow, **kw))
        seconds = time.perf_counter() - t0
        out = [f.rgb for f in got]
        res[name] = {"flicker": round(flicker(out, truth), 4), "warping_error": round(warping_error(out, truth), 4),
                     "psnr_db": _mean_psnr(out, truth, reference is None),
                     "frames_per_s": round(len(out) / seconds, 3),
                     "cuts": [f.index for f in got if f.cut]}
    res["flicker_ratio"] = round(res["temporal"]["flicker"] / res["per_frame"]["flicker"], 3)
    res["truth_warping_error"] = round(warping_error(truth, truth), 4)  # the floor: resampling and flow error
    res["warping_ratio"] = round(res["temporal"]["warping_error"] / res["per_frame"]["warping_error"], 3)
    res["psnr_gain_db"] = round(res["temporal"]["psnr_db"] - res["per_frame"]["psnr_db"], 3)
    res["speed_ratio"] = round(res["per_frame"]["frames_per_s"] / res["temporal"]["frames_per_s"], 3)
    return res


def _floor(whole_colorizer, move: str, photo: np.ndarray, frames: int, truth: list[np.ndarray], reference) -> dict:
    """The consistent clip's figures: ``photo`` coloured once from ``reference`` and filmed like the truth."""
    from exemplar_color.evaluation import decolorize
    from exemplar_color.metrics import flicker
    from exemplar_color.video.consistency import warping_error
    from exemplar_color.video.synthetic import MOVES, film

    whole = np.asarray(whole_colorizer.colorize(decolorize(photo), reference).image)
    clip = film(whole, [MOVES[move](t) for t in range(frames)], truth[0].shape[:2])
    return {"flicker": round(flicker(clip, truth), 4), "warping_error": round(warping_error(clip, truth), 4),
            "psnr_db": _mean_psnr(clip, truth, False)}


def _excess(res: dict, floor: dict) -> dict:
    res["consistent_floor"] = floor
    above = res["per_frame"]["flicker"] - floor["flicker"]
    res["excess_ratio"] = round((res["temporal"]["flicker"] - floor["flicker"]) / above, 3) if above > 0 else None
    return res


def synthetic(colorizer, frames: int, flow: str, cases=CASES, whole_colorizer=None) -> dict:
    from exemplar_color.video.synthetic import MOVES, move_clip

    out = {}
    for move, photo, second, ref in cases:
        truth = move_clip(move, _photo(photo), frames, other=_photo(second) if second else None)
        with tempfile.TemporaryDirectory() as tmp:
            for i, rgb in enumerate(truth):
                Image.fromarray(rgb).save(Path(tmp) / f"{i:03d}.png")
            out[move] = {"photo": photo, "second": second,
                         "own_first_frame": _paths(colorizer, Path(tmp), truth, None, flow),
                         "photo_reference": dict(reference=ref, **_paths(colorizer, Path(tmp), truth,
                                                                        str(KODAK / f"{ref}.png"), flow))}
            if move in MOVES and whole_colorizer is not None:  # the floor of a clip that cannot flicker
                for key, reference in (("own_first_frame", truth[0]), ("photo_reference", KODAK / f"{ref}.png")):
                    _excess(out[move][key], _floor(whole_colorizer, move, _photo(photo), frames, truth, reference))
        print(move, json.dumps({k: (v["flicker_ratio"], v.get("excess_ratio"), v["warping_ratio"], v["psnr_gain_db"])
                                for k, v in out[move].items() if isinstance(v, dict) and "flicker_ratio" in v}),
              file=sys.stderr, flush=True)
    return out


def real_clips(colorizer, frames: int, flow: str) -> dict:
    """The shared real clips, own first frame, with the steady-truth floor (video_temporal's protocol)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from video_temporal import VIDEO, steady_truth, truth_frames

    from exemplar_color.metrics import flicker

    out = {}
    for clip in ("bikes", "carphone_pristine", "bigbuckbunny"):
        truth = truth_frames(VIDEO / f"{clip}.mp4", frames)
        with tempfile.TemporaryDirectory() as tmp:
            for i, rgb in enumerate(truth):
                Image.fromarray(rgb).save(Path(tmp) / f"{i:03d}.png")
            res = _paths(colorizer, Path(tmp), truth, None, flow)
        res["steady_truth_flicker"] = round(flicker(steady_truth(truth), truth), 4)
        out[clip] = res
        print(clip, res["flicker_ratio"], res["psnr_gain_db"], file=sys.stderr, flush=True)
    return out


def summary(res: dict) -> dict:
    rows = [v for m in res["synthetic"].values() for v in m.values() if isinstance(v, dict) and "flicker_ratio" in v]
    rows += list(res["real"].values())
    excess = [r["excess_ratio"] for r in rows if r.get("excess_ratio") is not None]
    return {"worst_flicker_ratio": max(r["flicker_ratio"] for r in rows),
            "worst_warping_ratio": max(r["warping_ratio"] for r in rows),
            "worst_excess_ratio": max(excess) if excess else None,
            "worst_psnr_gain_db": min(r["psnr_gain_db"] for r in rows),
            "median_speed_ratio": float(np.median([r["speed_ratio"] for r in rows]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=12, help="frames per synthetic clip")
    ap.add_argument("--real-frames", type=int, default=16, help="frames per real clip; 0: skip them")
    ap.add_argument("--flow", default="dis", help="dis (default) or block")
    ap.add_argument("--moves", nargs="*", default=None, help="only these moves")
    ap.add_argument("--size", type=int, default=160,
                    help="working size (short side); 160 = the synthetic frames' own, so nothing is resampled")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    from exemplar_color import Colorizer

    colorizer = Colorizer(device=args.device, vgg_weights=FULL, size=args.size)
    # the whole photo at the scale the frames see it (a frame covers 0.6 of the photo's short side)
    whole_colorizer = Colorizer(device=args.device, vgg_weights=FULL, size=round(args.size / 0.6))
    cases = [c for c in CASES if args.moves is None or c[0] in args.moves]
    res = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "flow": args.flow,
           "model": colorizer.head_name, "size": colorizer.size, "threads": args.threads,
           "synthetic": synthetic(colorizer, args.frames, args.flow, cases, whole_colorizer),
           "real": real_clips(colorizer, args.real_frames, args.flow) if args.real_frames else {}}
    res["summary"] = summary(res)
    text = json.dumps(res, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
