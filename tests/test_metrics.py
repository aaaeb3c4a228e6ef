"""Metrics against scikit-image (the independent reference) on real photos, and hand-computed cases;
the Reinhard baseline keeps L exactly and imposes the reference's ab statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from exemplar_color import metrics as M
from exemplar_color.baselines import reinhard_transfer, reinhard_transfer_lab
from exemplar_color.color import lab_to_rgb, rgb_to_lab
from exemplar_color.io import load_image


@pytest.fixture(scope="module")
def photos(data_dir) -> list[np.ndarray]:
    """Two Kodak and two BSDS500 photos (cropped to keep the suite fast), float64 channels-last."""
    files = [data_dir / "kodak" / "kodim05.png", data_dir / "kodak" / "kodim23.png",
             data_dir / "bsds500" / "val" / "101085.jpg", data_dir / "bsds500" / "test" / sorted(
                 p.name for p in (data_dir / "bsds500" / "test").iterdir())[0]]
    return [load_image(f, "RGB")[:200, :240].astype(np.float64) for f in files]


def _degrade(img: np.ndarray, seed: int) -> np.ndarray:
    """A plausible colorization error: shifted colours plus noise, clipped to the gamut."""
    rng = np.random.default_rng(seed)
    tint = img * np.array([0.9, 1.05, 0.8]) + 0.03
    return np.clip(tint + 0.03 * rng.standard_normal(img.shape), 0.0, 1.0)


# --------------------------------------------------------------------------------------- PSNR, SSIM
def test_psnr_and_ssim_match_skimage_on_real_photos(photos):
    for i, gt in enumerate(photos):
        pred = _degrade(gt, i)
        assert float(M.psnr(pred, gt)) == pytest.approx(sk_psnr(gt, pred, data_range=1.0), abs=1e-9)
        ref = sk_ssim(gt, pred, channel_axis=-1, data_range=1.0)
        assert float(M.ssim(pred, gt)) == pytest.approx(ref, abs=1e-9)
        wang = sk_ssim(gt, pred, channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5,
                       use_sample_covariance=False)
        assert float(M.ssim(pred, gt, gaussian=True)) == pytest.approx(wang, abs=1e-9)


def test_batched_torch_equals_per_image_numpy(photos):
    gts = np.stack(photos)
    preds = np.stack([_degrade(g, i) for i, g in enumerate(photos)])
    as_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float()  # noqa: E731
    for fn in (M.psnr, M.ssim, M.ab_error, M.delta_colorfulness):
        batch = fn(as_t(preds), as_t(gts))
        assert batch.shape == (len(photos),)
        single = torch.stack([fn(p, g) for p, g in zip(preds, gts)])
        assert torch.allclose(batch, single, rtol=1e-4, atol=1e-4), fn.__name__  # float32 input vs float64
    assert M.colorfulness(as_t(gts)).shape == (len(photos),)


def test_psnr_hand_computed():
    gt = np.zeros((16, 16, 3))
    assert float(M.psnr(gt + 0.1, gt)) == pytest.approx(20.0)  # MSE 0.01
    assert math.isinf(float(M.psnr(gt, gt)))
    assert float(M.psnr(gt + 25.5, gt, data_range=255.0)) == pytest.approx(20.0)


def test_psnr_masked():
    gt = np.zeros((8, 10, 3))
    pred = gt.copy()
    pred[:, :5] = 0.1  # error only in the left half
    left = np.zeros((8, 10), bool)
    left[:, :5] = True
    assert float(M.psnr_masked(pred, gt, left)) == pytest.approx(20.0)
    assert math.isinf(float(M.psnr_masked(pred, gt, ~left)))
    assert float(M.psnr_masked(pred, gt, np.ones((8, 10)))) == pytest.approx(float(M.psnr(pred, gt)))
    assert math.isnan(float(M.psnr_masked(pred, gt, np.zeros((8, 10)))))
    # batched tensors with a per-image (N, 1, H, W) mask
    p = torch.from_numpy(np.stack([pred, pred])).permute(0, 3, 1, 2)
    g = torch.zeros_like(p)
    m = torch.from_numpy(np.stack([left, ~left]))[:, None]
    out = M.psnr_masked(p, g, m)
    assert out[0].item() == pytest.approx(20.0) and math.isinf(out[1].item())
    with pytest.raises(ValueError, match="mask"):
        M.psnr_masked(pred, gt, np.ones((4, 4)))


def test_ssim_hand_computed():
    rng = np.random.default_rng(0)
    img = rng.random((20, 20, 3))
    assert float(M.ssim(img, img)) == pytest.approx(1.0)
    # constant images: SSIM = (2 a b + C1) / (a^2 + b^2 + C1) (variances are 0)
    a, b, c1 = 0.2, 0.6, 0.01**2
    const = float(M.ssim(np.full((9, 9, 3), a), np.full((9, 9, 3), b)))
    assert const == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        M.ssim(np.zeros((5, 5, 3)), np.zeros((5, 5, 3)))


def test_shape_and_type_errors():
    with pytest.raises(ValueError, match="same shape"):
        M.psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        M.psnr(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(TypeError):
        M.psnr([0.0], [0.0])


# -------------------------------------------------------------------------------------- colourfulness
def _cf_reference(img: np.ndarray) -> float:
    """Hasler & Suesstrunk written out in numpy, as the paper states it."""
    r, g, b = (img * 255.0).transpose(2, 0, 1)
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def test_colorfulness_hand_computed():
    gray = np.repeat(np.linspace(0, 1, 64).reshape(8, 8, 1), 3, axis=2)
    assert float(M.colorfulness(gray)) == pytest.approx(0.0, abs=1e-9)
    # half pure red, half pure green: rg = +-255 (std 255, mean 0), yb = 127.5 everywhere (std 0)
    img = np.zeros((4, 4, 3))
    img[:, :2, 0] = 1.0
    img[:, 2:, 1] = 1.0
    assert float(M.colorfulness(img)) == pytest.approx(255.0 + 0.3 * 127.5)
    # uint8 input is read as 0..255
    assert float(M.colorfulness((img * 255).astype(np.uint8))) == pytest.approx(293.25)


def test_colorfulness_and_delta_on_real_photos(photos):
    for gt in photos:
        assert float(M.colorfulness(gt)) == pytest.approx(_cf_reference(gt), rel=1e-9)
        gray = np.repeat(rgb2lab(gt)[..., :1] * 0 + gt.mean(-1, keepdims=True), 3, axis=2)
        assert float(M.delta_colorfulness(gray, gt)) == pytest.approx(_cf_reference(gt), rel=1e-9)
        assert float(M.delta_colorfulness(gray, gt, absolute=False)) == pytest.approx(-_cf_reference(gt))


# ------------------------------------------------------------------------------------------- ab error
def test_ab_error_matches_skimage_lab(photos):
    for i, gt in enumerate(photos):
        pred = _degrade(gt, 10 + i)
        d = rgb2lab(pred)[..., 1:] - rgb2lab(gt)[..., 1:]
        ref = np.sqrt((d**2).sum(-1)).mean()
        assert float(M.ab_error(pred, gt)) == pytest.approx(ref, rel=1e-6)


def test_ab_error_hand_computed():
    # two grays of different lightness: ab ~ (0, 0) for both, so the error is ~0 whatever L is (not exactly
    # 0: the sRGB matrix's rows do not sum exactly to the D65 white, in scikit-image too)
    assert float(M.ab_error(np.full((4, 4, 3), 0.2), np.full((4, 4, 3), 0.7))) == pytest.approx(0, abs=0.01)
    # pure red vs its gray: the error is red's chroma sqrt(a^2 + b^2) (skimage: a=80.11, b=67.22)
    red = np.zeros((4, 4, 3))
    red[..., 0] = 1.0
    lab = rgb2lab(red)[0, 0]
    assert float(M.ab_error(red, np.full((4, 4, 3), 0.5))) == pytest.approx(np.hypot(lab[1], lab[2]), rel=1e-5)


# ------------------------------------------------------------------------------------ VGG distance
def test_vgg_distance_is_perceptual_with_real_weights(photos, vgg_slices):
    gt = photos[0][:128, :128]
    slightly = _degrade(gt, 0)
    other = photos[2][:128, :128]
    d_same = float(M.vgg_distance(gt, gt, vgg_slices))
    d_slight = float(M.vgg_distance(slightly, gt, vgg_slices))
    d_other = float(M.vgg_distance(other, gt, vgg_slices))
    assert d_same == pytest.approx(0.0, abs=1e-9)
    assert 0 < d_slight < 0.5 * d_other
    assert float(M.vgg_distance(gt, other, vgg_slices)) == pytest.approx(d_other, rel=1e-5)  # symmetric
    batch = M.vgg_distance(np.stack([slightly, other]), np.stack([gt, gt]), vgg_slices, batch_size=1)
    assert batch.shape == (2,) and batch[1].item() == pytest.approx(d_other, rel=1e-5)
    one = float(M.vgg_distance(other, gt, vgg_slices, levels=["relu1_1"]))
    assert 0 < one <= 4
    with pytest.raises(ValueError, match="not computed"):
        M.vgg_distance(gt, gt, vgg_slices, levels=["relu5_1"])


def test_image_metrics_row(photos):
    gt = photos[1][:64, :64]
    row = M.image_metrics(_degrade(gt, 3), gt)
    assert set(row) == {"psnr", "ssim", "ab_error", "edge_ab_error", "colorfulness", "colorfulness_gt", "delta_cf"}
    assert all(isinstance(v, float) for v in row.values())
    assert row["psnr"] == pytest.approx(sk_psnr(gt, _degrade(gt, 3), data_range=1.0))


# ------------------------------------------------------------------------------------ Reinhard
def test_reinhard_keeps_L_and_matches_reference_ab_statistics(photos):
    target, reference = photos[0], photos[2]
    lab = reinhard_transfer_lab(target, reference)
    t = torch.from_numpy(target).permute(2, 0, 1)[None]
    assert torch.equal(lab[:, 0], rgb_to_lab(t)[:, 0])  # L bit for bit
    ref_ab = rgb_to_lab(torch.from_numpy(reference).permute(2, 0, 1)[None])[0, 1:].flatten(1)
    out_ab = lab[0, 1:].flatten(1)
    assert torch.allclose(out_ab.mean(1), ref_ab.mean(1), atol=1e-6)
    assert torch.allclose(out_ab.std(1, unbiased=False), ref_ab.std(1, unbiased=False), rtol=1e-6)
    # after sRGB clipping L moves only where colours left the gamut
    rgb = reinhard_transfer(target, reference)
    assert isinstance(rgb, np.ndarray) and rgb.shape == target.shape and rgb.dtype == np.float32
    assert np.median(np.abs(rgb2lab(rgb)[..., 0] - rgb2lab(target)[..., 0])) < 0.1


def test_reinhard_on_a_gray_target_paints_the_reference_mean(photos):
    gray = photos[1].mean(-1)  # (H, W)
    reference = photos[3]
    lab = reinhard_transfer_lab(gray, reference)
    ref_mean = rgb_to_lab(torch.from_numpy(reference).permute(2, 0, 1))[1:].mean(dim=(1, 2))
    assert torch.allclose(lab[0, 1:].mean(dim=(1, 2)), ref_mean, atol=1e-6)
    assert lab[0, 1:].std(dim=(1, 2)).max() < 1e-9  # one global tint, no amplified round-off
    expected_l = rgb_to_lab(torch.from_numpy(np.repeat(gray[None], 3, 0)))[0]
    assert torch.equal(lab[0, 0], expected_l)
    # tensors in, tensors out (channels first), batch of targets with one reference
    t = torch.from_numpy(np.stack([photos[0], photos[1]])).permute(0, 3, 1, 2).float()
    out = reinhard_transfer(t, torch.from_numpy(reference).permute(2, 0, 1).float())
    assert isinstance(out, torch.Tensor) and out.shape == t.shape
    with pytest.raises(ValueError, match="references for"):
        reinhard_transfer_lab(t, t[:1].repeat(3, 1, 1, 1))


def test_edge_ab_error_sees_colour_that_crosses_edges(photos):
    """Colours moved by a few pixels (bleeding over edges) weigh more at edges than over the whole image; a
    uniform tint weighs the same everywhere; the truth scores 0."""
    for img in photos[:2]:
        lab = rgb_to_lab(torch.from_numpy(img).permute(2, 0, 1)[None])
        bled = lab_to_rgb(torch.cat([lab[:, :1], lab[:, 1:].roll(4, -1)], 1))
        tinted = lab_to_rgb(torch.cat([lab[:, :1], lab[:, 1:] + torch.tensor([6.0, -4.0]).view(1, 2, 1, 1)], 1))
        truth = lab_to_rgb(lab)
        assert float(M.edge_ab_error(truth, truth)) < 1e-6
        assert float(M.edge_ab_error(bled, truth)) > 1.3 * float(M.ab_error(bled, truth))
        assert float(M.edge_ab_error(tinted, truth)) == pytest.approx(float(M.ab_error(tinted, truth)), rel=0.15)
