"""``exemplar-color evaluate`` end to end on real Kodak photos with the real pretrained VGG-19 slices."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from exemplar_color.cli.main import main
from exemplar_color.evaluation import METHODS, decolorize, given_items, read_pairs
from exemplar_color.color import rgb_to_lab
from exemplar_color.io import load_image

from conftest import small_gallery

SLICE_LEVELS = ("relu3_1", "relu2_1", "relu1_1")  # the levels the pretrained slices cover


def _pipeline_args(tv_weights):
    return ["--vgg-weights", str(tv_weights), "--vgg-variant", "torchvision", "--model", "analogy",
            "--levels", *SLICE_LEVELS, "--size", "128"]


def test_self_transform_report_end_to_end_with_a_corrupt_file(tmp_path, data_dir, tv_weights, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("kodim03.png", "kodim23.png"):
        shutil.copy(data_dir / "kodak" / name, src / name)
    (src / "broken.png").write_bytes((data_dir / "kodak" / "kodim05.png").read_bytes()[:4000])
    out = tmp_path / "report"
    rc = main(["evaluate", str(src), "--reference-mode", "self-transform", "--out", str(out),
               *_pipeline_args(tv_weights)])
    assert rc == 1  # one image failed: reported, not crashed, and the exit code says so
    rep = json.loads((out / "report.json").read_text())
    assert rep["n_images"] == 3 and rep["n_evaluated"] == 2 and rep["n_failed"] == 1
    assert rep["failed"][0]["name"] == "broken.png" and "corrupt" in rep["failed"][0]["error"]
    assert {r["name"] for r in rep["images"]} == {"kodim03.png", "kodim23.png"}
    for r in rep["images"]:
        assert r["ground_truth"] and set(r["metrics"]) == set(METHODS) - {"analogy", "no_reference", "vivid", "no_reference_vivid"}  # analogy head
        assert {"angle_deg", "scale", "shift_x", "shift_y"} <= set(r["transform"])
        assert r["size"] == [512, 768]
    s = rep["summary"]
    for m in set(METHODS) - {"analogy", "no_reference", "vivid", "no_reference_vivid"}:
        assert {"psnr", "ssim", "delta_cf", "ab_error", "colorfulness", "vgg_distance"} <= set(s[m])
    # the known-correspondence case: matching beats one global tint by a wide margin
    assert s["result"]["psnr"] > 28 and s["result"]["psnr"] > s["reinhard"]["psnr"] + 2
    assert s["warped_ab"]["ab_error"] < s["reinhard"]["ab_error"]
    assert s["result"]["delta_cf"] < s["reinhard"]["delta_cf"]
    assert rep["configuration"]["levels"] == list(SLICE_LEVELS) and rep["configuration"]["size"] == 128
    assert rep["versions"]["torch"] and "total_s" in rep["images"][0]["timings"]
    md = (out / "report.md").read_text()
    assert "warped ab alone" in md and "Reinhard" in md and "broken.png" in md and "| method |" in md
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.mode == "RGB" and 128 * 2 <= sheet.width <= 600
    assert not list(out.glob(".*.tmp*"))  # atomic writes leave no temporaries
    assert "PSNR" in capsys.readouterr().out  # the result on stdout


def test_self_transform_is_seeded(tmp_path, data_dir, tv_weights):
    Image.open(data_dir / "kodak" / "kodim03.png").resize((192, 128)).save(tmp_path / "small.png")
    src = tmp_path / "list.txt"
    src.write_text("small.png\n")  # a list file: paths relative to it
    reps = []
    for i in range(2):
        rc = main(["evaluate", str(src), "--reference-mode", "self-transform", "--out", str(tmp_path / f"r{i}"),
                   "--seed", "7", *_pipeline_args(tv_weights)])
        assert rc == 0
        reps.append(json.loads((tmp_path / f"r{i}" / "report.json").read_text()))
    assert reps[0]["images"][0]["transform"] == reps[1]["images"][0]["transform"]
    assert reps[0]["summary"]["result"]["psnr"] == pytest.approx(reps[1]["summary"]["result"]["psnr"], abs=1e-6)


def test_decolorize_keeps_lightness_and_pairs_file_parsing(tmp_path, data_dir):
    rgb = load_image(data_dir / "kodak" / "kodim03.png")[:64, :64]
    gray = decolorize(rgb)
    assert gray.shape == (64, 64)
    l_gt = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None])[:, 0]
    l_gray = rgb_to_lab(torch.from_numpy(np.repeat(gray[..., None], 3, 2)).permute(2, 0, 1)[None])[:, 0]
    assert float((l_gt - l_gray).abs().max()) < 0.05
    from_pil = decolorize(np.round(rgb * 255).astype(np.uint8))  # 0..255 as PIL gives it: the same gray
    assert from_pil.dtype == np.float32 and float(np.abs(from_pil - gray).max()) < 0.01
    sub = tmp_path / "set"
    sub.mkdir()
    (sub / "pairs.txt").write_text("# comment\nin1.jpg ref1.jpg 1\n\nin2.jpg ref2.jpg\n")
    items = read_pairs(sub / "pairs.txt")
    assert [(i.name, i.reference.name) for i in items] == [("in1.jpg", "ref1.jpg"), ("in2.jpg", "ref2.jpg")]
    assert [i.name for i in given_items(tmp_path, None)] == ["set/in1.jpg", "set/in2.jpg"]


def test_auto_mode_uses_the_index(tmp_path, data_dir, tv_weights):
    """--reference-mode auto: references come from a gallery index; the report records which one."""
    src = tmp_path / "src"
    src.mkdir()
    photos = sorted((data_dir / "kodak").glob("*.png"))[:6]
    small_gallery(photos, tmp_path / "gallery", tmp_path / "g.index", tv_weights).close()
    shutil.copy(photos[2], src / photos[2].name)
    out = tmp_path / "report"
    rc = main(["evaluate", str(src), "--reference-mode", "auto", "--index", str(tmp_path / "g.index"),
               "--out", str(out), *_pipeline_args(tv_weights)])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["n_evaluated"] == 1
    assert photos[2].name in json.dumps(rep["images"][0]["reference"])  # its own colour original, from the index
    assert rep["summary"]["result"]["psnr"] > 28
