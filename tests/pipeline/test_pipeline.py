"""The Colorizer API and the match/colorize commands, end to end on real photos with the real VGG-19 slices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from exemplar_color import Colorizer
from exemplar_color.cli.main import main
from exemplar_color.color import rgb_to_lab
from exemplar_color.photos import GrayReferenceError

from conftest import small_gallery

LEVELS = ["relu3_1", "relu2_1", "relu1_1"]


@pytest.fixture(scope="module")
def colorizer(tv_weights):
    return Colorizer(device="cpu", vgg_weights=tv_weights, vgg_variant="torchvision", levels=LEVELS, size=128,
                     model="analogy")


@pytest.fixture(scope="module")
def pair(data_dir):
    d = data_dir / "exemplar-pairs" / "example"
    return d / "in1.jpg", d / "ref1.jpg"


def _lab_l(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    return rgb_to_lab(torch.from_numpy(arr).permute(2, 0, 1)[None])[0, 0].numpy()


def test_colorize_keeps_size_and_luminance(colorizer, pair):
    target, reference = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = colorizer.colorize(target, reference)
    src = Image.open(target)
    assert r.image.size == src.size and r.image.mode == "RGB"
    l_in = _lab_l(src.convert("L").convert("RGB"))
    l_out = _lab_l(r.image)
    assert np.abs(l_out - l_in).mean() < 0.5 and np.percentile(np.abs(l_out - l_in), 99) < 1.5
    # the photo really got colour, and it came from the reference
    chroma = np.hypot(r.ab[..., 0], r.ab[..., 1])
    assert chroma.mean() > 5
    assert r.ab.shape == (src.size[1], src.size[0], 2)
    assert r.forward.shape == (src.size[1], src.size[0], 2)
    ref_w, ref_h = Image.open(reference).size
    assert r.forward[..., 0].max() <= ref_w - 0.5 and r.forward[..., 1].max() <= ref_h - 0.5
    assert r.similarity.shape[0] == 2 * len(LEVELS) and r.head == "analogy"
    assert set(r.timings) >= {"match_s", "head_s", "full_resolution_s", "total_s"}


def test_batch_equals_single(colorizer, data_dir):
    d = data_dir / "exemplar-pairs" / "examplar-based"
    pairs = [(d / "in1.JPEG", d / "ref1.JPEG"), (d / "in1.JPEG", d / "ref1.JPEG"), (d / "in2.JPEG", d / "ref2.JPEG")]
    many = colorizer.colorize_many(pairs)
    single = colorizer.colorize(*pairs[2])
    np.testing.assert_allclose(many[2].ab, single.ab, atol=1e-3)
    np.testing.assert_allclose(many[0].ab, many[1].ab, atol=1e-3)


def test_gray_reference_refused_and_colour_target_warned(colorizer, data_dir, pair):
    gray = data_dir / "legacy-gray" / "einstein_1.jpg"
    with pytest.raises(GrayReferenceError, match="no colour to transfer"):
        colorizer.colorize(pair[0], gray)
    with pytest.warns(UserWarning, match="luminance"):
        colorizer.colorize(pair[1], pair[1])


def test_analogy_head_vs_warped_on_known_transform(colorizer, data_dir):
    """The head follows the target's edges and may only lose a little against the raw warp where the raw warp
    is already almost perfect (a transformed copy of the photo itself)."""
    from exemplar_color.color import lab_to_rgb
    from exemplar_color.correspondence.synthetic import similarity_pair

    img = torch.from_numpy(np.asarray(Image.open(data_dir / "kodak" / "kodim23.png").convert("RGB"),
                                      dtype=np.float32) / 255).permute(2, 0, 1)[None][..., :256, 128:384]
    kp = similarity_pair(img, 6.0, 1.05, 0.04, -0.03)
    lab = rgb_to_lab(img)
    corr = colorizer.matcher.match(lab[:, :1], rgb_to_lab(kp.reference.clamp(0, 1)))

    def psnr(ab):
        rgb = lab_to_rgb(torch.cat([lab[:, :1], ab], 1))
        mse = ((rgb - img) * 255).pow(2).mean(1, keepdim=True)[kp.overlap].mean().item()
        return 10 * np.log10(255 ** 2 / mse)

    raw, head = psnr(corr.warped_ab), psnr(colorizer.head(lab[:, :1], corr))
    assert head > 30 and head >= raw - 0.5, (raw, head)


@pytest.mark.slow  # a subprocess measuring peak memory
def test_large_photo_memory_bound(tv_weights, data_dir, tmp_path):
    """A 4000x3000 colour scan (JPEG) colorizes within 0.5 GB beyond the loaded model, reading included
    (separate process; measured 0.33 GB, and 1.0 GB before the full-resolution stage ran in bands and the
    colour check read a sample instead of the whole photo's Lab)."""
    big = tmp_path / "big.jpg"
    Image.open(data_dir / "kodak" / "kodim05.png").resize((4000, 3000), Image.BICUBIC).save(big, quality=90)
    code = (
        "import resource, torch, sys; torch.set_num_threads(1)\n"
        "from exemplar_color import Colorizer\n"
        f"c = Colorizer(device='cpu', vgg_weights={str(tv_weights)!r}, vgg_variant='torchvision', "
        f"levels={LEVELS!r}, size=128, model='analogy')\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"r = c.colorize({str(big)!r}, {str(data_dir / 'kodak' / 'kodim05.png')!r})\n"
        "assert r.image.size == (4000, 3000)\n"
        "print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    # buffers from 1 MB up are returned to the system when freed: the peak is what was alive at once
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="1048576")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    base_kb, peak_kb = map(int, out.stdout.split()[-2:])
    assert (peak_kb - base_kb) / 1024 < 512, (base_kb, peak_kb)


def _cli(*args: str) -> int:
    return main(list(args))


def test_cli_colorize_folder_with_corrupt_file_and_resume(tv_weights, pair, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "good.jpg").write_bytes(pair[0].read_bytes())
    (src / "broken.jpg").write_bytes(pair[0].read_bytes()[:300])
    out = tmp_path / "out"
    common = ["--vgg-weights", str(tv_weights), "--vgg-variant", "torchvision", "--model", "analogy", "--levels", *LEVELS,
              "--size", "128", "--device", "cpu"]
    rc = _cli("colorize", str(src), "--reference", str(pair[1]), "-o", str(out), "--json", "--save-confidence",
              *common)
    report = json.loads(capsys.readouterr().out)
    assert rc == 1  # something failed, and the exit code says so
    assert [o["output"] for o in report["outputs"]] == [str(out / "good.png")]
    assert report["failed"][0]["target"].endswith("broken.jpg")
    assert Image.open(out / "good.png").size == Image.open(pair[0]).size
    assert (out / "good_confidence.png").exists()
    assert sorted(p.name for p in out.iterdir()) == [".exemplar-color-job.json", "good.png", "good_confidence.png"]  # no temp files left; the job record
    (src / "broken.jpg").unlink()
    stamp = (out / "good.png").stat().st_mtime_ns
    rc = _cli("colorize", str(src), "--reference", str(pair[1]), "-o", str(out), "--json", "--resume", *common)
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["skipped"] == [str(out / "good.png")] and not report["outputs"]
    assert (out / "good.png").stat().st_mtime_ns == stamp


def test_cli_gray_reference_is_one_line_error(tv_weights, pair, data_dir, tmp_path, capsys):
    rc = _cli("colorize", str(pair[0]), "--reference", str(data_dir / "legacy-gray" / "einstein_1.jpg"),
              "-o", str(tmp_path / "x.png"), "--vgg-weights", str(tv_weights), "--vgg-variant", "torchvision",
              "--model", "analogy", "--levels", *LEVELS, "--size", "128")
    assert rc == 1 and "no colour to transfer" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_cli_match_writes_fields_at_original_resolution(tv_weights, pair, tmp_path, capsys):
    out = tmp_path / "m.npz"
    rc = _cli("match", str(pair[0]), str(pair[1]), "--out", str(out), "--vgg-weights", str(tv_weights), "--vgg-variant", "torchvision",
              "--levels", *LEVELS, "--size", "128")
    assert rc == 0
    z = np.load(out)
    tw, th = Image.open(pair[0]).size
    rw, rh = Image.open(pair[1]).size
    assert z["forward"].shape == (th, tw, 2) and z["forward"].dtype == np.float32
    assert z["backward"].shape == (rh, rw, 2)
    assert z["similarity"].shape[0] == 6 and list(z["levels"]) == LEVELS
    assert z["forward"][..., 0].min() >= -0.5 and z["forward"][..., 0].max() <= rw - 0.5
    assert z["forward"][..., 1].max() <= rh - 0.5


def test_trained_checkpoint_runs_in_colorizer_and_wrong_one_is_refused(tv_weights, pair, tmp_path):
    """A sub-net checkpoint (here untrained, width 1/8) drives the Colorizer; other levels are refused."""
    from exemplar_color.colorization.checkpoint import save_checkpoint
    from exemplar_color.colorization.network import ColorizationNet, ColorizationNetConfig
    from exemplar_color.errors import ExemplarColorError

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "net.safetensors",
                           ColorizationNet(ColorizationNetConfig(levels=tuple(LEVELS), width=0.125, size=128)))
    c = Colorizer(device="cpu", vgg_weights=tv_weights, model=ckpt, size=128)
    assert c.head_name == "network" and c.levels == tuple(LEVELS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = c.colorize(*pair)
    assert r.head == "network" and r.image.size == Image.open(pair[0]).size and np.isfinite(r.ab).all()
    with pytest.raises(ExemplarColorError, match="levels"):
        Colorizer(device="cpu", vgg_weights=tv_weights, model=ckpt, levels=["relu2_1", "relu1_1"])


def test_fully_automatic_mode_uses_the_index(tv_weights, data_dir, tmp_path, capsys):
    """colorize without a reference: the gallery's best match is used, and the result says which one."""
    gallery = tmp_path / "gallery"
    files = sorted((data_dir / "imagenet-sample").glob("*.JPEG"))[:12]
    small_gallery(files, gallery, tmp_path / "g.index", tv_weights).close()
    target = tmp_path / "old.png"
    Image.open(files[5]).convert("L").save(target)
    c = Colorizer(device="cpu", vgg_weights=tv_weights, vgg_variant="torchvision", levels=LEVELS, size=128,
                  index=tmp_path / "g.index", model="analogy")
    recs = c.recommend(target, k=3)
    assert Path(recs[0].path).name == files[5].name  # its own colour original ranks first
    r = c.colorize(target)
    assert Path(r.reference).name == files[5].name and r.recommendations
    rc = main(["colorize", str(target), "--auto", "--index", str(tmp_path / "g.index"), "-o",
               str(tmp_path / "auto.png"), "--json", "--vgg-weights", str(tv_weights), "--vgg-variant", "torchvision",
               "--model", "analogy", "--levels", *LEVELS,
               "--size", "128", "--device", "cpu"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and Path(report["outputs"][0]["reference"]).name == files[5].name


def test_extreme_aspect_flat_and_tiny_inputs(colorizer, data_dir):
    from exemplar_color.errors import ImageTooSmallError

    long_thin = Image.open(data_dir / "kodak" / "kodim05.png").convert("L").resize((2000, 60))
    tall_ref = Image.open(data_dir / "kodak" / "kodim23.png").resize((40, 700))
    r = colorizer.colorize(long_thin, tall_ref)
    assert r.image.size == (2000, 60) and np.isfinite(r.ab).all()
    red = np.zeros((64, 64, 3), np.float32)
    red[..., 0] = 1
    r = colorizer.colorize(np.full((100, 100), 0.5, np.float32), red)  # flat target: takes the only colour there is
    assert np.isfinite(r.ab).all() and r.ab[..., 0].mean() > 50
    with pytest.raises(ImageTooSmallError, match="at least 16"):
        colorizer.colorize(np.full((8, 100), 0.5, np.float32), red)
