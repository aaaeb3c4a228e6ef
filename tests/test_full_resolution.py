"""The full-resolution stage in row bands: the same picture as the whole-image computation, and memory that
grows with the pixel count only by the 8-bit result (real photos, the real VGG-19 slices)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from exemplar_color.color import lab_to_image, rgb_to_lab
from exemplar_color.colorization.guided import guided_upsample, joint_bilateral_upsample
from exemplar_color.full_resolution import FullResolution
from exemplar_color.layout import to_tensor
from exemplar_color.working import resize

from conftest import SLICE_LEVELS


def _whole_image(pixels: torch.Tensor, tl: torch.Tensor, ab: torch.Tensor, method: str):
    """The stage on the whole image at once, as it was before the bands: full L, full ab, one Lab->RGB."""
    full_l = rgb_to_lab(pixels)[:, :1]
    if method == "joint-bilateral":
        ab_full = joint_bilateral_upsample(tl / 100, ab, full_l / 100, chunk_rows=full_l.shape[-2])
    elif method == "guided":
        ab_full = guided_upsample(tl / 100, ab, full_l / 100, chunk_rows=full_l.shape[-2])
    else:
        ab_full = F.interpolate(ab, size=full_l.shape[-2:], mode="bilinear", align_corners=False)
    return lab_to_image(full_l, ab_full, chunk_rows=full_l.shape[-2]), ab_full[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("method", ["joint-bilateral", "guided", "bilinear"])
@pytest.mark.parametrize("name", ["kodim05.png", "kodim23.png"])
def test_bands_give_the_whole_image_result(data_dir, method, name):
    """A real photo (its own colours at the working size, upsampled along its full-size L), in 9 bands."""
    pixels = to_tensor(np.asarray(Image.open(data_dir / "kodak" / name).convert("RGB"), np.float32) / 255)
    h, w = pixels.shape[-2:]
    lab = rgb_to_lab(resize(pixels, (256, 384)).clamp(0, 1))
    tl, ab = lab[:, :1], lab[:, 1:] * 1.5  # more saturated than the photo: the gamut fix is exercised too
    whole, whole_ab = _whole_image(pixels, tl, ab, method)
    full = FullResolution(pixels, tl, ab, method, band_pixels=w * 60)
    assert len(list(full.bands())) == -(-h // 60) > 8
    banded = np.asarray(full.image()).astype(int)
    diff = np.abs(banded - np.asarray(whole).astype(int)).max(-1)
    # joint-bilateral and guided: the same operations row by row, measured identical; bilinear: F.interpolate's
    # own arithmetic differs from the banded taps by float rounding (ab within 1e-4)
    assert (diff > 0).mean() <= 1e-4 and (diff > 1).mean() <= 1e-5, (diff.max(), (diff > 0).sum())
    assert np.abs(full.ab_array() - whole_ab).max() < 1e-3


def test_result_ab_is_the_picture_s_colour(tv_weights, data_dir):
    """``result.ab`` (computed when read) is exactly what ``result.image`` was made from."""
    from exemplar_color import Colorizer

    c = Colorizer(device="cpu", vgg_weights=tv_weights, vgg_variant="torchvision", levels=SLICE_LEVELS, size=64,
                  model="analogy")
    target = data_dir / "legacy-gray" / "chaplin_1.jpg"
    r = c.colorize(target, data_dir / "kodak" / "kodim04.png")
    assert callable(r._ab) and callable(r._forward)  # nothing full-size stored before it is asked for
    gray = to_tensor(np.asarray(Image.open(target).convert("L"), np.float32) / 255)
    from exemplar_color.color import gray_to_l

    again = lab_to_image(gray_to_l(gray), to_tensor(r.ab))
    assert np.array_equal(np.asarray(again), np.asarray(r.image))
    assert r.ab is r.ab and r.forward.shape == (*gray.shape[-2:], 2)  # computed once, then kept


_PEAK = """
import json, sys, torch
torch.set_num_threads(1)
from PIL import Image
from exemplar_color import Colorizer
from exemplar_color.photos import read_photo

def mem(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) * 1024

kodak, weights, w, h = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = Colorizer(device="cpu", vgg_weights=weights, vgg_variant="torchvision", levels=%r, size=64, model="analogy")
ref = kodak + "/kodim03.png"
c.colorize(read_photo(Image.open(kodak + "/kodim05.png").convert("L")), ref)  # first use: pools, imports
scan = read_photo(Image.open(kodak + "/kodim05.png").convert("L").resize((w, h), Image.BICUBIC))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from now
before = mem("VmRSS")
result = c.colorize(scan, ref)
print(json.dumps({"peak": mem("VmHWM") - before, "held": mem("VmRSS") - before}))
""" % (SLICE_LEVELS,)


def _colorize_memory(kodak: Path, weights: Path, w: int, h: int) -> dict:
    # buffers from 1 MB up mapped and unmapped one by one: resident memory then follows what is alive, not
    # what the allocator happened to keep from earlier work
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="1048576")
    out = subprocess.run([sys.executable, "-c", _PEAK, str(kodak), str(weights), str(w), str(h)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.slow  # subprocesses measuring peak memory
def test_memory_grows_with_the_scan_only_by_the_result(tv_weights, data_dir):
    """Extra memory per extra pixel of a gray scan (a real photo upsampled), beyond its decoded pixels: the
    peak of ``colorize`` and what its result holds. The peak and the process's resident memory are read from
    the kernel (``VmHWM``, reset through ``/proc/self/clear_refs``): tracemalloc sees neither torch's nor
    Pillow's buffers. Two sizes, so that fixed costs (the matching, one band) cancel out. The whole-image stage
    measured 32 bytes per pixel at the peak and 21 held (full-size ab and forward field, float32); the bands 5 and 3."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak")
    kodak = data_dir / "kodak"
    small, big = (1600, 1067), (3200, 2133)
    a, b = (_colorize_memory(kodak, tv_weights, *s) for s in (small, big))
    extra = big[0] * big[1] - small[0] * small[1]
    peak, held = (b["peak"] - a["peak"]) / extra, (b["held"] - a["held"]) / extra
    # the 8-bit result (Pillow keeps RGB in 4 bytes a pixel), and bands of fixed size
    assert peak < 8 and held < 6, (peak, held)
