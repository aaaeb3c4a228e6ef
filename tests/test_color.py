"""Lab conversion against scikit-image (the independent reference), on a dense grid and real photos."""

import numpy as np
import pytest
import torch
from skimage import color as skcolor

from exemplar_color.color import l_to_gray, lab_to_rgb, rgb_to_lab
from exemplar_color.io import load_image


def _grid(n=48):
    g = np.linspace(0.0, 1.0, n)
    r, gg, b = np.meshgrid(g, g, g, indexing="ij")
    return np.stack([r, gg, b], -1).reshape(n, n * n, 3)


def _t(arr, dtype=torch.float32):
    return torch.from_numpy(arr).to(dtype).permute(2, 0, 1)


def _np(t):
    return t.permute(1, 2, 0).double().numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rgb_to_lab_matches_skimage_on_whole_cube(dtype):
    rgb = _grid()
    ours = _np(rgb_to_lab(_t(rgb, dtype)))
    ref = skcolor.rgb2lab(rgb)
    assert np.abs(ours[..., 0] - ref[..., 0]).max() < 1e-3
    assert np.abs(ours[..., 1:] - ref[..., 1:]).max() < 1e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lab_to_rgb_matches_skimage(dtype):
    lab = skcolor.rgb2lab(_grid())
    ours = _np(lab_to_rgb(_t(lab, dtype)))
    assert np.abs(ours - skcolor.lab2rgb(lab)).max() < 1e-3


def test_out_of_gamut_lab_is_clipped_like_skimage():
    rng = np.random.default_rng(0)
    lab = np.stack([rng.uniform(0, 100, (64, 64)), rng.uniform(-128, 127, (64, 64)),
                    rng.uniform(-128, 127, (64, 64))], -1)
    ours = _np(lab_to_rgb(_t(lab, torch.float64)))
    with pytest.warns(UserWarning):
        ref = skcolor.lab2rgb(lab)
    assert np.abs(ours - ref).max() < 1e-3


def test_real_photos_match_skimage(data_dir):
    for name in ["kodak/kodim01.png", "kodak/kodim23.png", "bsds500/train/100075.jpg"]:
        path = data_dir / name
        rgb = load_image(path, "RGB").astype(np.float64)
        ours = _np(rgb_to_lab(_t(rgb, torch.float64)))
        ref = skcolor.rgb2lab(rgb)
        assert np.abs(ours[..., 0] - ref[..., 0]).max() < 1e-3
        assert np.abs(ours[..., 1:] - ref[..., 1:]).max() < 1e-2
        back = _np(lab_to_rgb(_t(ref, torch.float64)))
        assert np.abs(back - rgb).max() < 1e-4


def test_batched_and_device_agnostic_shapes():
    x = torch.rand(2, 4, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    lab = rgb_to_lab(x)
    assert lab.shape == x.shape
    # float32 values up to ~100: batched and single paths may round differently in the last bits
    assert torch.allclose(lab[1, 2], rgb_to_lab(x[1, 2]), atol=1e-4)
    assert torch.allclose(lab_to_rgb(lab), x, atol=1e-4)


def test_gradients_are_finite_and_correct():
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64) * 0.9 + 0.05
    assert torch.autograd.gradcheck(rgb_to_lab, (x.requires_grad_(),))
    lab = rgb_to_lab(torch.rand(1, 3, 4, 4, dtype=torch.float64) * 0.9 + 0.05).detach()
    assert torch.autograd.gradcheck(lambda t: lab_to_rgb(t, clip=False), (lab.requires_grad_(),))
    # black pixels sit on the cube-root's kink: the gradient must stay finite there
    z = torch.zeros(1, 3, 2, 2, requires_grad=True)
    rgb_to_lab(z).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_l_to_gray_round_trips_lightness():
    lightness = torch.linspace(0, 100, 201, dtype=torch.float64).view(1, 1, 1, -1)
    gray = l_to_gray(lightness)
    back = rgb_to_lab(gray.expand(1, 3, 1, -1))[:, :1]
    assert (back - lightness).abs().max() < 1e-3


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        rgb_to_lab(torch.rand(1, 4, 3, 3))
    with pytest.raises(TypeError):
        rgb_to_lab(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


def test_gray_to_l_equals_lab_of_repeated_gray():
    from exemplar_color.color import gray_to_l

    g = torch.linspace(0, 1, 1001, dtype=torch.float64).view(1, 1, 1, -1)
    np.testing.assert_allclose(gray_to_l(g).numpy(), rgb_to_lab(g.expand(-1, 3, -1, -1))[:, :1].numpy(), atol=1e-9)
