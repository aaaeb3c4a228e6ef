"""``exemplar-color colorize-video IN --reference REF [REF ...] -o OUT``: colour a black-and-white film.

IN is a video file (PyAV: ``pip install exemplar_color[video]``) or a folder of frames; OUT a video file
(by its extension: .mp4, .mkv, .mov, .webm, .avi) or a folder of PNG frames. Frames stream through; the
output keeps the size, frame rate, frame count, timestamps and the audio track (copied, not re-encoded),
and appears under its name only when complete. Inputs and references are checked before any model loads.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..constants import DEFAULT_FLOW, FLOW_METHODS
from ..errors import UsageError
from .options import (
    add_json_option,
    add_model_option,
    add_out_option,
    add_pipeline_options,
    add_resume_option,
    at_least,
    colorizer_from,
    index_folder,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("colorize-video", help="colorize a black-and-white video (or folder of frames)",
                       description="Colorize IN (a video file or a folder of frames) with the colours of one or more "
                                   "reference photos, or of frame N of a colour version (--reference-frame N), "
                                   "keeping each frame's luminance, the frame rate, timestamps and audio.",
                       epilog="""Several references: each shot takes the one that matches it best. --reference-frame N takes
frame N of --reference when that is a video, else of IN (which must then be in colour: the usual evaluation
protocol).

Examples:
  exemplar-color colorize-video film.mp4 --reference still.jpg -o film_colour.mp4
  exemplar-color colorize-video clip.mp4 --reference-frame 0 -o clip_colour.mp4 --resume
""")
    p.add_argument("input", metavar="IN", help="video file or folder of frames")
    p.add_argument("--reference", "-r", nargs="+", metavar="REF", default=[],
                   help="colour reference photo(s), or with --reference-frame a colour video")
    p.add_argument("--reference-frame", type=at_least(0), metavar="N", default=None,
                   help="use frame N (from 0) of the colour video --reference, or of IN, as the reference")
    p.add_argument("--index", metavar="PATH", type=index_folder,
                   help="no reference: retrieve one per shot from this gallery index")
    add_out_option(p, "output video file (.mp4, .mkv, ...) or folder of frames")
    p.add_argument("--per-frame", action="store_true",
                   help="colour each frame on its own (no temporal fusion; flickers more)")
    p.add_argument("--flow", choices=FLOW_METHODS, default=DEFAULT_FLOW,
                   help="motion between frames for the temporal fusion: dis (OpenCV's DIS optical flow, follows "
                        "zoom, rotation and moving subjects; default) or block (the earlier block matching)")
    p.add_argument("--no-cut-detection", action="store_true", help="treat the whole input as one shot")
    p.add_argument("--fps", type=float, default=None, metavar="FPS", help="frame rate of a folder input (default 25)")
    p.add_argument("--crf", type=at_least(0), default=16, metavar="N",
                   help="x264 quality of a video output (default 16)")
    p.add_argument("--max-frames", type=at_least(1), default=None, metavar="N", help="stop after this many frames")
    add_resume_option(p, "continue an interrupted run (killed, Ctrl-C) from its hidden work folder beside OUT "
                         "(.OUT.exemplar-work), skipping finished frames; the result equals an uninterrupted run's")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output video file (without it, an existing OUT is refused before any "
                        "work, exit 2; a non-empty output folder is always refused)")
    p.add_argument("--segment-frames", type=at_least(1), default=48, metavar="N",
                   help="a video OUT is encoded N frames at a time as the run goes, one keyframe each (default 48)")
    add_model_option(p)
    add_pipeline_options(p)
    add_json_option(p, "print a machine-readable summary on stdout")
    p.set_defaults(func=run)


def _precheck(args: argparse.Namespace) -> None:
    """Everything that can be refused without a model: input, output, references."""
    from ..photos import check_reference, read_photo
    from ..video.io import VideoReader, is_video_path, open_source
    from ..outputs import refuse_existing

    src, out = Path(args.input), Path(args.out)
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise UsageError(f"{out}: the output would replace the input")
    if not is_video_path(out) and out.suffix and not out.is_dir():
        raise UsageError(f"{out}: give a video file (.mp4, .mkv, .mov, .webm, .avi) or a folder for the output")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out}: output folder exists and is not empty; choose a new name")
    if not args.overwrite and not out.is_dir():
        refuse_existing([out])
    if not args.reference and args.reference_frame is None and not args.index:
        from ..models import colours_alone

        if not colours_alone(args.model):
            raise UsageError(f"the {args.model} model needs a reference: give --reference REF [REF ...], "
                             f"--reference-frame N, or --index PATH, or use a model that colours alone (the default)")
    with open_source(src, args.fps) as reader:  # missing, not a video, no video stream, no PyAV: one line, here
        if isinstance(reader, VideoReader):
            reader.check_complete(args.max_frames)  # frames missing from the end (a cut file): here too
        if args.size > 256 and args.size > min(reader.info.width, reader.info.height):
            raise UsageError(f"--size {args.size} is above the frames' short side ({src}: "
                             f"{min(reader.info.width, reader.info.height)} px): it would only upsample them, at a "
                             f"great cost in time and memory; give --size "
                             f"{min(reader.info.width, reader.info.height)} or less")
    if args.reference_frame is not None:
        if len(args.reference) > 1:
            raise UsageError("--reference-frame takes its frame from one colour video: give one --reference")
        return
    for r in args.reference:
        if is_video_path(r):
            raise UsageError(f"{r} is a video: add --reference-frame N to use its frame N")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_reference(read_photo(r))


@contextmanager
def _resume_hint(out: str):
    """On Ctrl-C, say where the finished frames wait and how to continue."""
    from ..video.resume import work_folder

    try:
        yield
    except KeyboardInterrupt:
        if work_folder(out).exists():
            print(f"the finished frames wait in {work_folder(out)}: the same command with --resume continues",
                  file=sys.stderr)
        raise


def run(args: argparse.Namespace) -> int:
    _precheck(args)
    colorizer = colorizer_from(args, index=args.index if not args.reference and args.reference_frame is None
                               else None)
    refs = args.reference or None
    with warnings.catch_warnings(record=True) as caught, _resume_hint(args.out):
        warnings.simplefilter("always")
        result = colorizer.colorize_video(
            args.input, refs if args.reference_frame is None else (refs[0] if refs else None), args.out,
            reference_frame=args.reference_frame, temporal=not args.per_frame,
            detect_cuts=not args.no_cut_detection, fps=args.fps, crf=args.crf, max_frames=args.max_frames,
            progress=not (args.json or args.quiet), resume=args.resume, segment_frames=args.segment_frames,
            overwrite=args.overwrite, flow=args.flow)
    for msg in dict.fromkeys(str(w.message) for w in caught):
        print(f"warning: {msg}", file=sys.stderr)
    summary = {"output": str(result.output), "frames": result.frames, "size": [result.width, result.height],
               "fps": round(result.fps, 4), "temporal": result.temporal, "audio_copied": result.audio_copied,
               "shots": [{"first_frame": i, "reference": r} for i, r in result.references],
               "resumed_at": result.resumed_at, "seconds": round(result.seconds, 2),
               "frames_per_s": round(result.frames_per_second, 3),
               "head": colorizer.head_name, "device": str(colorizer.device)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        refs_said = "; ".join(f"shot at frame {i}: {r}" for i, r in result.references[:5])
        more = f"; ... ({len(result.references)} shots)" if len(result.references) > 5 else ""
        resumed = f", {result.resumed_at} of them by the interrupted run" if result.resumed_at else ""
        print(f"colorized {result.frames} frames{resumed} ({result.frames_per_second:.2f} frames/s) -> "
              f"{result.output}; {refs_said}{more}")  # the result: stdout, as every command's
    return 0
