"""Cut detection on black-and-white film: the library's ShotDetector against PySceneDetect's ContentDetector and
AdaptiveDetector (a maintained library, ``pip install scenedetect``), as JSON. Every detector sees luminance
only, as a gray film gives it (PySceneDetect with ``luma_only=True``).

Clips, with cuts labelled by eye (the 12 largest frame-to-frame changes of bikes.mp4 looked at: cuts at 30, 76,
137, 187 and 242; 73-75 and 99-103 are fast pans, not cuts): the three real clips whole (carphone and
bigbuckbunny have no cut), carphone then bigbuckbunny joined (a cut at 40), and 12-frame camera moves filmed
over Kodak photos (pan, zooms, rotation, pan + zoom, a moving disc: no cut; and a cut at frame 6). Scores:
cuts found, missed, and false cuts.

PySceneDetect is not a dependency of the package: its wheel requires ``opencv-python``, which clashes with the
``opencv-python-headless`` the package uses for optical flow (two builds of ``cv2`` in one environment).
Without it the script scores the ShotDetector alone.

    pip install scenedetect   # for the comparison; then reinstall opencv-python-headless if cv2 breaks
    python benchmarks/cut_detection.py [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXEMPLAR_COLOR_SHARED", ROOT.parent / "shared"))
VIDEO = SHARED / "data" / "video"
KODAK = SHARED / "data" / "kodak"
BIKES_CUTS = [30, 76, 137, 187, 242]
SIZE = (144, 256)  # every frame brought to one size (the joined clip mixes two)


def _frames(clip: str, n: int = 10_000) -> list[np.ndarray]:
    from exemplar_color.video import open_source

    with open_source(VIDEO / f"{clip}.mp4") as src:
        return [np.asarray(Image.fromarray(f.rgb).resize(SIZE[::-1], Image.BILINEAR)) for f in src.frames()
                if f.index < n]


def clips() -> dict[str, tuple[list[np.ndarray], list[int]]]:
    from exemplar_color.video.synthetic import ALL_MOVES, move_clip

    out = {"bikes": (_frames("bikes"), BIKES_CUTS), "carphone": (_frames("carphone_pristine"), []),
           "bigbuckbunny": (_frames("bigbuckbunny"), []),
           "carphone+bigbuckbunny": (_frames("carphone_pristine", 40) + _frames("bigbuckbunny", 40), [40])}
    photo = lambda n: np.asarray(Image.open(KODAK / f"{n}.png").convert("RGB"))  # noqa: E731
    for move in ALL_MOVES:
        second = photo("kodim21") if move in ("object", "cut") else None
        out[f"kodak {move}"] = (move_clip(move, photo("kodim19"), 12, size=SIZE, other=second), [6] if move == "cut" else [])
    return out


def gray(rgb: np.ndarray) -> np.ndarray:
    """The film as a black-and-white source gives it: Lab lightness as 8-bit gray."""
    from exemplar_color.color import l_to_gray, rgb_to_lab
    from exemplar_color.layout import to_tensor

    l = rgb_to_lab(to_tensor(rgb.astype(np.float32) / 255))[:, :1]
    return (l_to_gray(l)[0, 0].numpy() * 255).round().astype(np.uint8)


def ours(frames: list[np.ndarray]) -> list[int]:
    from exemplar_color.color import gray_to_l
    from exemplar_color.video.shots import ShotDetector

    det = ShotDetector()
    cuts = []
    for i, g in enumerate(frames):
        l = gray_to_l(torch.from_numpy(g.astype(np.float32) / 255)[None, None])
        if det(l) and i:
            cuts.append(i)
    return cuts


def scenedetect(frames: list[np.ndarray], kind: str) -> list[int]:
    from scenedetect import FrameTimecode
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    det = (ContentDetector(luma_only=True, min_scene_len=3) if kind == "content" else
           AdaptiveDetector(luma_only=True, min_scene_len=3))
    cuts = []
    for i, g in enumerate(frames):
        cuts += [int(t.frame_num) for t in det.process_frame(FrameTimecode(i, fps=25.0), np.repeat(g[..., None], 3, 2))]
    if hasattr(det, "post_process"):
        cuts += [int(t.frame_num) for t in det.post_process(FrameTimecode(len(frames), fps=25.0))]
    return sorted(set(c for c in cuts if c > 0))


def score(found: list[int], truth: list[int], tolerance: int = 1) -> dict:
    hit = [t for t in truth if any(abs(f - t) <= tolerance for f in found)]
    false = [f for f in found if all(abs(f - t) > tolerance for t in truth)]
    return {"found": len(hit), "missed": len(truth) - len(hit), "false": len(false), "false_at": false}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    detectors = {"ours (ShotDetector)": ours}
    if importlib.util.find_spec("scenedetect") is not None:
        detectors |= {"PySceneDetect ContentDetector": lambda f: scenedetect(f, "content"),
                      "PySceneDetect AdaptiveDetector": lambda f: scenedetect(f, "adaptive")}
    else:
        print("PySceneDetect not installed: scoring the ShotDetector alone", file=sys.stderr)
    res: dict = {"date": time.strftime("%Y-%m-%d"), "clips": {}, "totals": {}}
    for name, (frames, truth) in clips().items():
        g = [gray(f) for f in frames]
        row = {"frames": len(g), "cuts": truth}
        for det, fn in detectors.items():
            t0 = time.perf_counter()
            row[det] = {**score(fn(g), truth), "ms_per_frame": round(1000 * (time.perf_counter() - t0) / len(g), 2)}
        res["clips"][name] = row
        print(name, {d: (row[d]["found"], row[d]["missed"], row[d]["false"]) for d in detectors}, file=sys.stderr)
    for det in detectors:
        rows = [r[det] for r in res["clips"].values()]
        res["totals"][det] = {k: sum(r[k] for r in rows) for k in ("found", "missed", "false")}
    text = json.dumps(res, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
