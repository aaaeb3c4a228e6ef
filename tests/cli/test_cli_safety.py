"""The command line never loses or overwrites a file, refuses mistakes before any work in one line, and a
killed run leaves nothing behind (issue 15). Real CLI, real photos, the real VGG-19 slice."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exemplar_color.cli.main import main

LEVELS = ["relu2_1", "relu1_1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def common(tv_weights):
    return ["--vgg-weights", str(tv_weights), "--vgg-variant", "torchvision", "--model", "analogy",
            "--levels", *LEVELS, "--size", "64", "--device", "cpu"]


@pytest.fixture
def photos(tmp_path, data_dir):
    """in/ with two small gray scans (a.jpg, b.png) and a colour reference ref.jpg, copied from real photos."""
    src = data_dir / "exemplar-pairs" / "example"
    d = tmp_path / "in"
    d.mkdir()
    Image.open(src / "in1.jpg").convert("L").resize((160, 120)).save(d / "a.jpg")
    Image.open(src / "in2.JPEG").convert("L").resize((120, 160)).save(d / "b.png")
    ref = tmp_path / "ref.jpg"
    Image.open(src / "ref1.jpg").convert("RGB").resize((160, 120)).save(ref)
    return d, ref


@pytest.fixture
def no_model(monkeypatch):
    """Loading VGG-19 (every command's model) fails the test: usage refusals must come before it."""
    from exemplar_color.backbone import VGG19Features

    def refuse(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(VGG19Features, "__init__", refuse)


def cli(capsys, *args) -> tuple[int, list[str], str]:
    """(exit code, stderr lines without progress/warnings, stdout)."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse's refusals
        rc = e.code
    out = capsys.readouterr()
    lines = [part for ln in out.err.splitlines() for part in ln.split("\r")]
    return rc, [ln for ln in lines if ln.strip() and not ln.startswith("colorize:")], out.out


def snapshot(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in folders for p in sorted(d.rglob("*")) if p.is_file()}


def no_temp_files(*folders: Path) -> bool:
    return not [p for d in folders if d.exists() for p in d.rglob(".*") if "tmp" in p.name]


def one_error(rc: int, lines: list[str], code: int, *words: str) -> None:
    assert rc == code, lines
    assert len(lines) == 1 and "error:" in lines[0], lines
    for w in words:
        assert w in lines[0], lines


# ---------------------------------------------------------------- 1. plan before work (usage: exit 2)
def test_colliding_outputs_are_refused_before_any_model(photos, tmp_path, common, capsys, no_model):
    d, ref = photos
    shutil.copy(d / "a.jpg", d / "b.jpg")  # b.jpg and b.png -> out/b.png
    before = snapshot(d)
    rc, err, _ = cli(capsys, "colorize", d, "-r", ref, "-o", tmp_path / "out", *common)
    one_error(rc, err, 2, "b.jpg", "b.png", "both be written")
    (tmp_path / "other").mkdir()
    shutil.copy(d / "a.jpg", tmp_path / "other" / "a.jpg")  # the same name in two input folders
    (d / "b.jpg").unlink()
    rc, err, _ = cli(capsys, "colorize", d, tmp_path / "other", "-r", ref, "-o", tmp_path / "out", *common)
    one_error(rc, err, 2, "a.jpg", "both be written")
    rc, err, _ = cli(capsys, "colorize", d, "-r", ref, "-o", tmp_path / "out", "--save-confidence", *common)
    assert rc == 1 and "a model was loaded" in err[0]  # a clean plan goes on (to the model, refused here)
    assert not (tmp_path / "out").exists() and snapshot(d) == {k: v for k, v in before.items() if "b.jpg" not in k}


def test_outputs_that_would_replace_an_input_are_refused(photos, tmp_path, common, capsys, no_model):
    d, ref = photos
    before = snapshot(d) | snapshot(ref.parent)
    cases = [
        (["colorize", d / "b.png", "-r", ref, "-o", d / "b.png"], "would overwrite the input"),
        (["colorize", d / "a.jpg", "-r", ref, "-o", ref], "would overwrite the input"),
        (["colorize", d, "-r", ref, "-o", d], "input folder itself"),
        (["colorize", d / "a.jpg", "-r", ref, "-o", d], "folder of the input"),
        (["colorize", d, "-r", ref, "-o", tmp_path / "x.png"], "give a folder"),
        (["colorize", d / "a.jpg", d / "b.png", "-r", ref, "-o", tmp_path / "x.png"], "give a folder"),
        (["colorize", d / "a.jpg", "-r", ref, "-o", tmp_path / "result.out"], "not an image extension"),
        (["colorize", d / "a.jpg", "-r", ref, "-o", tmp_path / "x.gif"], "cannot write .gif"),
        (["colorize", d / "a.jpg", "-r", ref, "-o", ref / "sub/"], "is a file"),
        (["colorize", d / "nope.jpg", "-r", ref, "-o", tmp_path / "o"], "no such file"),
        (["match", d / "a.jpg", ref, "--out", ref], "would overwrite the input"),
        (["match", d / "a.jpg", ref, "--out", tmp_path], "is a folder"),
        (["evaluate", d, "--reference-mode", "self-transform", "--out", d / "report"], "inside the input folder"),
        (["evaluate", d, "--reference-mode", "self-transform", "--out", ref], "existing file"),
        (["index", "build", d, "--index", ref, "--vgg-variant", "torchvision"], "existing file"),
    ]
    extra = {"colorize": common, "evaluate": common, "match": common[:4] + common[6:], "index": []}
    for args, words in cases:
        rc, err, _ = cli(capsys, *args, *extra[args[0]])
        one_error(rc, err, 2, words)
    assert snapshot(d) | snapshot(ref.parent) == before
    assert not (tmp_path / "result.out").exists() and not (tmp_path / "x.png").exists()
    assert not (d / "report").exists()


@pytest.mark.parametrize("args, words", [
    (["colorize", "{a}", "-r", "{ref}", "-o", "{o}", "--size", "0"], "--size: must be a whole number from 32 to 2048"),
    (["colorize", "{a}", "-r", "{ref}", "-o", "{o}", "--size", "-5"], "--size: must be a whole number from 32 to"),
    (["colorize", "{a}", "-r", "{ref}", "-o", "{o}", "--levels", "relu9_1"], "unknown VGG-19 level"),
    (["colorize", "{a}", "-r", "{o}/missing.jpg", "-o", "{o}"], "no such file"),
    (["colorize", "{a}", "--auto", "--index", "{ref}", "-o", "{o}"], "is a file, not a gallery index"),
    (["colorize", "{a}", "-r", "{ref}", "-o", "{o}", "--vgg-weights", "{o}/none.pth"], "no such file"),
    (["colorize", "{a}", "-r", "{ref}", "-o", "{o}", "--max-pixels", "0"], "--max-pixels"),
    (["colorize", "{a}", "-o", "{o}", "--model", "analogy"], "needs a reference"),  # the default model colours alone
    (["index", "query", "{a}", "--index", "{tmp}", "-k", "0"], "-k: must be at least 1"),
    (["index", "query", "{a}", "--index", "{tmp}/none"], "no such gallery index"),
    (["match", "{a}", "{o}/missing.jpg", "--out", "{o}/m.npz"], "no such file"),
])
def test_argument_mistakes_are_one_line_exit_2(photos, tmp_path, capsys, no_model, args, words):
    d, ref = photos
    fill = {"a": d / "a.jpg", "ref": ref, "o": tmp_path / "out", "tmp": tmp_path}
    rc, err, _ = cli(capsys, *[a.format(**fill) for a in args])
    assert rc == 2 and len(err) == 1 and words in err[0], err


def test_unwritable_output_is_found_before_the_work(photos, tmp_path, common, capsys, no_model):
    """An output place that cannot be written (here under /proc, which nobody can write; as a non-root
    user also a read-only folder) is refused in one line, exit 1, before any model."""
    d, ref = photos
    places = [Path("/proc/exemplar-color-test/out")]
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        places.append(ro)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("target,reference,split\na.jpg,b.jpg,train\n")
    for place in places:
        for args in (["cache", "build", "--pairs", pairs, "--out", place, "--vgg-weights", common[1]],
                     ["cache", "pairs", "--root", d, "--rule", "nearest", "--out", place / "pairs.csv", "--vgg-weights", common[1]],
                     ["train", "--pairs", pairs, "--cache", tmp_path, "--out", place, "--vgg-weights", common[1]],
                     ["colorize", d, "-r", ref, "-o", place, *common],
                     ["match", d / "a.jpg", ref, "--out", place / "m.npz", *common[:4]],
                     ["evaluate", d, "--reference-mode", "self-transform", "--out", place, *common[:4]],
                     ["index", "build", d, "--index", place, "--vgg-weights", common[1]]):
            rc, err, _ = cli(capsys, *args)
            one_error(rc, err, 1, "cannot write here")


# ---------------------------------------------------------------- 2. one line for library errors
def test_library_errors_are_one_line_and_never_advise_unpickling(photos, tmp_path, common, capsys, monkeypatch):
    import torch

    d, ref = photos
    bad = tmp_path / "bad.pth"
    torch.save({"x": Path("not-a-tensor")}, bad)  # a pickle with more than tensors
    rc, err, _ = cli(capsys, "colorize", d / "a.jpg", "-r", ref, "-o", tmp_path / "o.png", *common[2:],
                     "--vgg-weights", bad)
    one_error(rc, err, 1, "bad.pth")
    assert "weights_only" not in err[0] and "Traceback" not in err[0]
    truncated = tmp_path / "trunc.pth"
    truncated.write_bytes(Path(common[1]).read_bytes()[:5000])
    rc, err, _ = cli(capsys, "colorize", d / "a.jpg", "-r", ref, "-o", tmp_path / "o.png", *common[2:],
                     "--vgg-weights", truncated)
    one_error(rc, err, 1, "trunc.pth")
    monkeypatch.setenv("EXEMPLAR_COLOR_DEBUG", "1")  # the traceback, for whoever debugs
    with pytest.raises(Exception, match="trunc.pth"):
        main(["colorize", str(d / "a.jpg"), "-r", str(ref), "-o", str(tmp_path / "o.png"), *common[2:],
              "--vgg-weights", str(truncated)])
    assert not (tmp_path / "o.png").exists()


def test_gray_reference_to_match_works_on_luminance(photos, tmp_path, common, capsys):
    d, _ = photos
    rc, err, out = cli(capsys, "match", d / "a.jpg", d / "b.png", "--out", tmp_path / "m.npz", *common[:4],
                       *common[6:])
    assert rc == 0, err
    assert np.load(tmp_path / "m.npz")["forward"].shape == (120, 160, 2)


# ---------------------------------------------------------------- 6. a bad reference stops the run once
def test_bad_reference_stops_a_folder_run_with_one_message(photos, tmp_path, common, capsys, data_dir, no_model):
    d, _ = photos
    for i in range(3):
        shutil.copy(d / "a.jpg", d / f"c{i}.jpg")
    gray_ref = d.parent / "gray_ref.png"
    Image.open(d / "b.png").save(gray_ref)
    rc, err, _ = cli(capsys, "colorize", d, "-r", gray_ref, "-o", tmp_path / "out", *common)
    one_error(rc, err, 1, "gray_ref.png", "no colour")
    broken = d.parent / "broken.jpg"
    broken.write_bytes((data_dir / "exemplar-pairs" / "example" / "ref1.jpg").read_bytes()[:400])
    rc, err, _ = cli(capsys, "colorize", d, "-r", broken, "-o", tmp_path / "out", *common)
    one_error(rc, err, 1, "broken.jpg")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 3. crash-safe outputs
def test_output_folder_inside_the_input_folder_is_never_an_input(photos, common, capsys):
    d, ref = photos
    rc, err, _ = cli(capsys, "colorize", d, "-r", ref, "-o", d / "out", "--save-confidence", *common)
    assert rc == 0, err
    assert sorted(p.name for p in (d / "out").iterdir() if p.name != ".exemplar-color-job.json") == [
        "a.png", "a_confidence.png", "b.png", "b_confidence.png"]
    rc, err, out = cli(capsys, "colorize", d, "-r", ref, "-o", d / "out", "--save-confidence", "--resume", *common)
    assert rc == 0 and "colorized 0, skipped 2" in out and not err, (err, out)  # the result on stdout
    assert not (d / "out" / "out").exists()


def test_resume_removes_leftovers_and_redoes_incomplete_targets(photos, tmp_path, common, capsys):
    d, ref = photos
    out = tmp_path / "out"
    rc, err, _ = cli(capsys, "colorize", d, "-r", ref, "-o", out, "--save-confidence", *common)
    assert rc == 0, err
    full = snapshot(out)
    (out / "a_confidence.png").unlink()  # killed between the side output and ... (main written last)
    (out / "a.png").unlink()
    (out / "b_confidence.png").unlink()  # ... or a side output lost: b is not done either
    (out / ".a.png.k3j2x9.exemplar-tmp.png").write_bytes(b"\x89PNG half")
    (out / ".b_confidence.png.abcd1234.tmp.png").write_bytes(b"\x89PNG half")  # the older naming
    stamp = (out / "b.png").stat().st_mtime_ns
    rc, err, said = cli(capsys, "colorize", d, "-r", ref, "-o", out, "--save-confidence", "--resume", *common)
    assert rc == 0 and "colorized 2, skipped 0" in said, (err, said)
    assert snapshot(out) == full and no_temp_files(out)
    assert (out / "b.png").stat().st_mtime_ns != stamp  # b redone: its confidence map was missing


@pytest.mark.slow  # a subprocess killed with SIGKILL
def test_sigkill_during_a_folder_run_then_resume_gives_the_uninterrupted_outputs(photos, tmp_path, common,
                                                                                    capsys):
    d, ref = photos
    for i in range(12):
        Image.open(d / ("a.jpg" if i % 2 else "b.png")).rotate(90 * i, expand=True).save(d / f"r{i:02d}.png")
    targets = 14
    reference = tmp_path / "clean"
    rc, err, _ = cli(capsys, "colorize", d, "-r", ref, "-o", reference, "--save-confidence", *common)
    assert rc == 0, err
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "exemplar_color.cli.main", "colorize", str(d), "-r", str(ref), "-o", str(out),
           "--save-confidence", *map(str, common)]

    def finished() -> list[Path]:  # targets whose main image (written last) is there
        return [p for p in out.glob("*.png") if not p.name.startswith(".") and not p.stem.endswith("_confidence")]

    rng = np.random.default_rng(int(time.time()))
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120  # a loaded machine: the run imports torch and loads VGG-19 first
    while not (out.exists() and finished()) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    assert out.exists() and finished(), "no target finished before the deadline (or the run failed)"
    time.sleep(float(rng.uniform(0, 0.02)))  # somewhere inside the run: between targets, or inside a write
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(finished())
    assert 1 <= done < targets, done  # the kill landed mid-run: some targets finished, not all
    rc, err, said = cli(capsys, "colorize", d, "-r", ref, "-o", out, "--save-confidence", "--resume", *common)
    assert f"skipped {done}, " in said, said  # the finished ones were kept
    assert rc == 0, err
    assert {Path(k).name: v for k, v in snapshot(out).items()} == \
        {Path(k).name: v for k, v in snapshot(reference).items()}
    assert no_temp_files(out)


# ---------------------------------------------------------------- 4. the project's pixel limit
def test_pixel_limit_is_the_projects_own_and_settable(photos, tmp_path, common, capsys, monkeypatch):
    from exemplar_color.io import load_image

    d, ref = photos
    rc, err, _ = cli(capsys, "colorize", d / "a.jpg", "-r", ref, "-o", tmp_path / "o.png", "--max-pixels", "10000",
                     *common)
    assert rc == 1 and any("over the limit of 10,000" in ln and "--max-pixels" in ln for ln in err), err
    monkeypatch.setenv("EXEMPLAR_COLOR_MAX_PIXELS", "10000")
    with pytest.raises(Exception, match="over the limit of 10,000"):
        load_image(d / "a.jpg")
    monkeypatch.delenv("EXEMPLAR_COLOR_MAX_PIXELS")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's bomb limit no longer decides
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(d / "a.jpg").shape == (120, 160)
    assert Image.MAX_IMAGE_PIXELS == 1000


# ---------------------------------------------------------------- 5. retrieval: colour references only
def test_gallery_skips_grayscale_and_auto_takes_a_colour_reference_not_the_target(tmp_path, data_dir, tv_weights,
                                                                                  common, capsys):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    sample = data_dir / "imagenet-sample"
    colour = ["n01440764_tench.JPEG", "n01443537_goldfish.JPEG", "n01484850_great_white_shark.JPEG",
              "n01491361_tiger_shark.JPEG", "n01494475_hammerhead.JPEG"]
    for name in colour + ["n02096051_Airedale.JPEG", "n02676566_acoustic_guitar.JPEG"]:  # the last two: gray
        shutil.copy(sample / name, gallery / name)
    index = tmp_path / "g.index"
    rc, err, out = cli(capsys, "index", "build", gallery, "--index", index, "--level", "relu3_1", "--size", "64",
                       "--vgg-variant", "torchvision", "--vgg-weights", tv_weights, "--workers", "0")
    assert rc == 0 and "5 images indexed" in out and "skipped 2 grayscale, 0 unreadable" in out, (out, err)
    target = gallery / colour[0]  # a colour scan that is itself in the gallery
    rc, _, out = cli(capsys, "index", "query", target, "--index", index, "-k", "3")
    ranked = [ln.split("\t")[2] for ln in out.splitlines()]
    assert Path(ranked[0]) == target
    Image.open(ranked[1]).convert("L").convert("RGB").save(ranked[1], format="JPEG")  # now gray
    rc, err, _ = cli(capsys, "colorize", target, "--auto", "--index", index, "-o", tmp_path / "auto.png", *common)
    assert rc == 0, err
    line = next(ln for ln in err if "reference" in ln and not ln.startswith("warning"))
    assert f"reference {ranked[2]}" in line and "the target itself" in line and "grayscale" in line, line
    faiss_file = next(index.glob("index-*.faiss"))
    faiss_file.write_bytes(faiss_file.read_bytes()[:300])  # truncated: one line, not FAISS's C++ trace
    rc, err, _ = cli(capsys, "index", "query", target, "--index", index)
    one_error(rc, err, 1, "FAISS index unreadable")


# ---------------------------------------------------------------- animated and transparent inputs
def test_animated_gif_and_alpha_are_said(photos, tmp_path, common, capsys):
    d, ref = photos
    frame = Image.open(d / "a.jpg")
    gif = tmp_path / "anim.gif"
    frame.save(gif, save_all=True, append_images=[frame.rotate(180)], duration=100)
    rgba = tmp_path / "scan.png"
    im = frame.convert("RGBA")
    im.putalpha(200)
    im.save(rgba)
    rc, err, _ = cli(capsys, "colorize", gif, rgba, "-r", ref, "-o", tmp_path / "out", *common)
    assert rc == 0, err
    assert any(ln.startswith("warning:") and "anim.gif" in ln and "first frame" in ln for ln in err), err
    assert any(ln.startswith("warning:") and "scan.png" in ln and "alpha channel" in ln for ln in err), err


# ---------------------------------------------------------------- issue 25: nothing a user owns is replaced
def test_existing_outputs_are_never_replaced_without_overwrite(photos, tmp_path, common, capsys, data_dir,
                                                               monkeypatch):
    """An unrelated photo already in the output folder, an existing -o file, an existing -o video: refused
    before any model (exit 2, naming the file), untouched; --overwrite replaces them."""
    from exemplar_color.backbone import VGG19Features

    d, ref = photos
    out = tmp_path / "photos"
    out.mkdir()
    mine = data_dir / "kodak" / "kodim01.png"
    shutil.copy(mine, out / "a.png")  # the user's own photo, same name as a target's output
    existing = tmp_path / "existing.png"
    shutil.copy(mine, existing)
    film = tmp_path / "existing.mp4"
    shutil.copy(data_dir / "video" / "carphone_pristine.mp4", film)
    before = snapshot(out) | {str(existing): snapshot(tmp_path)[str(existing)]}
    video = ["colorize-video", data_dir / "video" / "bikes.mp4", "-r", ref, "-o", film, *common[:4],
             "--levels", *LEVELS, "--device", "cpu", "--model", "analogy"]
    pytest.importorskip("av")
    init = VGG19Features.__init__
    monkeypatch.setattr(VGG19Features, "__init__", lambda *a, **k: (_ for _ in ()).throw(AssertionError("model")))
    for args, name in ((["colorize", d, "-r", ref, "-o", out, *common], out / "a.png"),
                       (["colorize", d, "-r", ref, "-o", out, "--save-confidence", *common], out / "a.png"),
                       (["colorize", d / "a.jpg", "-r", ref, "-o", existing, *common], existing),
                       (video, film)):
        rc, err, _ = cli(capsys, *args)
        one_error(rc, err, 2, str(name), "already exists", "--overwrite")
    assert snapshot(out) | {str(existing): snapshot(tmp_path)[str(existing)]} == before
    assert film.read_bytes() == (data_dir / "video" / "carphone_pristine.mp4").read_bytes()
    rc, err, _ = cli(capsys, "colorize", d, "-r", ref, "-o", out, "--resume", "--overwrite", *common)
    one_error(rc, err, 2, "--resume", "--overwrite")
    monkeypatch.setattr(VGG19Features, "__init__", init)
    rc, err, _ = cli(capsys, "colorize", d / "a.jpg", "-r", ref, "-o", existing, "--overwrite", *common)
    assert rc == 0, err
    assert Image.open(existing).size == (160, 120)  # replaced, as asked


def test_folder_resume_continues_only_the_same_job(photos, tmp_path, common, capsys, data_dir):
    """A folder run killed part-way, then resumed with another reference and --size, used to finish the folder
    the other way (a folder made two ways, exit 0). Its job record (references and settings, beside the
    outputs, as the video work folder's) refuses that, naming what differs; the same job continues."""
    d, ref = photos
    for i in range(4):
        Image.open(d / ("a.jpg" if i % 2 else "b.png")).rotate(90 * i, expand=True).save(d / f"r{i}.png")
    out = tmp_path / "out"
    rc, err, _ = cli(capsys, "colorize", d, "-r", ref, "-o", out, *common)
    assert rc == 0, err
    for name in ("r1.png", "r2.png", "r3.png"):  # as a kill after the first three would leave it
        (out / name).unlink()
    done = snapshot(out)
    other = tmp_path / "other.jpg"
    Image.open(data_dir / "exemplar-pairs" / "example" / "ref2.JPEG").convert("RGB").resize((160, 120)).save(other)
    changed = [("48" if a == "64" else a) for a in common]
    rc, err, _ = cli(capsys, "colorize", d, "-r", other, "-o", out, "--resume", *changed)
    one_error(rc, err, 1, str(out), "another job", "size: 64 then, 48 now", "references", "--overwrite")
    assert snapshot(out) == done
    rc, err, said = cli(capsys, "colorize", d, "-r", ref, "-o", out, "--resume", *common)
    assert rc == 0 and "colorized 3, skipped 3" in said, (err, said)
    (out / ".exemplar-color-job.json").unlink()  # outputs of unknown origin: --resume cannot vouch for them
    rc, err, _ = cli(capsys, "colorize", d, "-r", ref, "-o", out, "--resume", *common)
    one_error(rc, err, 2, "already exists", "no record of an earlier run", "--overwrite")


def test_auto_passes_over_a_gallery_photo_deleted_since_the_build(tmp_path, data_dir, tv_weights, common, capsys):
    """The top-ranked gallery photo deleted after the build used to fail the whole target with a raw
    `[Errno 2]`; it is passed over like a corrupt one, saying how to forget it."""
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    sample = data_dir / "imagenet-sample"
    for name in ["n01440764_tench.JPEG", "n01443537_goldfish.JPEG", "n01484850_great_white_shark.JPEG",
                 "n01491361_tiger_shark.JPEG"]:
        shutil.copy(sample / name, gallery / name)
    index = tmp_path / "g.index"
    rc, err, out = cli(capsys, "index", "build", gallery, "--index", index, "--level", "relu3_1", "--size", "64",
                       "--vgg-variant", "torchvision", "--vgg-weights", tv_weights, "--workers", "0")
    assert rc == 0, (out, err)
    target = tmp_path / "scan.png"
    Image.open(sample / "n01491361_tiger_shark.JPEG").convert("L").save(target)
    rc, _, out = cli(capsys, "index", "query", target, "--index", index, "-k", "2")
    first, second = [ln.split("\t")[2] for ln in out.splitlines()]
    Path(first).unlink()  # deleted after the build
    rc, err, _ = cli(capsys, "colorize", target, "--auto", "--index", index, "-o", tmp_path / "auto.png", *common)
    assert rc == 0, err
    line = next(ln for ln in err if "reference" in ln and not ln.startswith("warning"))
    assert f"reference {second}" in line and f"passed over {first} (missing" in line, line
    assert "--remove-missing" in line and (tmp_path / "auto.png").is_file()


@pytest.mark.parametrize("flag, value, words", [
    ("--size", "16", "--size: must be a whole number from 32 to 2048, got 16"),
    ("--size", "20", "from 32 to 2048"),
    ("--size", "100000", "from 32 to 2048, got 100000"),
    ("--chroma-gain", "nan", "--chroma-gain: must be in (0, 3], got nan"),
    ("--chroma-gain", "inf", "in (0, 3]"),
    ("--chroma-gain", "0", "in (0, 3]"),
    ("--chroma-gain", "-1", "in (0, 3]"),
    ("--chroma-gain", "1e6", "in (0, 3]"),
    ("--device", "meta", "unknown device 'meta'"),
    ("--device", "banana", "unknown device 'banana'; use auto, cpu, cuda or cuda:N"),
    ("--levels", "relu2_1,relu2_1", "relu2_1 given twice"),
])
def test_option_ranges_are_usage_errors_at_parse_time(photos, tmp_path, capsys, no_model, flag, value, words):
    """These used to end in `unexpected ..., please report it` (exit 1) after the work started, or be accepted
    (`--levels a,a`); now one line, exit 2, before anything is loaded, with the range (also in --help)."""
    d, ref = photos
    rc, err, _ = cli(capsys, "colorize", d / "a.jpg", "-r", ref, "-o", tmp_path / "o.png", flag, value)
    assert rc == 2 and len(err) == 1 and words in err[0], err
    assert not (tmp_path / "o.png").exists()


def test_ranges_are_in_the_help_and_mps_only_where_it_exists(photos, tmp_path, capsys):
    import torch

    d, ref = photos
    assert _exit(["colorize", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "32 to 2048" in text and "(0, 3]" in text
    if not torch.backends.mps.is_available():
        rc = _exit(["colorize", str(d / "a.jpg"), "-r", str(ref), "-o", str(tmp_path / "o.png"), "--device", "mps"])
        assert rc == 2 and "mps (Apple GPUs) is not available" in capsys.readouterr().err


def _exit(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


def test_size_above_every_photo_is_refused_before_the_work(photos, tmp_path, common, capsys, no_model):
    """--size 2048 on small photos used to upsample them (minutes, ~11 GB on a 256 px photo); above the
    default, a working size larger than the largest photo's short side is refused, naming it."""
    d, ref = photos  # 160x120 and 120x160: short side 120
    args = [a if a != "64" else "300" for a in common]
    rc, err, _ = cli(capsys, "colorize", d, "-r", ref, "-o", tmp_path / "out", *args)
    one_error(rc, err, 2, "--size 300", "120 px", "give --size 120 or less")
    assert not (tmp_path / "out").exists()


def test_bad_index_kind_is_refused_before_extraction_and_never_saved(tmp_path, data_dir, tv_weights, capsys,
                                                                     monkeypatch):
    """`index build --kind bogus` used to be refused only after every descriptor was extracted, and the kind
    was saved in the resume plan, so `--resume --kind flat` failed the same way."""
    from exemplar_color.retrieval import descriptors

    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for f in sorted((data_dir / "imagenet-sample").glob("*.JPEG"))[:3]:
        shutil.copy(f, gallery / f.name)
    base = ["index", "build", gallery, "--index", tmp_path / "g.index", "--level", "relu3_1", "--size", "64",
            "--vgg-variant", "torchvision", "--vgg-weights", tv_weights, "--workers", "0"]
    init = descriptors.DescriptorExtractor.__init__
    monkeypatch.setattr(descriptors.DescriptorExtractor, "__init__",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("extractor built")))
    rc, err, _ = cli(capsys, *base, "--kind", "bogus")
    one_error(rc, err, 2, "--kind 'bogus'", "FAISS factory")
    assert not (tmp_path / "g.index").exists()
    monkeypatch.setattr(descriptors.DescriptorExtractor, "__init__", init)
    # an interrupted build (its plan saved) resumed with another kind: the kind asked for now is used
    from exemplar_color.retrieval import build as build_mod

    real = build_mod._commit_new
    monkeypatch.setattr(build_mod, "_commit_new", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert cli(capsys, *base, "--kind", "hnsw")[0] == 130
    monkeypatch.setattr(build_mod, "_commit_new", real)
    rc, err, out = cli(capsys, *base, "--resume", "--kind", "flat")
    assert rc == 0 and ", Flat)" in out, (out, err)  # not the interrupted build's HNSW32,Flat



def test_index_build_exit_codes_and_skipping_lines(tmp_path, data_dir, tv_weights, capsys):
    """Grayscale photos in a gallery are expected: `index build` used to exit 1 for them; now 0 with the count
    in the summary (1 with --strict, and 1 for an unreadable file). Its `skipping` lines used to be glued to the
    progress bar; now each is a line of its own."""
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    sample = data_dir / "imagenet-sample"
    for name in ["n01440764_tench.JPEG", "n01443537_goldfish.JPEG", "n02096051_Airedale.JPEG"]:  # the last: gray
        shutil.copy(sample / name, gallery / name)
    base = ["--level", "relu3_1", "--size", "64", "--vgg-variant", "torchvision", "--vgg-weights", tv_weights,
            "--workers", "0"]
    capsys.readouterr()
    rc = main([str(a) for a in ["index", "build", gallery, "--index", tmp_path / "a.index", *base]])
    cap = capsys.readouterr()
    assert rc == 0 and "skipped 1 grayscale, 0 unreadable" in cap.out, (cap.out, cap.err)
    pieces = [p.strip() for ln in cap.err.splitlines() for p in ln.split("\r")]
    said = [p for p in pieces if "skipping" in p]
    assert said and all(p.startswith("skipping") and "n02096051_Airedale" in p for p in said), cap.err
    rc, err, out = cli(capsys, "index", "build", gallery, "--index", tmp_path / "b.index", "--strict", *base)
    assert rc == 1 and "skipped 1 grayscale" in out, (out, err)
    (gallery / "broken.jpg").write_bytes((sample / "n01440764_tench.JPEG").read_bytes()[:300])
    rc, err, out = cli(capsys, "index", "build", gallery, "--index", tmp_path / "c.index", *base)
    assert rc == 1 and "skipped 1 grayscale, 1 unreadable" in out, (out, err)


def test_smaller_messages_say_the_right_thing(photos, tmp_path, common, capsys, data_dir, monkeypatch):
    """--chroma-gain with the analogy head is said to be ignored; a > 300 MP header quotes the tool's limit and
    how to raise it (it quoted Pillow's, with no hint); a bad EXEMPLAR_COLOR_MAX_PIXELS is not blamed on an
    `<in-memory image>`; a failed single photo's summary does not name the file that was not written."""
    import struct
    import zlib

    from exemplar_color.io import load_image

    d, ref = photos
    rc, err, _ = cli(capsys, "colorize", d / "a.jpg", "-r", ref, "-o", tmp_path / "a.png", "--chroma-gain", "1.5",
                     *common)
    assert rc == 0 and any(ln.startswith("warning: --chroma-gain 1.5 is ignored") for ln in err), err
    png = bytearray((data_dir / "kodak" / "kodim01.png").read_bytes())  # a real PNG, its header made 20000x16000
    png[16:24] = struct.pack(">II", 20000, 16000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bytes(png))
    with pytest.raises(Exception) as e:
        load_image(bomb)
    assert "320,000,000 pixels, over the limit of 150,000,000" in str(e.value) and "--max-pixels" in str(e.value)
    out = tmp_path / "bomb_colour.png"
    rc, err, said = cli(capsys, "colorize", bomb, "-r", ref, "-o", out, *common)
    assert rc == 1 and "over the limit of 150,000,000" in err[0], err
    assert str(out) not in said and "nothing written" in said and not out.exists(), (err, said)
    monkeypatch.setenv("EXEMPLAR_COLOR_MAX_PIXELS", "lots")
    rc, err, _ = cli(capsys, "colorize", d / "a.jpg", "-r", ref, "-o", tmp_path / "b.png", *common)
    one_error(rc, err, 1, "EXEMPLAR_COLOR_MAX_PIXELS='lots'", "positive number")
    assert "<in-memory image>" not in err[0]


def test_a_busy_port_is_one_line_before_the_url(capsys):
    import socket

    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc, err, _ = cli(capsys, "app", "--port", port)
    one_error(rc, err, 1, f"127.0.0.1:{port}", "--port")
    assert not any("http://" in ln for ln in err)
